"""Reading a dataset's results and zoo cards into typed pandas frames.

Every input may be missing: :func:`load_results` returns empty frames for absent files
and records what is missing, so a report on partial results says what to run instead of
failing. Attack rows with ``experiment = sanity`` (the ε = 1 checks of
``large_eps_to_chance``) are kept apart from the sweep rows and out of tables/figures.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from robench.errors import UserError
from robench.evaluate.attack_runner import ATTACK_RESULTS, FLAG_RESULTS
from robench.evaluate.validity import SANITY
from robench.zoo import list_members

ATTACK_FLOATS = ("eps", "step_size", "accuracy", "clean_accuracy", "defender_delta")
ATTACK_INTS = ("steps", "n", "correct", "clean_correct", "repeat", "num_classes",
               "attacker_seed", "defender_seed")
REQUIRED_ATTACK_COLUMNS = ("attacker", "defender", "attack", "eps", "n", "accuracy", "defender_loss",
                           "attacker_loss")
EXPERIMENT_FLOATS = ("setting", "delta", "test_accuracy")
EXPERIMENT_INTS = ("repeat", "num_train", "num_flipped", "num_test", "epochs", "steps", "seed",
                   "train_seed")
REQUIRED_EXPERIMENT_COLUMNS = ("experiment", "setting", "repeat", "member", "loss", "test_accuracy")
EXPERIMENT_FILES = {"generalization": "generalization.csv", "noise": "noise.csv"}
TEXT_COLUMNS = ("attacker", "defender", "attack", "attack_loss", "backend", "experiment",
                "defender_loss", "defender_bound", "defender_head", "attacker_loss", "member",
                "loss", "bound", "head")


@dataclass
class Results:
    """Everything a report reads for one dataset (frames are empty when absent)."""

    dataset: str
    results_dir: Path
    zoo_dir: Path
    attacks: pd.DataFrame  # sweep rows (white-box and black-box), sanity rows excluded
    sanity: pd.DataFrame
    flags: pd.DataFrame
    experiments: dict[str, pd.DataFrame]  # "generalization" / "noise" -> rows
    cards: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)  # unreadable files, in words

    @property
    def ran_anything(self) -> bool:
        return bool(len(self.attacks) or len(self.flags) or any(len(f) for f in self.experiments.values()))


def _read_csv(path: Path, floats: tuple[str, ...], ints: tuple[str, ...]) -> pd.DataFrame:
    """A CSV as a frame: numeric columns typed (blank → NaN), text columns as str."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable CSV ({exc}); move it away and re-run") from None
    for column in floats + ints:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column].replace("", math.nan), errors="coerce")
    for column in ints:
        if column in frame and frame[column].notna().all():
            frame[column] = frame[column].astype("int64")
    return frame


def _read_optional(path: Path, floats, ints, problems: list[str]) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame()
    try:
        return _read_csv(path, floats, ints)
    except (UserError, pd.errors.EmptyDataError) as exc:
        problems.append(f"{path.name}: {exc}" if str(exc) else f"{path.name} is empty")
        return pd.DataFrame()


def load_attacks(path: Path, problems: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sweep rows, sanity rows) of ``attacks.csv``."""
    frame = _read_optional(path, ATTACK_FLOATS, ATTACK_INTS, problems)
    absent = [c for c in REQUIRED_ATTACK_COLUMNS if c not in frame]
    if frame.empty or absent:
        if not frame.empty:
            problems.append(f"{path.name} lacks the columns {', '.join(absent)}; it was not written by robench attack")
        return pd.DataFrame(), pd.DataFrame()
    if "experiment" not in frame:
        frame["experiment"] = ["whitebox" if a == d else "blackbox"
                               for a, d in zip(frame["attacker"], frame["defender"])]
    for column, default in (("attack_loss", "ce"), ("backend", "native")):
        if column not in frame:
            frame[column] = default
    sanity = frame["experiment"] == SANITY
    return frame[~sanity].reset_index(drop=True), frame[sanity].reset_index(drop=True)


def load_flags(path: Path, problems: list[str]) -> pd.DataFrame:
    """``flags.csv`` with ``passed`` as bool, failures first (stable within each group)."""
    frame = _read_optional(path, (), (), problems)
    if frame.empty:
        return frame
    if not {"flag", "passed", "scope", "detail"} <= set(frame.columns):
        problems.append(f"{path.name} lacks the columns flag, passed, scope, detail")
        return pd.DataFrame()
    frame["passed"] = frame["passed"].str.strip().str.lower().isin(("true", "1", "yes"))
    return frame.sort_values("passed", kind="stable").reset_index(drop=True)


def load_experiment(path: Path, problems: list[str]) -> pd.DataFrame:
    """Rows of ``generalization.csv`` or ``noise.csv``, typed."""
    frame = _read_optional(path, EXPERIMENT_FLOATS, EXPERIMENT_INTS, problems)
    absent = [c for c in REQUIRED_EXPERIMENT_COLUMNS if c not in frame]
    if not frame.empty and absent:
        problems.append(f"{path.name} lacks the columns {', '.join(absent)}; it was not written by robench experiment")
        return pd.DataFrame()
    return frame


def load_cards(zoo_dir: Path, dataset: str, problems: list[str]) -> list[dict[str, Any]]:
    """Cards of the trained zoo members of ``dataset`` (experiment members excluded)."""
    try:
        return list_members(zoo_dir, dataset)
    except (UserError, OSError, json.JSONDecodeError) as exc:
        problems.append(f"zoo cards under {zoo_dir}: {exc}")
        return []


def load_results(dataset: str, results_dir: Path, zoo_dir: Path) -> Results:
    """Read every result file of ``dataset`` that exists, and the zoo cards."""
    results_dir, zoo_dir = Path(results_dir), Path(zoo_dir)
    problems: list[str] = []
    attacks, sanity = load_attacks(results_dir / ATTACK_RESULTS, problems)
    experiments = {name: load_experiment(results_dir / file, problems)
                   for name, file in EXPERIMENT_FILES.items()}
    return Results(
        dataset=dataset,
        results_dir=results_dir,
        zoo_dir=zoo_dir,
        attacks=attacks,
        sanity=sanity,
        flags=load_flags(results_dir / FLAG_RESULTS, problems),
        experiments=experiments,
        cards=load_cards(zoo_dir, dataset, problems),
        problems=problems,
    )


def _preferred(values: pd.Series, preferred: str) -> str:
    """``preferred`` when present, else the most common value."""
    return preferred if (values == preferred).any() else str(values.value_counts().index[0])


def primary_attacks(attacks: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The attack rows that figures and claims use, and a note when rows were left out.

    The paper's setting is the CE attack loss and robench's native attacks; a results
    file may also hold other attack losses, peer backends or runs on fewer samples. The
    primary rows are attack loss ``ce`` (else the most common), backend ``native`` (else
    the most common) and, per mode (white-box / black-box), the largest ``n``. Tables
    show every row.
    """
    if attacks.empty:
        return attacks, ""
    loss = _preferred(attacks["attack_loss"], "ce")
    backend = _preferred(attacks["backend"], "native")
    chosen = attacks[(attacks["attack_loss"] == loss) & (attacks["backend"] == backend)]
    largest = chosen.groupby("experiment")["n"].transform("max")
    chosen = chosen[chosen["n"] == largest].reset_index(drop=True)
    note = ""
    if len(chosen) < len(attacks):
        note = (f"Figures and claims use attack loss {loss}, backend {backend} and the largest "
                f"sample count per mode ({len(chosen)} of {len(attacks)} rows); the tables list every row.")
    return chosen, note
