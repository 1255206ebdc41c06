"""Bit-exact faster stand-ins for the max-pool layers of attacked models.

``nn.MaxPool2d(2)`` on a contiguous (NCHW) CPU tensor runs PyTorch's
``max_pool2d_with_indices`` kernel, which scans one 2×2 window at a time: on the first
pool of mnist-cnn for a 128-image chunk it takes 11 ms where the elementwise maximum of
the four strided window corners takes 1.9 ms, and it was 22 % of a whole CPU attacker ×
defender matrix (docs/performance.md). :func:`max_pool2x2` computes the same numbers
from those corners:

* forward: ``max(max(x₀₀, x₀₁), max(x₁₀, x₁₁))`` over the corners (i, j) of each window
  — a maximum is exact, so the values are the stock kernel's;
* backward: each window's gradient goes to its FIRST maximal element in the stock
  kernel's row-major scan (0,0), (0,1), (1,0), (1,1) (it keeps a new element only if
  ``val > max``), the other three get 0: the same routing, hence the same input
  gradient bit for bit, ties (flat image regions make many) included. The first maximum
  is in the bottom row only if the bottom row's maximum is strictly larger, and within a
  row it is the right element only if that is strictly larger; the flat index then goes
  to PyTorch's own ``max_pool2d_with_indices_backward``.

Windows are 2×2 with stride 2, no padding or dilation, floor mode (an odd trailing row or
column is dropped), as ``nn.MaxPool2d(2)``. NaN activations (only NaN weights can make
them; attack inputs are checked pixels) may take a different element than the stock
kernel, which prefers NaN.

:func:`with_fast_kernels` returns a copy of a model that shares its parameters and
buffers, with every plain ``nn.MaxPool2d(2)`` computed this way on a CPU and by the
fused Triton kernels of :mod:`robench.models.triton_pool` on CUDA (see
:func:`max_pool2x2`). A ``ReLU`` right before such a pool (mnist-cnn: conv → ReLU →
max-pool) moves after it, so it runs on a quarter of the values: max and ReLU commute
exactly (ReLU is monotone), and so do their gradients — where the window's maximum z is > 0 both orders route the gradient to the
first element equal to z, and where z ≤ 0 both give 0 (the stock order routes it to an
element the ReLU zeroes, the swapped order's ReLU zeroes it first). On request it also
computes single-input-channel convolutions as one GEMM under CUDA autocast
(:mod:`robench.models.im2col`; equal up to rounding, so not bit-exact, and opt-in).
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from robench.models import triton_pool
from robench.models.im2col import Im2colConv2d, is_single_channel_conv

_KERNEL = ([2, 2], [2, 2], [0, 0], [1, 1], False)  # kernel, stride, padding, dilation, ceil_mode


def _corners(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The window corners (0,0), (0,1), (1,0), (1,1) of ``x`` (B, C, H, W): strided
    views (B, C, H//2, W//2)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    return tuple(x[..., i:h:2, j:w:2] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))


def _first_max_index(x: torch.Tensor, top: torch.Tensor, bottom: torch.Tensor, right_top: torch.Tensor,
                     right_bottom: torch.Tensor) -> torch.Tensor:
    """Flat index into each (H, W) plane of every window's first maximum (B, C, H//2, W//2),
    from the row maxima ``top``, ``bottom`` and whether each row's right element is
    strictly larger (all (B, C, H//2, W//2))."""
    h, w = x.shape[-2], x.shape[-1]
    down = bottom > top  # the top row wins ties
    right = right_top ^ ((right_top ^ right_bottom) & down)  # the chosen row's right element
    rows = torch.arange(0, h // 2 * 2, 2, device=x.device)[:, None] * w  # (H//2, 1)
    corner = rows + torch.arange(0, w // 2 * 2, 2, device=x.device)  # (H//2, W//2)
    return (down.to(torch.int64) * w).add_(corner).add_(right.to(torch.int64))


class _MaxPool2x2Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H//2, W//2)
        a, b, c, d = _corners(x)
        top, bottom = torch.maximum(a, b), torch.maximum(c, d)
        out = torch.maximum(top, bottom)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(x, _first_max_index(x, top, bottom, b > a, d > c))
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> torch.Tensor:  # (B, C, H//2, W//2) -> (B, C, H, W)
        x, index = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad_out, x, *_KERNEL, index)


class _TritonMaxPool2x2Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H//2, W//2)
        out, code = triton_pool.pool_forward(x, with_code=ctx.needs_input_grad[0])
        if code is not None:
            ctx.save_for_backward(x, code)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> torch.Tensor:  # (B, C, H//2, W//2) -> (B, C, H, W)
        x, code = ctx.saved_tensors
        return triton_pool.pool_backward(grad_out, code, x)


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` of ``x`` (B, C, H, W), bit for bit, forward and backward.

    On CUDA the fused Triton kernels of :mod:`robench.models.triton_pool` run (tensors
    below 2³¹ elements); without Triton the stock kernel runs when a gradient is needed
    (its forward with indices is faster there than computing them from the corners:
    2.97 against 3.39 ms for a bf16 mnist-cnn input gradient of 2048 images on an H200)
    and the corners otherwise (fp32 forward 1.00 against 1.18 ms).
    """
    if x.is_cuda:
        if triton_pool.available() and x.dim() == 4 and x.numel() < 2**31:
            return _TritonMaxPool2x2Function.apply(x)
        if x.requires_grad and torch.is_grad_enabled():
            return F.max_pool2d(x, 2)
    return _MaxPool2x2Function.apply(x)


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` through :func:`max_pool2x2`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H//2, W//2)
        return max_pool2x2(x)


def _is_plain_2x2_pool(module: nn.Module) -> bool:
    if type(module) is not nn.MaxPool2d or module.ceil_mode or module.return_indices:
        return False
    wanted = {"kernel_size": 2, "stride": 2, "padding": 0, "dilation": 1}
    return all(getattr(module, k) in (v, (v, v)) for k, v in wanted.items())


def _replace_pools(parent: nn.Module) -> None:
    """Swap ReLU → pool pairs of a Sequential to pool → ReLU, then replace the pools."""
    names = list(parent._modules)
    if isinstance(parent, nn.Sequential):
        for first, second in zip(names, names[1:]):
            relu, pool = parent._modules[first], parent._modules[second]
            if type(relu) is nn.ReLU and pool is not None and _is_plain_2x2_pool(pool):
                parent._modules[first], parent._modules[second] = pool, relu
    for name in names:
        child = parent._modules[name]
        if child is not None and _is_plain_2x2_pool(child):
            parent._modules[name] = MaxPool2x2()


def _replace_single_channel_convs(parent: nn.Module) -> None:
    if isinstance(parent, Im2colConv2d):  # already wrapped (a second with_fast_kernels)
        return
    for name, child in list(parent._modules.items()):
        if child is not None and is_single_channel_conv(child):
            parent._modules[name] = Im2colConv2d(child)


def with_fast_kernels(model: nn.Module, im2col_convs: bool = False) -> nn.Module:
    """``model`` itself if it has nothing to replace, else a copy sharing its parameters
    and buffers that computes every plain ``nn.MaxPool2d(2)`` with :class:`MaxPool2x2`
    (and a ReLU right before one after it): the same outputs and input gradients, bit
    for bit. ``im2col_convs`` also wraps every single-input-channel ``nn.Conv2d`` in
    :class:`~robench.models.im2col.Im2colConv2d` (a GEMM under CUDA autocast, equal up to
    rounding; the stock convolution otherwise)."""
    def wanted(m: nn.Module) -> bool:
        return _is_plain_2x2_pool(m) or (im2col_convs and is_single_channel_conv(m))

    if not any(wanted(m) for m in model.modules()):
        return model
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    clone = copy.deepcopy(model, shared)
    for parent in list(clone.modules()):
        _replace_pools(parent)
        if im2col_convs:
            _replace_single_channel_convs(parent)
    return clone
