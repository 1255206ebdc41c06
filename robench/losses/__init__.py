"""Training losses (PROTOCOL.md "Losses"; paper Eq. 1–2, 8–10, 14).

``create_loss(LossSpec(...))`` builds one; every loss module is called as
``loss(logits, labels, reduction="mean")`` with logits ``(B, K)`` and int64 labels
``(B,)``, and returns the batch mean (``"mean"``) or per-sample losses ``(B,)``
(``"none"``).

Parameter ranges are checked by :class:`robench.config.LossSpec` when a zoo definition
or card is read, before any work: δ a finite number in (0, 1000] (why 1000: LossSpec's
docstring); ``bound`` one of ``sym``, ``zero``, ``shifted``. The loss classes trust
their arguments; build them through ``create_loss`` to have them checked.
"""

from __future__ import annotations

from torch import nn

from robench.config import LossSpec
from robench.losses.ce import CrossEntropyLoss
from robench.losses.hinge import HingeLoss
from robench.losses.one_to_n import BOUNDS, OneToNCELoss, OneToNLoss, negatives, positives
from robench.registry import Registry

LOSSES: Registry[nn.Module] = Registry("loss")


@LOSSES.register("ce")
def _ce(delta: float = 1.0, bound: str = "sym") -> nn.Module:
    return CrossEntropyLoss()  # ce ignores delta and bound


@LOSSES.register("hinge")
def _hinge(delta: float = 1.0, bound: str = "sym") -> nn.Module:
    return HingeLoss(delta)  # hinge ignores bound


@LOSSES.register("1toN")
def _one_to_n(delta: float = 1.0, bound: str = "sym") -> nn.Module:
    return OneToNLoss(delta, bound)


@LOSSES.register("1toN+ce")
def _one_to_n_ce(delta: float = 1.0, bound: str = "sym") -> nn.Module:
    return OneToNCELoss(delta, bound)


def create_loss(spec: LossSpec) -> nn.Module:
    """The loss module described by ``spec`` (unknown names: UserError)."""
    return LOSSES.create(spec.name, delta=spec.delta, bound=spec.bound)


__all__ = [
    "BOUNDS",
    "LOSSES",
    "CrossEntropyLoss",
    "HingeLoss",
    "OneToNCELoss",
    "OneToNLoss",
    "create_loss",
    "negatives",
    "positives",
]
