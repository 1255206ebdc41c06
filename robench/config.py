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


@dataclass(frozen=True)
class LossSpec:
    """A training loss and its parameters (PROTOCOL.md, "Losses").

    ``delta`` is the margin δ of hinge (Eq. 10) and of the 1-to-N bounds (Eq. 8, 14);
    ``bound`` picks the 1-to-N negative bound: ``sym`` [−δ, δ], ``zero`` [0, δ],
    ``shifted`` (the literal text after Eq. 14). ce ignores both.
    """

    name: str
    delta: float = 1.0
    bound: str = "sym"

    def __post_init__(self) -> None:
        if self.name not in LOSS_NAMES:
            raise UserError(f"unknown loss {self.name!r}; valid: {', '.join(LOSS_NAMES)}")
        if self.bound not in BOUNDS:
            raise UserError(f"unknown bound {self.bound!r}; valid: {', '.join(BOUNDS)}")
        if not (math.isfinite(self.delta) and self.delta > 0):
            raise UserError(f"margin delta must be a positive number, got {self.delta!r}")

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
        if not self.lr > 0:
            raise UserError(f"learning rate must be positive, got {self.lr!r}")


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
