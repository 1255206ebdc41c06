"""One-vs-rest squared hinge loss (paper Eq. 10 with λ = 0; PROTOCOL.md ``hinge``)."""

from __future__ import annotations

import torch
from torch import nn

from robench.losses._common import reduce


class HingeLoss(nn.Module):
    """Squared one-vs-rest hinge, Eq. 10 with λ = 0 (no weight penalty; paper §IV-A).

    With targets t_ik = +1 if k = y_i else −1:

        L_i = Σ_k [δ − t_ik · z[i, k]]₊²

    i.e. the positive term [δ − z[i, y_i]]₊² plus, for every other class k,
    [δ + z[i, k]]₊². A logit exactly on the margin (z = δ for the true class,
    z = −δ for the others) contributes 0.

    ``forward(logits, labels, reduction="mean")``: logits ``(B, K)``, labels ``(B,)``
    int64; ``"mean"`` → scalar batch mean, ``"none"`` → per-sample ``(B,)``.
    """

    name = "hinge"

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__()
        self.delta = float(delta)

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        classes = torch.arange(logits.shape[1], device=logits.device)
        is_true = classes.unsqueeze(0) == labels.unsqueeze(1)  # (B, K), no host sync
        targets = torch.where(is_true, 1.0, -1.0).to(logits.dtype)  # t_ik ∈ {+1, −1}
        per_sample = torch.relu(self.delta - targets * logits).square().sum(dim=1)
        return reduce(per_sample, reduction)

    def extra_repr(self) -> str:
        return f"delta={self.delta}"
