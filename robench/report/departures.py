"""Where a report's run departs from the paper's protocol, in one table near the top.

Each row is one aspect the paper fixes (§IV-B–E; docs/protocol.md): the dataset, the
training recipe, the number of trained models per loss, the test images attacked, and
the generalization and noise plans. The paper's column reads the paper's protocol for
the dataset the run stands in for (:attr:`robench.data.base.DatasetSource.paper_counterpart`:
digits and Fashion-MNIST are compared with MNIST); this run's column reads the zoo cards
and the stored records, so it says what was run, not what a preset would run.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from robench.data.base import DATASETS
from robench.experiments.common import plan_for
from robench.presets import train_spec

PAPER_DATASETS = "MNIST, CIFAR-10, ImageNet32"
COLUMNS = ["aspect", "the paper", "this report"]


def departures(dataset: str, cards: list[dict[str, Any]], attacks: pd.DataFrame,
               experiments: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per aspect: the paper's choice and this report's."""
    counterpart = DATASETS.get(dataset).paper_counterpart or dataset
    rows = [("dataset", f"{counterpart} (of {PAPER_DATASETS})", dataset),
            ("training (ce, 1-to-N; hinge)", _paper_recipe(counterpart), _card_recipes(cards)),
            ("trained models per loss configuration", "one (no seeds reported)", _seeds(cards)),
            ("test images attacked", "the whole test set", _test_images(attacks))]
    for experiment in ("generalization", "noise"):
        plan = plan_for(experiment, "paper", counterpart)
        rows.append((f"{experiment} ({plan.setting_name}s)",
                     _plan_text(plan.settings, plan.repeats, "the whole test set"),
                     _records_plan(experiment, experiments.get(experiment, pd.DataFrame()))))
    return pd.DataFrame(rows, columns=COLUMNS)


def _recipe(batch: int, lr: float, epochs: int, hinge_epochs: int | None, train: str) -> str:
    hinge = "" if hinge_epochs is None else f" ({hinge_epochs} for hinge)"
    return f"batch {batch}, lr {lr:g}, {epochs} epochs{hinge}, {train}"


def _paper_recipe(counterpart: str) -> str:
    ce, hinge = train_spec(counterpart, "paper", "ce"), train_spec(counterpart, "paper", "hinge")
    return _recipe(ce.batch_size, ce.lr, ce.epochs, hinge.epochs, "the whole training split")


def _card_recipes(cards: list[dict[str, Any]]) -> str:
    """The recipes the zoo's cards record (ce / 1-to-N and hinge members)."""
    if not cards:
        return "not run (no zoo cards)"

    def of(kind: list[dict]) -> set[tuple]:
        return {(c["train"].get("batch_size"), c["train"].get("lr"), c["train"].get("epochs"),
                 c["train"].get("train_samples", 0)) for c in kind if c.get("train")}

    others = of([c for c in cards if c["loss"]["name"] != "hinge"])
    hinge = of([c for c in cards if c["loss"]["name"] == "hinge"])
    if len(others) != 1 or len(hinge) > 1:
        return f"{len(others | hinge)} recipes (the cards' training specs differ)"
    batch, lr, epochs, samples = next(iter(others))
    hinge_epochs = next(iter(hinge))[2] if hinge else None
    train = f"{samples:,} training images" if samples else "the whole training split"
    return _recipe(batch, lr, epochs, hinge_epochs, train)


def _seeds(cards: list[dict[str, Any]]) -> str:
    defenders = [c for c in cards if c.get("role", "defender") == "defender"]
    if not defenders:
        return "not run (no zoo cards)"
    seeds = sorted({c["seed"] for c in defenders})
    return f"{len(seeds)} (seeds {', '.join(map(str, seeds))})"


def _test_images(attacks: pd.DataFrame) -> str:
    if attacks.empty:
        return "not run (no attack records)"
    counts = sorted(set(attacks["n"]))
    return "the first " + " / ".join(f"{n:,}" for n in counts) + " test images"


def _plan_text(settings: tuple[float, ...], repeats: int, test: str) -> str:
    shown = ", ".join(f"{100 * s:g} %" for s in settings)
    return f"{shown}; {repeats} repeats each; {test}"


def _records_plan(experiment: str, rows: pd.DataFrame) -> str:
    if rows.empty:
        return "not run (no records)"
    repeats = rows.groupby("setting")["repeat"].nunique()
    tests = sorted(set(rows["num_test"]))
    return _plan_text(tuple(sorted(set(rows["setting"]))), int(repeats.min()),
                      "test images " + " / ".join(f"{n:,}" for n in tests))
