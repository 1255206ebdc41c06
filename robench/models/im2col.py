"""A convolution with one input channel as one matrix product, for bf16 attacks on CUDA.

In the H200 profile of a bf16 mnist-cnn input gradient (2048 images; docs/performance.md)
three kernels that by their names and costs are the first convolution's (1 → 32
channels, 5×5) take about 0.73 of the 1.82 ms of kernels: a generic NHWC engine
(0.22 ms), a CUTLASS kernel (0.43 ms) and a layout transform (0.08 ms), where the
implicit-GEMM kernels of the second convolution (32 → 64, 16 times the arithmetic) take
0.19 and 0.17 ms. With one input channel the convolution is the product of the patches
of the padded image, (B·H'·W', kh·kw), with the weights, (kh·kw, O): :func:`conv2d_im2col`
builds the patches with one gathering copy and runs one GEMM, whose output (B·H'·W', O)
is already the channels_last layout of (B, O, H', W'); the input gradient is a GEMM and
the gather's backward.

Under bf16 autocast the GEMM casts the patches and weights to bf16 and sums the kh·kw
products in fp32, rounding once, as cuDNN does, so outputs equal cuDNN's up to the order
of that sum (a last-bit difference at most). The patches are gathered in the input's
dtype (fp32) for the backward's sake: the GEMM's input gradient (the O products per
patch entry, summed in fp32 and rounded to bf16, as autocast gives) is cast back to
fp32, and the gather's backward adds each pixel's kh·kw entries in fp32, where cuDNN
sums all O·kh·kw products in fp32 and rounds once; the input gradients differ at the
rounding of those partial sums. :class:`Im2colConv2d` takes this path only under CUDA
autocast; in fp32, and on a CPU, it runs the stock convolution, so fp32 results stay
those of the model as given (and of torchattacks and ART). It is opt-in
(``with_fast_kernels(model, im2col_convs=True)``) until a GPU run of
``benchmarks.profile_step`` and ``benchmarks attacks`` measures it against cuDNN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv2d_im2col(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int]
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` (stride 1, dilation 1, one group, zero
    padding) as patches @ weightᵀ: ``x`` (B, C, H, W), ``weight`` (O, C, kh, kw) →
    (B, O, H', W') in channels_last memory order."""
    b, c = x.shape[:2]
    o, _, kh, kw = weight.shape
    ph, pw = padding
    padded = F.pad(x, (pw, pw, ph, ph))  # (B, C, H + 2ph, W + 2pw)
    patches = padded.unfold(2, kh, 1).unfold(3, kw, 1)  # (B, C, H', W', kh, kw), a view
    oh, ow = patches.shape[2:4]
    cols = patches.permute(0, 2, 3, 1, 4, 5).reshape(b * oh * ow, c * kh * kw)  # (B·H'·W', C·kh·kw)
    w = weight.reshape(o, c * kh * kw).t()  # (C·kh·kw, O)
    out = torch.mm(cols, w) if bias is None else torch.addmm(bias, cols, w)  # (B·H'·W', O)
    return out.view(b, oh, ow, o).permute(0, 3, 1, 2)  # (B, O, H', W'), channels_last


def is_single_channel_conv(module: nn.Module) -> bool:
    """Whether ``module`` is a plain ``nn.Conv2d`` with one input channel that
    :func:`conv2d_im2col` computes: stride 1, dilation 1, numeric zero padding."""
    return (
        type(module) is nn.Conv2d
        and module.in_channels == 1
        and module.groups == 1
        and module.stride == (1, 1)
        and module.dilation == (1, 1)
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


class Im2colConv2d(nn.Module):
    """A single-input-channel ``conv`` (shared, not copied) computed by
    :func:`conv2d_im2col` under CUDA autocast and by ``conv`` itself otherwise."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, O, H', W')
        if x.is_cuda and torch.is_autocast_enabled(x.device.type):
            return conv2d_im2col(x, self.conv.weight, self.conv.bias, self.conv.padding)  # the GEMM autocasts
        return self.conv(x)
