"""One training step on a batch of the device-resident training split, eager or as a
replayed CUDA graph.

A step (paper §IV-B; PROTOCOL.md, "Training") takes the indices of its samples in the
split, gathers their uint8 images, optionally flips and crops them (the random draws are
made outside the step from the run's augmentation generator, so eager and graphed runs
consume the same stream), scales to [0, 1], runs the model (under bf16 autocast when the
precision is ``bf16``), computes the loss in fp32 on fp32 logits, back-propagates and
applies one optimizer update. The step's loss and number of correct predictions are
added to device-side accumulators: nothing is read on the host inside an epoch.

:class:`GraphedStep` (CUDA only) runs its first ``warmup`` steps eagerly on a side
stream (they are real training steps: lazy optimizer state and cuDNN autotuning happen
there), then captures one whole step — gather, augmentation, forward, loss, backward,
update, accumulation — into a CUDA graph and replays it for every later step, copying
only the batch's indices and augmentation draws into static buffers. Requirements the
rest of the trainer meets: static shapes (the trainer drops the last partial batch), a
learning rate held in a 0-dim device tensor (:meth:`RMSPropTF.set_lr` updates it in
place), a loss with no host sync or data-dependent shapes (the losses of
``robench.losses`` are written so), and no new parameter or optimizer-state tensors
after capture (checkpoints are loaded before the first step).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from robench.data.augment import apply_flip_crop
from robench.data.base import Split
from robench.device import autocast

ToFloat = Callable[[torch.Tensor], torch.Tensor]
Draws = tuple[torch.Tensor, torch.Tensor] | None  # (flip (B,), shift (2, B)) or no augmentation


class EagerStep:
    """One optimizer step per call, run op by op."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        train: Split,
        to_float: ToFloat,
        precision: str = "fp32",
        channels_last: bool = False,
        compile_model: bool = False,
    ) -> None:
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        # torch.compile fuses the elementwise work (batch norm, ReLU, residual adds) of the
        # training forward and backward; evaluation keeps the plain module
        self.forward = torch.compile(model) if compile_model else model
        self.train, self.to_float = train, to_float
        self.precision, self.channels_last = precision, channels_last
        device = train.x.device
        self.loss_sum = torch.zeros((), device=device)  # Σ batch-mean losses this epoch
        self.correct = torch.zeros((), device=device, dtype=torch.long)  # Σ correct this epoch

    def reset_totals(self) -> None:
        """Zero the epoch accumulators (in place: a captured graph keeps adding to them)."""
        self.loss_sum.zero_()
        self.correct.zero_()

    def __call__(self, index: torch.Tensor, draws: Draws) -> None:
        """One step on the samples ``index`` (B,) of the split."""
        self._step(index, draws)

    def _step(self, index: torch.Tensor, draws: Draws) -> None:
        images = self.train.x[index]  # (B, C, H, W) uint8
        if draws is not None:
            images = apply_flip_crop(images, *draws)
        labels = self.train.y[index]  # (B,)
        inputs = self.to_float(images)  # (B, C, H, W) in [0, 1]
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(self.precision, inputs.device):
            logits = self.forward(inputs)  # (B, K)
        logits = logits.float()
        loss = self.loss_fn(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach()
        self.correct += (logits.detach().argmax(dim=1) == labels).sum()


class GraphedStep(EagerStep):
    """:class:`EagerStep` captured once into a CUDA graph and replayed (CUDA only)."""

    def __init__(self, *args, batch_size: int, augment: bool, warmup: int = 3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        device = self.train.x.device
        if device.type != "cuda":
            raise ValueError("CUDA graphs need the training split on a CUDA device")
        self.static_index = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.static_draws: Draws = None
        if augment:
            self.static_draws = (torch.zeros(batch_size, dtype=torch.bool, device=device),  # (B,)
                                 torch.zeros(2, batch_size, dtype=torch.long, device=device))  # (2, B)
        self.warmup_left = warmup
        self.graph: torch.cuda.CUDAGraph | None = None

    def __call__(self, index: torch.Tensor, draws: Draws) -> None:
        self.static_index.copy_(index)
        if self.static_draws is not None and draws is not None:
            for static, value in zip(self.static_draws, draws):
                static.copy_(value)
        if self.warmup_left > 0:
            self._warm_step()
            return
        if self.graph is None:
            self.graph = self._capture()
        self.graph.replay()

    def _warm_step(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._step(self.static_index, self.static_draws)
        torch.cuda.current_stream().wait_stream(side)
        self.warmup_left -= 1

    def _capture(self) -> torch.cuda.CUDAGraph:
        """Record one step; the recorded work runs only at the first replay."""
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # gradients are allocated by the graph
        with torch.cuda.graph(graph):
            self._step(self.static_index, self.static_draws)
        return graph


def make_step(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Split,
    to_float: ToFloat,
    precision: str,
    cuda_graph: bool,
    batch_size: int,
    augment: bool,
    compile_model: bool = False,
) -> EagerStep:
    """The step runner for this run: graphed on CUDA when asked, eager otherwise."""
    options = dict(precision=precision, channels_last=train.x.device.type == "cuda", compile_model=compile_model)
    if cuda_graph:
        return GraphedStep(model, loss_fn, optimizer, train, to_float, batch_size=batch_size, augment=augment,
                           **options)
    return EagerStep(model, loss_fn, optimizer, train, to_float, **options)
