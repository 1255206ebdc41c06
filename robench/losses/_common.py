"""Helpers shared by the loss modules."""

from __future__ import annotations

import torch

REDUCTIONS = ("mean", "none")


def reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce per-sample losses ``(B,)``: ``"mean"`` → scalar batch mean, ``"none"`` → as is."""
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
