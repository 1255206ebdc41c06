"""Profile of robench's attack input-gradient step: which kernels a step spends its time in.

``python3 -m benchmarks.profile_step [--device cuda] [--arch mnist-cnn] [--batch 2048]
[--precision auto] [--steps 10]`` builds the architecture (random weights: the cost
does not depend on them) as the attack engine runs it (``with_fast_kernels``), runs
warm-up steps, then profiles ``--steps`` calls of the
attack's input gradient (forward under the attack's precision, fp32 loss, backward to the
input only) and prints the ``torch.profiler`` table sorted by self time on the device,
plus the wall time per step and per image.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import CIFAR_MEAN, CIFAR_SHAPE, CIFAR_STD, MNIST_MEAN, MNIST_SHAPE, MNIST_STD
from robench.attacks import create_attack
from robench.device import PRECISION_CHOICES, resolve_device, resolve_precision
from robench.models import create_model
from robench.models.fast import with_fast_kernels

SHAPES = {"mnist-cnn": (MNIST_SHAPE, MNIST_MEAN, MNIST_STD), "wrn-28-2": (CIFAR_SHAPE, CIFAR_MEAN, CIFAR_STD)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python3 -m benchmarks.profile_step", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--arch", default="mnist-cnn", choices=tuple(SHAPES))
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rows", type=int, default=20, help="rows of the profiler table")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    shape, mean, std = SHAPES[args.arch]
    torch.manual_seed(0)
    model = create_model(args.arch, 10, "linear", mean, std).to(device).eval()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    model = with_fast_kernels(model)
    x = torch.rand(args.batch, *shape, device=device)  # (B, C, H, W)
    y = torch.randint(0, 10, (args.batch,), device=device)  # (B,)
    attack = create_attack("ifgsm", precision=args.precision)

    def steps(count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            attack._grad_sign(model, x, y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    steps(3)  # warm-up
    seconds = steps(args.steps)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        steps(args.steps)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))
    print(f"{args.arch} batch {args.batch} {resolve_precision(args.precision, device)} on {device}: "
          f"{seconds / args.steps * 1e3:.2f} ms per step, {seconds / (args.steps * args.batch) * 1e6:.2f} us per image")


if __name__ == "__main__":
    main()
