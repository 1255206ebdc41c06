"""Training throughput: robench's ``train_model`` against a plain eager fp32 PyTorch loop.

Measured, for mnist-cnn (1×28×28) and wrn-28-2 (3×32×32, flip + crop augmentation as
cifar10's preset), 10 classes, batch ``--batch`` (default 256), on synthetic data:

* ``robench``: ``train_model`` with its defaults (precision, CUDA graphs: whatever the
  trainer does when nothing extra is passed), the paper preset's TrainSpec (mnist /
  cifar10, CE) with the epochs overridden, the data as uint8 in a ``Split`` on the device.
  After a warm-up call, one call of 1 epoch (t₁) and one of 1 + E epochs (t₂) on the
  same N samples are timed; ``steady_images_per_s`` = E·⌊N/B⌋·B / (t₂ − t₁) removes the
  per-call set-up (optimizer, graph capture) and ``end_to_end_images_per_s`` =
  (1 + E)·⌊N/B⌋·B / t₂ keeps it (``steady_fallback``: t₂ ≤ t₁ on a noisy machine, so
  the steady figure is the end-to-end one).
* ``eager``: ``DataLoader(TensorDataset(float images, labels), batch_size=B,
  shuffle=True, drop_last=True)`` on the CPU, ``.to(device)`` per batch, the same model
  class, ``nn.CrossEntropyLoss``, ``torch.optim.RMSprop`` (lr 1e-3: the learning rate
  does not change the cost), no augmentation; ``images_per_s`` over a fixed number of
  steps (⌊N/B⌋ per repeat, median of the repeats) after warm-up steps.

``ratios["robench/eager"]`` is robench's steady images/s over the eager loop's (> 1:
robench is faster).

Run: ``python3 -m benchmarks train --out train.json [--quick] [--device cuda]``.
"""

from __future__ import annotations

import inspect
import statistics
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import (CIFAR_MEAN, CIFAR_SHAPE, CIFAR_STD, MNIST_MEAN, MNIST_SHAPE, MNIST_STD,
                               NUM_CLASSES, ratio, synthetic_uint8, timed, to_float)
from robench.config import LossSpec
from robench.data.base import Split
from robench.device import resolve_precision
from robench.losses import create_loss
from robench.models import create_model
from robench.presets import train_spec, with_overrides
from robench.train.trainer import train_model

# arch -> (image shape, mean, std, dataset whose paper preset gives the TrainSpec)
MODELS = {
    "mnist-cnn": (MNIST_SHAPE, MNIST_MEAN, MNIST_STD, "mnist"),
    "wrn-28-2": (CIFAR_SHAPE, CIFAR_MEAN, CIFAR_STD, "cifar10"),
}


def _model(arch: str, device: torch.device) -> nn.Module:
    shape, mean, std, _ = MODELS[arch]
    torch.manual_seed(0)
    return create_model(arch, NUM_CLASSES, "linear", mean, std).to(device)


def trainer_defaults() -> dict[str, Any]:
    """The defaults of ``train_model``'s options (precision, CUDA graphs, ...), as used here."""
    params = list(inspect.signature(train_model).parameters.values())[6:]
    skip = {"checkpoint_dir", "fingerprint", "desc"}
    return {p.name: p.default for p in params if p.name not in skip and p.default is not inspect.Parameter.empty
            and isinstance(p.default, (str, bool, int, float, type(None)))}


def robench_throughput(arch: str, x: torch.Tensor, y: torch.Tensor, batch: int, extra_epochs: int,
                       device: torch.device, **options: Any) -> dict[str, Any]:
    """Images/s of ``train_model`` on (x, y) (uint8 and labels, on ``device``), with
    ``options`` passed to it (none: its defaults)."""
    dataset = MODELS[arch][3]
    model = _model(arch, device)
    loss = create_loss(LossSpec("ce"))
    split = Split(x, y)

    def spec(epochs: int):
        return with_overrides(train_spec(dataset, "paper", "ce"), epochs=epochs, batch_size=batch)

    train_model(model, loss, Split(x[: 2 * batch], y[: 2 * batch]), to_float, spec(1), seed=0, **options)  # warm-up
    t1, first = timed(lambda: train_model(model, loss, split, to_float, spec(1), seed=1, **options), device)
    t2, second = timed(lambda: train_model(model, loss, split, to_float, spec(1 + extra_epochs), seed=2, **options), device)
    per_epoch = (len(y) // batch) * batch
    steady = ratio(extra_epochs * per_epoch, t2 - t1)
    end_to_end = ratio((1 + extra_epochs) * per_epoch, t2)
    fallback = steady is None  # t2 <= t1: a noisy machine; report the end-to-end rate
    return {
        "augment": spec(1).augment, "lr": spec(1).lr, "epoch_images": per_epoch, "extra_epochs": extra_epochs,
        "t_1_epoch_s": t1, "t_1_plus_e_epochs_s": t2,
        "reported_wall_time_s": [first.wall_time_s, second.wall_time_s],
        "steady_images_per_s": end_to_end if fallback else steady, "steady_fallback": fallback,
        "end_to_end_images_per_s": end_to_end,
        "final_loss": second.history[-1]["loss"] if second.history else None,
    }


def eager_throughput(arch: str, x: torch.Tensor, y: torch.Tensor, batch: int, warmup: int, repeats: int,
                     device: torch.device) -> dict[str, Any]:
    """Images/s of the plain DataLoader + RMSprop loop on (x, y) (CPU tensors)."""
    model = _model(arch, device)
    model.train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(to_float(x), y), batch_size=batch, shuffle=True, drop_last=True)
    steps_per_repeat = len(loader)

    def batches():
        while True:
            yield from loader

    stream = batches()

    def run(steps: int) -> float:
        last = None
        for _ in range(steps):
            images, labels = next(stream)
            images, labels = images.to(device), labels.to(device)
            last = criterion(model(images), labels)
            optimizer.zero_grad()
            last.backward()
            optimizer.step()
        return float(last.detach()) if last is not None else float("nan")

    run(warmup)
    times = [timed(lambda: run(steps_per_repeat), device)[0] for _ in range(max(1, repeats))]
    seconds = statistics.median(times)
    return {"steps_per_repeat": steps_per_repeat, "warmup_steps": warmup, "times_s": times,
            "images_per_s": ratio(steps_per_repeat * batch, seconds), "augment": False}


def run(device: torch.device, samples: dict[str, int], batch: int = 256, extra_epochs: int = 1,
        warmup: int = 5, repeats: int = 3, archs=tuple(MODELS)) -> dict[str, Any]:
    """The whole training benchmark; a JSON-ready dict."""
    out: dict[str, Any] = {"batch": batch, "trainer_defaults": trainer_defaults()}
    out["robench_precision"] = resolve_precision(out["trainer_defaults"]["precision"], device)
    for arch in archs:
        n = max(samples[arch], 2 * batch)
        x, y = synthetic_uint8(n, MODELS[arch][0], seed=30_000)
        rob = robench_throughput(arch, x.to(device), y.to(device), batch, extra_epochs, device)
        eager = eager_throughput(arch, x, y, batch, warmup, repeats, device)
        out[arch] = {"samples": n, "robench": rob, "eager": eager,
                     **_compiled_variant(arch, x, y, batch, extra_epochs, device, eager),
                     "ratios": {"robench/eager": ratio(rob["steady_images_per_s"], eager["images_per_s"]),
                                "robench_end_to_end/eager": ratio(rob["end_to_end_images_per_s"],
                                                                  eager["images_per_s"])}}
    return out


def _compiled_variant(arch, x, y, batch, extra_epochs, device, eager) -> dict[str, Any]:
    """On CUDA, for wrn-28-2, also ``train_model(..., compile_model=True)`` (the warm-up
    call compiles)."""
    if device.type != "cuda" or arch != "wrn-28-2":
        return {}
    try:
        compiled = robench_throughput(arch, x.to(device), y.to(device), batch, extra_epochs, device,
                                      compile_model=True)
    except Exception as err:  # a compiler failure is a result to report, not a crash
        return {"robench_compiled": {"error": f"{type(err).__name__}: {err}"[:500]}}
    return {"robench_compiled": compiled,
            "ratio_compiled": ratio(compiled["steady_images_per_s"], eager["images_per_s"])}


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A few human-readable lines of :func:`run`'s result."""
    lines = [f"train: batch {result['batch']}, robench precision {result['robench_precision']}"]
    for arch in MODELS:
        if arch in result:
            r = result[arch]
            rob, eager = r["robench"]["steady_images_per_s"], r["eager"]["images_per_s"]
            rt = r["ratios"]["robench/eager"]
            lines.append(f"  {arch:9s} robench {rob or 0:,.0f} img/s, eager {eager or 0:,.0f} img/s, "
                         f"ratio {rt or float('nan'):.2f}x (N={r['samples']})")
            compiled = r.get("robench_compiled")
            if compiled:
                lines.append(f"  {arch:9s} robench compile_model=True: "
                             + (compiled["error"] if "error" in compiled else
                                f"{compiled['steady_images_per_s'] or 0:,.0f} img/s, "
                                f"ratio {r['ratio_compiled'] or float('nan'):.2f}x"))
    return lines
