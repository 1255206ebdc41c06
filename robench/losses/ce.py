"""Cross entropy (paper Eq. 1–2; PROTOCOL.md "Losses", ``ce``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robench.losses._common import reduce


class CrossEntropyLoss(nn.Module):
    """Softmax cross entropy, Eq. 1–2.

    S(z_i)_{y_i} = e^{z[i, y_i]} / Σ_k e^{z[i, k]}  (Eq. 1) and
    L_i = −log S(z_i)_{y_i} = logsumexp_k z[i, k] − z[i, y_i]  (Eq. 2).

    ``forward(logits, labels, reduction="mean")``: logits ``(B, K)`` float, labels
    ``(B,)`` int64; ``"mean"`` gives the batch mean (a scalar), ``"none"`` the
    per-sample ``L_i`` of shape ``(B,)``.
    """

    name = "ce"

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        per_sample = F.cross_entropy(logits, labels, reduction="none")
        return reduce(per_sample, reduction)

    def extra_repr(self) -> str:
        return ""
