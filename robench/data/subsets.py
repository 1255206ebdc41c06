"""Random training subsets of the generalization experiment (paper §IV-C; PROTOCOL.md,
"Experiments").

A subset is drawn from the TRAIN split only (validation and test never enter it) and
depends on nothing but ``(fraction, repeat, seed)`` and the size of the training split,
so every loss trains on exactly the same images for a given fraction and repeat.
"""

from __future__ import annotations

import hashlib

import torch

from robench.errors import UserError

# 0.125 % of MNIST's 54k training images is the paper's smallest subset (68 images).
SMALLEST_FRACTION = 0.00125


def paper_fractions() -> list[float]:
    """Fractions doubling from 0.125 % to 64 %, then 100 %: 0.00125, 0.0025, …, 0.64, 1.0."""
    return [round(SMALLEST_FRACTION * 2**k, 10) for k in range(10)] + [1.0]


def derived_seed(*parts: object) -> int:
    """A 63-bit generator seed from ``parts``, identical in every process and platform
    (Python's ``hash`` is salted per process, so it is not used)."""
    text = "|".join(f"{p:.12g}" if isinstance(p, float) else str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def subset_size(num_train: int, fraction: float) -> int:
    """``max(1, round(fraction * num_train))``: the number of images a subset holds."""
    return max(1, round(fraction * num_train))


def generalization_subset(num_train: int, fraction: float, repeat: int, seed: int = 0) -> torch.Tensor:
    """Sorted int64 indices (M,) into the training split: ``M = subset_size(num_train,
    fraction)`` images drawn without replacement, reproducible from ``(fraction, repeat,
    seed)`` and independent of the loss. ``fraction`` 1.0 is the whole split."""
    if num_train < 1:
        raise UserError("the training split is empty; cannot draw a subset of it")
    if not 0 < fraction <= 1:
        raise UserError(f"subset fraction must be in (0, 1], got {fraction!r}")
    if repeat < 0:
        raise UserError(f"repeat must be >= 0, got {repeat!r}")
    size = subset_size(num_train, fraction)
    generator = torch.Generator().manual_seed(derived_seed("subset", float(fraction), repeat, seed))
    order = torch.randperm(num_train, generator=generator)  # (N,)
    return order[:size].sort().values  # (M,) int64


def fixed_pool(num_train: int, size: int, seed: int = 0) -> torch.Tensor:
    """Sorted int64 indices of a fixed random pool of ``size`` training images (all of
    them when ``size`` is 0 or >= ``num_train``); the same for every loss and repeat.
    Used by quick plans that run the noise experiment on part of a large training split."""
    if size <= 0 or size >= num_train:
        return torch.arange(num_train)
    generator = torch.Generator().manual_seed(derived_seed("pool", size, seed))
    return torch.randperm(num_train, generator=generator)[:size].sort().values


__all__ = ["derived_seed", "fixed_pool", "generalization_subset", "paper_fractions", "subset_size"]
