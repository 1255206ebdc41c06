"""Shared pieces of the benchmarks: timing, machine information and synthetic data.

Timing: :func:`timed` synchronises CUDA before and after the measured call, so a figure
is the wall time of the work itself; callers warm up first and take the median of a few
repeats where that is cheap. Synthetic data: every class has a fixed smooth random
template and an image is half template, half uniform noise, drawn as uint8 from the
start (so ``x / 255`` gives exactly the float pixels every implementation sees); a small
CNN learns it within a few dozen steps. Not a benchmark by itself.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from importlib import metadata
from typing import Any, Callable

import torch
import torch.nn.functional as F

MNIST_SHAPE = (1, 28, 28)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)  # robench/data/mnist.py
CIFAR_SHAPE = (3, 32, 32)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # robench/data/cifar10.py
NUM_CLASSES = 10
TEMPLATE_SEED = 1234


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of ``fn()``, with the device synchronised on both sides."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def median_seconds(fn: Callable[[], Any], device: torch.device, repeats: int) -> dict[str, Any]:
    """Median and all wall times of ``repeats`` calls of ``fn`` (warm up before calling)."""
    times = [timed(fn, device)[0] for _ in range(max(1, repeats))]
    return {"median_s": statistics.median(times), "times_s": times}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or not positive."""
    if not numerator or not denominator or numerator <= 0 or denominator <= 0:
        return None
    value = numerator / denominator
    return value if math.isfinite(value) else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info(device: torch.device) -> dict[str, Any]:
    """Where and with what the figures were taken."""
    import robench
    from robench.zoo import git_commit

    try:
        usable_cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cpus = os.cpu_count()
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": platform.processor() or platform.machine(),
        "robench_version": robench.__version__,
        "git_commit": git_commit(),
        "torchattacks_version": _version("torchattacks"),
        "art_version": _version("adversarial-robustness-toolbox"),
        "timestamp_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["device_name"] = torch.cuda.get_device_name(index)
        info["cuda_version"] = torch.version.cuda
        info["cudnn_version"] = torch.backends.cudnn.version()
    return info


def class_templates(shape: tuple[int, int, int], num_classes: int = NUM_CLASSES,
                    seed: int = TEMPLATE_SEED) -> torch.Tensor:
    """(K, C, H, W) smooth random patterns in [0, 1], one per class."""
    c, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, c, max(1, h // 4), max(1, w // 4), generator=gen)
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def synthetic_uint8(n: int, shape: tuple[int, int, int], seed: int,
                    num_classes: int = NUM_CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` learnable images (N, C, H, W) uint8 and their labels (N,) int64, on the CPU."""
    templates = class_templates(shape, num_classes)
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=gen)
    noise = torch.rand(n, *shape, generator=gen)
    x = (0.5 * templates[y] + 0.5 * noise).mul_(255).round_().to(torch.uint8)
    return x, y


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] (what ``Dataset.to_float`` does for pixel_max 255)."""
    return x.to(torch.float32).div_(255.0)
