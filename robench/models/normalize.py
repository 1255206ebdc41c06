"""Per-channel mean/std normalisation as the model's first layer.

Keeping it inside the model lets attacks and ε live in pixel space [0, 1]
(PROTOCOL.md, "Notation"; RobustBench's convention).
"""

from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """x ↦ (x − mean) / std per channel; buffers, so they move with the model."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> same
        return (x - self.mean) / self.std
