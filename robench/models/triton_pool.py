"""Fused 2×2 max-pool kernels for CUDA (Triton), bit-exact against PyTorch's.

PyTorch's channels_last CUDA max-pool runs a forward that writes int64 indices and a
backward that zero-fills, scatters and is followed by layout copies: on an H200 the two
pools of a bf16 mnist-cnn input gradient of 2048 images cost about 1.1 of its 2.8 ms
(docs/performance.md). Here one kernel reads each window once and writes its maximum and
a one-byte code of the first maximal corner (0: (0,0), 1: (0,1), 2: (1,0), 3: (1,1), the
rule of :mod:`robench.models.fast`), and one kernel writes each window's four input
gradients from that code. Both walk the tensors in their memory order (NCHW or
channels_last alike), so reads and writes are coalesced.

The numbers are those of ``F.max_pool2d(x, 2)``: maxima are exact and the gradient is
routed, not computed. A −0.0 gradient is routed as +0.0, as PyTorch's zero-filled CPU
kernel gives it; its CUDA kernel was seen to keep −0.0 (equal values, other sign bit).
A zero's sign never moves a pixel of a gradient-sign attack: sign(±0) · α adds ±0.

Without a CUDA device the kernels still run under Triton's interpreter
(``TRITON_INTERPRET=1`` before the first import), which is how the CPU tests check them.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - Triton ships with PyTorch's CUDA wheels
    triton = None

BLOCK = 1024


def available() -> bool:
    """Whether the Triton kernels can run (Triton is importable)."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _unravel(offsets, size1, size2, size3):
        """Linear positions → coordinates (i0, i1, i2, i3) in the memory order's dims."""
        i3 = offsets % size3
        rest = offsets // size3
        i2 = rest % size2
        rest = rest // size2
        return rest // size1, rest % size1, i2, i3

    @triton.jit
    def _forward_kernel(x_ptr, out_ptr, code_ptr, n, size1, size2, size3,
                        xs0, xs1, xs2, xs3, os0, os1, os2, os3, step_h, step_w,
                        STORE_CODE: tl.constexpr, BLOCK_SIZE: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        valid = offsets < n
        i0, i1, i2, i3 = _unravel(offsets, size1, size2, size3)
        corner = i0 * xs0 + i1 * xs1 + i2 * xs2 + i3 * xs3  # the window's (0, 0) element
        a = tl.load(x_ptr + corner, mask=valid)
        b = tl.load(x_ptr + corner + step_w, mask=valid)
        c = tl.load(x_ptr + corner + step_h, mask=valid)
        d = tl.load(x_ptr + corner + step_h + step_w, mask=valid)
        right_top = b > a
        right_bottom = d > c
        top = tl.where(right_top, b, a)
        bottom = tl.where(right_bottom, d, c)
        down = bottom > top  # the top row wins ties
        out = i0 * os0 + i1 * os1 + i2 * os2 + i3 * os3
        tl.store(out_ptr + out, tl.where(down, bottom, top), mask=valid)
        if STORE_CODE:
            code = tl.where(down, 2 + right_bottom.to(tl.int8), right_top.to(tl.int8))
            tl.store(code_ptr + out, code, mask=valid)

    @triton.jit
    def _backward_kernel(grad_ptr, code_ptr, grad_in_ptr, n, size1, size2, size3,
                         gs0, gs1, gs2, gs3, cs0, cs1, cs2, cs3, xs0, xs1, xs2, xs3, step_h, step_w,
                         BLOCK_SIZE: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        valid = offsets < n
        i0, i1, i2, i3 = _unravel(offsets, size1, size2, size3)
        g = tl.load(grad_ptr + i0 * gs0 + i1 * gs1 + i2 * gs2 + i3 * gs3, mask=valid)
        code = tl.load(code_ptr + i0 * cs0 + i1 * cs1 + i2 * cs2 + i3 * cs3, mask=valid)
        zero = tl.zeros_like(g)
        g = tl.where(g == zero, zero, g)  # −0.0 → +0.0, as a zero-filled accumulation gives
        corner = i0 * xs0 + i1 * xs1 + i2 * xs2 + i3 * xs3
        tl.store(grad_in_ptr + corner, tl.where(code == 0, g, zero), mask=valid)
        tl.store(grad_in_ptr + corner + step_w, tl.where(code == 1, g, zero), mask=valid)
        tl.store(grad_in_ptr + corner + step_h, tl.where(code == 2, g, zero), mask=valid)
        tl.store(grad_in_ptr + corner + step_h + step_w, tl.where(code == 3, g, zero), mask=valid)


def _memory_order(t: torch.Tensor) -> list[int]:
    """The dims of ``t`` (B, C, H, W) from the slowest to the fastest in memory."""
    return sorted(range(4), key=lambda d: (-t.stride(d), -d))


def _walk(out: torch.Tensor, x: torch.Tensor, *others: torch.Tensor):
    """Sizes of ``out``'s dims 1–3 in its memory order, and the strides of ``x`` (its H and
    W strides doubled: a window's corner), then of ``out`` and ``others`` in that order."""
    order = _memory_order(out)
    x_strides = [x.stride(d) * (2 if d >= 2 else 1) for d in order]
    strides = [[t.stride(d) for d in order] for t in (out, *others)]
    sizes = [out.shape[d] for d in order]
    return sizes[1:], x_strides, strides


def _pooled_like(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An empty (B, C, H//2, W//2) tensor in ``x``'s memory format."""
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format
    b, c, h, w = x.shape
    return torch.empty((b, c, h // 2, w // 2), dtype=dtype or x.dtype, device=x.device, memory_format=fmt)


def pool_forward(x: torch.Tensor, with_code: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Max over 2×2 windows of ``x`` (B, C, H, W) → (B, C, H//2, W//2), and the int8 code of
    each window's first maximum when ``with_code``."""
    out = _pooled_like(x)
    code = _pooled_like(x, torch.int8) if with_code else None
    n = out.numel()
    if n:
        sizes, xs, (os,) = _walk(out, x)
        _forward_kernel[(triton.cdiv(n, BLOCK),)](
            x, out, code if with_code else out, n, *sizes, *xs, *os, x.stride(2), x.stride(3),
            STORE_CODE=with_code, BLOCK_SIZE=BLOCK)
    return out, code


def pool_backward(grad_out: torch.Tensor, code: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The input gradient (B, C, H, W) of :func:`pool_forward` for ``grad_out``
    (B, C, H//2, W//2): each window's gradient on its first maximum, 0 elsewhere."""
    odd = x.shape[-2] % 2 or x.shape[-1] % 2  # the dropped row/column gets no gradient
    grad_in = torch.zeros_like(x) if odd else torch.empty_like(x)  # (B, C, H, W), x's layout
    n = code.numel()
    if n:
        sizes, xs, (_, gs, cs) = _walk(code, grad_in, grad_out, code)
        _backward_kernel[(triton.cdiv(n, BLOCK),)](
            grad_out, code, grad_in, n, *sizes, *gs, *cs, *xs, grad_in.stride(2), grad_in.stride(3),
            BLOCK_SIZE=BLOCK)
    return grad_in
