"""The two threat models: the L∞ and the L2 ball around the clean input, inside [0, 1].

A norm knows the largest budget that makes sense for an input, the steepest-ascent
direction of a gradient under it, a uniform random start inside its ball and the
projection back onto the ball and the pixel box:

* L∞ (Goodfellow et al. 2015; Madry et al. 2018): direction sign(g); projection
  clip₀¹(Π_ε(x)) computed as one clamp to the precomputed bounds ``max(x₀ − ε, 0)`` and
  ``min(x₀ + ε, 1)`` (the same numbers torchattacks' BIM/PGD get from their four min/max
  steps); ε ≤ 1.
* L2 (Madry et al. 2018, the L2 PGD of their appendix; Croce & Hein 2020): direction
  g / ‖g‖₂; projection δ ← δ · min(1, ε / ‖δ‖₂), then the [0, 1] clip, which only moves
  pixels towards x₀ ∈ [0, 1] and so keeps ‖δ‖₂ ≤ ε; ε ≤ √d, half the cube's diagonal.

Gradients that are NaN read as 0 (as ART does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from robench.attacks.checks import check_eps
from robench.registry import Registry

NORMS: Registry["Norm"] = Registry("norm")


def column(values, like: torch.Tensor) -> torch.Tensor:
    """Per-sample ``values`` (N floats) as a column (N, 1, ...) of ``like``'s dtype and device."""
    shape = (len(values),) + (1,) * (like.ndim - 1)
    return torch.tensor(list(values), dtype=like.dtype, device=like.device).view(shape)


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """‖tᵢ‖₂ per sample as a column (N, 1, ...)."""
    return t.flatten(1).norm(p=2, dim=1).view((-1,) + (1,) * (t.ndim - 1))


@dataclass
class Ball:
    """The feasible set of a chunk: the ``norm``-ball of radius ``eps`` (N, 1, ...) around
    ``x0`` (N, ...), inside [0, 1]; ``lo``/``hi`` are the L∞ bounds (None for L2)."""

    norm: "Norm"
    x0: torch.Tensor
    eps: torch.Tensor
    lo: torch.Tensor | None = None
    hi: torch.Tensor | None = None

    def project(self, x: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """``x`` (k, ...) projected for the first ``rows`` = k samples of the ball."""
        k = len(x) if rows is None else rows
        if self.lo is not None:
            return torch.clamp(x, self.lo[:k], self.hi[:k])
        x0, eps = self.x0[:k], self.eps[:k]
        delta = x - x0
        factor = torch.clamp(eps / _flat_norm(delta).clamp_min(1e-12), max=1.0)  # (k, 1, ...)
        return (x0 + delta * factor).clamp(0.0, 1.0)


class Norm:
    """A threat model: the ball's name, budget range, step direction, start and projection."""

    name = "norm"

    def upper(self, x: torch.Tensor) -> float:
        """The largest meaningful budget for inputs shaped like ``x`` (B, ...)."""
        raise NotImplementedError

    def check_eps(self, eps: object, x: torch.Tensor) -> float:
        """``eps`` as a float in [0, :meth:`upper`]; a UserError otherwise."""
        return check_eps(eps, self.upper(x), f"the {self.name} range of inputs of {x[0].numel()} values"
                         if self.name != "linf" else "pixels lie in [0, 1]")

    def ball(self, x0: torch.Tensor, eps: list[float]) -> Ball:
        """The feasible set around ``x0`` (N, ...) for per-sample budgets ``eps``."""
        return Ball(self, x0, column(eps, x0))

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent unit step for ``grad`` (N, ...)."""
        raise NotImplementedError

    def random_start(self, ball: Ball, streams) -> torch.Tensor:
        """A point drawn uniformly inside ``ball`` (its radius uniformly for L2), clipped to
        [0, 1]; ``streams.uniform(shape)`` / ``streams.normal(shape)`` give (N, *shape)
        numbers, one random stream per sample."""
        raise NotImplementedError

    def size(self, delta: torch.Tensor) -> torch.Tensor:
        """‖δᵢ‖ per sample (N,)."""
        raise NotImplementedError


@NORMS.register("linf")
class Linf(Norm):
    name = "linf"

    def upper(self, x: torch.Tensor) -> float:
        return 1.0

    def ball(self, x0: torch.Tensor, eps: list[float]) -> Ball:
        eps_col = column(eps, x0)  # ε = 1 gives exactly 0 and 1: the [0, 1] clip alone
        return Ball(self, x0, eps_col, (x0 - eps_col).clamp_min(0), (x0 + eps_col).clamp_max(1))

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.sign().nan_to_num(0.0)

    def random_start(self, ball: Ball, streams) -> torch.Tensor:
        noise = streams.uniform(tuple(ball.x0.shape[1:]))  # (N, ...) in [0, 1)
        return ball.project(ball.x0 + (2 * noise - 1) * ball.eps)

    def size(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.flatten(1).abs().amax(dim=1)


@NORMS.register("l2")
class L2(Norm):
    name = "l2"

    def upper(self, x: torch.Tensor) -> float:
        return math.sqrt(x[0].numel())

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.nan_to_num(0.0)
        return grad / _flat_norm(grad).clamp_min(1e-12)

    def random_start(self, ball: Ball, streams) -> torch.Tensor:
        x0 = ball.x0
        gauss = streams.normal(tuple(x0.shape[1:]))  # (N, ...): a uniform direction
        radius = streams.uniform((1,) * (x0.ndim - 1))  # (N, 1, ...)
        return ball.project(x0 + gauss / _flat_norm(gauss).clamp_min(1e-12) * radius * ball.eps)

    def size(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.flatten(1).norm(p=2, dim=1)


def get_norm(name: str) -> Norm:
    """The norm registered as ``name`` ("linf", "l2"); a UserError listing them otherwise."""
    return NORMS.create(name)
