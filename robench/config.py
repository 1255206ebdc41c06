"""Frozen, validated configuration records saved next to every model and result.

Each record is a frozen dataclass; :func:`from_dict` rebuilds one from JSON and rejects
unknown keys, so a typo in a saved file is an error and never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from robench.errors import UserError

T = TypeVar("T")

LOSS_NAMES = ("ce", "hinge", "1toN", "1toN+ce")
BOUNDS = ("sym", "zero", "shifted")
DELTA_MAX = 1000.0  # the largest valid margin δ; why: LossSpec's docstring
DELTA_RANGE = f"a finite number in (0, {DELTA_MAX:g}] (the shipped zoos use 1 and 4)"


@dataclass(frozen=True)
class LossSpec:
    """A training loss and its parameters (PROTOCOL.md, "Losses").

    ``delta`` is the margin δ of hinge (Eq. 10) and of the 1-to-N bounds (Eq. 8, 14);
    ``bound`` picks the 1-to-N negative bound: ``sym`` [−δ, δ], ``zero`` [0, δ],
    ``shifted`` (the literal text after Eq. 14). ce ignores both.

    Valid δ: a finite number in (0, :data:`DELTA_MAX`] = (0, 1000], checked here, so a
    zoo definition or card with another δ is refused before any work starts (ce's too,
    though it ignores δ). Why 1000: the paper's δ are of order 0.1–10 and the shipped
    zoos use 1 and 4 (docs/margins.md), so 1000 leaves two orders of magnitude of room,
    and every loss still trains there (digits, quick preset, seed 0, δ = 1000: clean
    accuracy 0.93 hinge, 0.95–0.99 the 1-to-N bounds and 1-to-N + CE). Far above it
    the losses' fp32 arithmetic breaks, which is the failure this bound rules out: above
    about 1e7 ``z + δ`` (``shifted``) rounds away every digit of a logit below 1, above
    about 1e18 hinge's K·δ² overflows to inf and its gradients to NaN, and above 3.4e38
    the 1-to-N losses cannot even convert δ to fp32. At 1000, z + δ is exact to 6e-5 and
    K·δ² is 1e7 per sample for K = 10.
    """

    name: str
    delta: float = 1.0
    bound: str = "sym"

    def __post_init__(self) -> None:
        if self.name not in LOSS_NAMES:
            raise UserError(f"unknown loss {self.name!r}; valid: {', '.join(LOSS_NAMES)}")
        if self.bound not in BOUNDS:
            raise UserError(f"unknown bound {self.bound!r}; valid: {', '.join(BOUNDS)}")
        if type(self.delta) not in (int, float) or not (math.isfinite(self.delta) and 0 < self.delta <= DELTA_MAX):
            raise UserError(f"margin delta must be {DELTA_RANGE}, got {self.delta!r}")

    @property
    def is_one_to_n(self) -> bool:
        return self.name in ("1toN", "1toN+ce")


@dataclass(frozen=True)
class TrainSpec:
    """How a member is trained (PROTOCOL.md, "Training"; paper §IV-B).

    The learning rate is ``lr * lr_decay ** k`` where ``k`` counts completed decay
    periods of ``lr_decay_steps`` optimizer steps or ``lr_decay_epochs`` epochs.
    ``min_steps`` extends training of tiny subsets to at least that many optimizer
    steps; ``stop_train_accuracy`` stops at the first epoch whose accuracy on the
    (possibly noisy) training set reaches it.
    """

    epochs: int
    lr: float
    batch_size: int = 256
    momentum: float = 0.0
    lr_decay: float = 1.0
    lr_decay_steps: int = 0
    lr_decay_epochs: int = 0
    augment: bool = False
    min_steps: int = 0
    stop_train_accuracy: float = 0.0
    train_samples: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise UserError("epochs and batch_size must be at least 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"learning rate must be a finite positive number, got {self.lr!r}")


@dataclass(frozen=True)
class AttackSpec:
    """One attack of an ε sweep (PROTOCOL.md, "Attacks").

    ``steps`` / ``step_size`` of None mean Kurakin's rule for IFGSM:
    α = 1/255, steps = ⌊min(255ε + 4, 1.25·255ε)⌋.
    """

    attack: str
    eps: tuple[float, ...]
    loss: str = "ce"
    steps: int | None = None
    step_size: float | None = None
    backend: str = "native"


def to_dict(record: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config record."""
    return dataclasses.asdict(record)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild ``cls`` from ``data``; unknown keys are a UserError, not ignored."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(
            f"unknown {cls.__name__} keys {unknown}; valid: {', '.join(sorted(known))}"
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)
