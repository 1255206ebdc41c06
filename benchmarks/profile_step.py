"""Profile of robench's attack input-gradient step: which kernels a step spends its time in.

``python3 -m benchmarks.profile_step [--device cuda] [--arch mnist-cnn] [--batch 2048]
[--precision auto] [--steps 10] [--shapes] [--graph] [--first-conv cudnn]`` builds the architecture (random weights: the
cost does not depend on them) as the attack engine runs it (``with_fast_kernels``), runs
warm-up steps, then profiles ``--steps`` calls of the attack's input gradient (forward
under the attack's precision, fp32 loss, backward to the input only) and prints the
``torch.profiler`` table sorted by self time on the device (``--shapes``: one row per
operator and input shapes, which names the tensors a copy moves).

It then prints two timings, each as wall time per step and host time per step (the
time the Python loop takes to return, before the device is synchronised):

* the input gradient alone, as profiled;
* the engine's whole IFGSM step (``GradientDescent.steps_in_place``: gradient sign, step
  and clamp to the ε-bounds, in place), ε = 0.3 and Kurakin's α.

On CUDA a host time close to the wall time means the step is bound by launching its
kernels, not by the GPU's work; on a CPU the two are equal. ``--graph`` (CUDA only) also
times that engine step captured once as a CUDA graph and replayed: what the step costs
without any launch overhead.

``--first-conv`` picks how the first convolution (one input channel) runs in the profiled
model: ``cudnn`` (the engine's default: cuDNN, channels_last like the rest),
``cudnn-nchw`` (cuDNN with that layer's weight in NCHW, so cuDNN picks its NCHW kernels)
or ``im2col`` (:mod:`robench.models.im2col`: one GEMM under autocast). On CUDA the input
gradient is also timed with each of the three, one line each.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Callable

import torch

from benchmarks.common import CIFAR_MEAN, CIFAR_SHAPE, CIFAR_STD, MNIST_MEAN, MNIST_SHAPE, MNIST_STD
from robench.attacks import create_attack
from robench.attacks.norms import column
from robench.attacks.ifgsm import KURAKIN_STEP_SIZE
from robench.device import PRECISION_CHOICES, resolve_device, resolve_precision
from robench.models import create_model
from robench.models.fast import with_fast_kernels

FIRST_CONV_CHOICES = ("cudnn", "cudnn-nchw", "im2col")
SHAPES = {"mnist-cnn": (MNIST_SHAPE, MNIST_MEAN, MNIST_STD), "wrn-28-2": (CIFAR_SHAPE, CIFAR_MEAN, CIFAR_STD)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python3 -m benchmarks.profile_step", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--arch", default="mnist-cnn", choices=tuple(SHAPES))
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rows", type=int, default=20, help="rows of the profiler table")
    p.add_argument("--shapes", action="store_true", help="one table row per operator and input shapes")
    p.add_argument("--graph", action="store_true", help="also time the engine step replayed as a CUDA graph")
    p.add_argument("--first-conv", default="cudnn", choices=FIRST_CONV_CHOICES,
                   help="how the profiled model's first convolution runs")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.graph and device.type != "cuda":
        p.error("--graph needs a CUDA device")
    shape, mean, std = SHAPES[args.arch]
    torch.manual_seed(0)
    stock = create_model(args.arch, 10, "linear", mean, std).to(device).eval()
    if device.type == "cuda":
        stock.to(memory_format=torch.channels_last)
    variants = {name: _first_conv_variant(stock, name) for name in FIRST_CONV_CHOICES}
    model = variants[args.first_conv]
    x = torch.rand(args.batch, *shape, device=device)  # (B, C, H, W)
    y = torch.randint(0, 10, (args.batch,), device=device)  # (B,)
    attack = create_attack("ifgsm", precision=args.precision)

    ball = attack.norm.ball(x, [0.3] * args.batch)  # bounds (B, C, H, W)
    alpha = column([KURAKIN_STEP_SIZE] * args.batch, x)  # (B, 1, 1, 1)
    x_adv = x.clone()

    gradients = _gradient_signs(attack, model, x, y)

    def engine_steps(count: int) -> None:
        with attack._attacking(model):
            attack.steps_in_place(model, x_adv, y, alpha, ball, [args.batch] * count)

    gradients(3)  # warm-up
    engine_steps(3)
    wall, host = _timed(gradients, args.steps, device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, record_shapes=args.shapes) as prof:
        _timed(gradients, args.steps, device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages(group_by_input_shape=args.shapes).table(sort_by=sort, row_limit=args.rows))
    engine_wall, engine_host = _timed(engine_steps, args.steps, device)
    print(f"{args.arch} batch {args.batch} {resolve_precision(args.precision, device)} on {device}: "
          f"{wall * 1e3:.2f} ms per step (host {host * 1e3:.2f} ms), {wall / args.batch * 1e6:.2f} us per image")
    print(f"engine IFGSM step (gradient sign, step, clamp): {engine_wall * 1e3:.2f} ms per step "
          f"(host {engine_host * 1e3:.2f} ms)")
    if device.type == "cuda":
        for name, variant in variants.items():
            signs = _gradient_signs(attack, variant, x, y)
            signs(3)  # warm-up: cuDNN's and cuBLAS's first-call set-up
            variant_wall, _ = _timed(signs, args.steps, device)
            print(f"input gradient, first convolution {name}: {variant_wall * 1e3:.2f} ms per step")
    if args.graph:
        replay = _captured(engine_steps, device)
        graph_wall, graph_host = _timed(lambda count: [replay() for _ in range(count)], args.steps, device)
        print(f"engine IFGSM step replayed as a CUDA graph: {graph_wall * 1e3:.2f} ms per step "
              f"(host {graph_host * 1e3:.2f} ms)")


def _gradient_signs(attack, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[int], None]:
    """``count`` input-gradient signs of ``model`` on ``x`` (B, C, H, W) and labels ``y``
    (B,), as the attack takes them."""
    def run(count: int) -> None:
        for _ in range(count):
            attack.direction(model, x, y)

    return run


def _first_conv_variant(stock: torch.nn.Module, name: str) -> torch.nn.Module:
    """``stock`` as the attack engine runs it (``with_fast_kernels``), its first
    convolution run as ``name`` says (one of FIRST_CONV_CHOICES)."""
    if name == "cudnn-nchw":
        stock = copy.deepcopy(stock)
        first = next(m for m in stock.modules() if isinstance(m, torch.nn.Conv2d))
        # NCHW strides (with one input channel .contiguous() keeps the channels_last ones)
        first.weight = torch.nn.Parameter(first.weight.detach().clone(memory_format=torch.contiguous_format))
    return with_fast_kernels(stock, im2col_convs=name == "im2col")


def _captured(run: Callable[[int], None], device: torch.device) -> Callable[[], None]:
    """One step of ``run`` captured as a CUDA graph (after one eager step on a side
    stream, where lazy library set-up happens); returns its replay."""
    side = torch.cuda.Stream(device=device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        run(1)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run(1)
    return graph.replay


def _timed(run: Callable[[int], None], count: int, device: torch.device) -> tuple[float, float]:
    """(wall, host) seconds per call of ``run(count)``'s ``count`` steps: host stops when
    the loop returns, wall after the device has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run(count)
    host = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / count, host / count


if __name__ == "__main__":
    main()
