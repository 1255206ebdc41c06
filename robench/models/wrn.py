"""WRN-28-2 (Zagoruyko & Komodakis 2016), the paper's CIFAR-10 / ImageNet32 network (§IV-A).

Pre-activation wide ResNet: depth 28 = 6·4 + 4, so 4 blocks per group; widths
16 → 32 / 64 / 128 (widen factor 2), strides 1 / 2 / 2, BN-ReLU before each conv,
1×1 projection shortcuts where the shape changes, global average pool, head. No dropout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robench.models.heads import make_head
from robench.models.normalize import Normalize


class PreActBlock(nn.Module):
    """BN-ReLU-conv3×3-BN-ReLU-conv3×3 with an identity or 1×1 projection shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class WideResNet(nn.Module):
    """WRN-depth-widen for 32×32 RGB inputs in [0, 1]."""

    def __init__(
        self,
        num_classes: int,
        depth: int = 28,
        widen: int = 2,
        head: str = "linear",
        mean: tuple[float, ...] = (0.0, 0.0, 0.0),
        std: tuple[float, ...] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__()
        blocks_per_group = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.normalize = Normalize(mean, std)
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for planes, stride in zip(widths[1:], (1, 2, 2)):
            for b in range(blocks_per_group):
                layers.append(PreActBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
        self.groups = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.head = make_head(head, in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 32, 32) -> (B, K)
        h = self.groups(self.stem(self.normalize(x)))  # (B, 128, 8, 8)
        h = F.relu(self.bn(h)).mean(dim=(2, 3))  # (B, 128)
        return self.head(h)
