"""Failed trainings: zoo members whose clean accuracy says their training failed.

A claim over seeds reads each seed's trained model as one draw of its configuration; a
run that stalled or diverged is not such a draw, and one of them can move a claim by
more than every other seed together (docs/protocol.md, "Failed trainings"). The rule is
fixed before any claim is read, and the same for every configuration and role:

- **below the dataset's floor**: clean test accuracy under
  :attr:`robench.data.base.DatasetSource.failed_training_below`, a level far under what
  every preset reaches on that dataset;
- **an outlier among its configuration's members**: clean test accuracy more than
  :data:`SEED_GAP` below the median of the members of its configuration (loss, its
  parameters and head; defenders and attackers alike, so the CE attackers count with the
  CE defenders), when the configuration has at least :data:`MIN_MEMBERS` members.

The claims leave a failed member out wherever it would enter, as a defender or as a
black-box attacker, and name it; the report lists every failed member first. A failed
seed is not retrained under another seed: doing so for the configurations that happen
to fail would select seeds by outcome.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping

import pandas as pd

from robench.config import LossSpec, from_dict
from robench.data.base import DATASETS
from robench.zoo import configuration_name

SEED_GAP = 0.10  # accuracy below the configuration's median
MIN_MEMBERS = 3  # a median of fewer says nothing about an outlier


def failed_trainings(cards: list[dict[str, Any]], dataset: str) -> dict[str, str]:
    """Member name → why its training counts as failed, for every failed member of
    ``cards`` (zoo cards of ``dataset``), sorted by name."""
    floor = DATASETS.get(dataset).failed_training_below
    accuracy = {c["name"]: float(c.get("clean_test_accuracy", math.nan)) for c in cards}
    groups: dict[str, list[str]] = {}
    for card in cards:
        groups.setdefault(_configuration(card), []).append(card["name"])
    failed = {}
    for configuration, names in groups.items():
        median = statistics.median(accuracy[n] for n in names) if len(names) >= MIN_MEMBERS else math.nan
        for name in names:
            reason = _reason(accuracy[name], floor, median, configuration, len(names))
            if reason:
                failed[name] = reason
    return dict(sorted(failed.items()))


def _configuration(card: dict[str, Any]) -> str:
    return configuration_name(from_dict(LossSpec, card["loss"]), card["head"])


def _reason(value: float, floor: float, median: float, configuration: str, members: int) -> str:
    """Why ``value`` is a failed training ("" when it is not)."""
    if not math.isfinite(value):
        return "no clean test accuracy on its card"
    if value < floor:
        return f"clean accuracy {value:.3f} is below the dataset's floor {floor:.2f}"
    if math.isfinite(median) and value < median - SEED_GAP:
        return (f"clean accuracy {value:.3f} is {median - value:.3f} below the median {median:.3f} of "
                f"{configuration}'s {members} members (more than {SEED_GAP:.2f})")
    return ""


def without_failed(attacks: pd.DataFrame, failed: Mapping[str, str]) -> pd.DataFrame:
    """``attacks`` without the records of a failed member: as the defender, or as the
    attacker of a black-box cell."""
    if attacks.empty or not failed:
        return attacks
    names = set(failed)
    dropped = attacks["defender"].isin(names) | ((attacks["mode"] == "blackbox") & attacks["attacker"].isin(names))
    return attacks[~dropped]
