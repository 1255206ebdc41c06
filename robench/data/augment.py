"""Batched training augmentation: horizontal flip and pad-4 random crop (PROTOCOL.md, "Data").

Used for cifar10 and imagenet32. Each sample independently is flipped left-right with
probability 1/2 and shifted by a random (dy, dx) in [-pad, pad]² with zero fill, which is
the same as zero-padding by ``pad`` and cropping back to H×W at a random offset. It is
one gather (from the image plus one zero pixel) on the batch's device: no Python loop
over samples, no host sync. The random draws come from ``generator`` (on its own
device), so a seeded generator makes the output deterministic.
"""

from __future__ import annotations

import torch


def random_flip_crop(
    x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4
) -> torch.Tensor:
    """Flip (p = 0.5) and pad-``pad`` random-crop every sample of ``x`` independently.

    ``x``: (B, C, H, W), any dtype and device. Returns a new tensor of the same shape,
    dtype and device; padded pixels are 0.
    """
    flip, shift = draw_flip_crop(x.shape[0], generator, pad, x.device)
    return apply_flip_crop(x, flip, shift)


def draw_flip_crop(
    batch: int, generator: torch.Generator | None, pad: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random draws of :func:`random_flip_crop` for ``batch`` samples, on ``device``:
    ``flip`` (B,) bool and ``shift`` (2, B) long in [-pad, pad] (rows, then columns)."""
    draw_device = generator.device if generator is not None else torch.device("cpu")
    flip = torch.rand(batch, generator=generator, device=draw_device) < 0.5  # (B,) bool
    shift = torch.randint(0, 2 * pad + 1, (2, batch), generator=generator, device=draw_device)
    return flip.to(device), shift.to(device) - pad  # (B,), (2, B)


def apply_flip_crop(x: torch.Tensor, flip: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Flip the samples where ``flip`` (B,) and shift them by ``shift`` (2, B) with zero fill.

    A fixed sequence of tensor ops with static shapes, so it can run inside a CUDA graph
    with ``flip`` and ``shift`` in static buffers.
    """
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device).unsqueeze(0) + shift[0].unsqueeze(1)  # (B, H)
    cols = torch.arange(w, device=x.device).unsqueeze(0).expand(b, w)  # (B, W)
    cols = torch.where(flip.unsqueeze(1), w - 1 - cols, cols) + shift[1].unsqueeze(1)  # (B, W)
    valid = ((rows >= 0) & (rows < h)).view(b, h, 1) & ((cols >= 0) & (cols < w)).view(b, 1, w)
    source = rows.view(b, h, 1) * w + cols.view(b, 1, w)  # (B, H, W) flat pixel index
    source = torch.where(valid, source, h * w).view(b, 1, h * w)  # h*w: the zero pixel

    flat = torch.cat([x.reshape(b, c, h * w), x.new_zeros(b, c, 1)], dim=2)  # (B, C, H*W + 1)
    out = torch.gather(flat, 2, source.expand(b, c, h * w))  # (B, C, H*W)
    return out.view(b, c, h, w)
