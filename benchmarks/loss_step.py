"""Cost of the 1-to-N loss against cross entropy, alone and inside a training step.

Measured, for robench's ``ce``, ``1toN`` [−δ, δ] (``sym``) and ``1toN`` [0, δ]
(``zero``), δ = 1, all from ``robench.losses.create_loss``:

* ``loss_alone``: forward + backward of the loss on (256, 10) fp32 logits (random,
  ``requires_grad``) and int64 labels: median over repeats of the mean time of
  ``--loss-reps`` calls, in microseconds.
* ``train_step``: one whole eager fp32 training step of a wrn-28-2 (3×32×32, 10 classes)
  at batch ``--batch`` (default 256): forward, loss, ``zero_grad``, backward and a
  robench ``RMSPropTF`` step, with the head a zoo member of that loss has (``linear``
  for ce, ``unit`` for 1-to-N); median over repeats of the mean time per step, in ms.

``ratios`` are 1-to-N / CE (1.0: the same cost).

Run: ``python3 -m benchmarks loss --out loss.json [--quick] [--device cuda]``.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.common import CIFAR_MEAN, CIFAR_SHAPE, CIFAR_STD, NUM_CLASSES, median_seconds, ratio
from robench.config import LossSpec
from robench.losses import create_loss
from robench.models import create_model
from robench.train.rmsprop_tf import RMSPropTF
from robench.zoo import DEFAULT_HEAD

LOSSES = {
    "ce": LossSpec("ce"),
    "1toN-sym-d1": LossSpec("1toN", 1.0, "sym"),
    "1toN-zero-d1": LossSpec("1toN", 1.0, "zero"),
}
LOSS_BATCH = 256


def loss_alone(spec: LossSpec, device: torch.device, reps: int, repeats: int) -> dict[str, Any]:
    """Mean microseconds of one forward + backward of the loss on (256, 10) logits."""
    loss_fn = create_loss(spec)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(LOSS_BATCH, NUM_CLASSES, generator=gen).to(device).requires_grad_(True)
    labels = torch.randint(0, NUM_CLASSES, (LOSS_BATCH,), generator=gen).to(device)

    def calls():
        for _ in range(reps):
            (grad,) = torch.autograd.grad(loss_fn(logits, labels), logits)
        return grad

    calls()  # warm-up
    timing = median_seconds(calls, device, repeats)
    return {"us_per_call": timing["median_s"] / reps * 1e6, "reps": reps, "times_s": timing["times_s"]}


def train_step(spec: LossSpec, device: torch.device, batch: int, steps: int, repeats: int) -> dict[str, Any]:
    """Mean milliseconds of one eager fp32 wrn-28-2 training step with this loss."""
    head = DEFAULT_HEAD[spec.name]
    torch.manual_seed(0)
    model = create_model("wrn-28-2", NUM_CLASSES, head, CIFAR_MEAN, CIFAR_STD).to(device).train()
    loss_fn = create_loss(spec)
    optimizer = RMSPropTF(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(batch, *CIFAR_SHAPE, generator=gen).to(device)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=gen).to(device)

    def run(count: int):
        for _ in range(count):
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    run(min(2, steps))  # warm-up (creates the optimizer state)
    timing = median_seconds(lambda: run(steps), device, repeats)
    return {"ms_per_step": timing["median_s"] / steps * 1e3, "head": head, "batch": batch, "steps": steps,
            "times_s": timing["times_s"]}


def run(device: torch.device, batch: int = 256, loss_reps: int = 200, steps: int = 10,
        repeats: int = 3) -> dict[str, Any]:
    """The whole loss benchmark; a JSON-ready dict."""
    alone = {name: loss_alone(spec, device, loss_reps, repeats) for name, spec in LOSSES.items()}
    step = {name: train_step(spec, device, batch, steps, repeats) for name, spec in LOSSES.items()}
    ratios = {}
    for name in LOSSES:
        if name != "ce":
            ratios[f"{name}/ce loss_alone"] = ratio(alone[name]["us_per_call"], alone["ce"]["us_per_call"])
            ratios[f"{name}/ce train_step"] = ratio(step[name]["ms_per_step"], step["ce"]["ms_per_step"])
    return {"logits_shape": [LOSS_BATCH, NUM_CLASSES], "loss_alone": alone, "train_step": step, "ratios": ratios}


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A few human-readable lines of :func:`run`'s result."""
    lines = ["loss: forward+backward on (256, 10) logits; whole wrn-28-2 step at batch "
             f"{result['train_step']['ce']['batch']}"]
    for name in LOSSES:
        lines.append(f"  {name:13s} {result['loss_alone'][name]['us_per_call']:8.1f} us/loss   "
                     f"{result['train_step'][name]['ms_per_step']:9.2f} ms/step")
    for key, value in result["ratios"].items():
        lines.append(f"  {key}: {value:.2f}x" if value else f"  {key}: n/a")
    return lines
