"""The training loop of the paper (§IV-B): RMSProp with TF 1.15 semantics, batch 256,
the dataset's learning-rate schedule, optional flip + crop augmentation, and the stop
rules of the experiments (PROTOCOL.md, "Training" and "Experiments").

Data stays on the run's device as uint8; each batch is gathered, augmented and scaled
to [0, 1] with tensor ops (no DataLoader). On CUDA the whole step runs in bf16 autocast
with channels_last and is replayed as a CUDA graph (:mod:`robench.train.step`). A checkpoint is written after every epoch
and a re-run with the same configuration resumes from it.

Checkpoints: after every epoch, except that an epoch ending less than
``CHECKPOINT_SECONDS`` after the last checkpoint skips it (the last epoch always writes
one). Real epochs take longer than that, so they all checkpoint; the one-step epochs of
tiny subsets would otherwise spend most of their time writing checkpoints, and a kill
loses at most that many seconds of them.

Divergence: a non-finite epoch loss, or non-finite weights before a checkpoint or at
the end, stops the run with :class:`robench.train.divergence.TrainingDiverged` (a
UserError) and removes its checkpoint, so no model of it is kept or resumed; the check
uses the one host read of the loss the epoch makes anyway (:mod:`robench.train.divergence`).

Last-batch policy: the batch size is min(batch_size, N) and the last partial batch of
an epoch is dropped, so every step has the same shape (needed for CUDA graphs) and,
with a fresh permutation each epoch, every sample is seen equally often on average.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from robench.config import TrainSpec
from robench.data.augment import draw_flip_crop
from robench.data.base import Split
from robench.determinism import determinism_settings, thread_count
from robench.device import compile_training, resolve_precision
from robench.metrics import accuracy
from robench.train.checkpoint import TrainState, clear_checkpoint, load_checkpoint, save_checkpoint
from robench.train.divergence import DivergenceChecks, TrainingDiverged
from robench.train.rmsprop_tf import RMSPropTF
from robench.train.schedules import step_decay_lr
from robench.train.step import EagerStep, ToFloat, make_step

CHECKPOINT_SECONDS = 10.0


@dataclass
class TrainResult:
    """What a finished run did: epochs and steps, why it stopped, per-epoch history."""

    epochs: int
    steps: int
    stop_reason: str
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0
    precision: str = "fp32"
    cuda_graph: bool = False
    compiled: bool = False
    threads: int = 0  # robench.determinism.thread_count() while training
    determinism: dict[str, bool] = field(default_factory=dict)  # robench.determinism.determinism_settings()


def steps_per_epoch(spec: TrainSpec, num_train: int) -> int:
    """Optimizer steps of one epoch: full batches of min(batch_size, N), the rest dropped."""
    return max(1, num_train // min(spec.batch_size, num_train))


def planned_epochs(spec: TrainSpec, num_train: int) -> int:
    """Epochs needed for ``spec.epochs`` and at least ``spec.min_steps`` optimizer steps."""
    needed_for_steps = -(-spec.min_steps // steps_per_epoch(spec, num_train))  # ceil
    return max(spec.epochs, needed_for_steps)


def _run_epoch(
    step: EagerStep,
    optimizer: RMSPropTF,
    train: Split,
    spec: TrainSpec,
    state: TrainState,
    rngs: dict[str, torch.Generator],
) -> tuple[float, float]:
    """One pass over a fresh permutation; returns (mean loss, running accuracy)."""
    step.model.train()
    step.reset_totals()
    n = len(train)
    batch = min(spec.batch_size, n)
    device = train.x.device
    order = torch.randperm(n, generator=rngs["shuffle"]).to(device)  # (N,)
    num_batches = n // batch
    for b in range(num_batches):
        index = order[b * batch : (b + 1) * batch]  # (B,)
        draws = draw_flip_crop(batch, rngs["augment"], 4, device) if spec.augment else None
        optimizer.set_lr(step_decay_lr(spec.lr, spec.lr_decay, state.step, state.epoch,
                                       spec.lr_decay_steps, spec.lr_decay_epochs))
        step(index, draws)
        state.step += 1
    seen = num_batches * batch
    return step.loss_sum.item() / num_batches, step.correct.item() / seen


def train_model(
    model: nn.Module,
    loss_fn: nn.Module,
    train: Split,
    to_float: ToFloat,
    spec: TrainSpec,
    seed: int,
    checkpoint_dir: Path | None = None,
    fingerprint: str = "",
    desc: str = "train",
    precision: str = "auto",
    cuda_graph: bool | None = None,
    compile_model: bool | None = None,
    remedy: str = "",
) -> TrainResult:
    """Train ``model`` in place on ``train`` (already on the model's device).

    Stops after ``planned_epochs`` or, when ``spec.stop_train_accuracy`` > 0, at the
    first epoch whose eval-mode accuracy on the whole ``train`` split (noisy labels
    included) reaches it. ``stop_reason`` is ``epochs``, ``min_steps``,
    ``train_accuracy`` or ``epoch_cap`` (the accuracy target was never reached).

    ``precision`` ``auto`` is bf16 autocast on CUDA and fp32 elsewhere
    (:func:`robench.device.resolve_precision`); ``cuda_graph`` None captures the step
    into a CUDA graph on CUDA (:mod:`robench.train.step`). On CUDA the model is also
    converted to channels_last. ``compile_model`` runs the training forward through
    ``torch.compile`` (the first steps then include the compilation); None: the process
    default (:func:`robench.device.compile_training`, the CLI's ``--compile``).

    A non-finite loss or non-finite weights raise :class:`TrainingDiverged` naming
    ``desc``, the epoch and its steps, the value and ``remedy`` (default: lower the
    learning rate); the checkpoint in ``checkpoint_dir`` is removed first.
    """
    device = train.x.device
    precision = resolve_precision(precision, device)
    graphed = device.type == "cuda" if cuda_graph is None else cuda_graph
    compile_model = compile_training() if compile_model is None else compile_model
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    with _cudnn_autotuning(device.type == "cuda"):  # fixed shapes: autotune once, in the warm-up steps
        # a graph reads the learning rate from a device tensor that set_lr updates in place
        lr = torch.tensor(spec.lr, device=device) if graphed else spec.lr
        optimizer = RMSPropTF(model.parameters(), lr=lr, momentum=spec.momentum)
        rngs = {
            "shuffle": torch.Generator().manual_seed(seed),
            "augment": torch.Generator(device=device).manual_seed(seed + 1),
        }
        state = TrainState()
        if checkpoint_dir is not None:
            state = load_checkpoint(checkpoint_dir, model, optimizer, rngs, fingerprint) or state
        total_epochs = planned_epochs(spec, len(train))
        step = make_step(model, loss_fn, optimizer, train, to_float, precision, graphed,
                         min(spec.batch_size, len(train)), spec.augment, compile_model)
        start = time.perf_counter()
        bar = tqdm(total=total_epochs, initial=state.epoch, desc=desc, unit="epoch",
                   leave=False, disable=None)
        divergence = DivergenceChecks(desc, remedy or f"lower the learning rate ({spec.lr:g})",
                                      steps_per_epoch(spec, len(train)))
        try:
            divergence.check_resumed(state, checkpoint_dir)
            last_save = time.monotonic()
            while not state.stop_reason:
                loss, train_acc = _run_epoch(step, optimizer, train, spec, state, rngs)
                state.epoch += 1
                divergence.check_loss(loss, state)
                record: dict[str, Any] = {"epoch": state.epoch, "step": state.step, "loss": loss,
                                          "train_accuracy_running": train_acc}
                if spec.stop_train_accuracy > 0:
                    record["train_accuracy"] = accuracy(model, train.x, train.y, to_float)
                state.history.append(record)
                state.stop_reason = _stop_reason(spec, state, record, total_epochs)
                due = state.stop_reason or time.monotonic() - last_save >= CHECKPOINT_SECONDS
                if checkpoint_dir is not None and due:
                    divergence.check_weights(model, state)
                    save_checkpoint(checkpoint_dir, model, optimizer, rngs, state, fingerprint)
                    last_save = time.monotonic()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{train_acc:.3f}")
            divergence.check_weights(model, state)
        except TrainingDiverged:
            if checkpoint_dir is not None:
                clear_checkpoint(checkpoint_dir)
            raise
        finally:
            bar.close()
        model.eval()
        return TrainResult(state.epoch, state.step, state.stop_reason, state.history,
                           time.perf_counter() - start, precision, graphed, compile_model,
                           thread_count(), determinism_settings())


@contextmanager
def _cudnn_autotuning(enabled: bool) -> Iterator[None]:
    """cuDNN autotuning on inside (when ``enabled``), the process's setting restored after."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _stop_reason(spec: TrainSpec, state: TrainState, record: dict, total_epochs: int) -> str:
    """Why training stops after this epoch, or '' to go on."""
    if spec.stop_train_accuracy > 0 and record["train_accuracy"] >= spec.stop_train_accuracy:
        return "train_accuracy"
    if state.epoch < total_epochs:
        return ""
    if spec.stop_train_accuracy > 0:
        return "epoch_cap"
    return "min_steps" if total_epochs > spec.epochs else "epochs"


__all__ = ["TrainResult", "TrainingDiverged", "planned_epochs", "steps_per_epoch", "train_model",
           "clear_checkpoint"]
