"""Classifier heads: the last layer that turns features into logits.

``linear`` is a plain affine layer. ``unit`` L2-normalises every weight row at every
forward, so that a logit W_kᵀh + b_k is the signed distance of the feature h to the
class-k hyperplane with ‖W_k‖ = 1, as the paper assumes for the 1-to-N loss (Eq. 8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("linear", "unit")


class UnitLinear(nn.Linear):
    """Linear layer whose weight rows are unit vectors at every forward (paper Eq. 8)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, K)
        weight = F.normalize(self.weight, dim=1)  # (K, D), each row ‖·‖₂ = 1
        return F.linear(h, weight, self.bias)


def make_head(head: str, in_features: int, num_classes: int) -> nn.Linear:
    """The ``linear`` or ``unit`` head mapping ``in_features`` to ``num_classes`` logits."""
    if head == "linear":
        return nn.Linear(in_features, num_classes)
    if head == "unit":
        return UnitLinear(in_features, num_classes)
    from robench.errors import UserError

    raise UserError(f"unknown head {head!r}; valid: {', '.join(HEADS)}")
