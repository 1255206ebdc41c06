"""Noisy training labels of the noisy-label experiment (paper §IV-D; PROTOCOL.md,
"Experiments").

Exactly ``round(rate * N)`` labels are replaced, each by a class drawn uniformly among
the K − 1 classes *different* from its original (an offset in 1..K−1 added modulo K).
Which labels flip and what they become depend only on ``(N, K, rate, repeat, seed)``,
so every loss trains on the same noisy set for a given rate and repeat.
"""

from __future__ import annotations

import torch

from robench.data.subsets import derived_seed
from robench.errors import UserError


def num_flipped(num_samples: int, rate: float) -> int:
    """``round(rate * num_samples)``: how many labels a noisy set replaces."""
    return round(rate * num_samples)


def flipped_indices(num_samples: int, rate: float, repeat: int, seed: int = 0) -> torch.Tensor:
    """Sorted int64 indices (F,) of the labels :func:`noisy_labels` replaces,
    ``F = round(rate * num_samples)``."""
    if not 0 <= rate <= 1:
        raise UserError(f"label noise rate must be in [0, 1], got {rate!r}")
    if repeat < 0:
        raise UserError(f"repeat must be >= 0, got {repeat!r}")
    count = num_flipped(num_samples, rate)
    generator = torch.Generator().manual_seed(derived_seed("noise-index", float(rate), repeat, seed))
    return torch.randperm(num_samples, generator=generator)[:count].sort().values  # (F,)


def noisy_labels(
    labels: torch.Tensor,  # (N,) int64 in [0, K)
    num_classes: int,
    rate: float,
    repeat: int,
    seed: int = 0,
) -> torch.Tensor:  # (N,) int64, on labels' device
    """``labels`` with the entries at :func:`flipped_indices` replaced by a uniformly
    drawn different class; every other entry is unchanged, the input is not modified."""
    if labels.ndim != 1:
        raise ValueError(f"labels must be (N,), got shape {tuple(labels.shape)}")
    n = int(labels.shape[0])
    index = flipped_indices(n, rate, repeat, seed)  # (F,)
    clean = labels.detach().cpu().to(torch.int64)
    if n and (int(clean.min()) < 0 or int(clean.max()) >= num_classes):
        raise UserError(f"labels must lie in [0, {num_classes}); got {int(clean.min())}..{int(clean.max())}")
    if len(index) and num_classes < 2:
        raise UserError("label noise needs at least 2 classes")
    generator = torch.Generator().manual_seed(derived_seed("noise-offset", float(rate), repeat, seed))
    offset = torch.randint(1, max(num_classes, 2), (len(index),), generator=generator)  # (F,) in 1..K-1
    noisy = clean.clone()
    noisy[index] = (clean[index] + offset) % num_classes
    return noisy.to(labels.device)


__all__ = ["flipped_indices", "noisy_labels", "num_flipped"]
