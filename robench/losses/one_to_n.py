"""The 1-to-N losses (paper Eq. 8–9 and Eq. 14; PROTOCOL.md "Losses").

Notation: ``z`` logits ``(B, K)``, ``y`` labels ``(B,)``, δ the margin. For sample i
the *positive* is its own bounded logit for its class and the *negatives* are the
other samples' logits for class y_i (the paper's "look-up table"):

    pos_i  = δ − [δ − z[i, y_i]]₊ = min(z[i, y_i], δ)
    neg_ij = bound(z[j, y_i])      for every j in the batch with y_j ≠ y_i

The negatives are the matrix ``M = z[:, y].T`` (``M[i, j] = z[j, y_i]``, B × B), masked
where ``y_j = y_i`` (which also removes j = i). Bounds of the negatives:

* ``sym``  [−δ, δ] (Eq. 8): neg = −δ + [δ + z]₊ = max(z, −δ).
* ``zero`` [0, δ]: neg = max(z, 0). This follows Figure 1, where P is maximal at
  γ_i = δ, γ_j = 0.
* ``shifted``: neg = [δ + z]₊, the literal text after Eq. 14 (e^{[δ+f]₊}). It equals
  δ + max(z, −δ), so it is the ``sym`` bound shifted up by δ — this contradicts Figure 1
  (its optimum for the negatives is at −δ, not 0). ``zero`` is the reading that follows
  Figure 1; ``shifted`` is offered to reproduce the text literally.

Everything is vectorised: one gather, one mask, one logsumexp, no Python loop over the
batch and no host synchronisation, so the losses can run inside a CUDA graph.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from robench.losses._common import reduce

BOUNDS = ("sym", "zero", "shifted")


def _bound_sym(z: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.clamp(z, min=-delta)  # −δ + [δ + z]₊ = max(z, −δ)


def _bound_zero(z: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.clamp(z, min=0.0)  # max(z, 0)


def _bound_shifted(z: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.relu(z + delta)  # [δ + z]₊ = δ + max(z, −δ)


_NEGATIVE_BOUNDS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "sym": _bound_sym,
    "zero": _bound_zero,
    "shifted": _bound_shifted,
}


def positives(logits: torch.Tensor, labels: torch.Tensor, delta: float) -> torch.Tensor:
    """pos_i = δ − [δ − z[i, y_i]]₊ = min(z[i, y_i], δ), shape ``(B,)``."""
    own = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    return torch.clamp(own, max=delta)


def negatives(
    logits: torch.Tensor, labels: torch.Tensor, delta: float, bound: str = "sym"
) -> torch.Tensor:
    """Bounded negatives ``N[i, j] = bound(z[j, y_i])`` (B × B), −inf where ``y_j = y_i``.

    The −inf entries (same class, including the diagonal) drop out of a logsumexp; their
    gradient is exactly 0 (``masked_fill`` passes no gradient to filled entries).
    """
    table = logits.index_select(1, labels).t()  # table[i, j] = z[j, y_i]
    bounded = _NEGATIVE_BOUNDS[bound](table, delta)
    same_class = labels.unsqueeze(0) == labels.unsqueeze(1)  # (B, B); diagonal True
    return bounded.masked_fill(same_class, float("-inf"))


def _check_bound(bound: str) -> str:
    if bound not in _NEGATIVE_BOUNDS:
        raise ValueError(f"unknown bound {bound!r}; valid: {', '.join(BOUNDS)}")
    return bound


class OneToNLoss(nn.Module):
    """The 1-to-N loss, Eq. 8–9: L_i = −log P(z[i, y_i]).

    P (Eq. 8) is e^{pos_i} / (e^{pos_i} + Σ_{j: y_j ≠ y_i} e^{neg_ij}), so

        L_i = logsumexp(pos_i, {neg_ij}_j) − pos_i      (Eq. 9, per sample)

    with pos_i = min(z[i, y_i], δ) and neg_ij the negatives bounded by ``bound``
    (``sym`` = Eq. 8's [−δ, δ], ``zero`` = [0, δ] of Figure 1, ``shifted`` = the
    literal text after Eq. 14, which contradicts Figure 1; see the module docstring).

    A sample without negatives in its batch (every sample shares its class) has
    L_i = 0 exactly and a zero gradient: pos_i is a column of the logsumexp, so no row
    is ever all −inf and nothing is NaN.

    ``forward(logits, labels, reduction="mean")``: logits ``(B, K)``, labels ``(B,)``
    int64; ``"mean"`` → scalar batch mean, ``"none"`` → per-sample ``(B,)``.
    """

    name = "1toN"

    def __init__(self, delta: float = 1.0, bound: str = "sym") -> None:
        super().__init__()
        self.delta = float(delta)
        self.bound = _check_bound(bound)

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        pos = positives(logits, labels, self.delta)
        neg = negatives(logits, labels, self.delta, self.bound)
        terms = torch.cat([pos.unsqueeze(1), neg], dim=1)  # (B, 1 + B)
        per_sample = torch.logsumexp(terms, dim=1) - pos
        return reduce(per_sample, reduction)

    def extra_repr(self) -> str:
        return f"delta={self.delta}, bound={self.bound!r}"


class OneToNCELoss(nn.Module):
    """1-to-N + cross entropy, Eq. 14: L_i = −log of

        e^{pos_i} / (Σ_{j: y_j ≠ y_i} e^{neg_ij} + Σ_{k=1..K} e^{z[i, k]})

    i.e. L_i = logsumexp({neg_ij}_j, {z[i, k]}_k) − pos_i, with pos_i = min(z[i, y_i], δ)
    and the batch negatives bounded by ``bound`` (default ``sym``). The denominator holds
    the batch negatives AND all K (unbounded) logits of sample i. A sample without
    negatives reduces to cross entropy with a bounded numerator:
    logsumexp_k z[i, k] − min(z[i, y_i], δ).

    ``forward(logits, labels, reduction="mean")``: logits ``(B, K)``, labels ``(B,)``
    int64; ``"mean"`` → scalar batch mean, ``"none"`` → per-sample ``(B,)``.
    """

    name = "1toN+ce"

    def __init__(self, delta: float = 1.0, bound: str = "sym") -> None:
        super().__init__()
        self.delta = float(delta)
        self.bound = _check_bound(bound)

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        pos = positives(logits, labels, self.delta)
        neg = negatives(logits, labels, self.delta, self.bound)
        terms = torch.cat([neg, logits], dim=1)  # (B, B + K); the K logits are finite
        per_sample = torch.logsumexp(terms, dim=1) - pos
        return reduce(per_sample, reduction)

    def extra_repr(self) -> str:
        return f"delta={self.delta}, bound={self.bound!r}"
