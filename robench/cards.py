"""What a zoo member's card must hold to be trusted: each key robench reads back from
``card.json`` (:data:`robench.zoo.CARD_KEYS`, and the ones ``robench zoo list`` shows),
of the type and range it was written with.

:func:`card_problem` names the first value that is not; :func:`robench.zoo.read_card`
turns it into a one-line UserError naming the file. Keys it does not know are left
alone, so cards written by newer code with more keys still read. Whether a valid card is
the one its weights were trained with is :mod:`robench.binding`'s check.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

from robench.config import BOUNDS, LOSS_NAMES
from robench.jsonfile import shown
from robench.models import HEADS, MODELS

ROLES = ("defender", "attacker")
MAX_SEED = 2**63 - 1  # torch seeds are 64-bit; an experiment model's seed is its member's times 1000 plus r


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_number(value: Any) -> bool:
    """An int or float that is finite as a float (JSON's integers go beyond a float's range)."""
    try:
        return type(value) in (int, float) and math.isfinite(float(value))
    except OverflowError:
        return False


def _numbers(value: Any, positive: bool = False) -> bool:
    """A non-empty list of finite numbers (all > 0 when ``positive``)."""
    return (isinstance(value, list) and bool(value) and all(_is_number(v) for v in value)
            and (not positive or all(v > 0 for v in value)))


def _loss(value: Any) -> bool:
    """A loss as :func:`robench.config.to_dict` writes a LossSpec: a known name and
    bound and a positive finite delta."""
    return (isinstance(value, dict) and value.get("name") in LOSS_NAMES and value.get("bound") in BOUNDS
            and _is_number(value.get("delta")) and value["delta"] > 0)


CHECKS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("name", lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    ("architecture", lambda v: isinstance(v, str) and v in MODELS, "one of " + ", ".join(MODELS.names())),
    ("num_classes", lambda v: _is_int(v) and v >= 2, "an integer of at least 2"),
    ("head", lambda v: isinstance(v, str) and v in HEADS, "one of " + ", ".join(HEADS)),
    ("mean", _numbers, "a non-empty list of finite numbers"),
    ("std", lambda v: _numbers(v, positive=True), "a non-empty list of positive finite numbers"),
    ("loss", _loss, f"an object with name ({', '.join(LOSS_NAMES)}), bound ({', '.join(BOUNDS)}) "
                    "and a positive delta"),
    ("seed", lambda v: _is_int(v) and 0 <= v <= MAX_SEED, f"an integer from 0 to {MAX_SEED}"),
    ("role", lambda v: isinstance(v, str) and v in ROLES, " or ".join(ROLES)),
    ("weights_sha256", lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) is not None,
     "64 lowercase hexadecimal digits"),
    ("clean_test_accuracy", lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1"),  # when present
    ("val_accuracy", lambda v: type(v) is float and math.isnan(v) or _is_number(v) and 0 <= v <= 1,
     "a number from 0 to 1, or NaN (an experiment model has no validation split)"),
    ("epochs", lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
)


def card_problem(card: dict[str, Any]) -> str | None:
    """The first key of :data:`CHECKS` present in ``card`` whose value is not valid, said
    as ``<key> is <value>, not <what is valid>``; None when every present one is."""
    for key, valid, expected in CHECKS:
        if key in card and not valid(card[key]):
            return f"{key} is {shown(card[key])}, not {expected}"
    return None

