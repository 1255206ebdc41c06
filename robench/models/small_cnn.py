"""The MNIST network of Elsayed et al. 2018 (google-research ``large_margin``), used by
the paper (§IV-A) for MNIST, and the same layers on 8×8 digits (PROTOCOL.md, "Models").

conv 5×5/32 'same' (no bias) → ReLU → max-pool 2 → BatchNorm → conv 5×5/64 → ReLU →
max-pool 2 → BatchNorm → FC 512 + ReLU → FC K (head). No dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from robench.models.heads import make_head
from robench.models.normalize import Normalize


class SmallCNN(nn.Module):
    """Two conv blocks, one hidden FC layer and a ``linear`` or ``unit`` head."""

    def __init__(
        self,
        num_classes: int,
        image_size: int,
        in_channels: int = 1,
        head: str = "linear",
        mean: tuple[float, ...] = (0.0,),
        std: tuple[float, ...] = (1.0,),
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(32),
            nn.Conv2d(32, 64, 5, padding=2, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(64),
        )
        side = image_size // 4
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, 512), nn.ReLU())
        self.head = make_head(head, 512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, S, S) in [0, 1] -> (B, K)
        h = self.features(self.normalize(x))  # (B, 64, S/4, S/4)
        return self.head(self.hidden(h))  # (B, K)
