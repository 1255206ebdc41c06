"""Reading a dataset's results and zoo cards into typed pandas frames.

Every input may be missing: :func:`load_results` returns empty frames for absent files
and records what is missing, so a report on partial results says what to run instead of
failing. Attack rows with ``experiment = sanity`` (the ε = 1 checks of
``large_eps_to_chance``) are kept apart from the sweep rows and out of tables/figures.
Attack rows computed on weights a member no longer has, and older runs of a cell, are
left out (:func:`robench.evaluate.current.current_attack_rows`), with a note saying so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from robench.errors import UserError
from robench.evaluate.attack_runner import ATTACK_RESULTS, FLAG_RESULTS, KEY_COLUMNS
from robench.evaluate.current import current_attack_rows
from robench.evaluate.schedule import DEFAULT_SCHEDULE, row_schedule
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
    notes: list[str] = field(default_factory=list)  # rows left out, in words

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


def load_attacks(path: Path, problems: list[str], hashes: dict[str, str] | None = None,
                 notes: list[str] | None = None, dataset: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sweep rows, sanity rows) of ``attacks.csv`` (of ``dataset`` only, when given),
    one per cell on the weights of ``hashes`` (member name → sha256 of the zoo's
    weights); what was left out goes to ``notes``."""
    notes = notes if notes is not None else []
    frame = _read_optional(path, ATTACK_FLOATS, ATTACK_INTS, problems)
    absent = [c for c in REQUIRED_ATTACK_COLUMNS if c not in frame]
    if frame.empty or absent:
        if not frame.empty:
            problems.append(f"{path.name} lacks the columns {', '.join(absent)}; it was not written by robench attack")
        return pd.DataFrame(), pd.DataFrame()
    if "experiment" not in frame:
        frame["experiment"] = ["whitebox" if a == d else "blackbox"
                               for a, d in zip(frame["attacker"], frame["defender"])]
    if dataset is not None:
        frame = _of_dataset(frame, dataset, path.name, notes)
    frame["schedule"] = [row_schedule(row) for row in frame.to_dict("records")]
    frame, note = current_attack_rows(frame, KEY_COLUMNS, hashes or {})
    if note:
        notes.append(note)
    sanity = frame["experiment"] == SANITY
    return frame[~sanity].reset_index(drop=True), frame[sanity].reset_index(drop=True)


def _of_dataset(frame: pd.DataFrame, dataset: str, name: str, notes: list[str]) -> pd.DataFrame:
    """The rows of ``frame`` whose ``dataset`` is ``dataset`` (others noted, left out)."""
    if frame.empty or "dataset" not in frame:
        return frame
    other = frame["dataset"] != dataset
    if other.any():
        names = ", ".join(sorted(set(frame.loc[other, "dataset"])))
        notes.append(f"{name}: {int(other.sum())} rows of other datasets ({names}) were left out.")
    return frame[~other].reset_index(drop=True)


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
    notes: list[str] = []
    cards = load_cards(zoo_dir, dataset, problems)
    hashes = {c["name"]: c["weights_sha256"] for c in cards if c.get("weights_sha256")}
    attacks, sanity = load_attacks(results_dir / ATTACK_RESULTS, problems, hashes, notes, dataset)
    experiments = {name: _of_dataset(load_experiment(results_dir / file, problems), dataset, file, notes)
                   for name, file in EXPERIMENT_FILES.items()}
    return Results(
        dataset=dataset,
        results_dir=results_dir,
        zoo_dir=zoo_dir,
        attacks=attacks,
        sanity=sanity,
        flags=load_flags(results_dir / FLAG_RESULTS, problems),
        experiments=experiments,
        cards=cards,
        problems=problems,
        notes=notes,
    )


def _preferred(values: pd.Series, preferred: str) -> str:
    """``preferred`` when present, else the most common value."""
    return preferred if (values == preferred).any() else str(values.value_counts().index[0])


def primary_attacks(attacks: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The attack rows that figures and claims use, and a note when rows were left out.

    The paper's setting is the CE attack loss, robench's native attacks and each attack's
    own schedule; a results file may also hold other attack losses, peer backends, runs
    with other ``--steps`` / ``--step-size``, ``model``-loss runs on other chunks, runs on
    fewer samples or runs in another precision. The primary rows are attack loss ``ce``
    (else the most common), backend ``native`` (else the most common) and one precision
    for both modes (the one with the most rows, fp32 on a tie), so the matrix's white-box
    diagonal and its black-box cells, and the claims that pool both modes, never mix bf16
    and fp32; then per mode (white-box / black-box) :func:`_primary_of_mode`, so no figure
    or claim averages two schedules or two sample counts of an attack. Tables show every
    row.
    """
    if attacks.empty:
        return attacks, ""
    loss = _preferred(attacks["attack_loss"], "ce")
    backend = _preferred(attacks["backend"], "native")
    same = attacks[(attacks["attack_loss"] == loss) & (attacks["backend"] == backend)]
    precision = _most_rows(same["precision"], "fp32") if len(same) else ""
    same = same[same["precision"] == precision]
    modes = [_primary_of_mode(rows) for _, rows in same.groupby("experiment", sort=True)]
    chosen = pd.concat(modes).sort_index().reset_index(drop=True) if modes else same.reset_index(drop=True)
    note = ""
    if len(chosen) < len(attacks):
        note = (f"Figures and claims use attack loss {loss}, backend {backend}, precision {precision or 'none'} "
                "and, per mode and attack, the default schedule (else the most common), one coupled batch and "
                f"the largest sample count ({len(chosen)} of {len(attacks)} rows); the tables list every row.")
    return chosen, note


def _primary_of_mode(rows: pd.DataFrame) -> pd.DataFrame:
    """One mode's primary rows, per attack: the ``default`` schedule (else the most
    common, :func:`robench.evaluate.schedule.row_schedule`), then one ``coupled_batch``
    (blank, the CE loss's, else the most common) and the largest ``n``."""
    return pd.concat([_primary_of_attack(of_attack) for _, of_attack in rows.groupby("attack", sort=True)])


def _primary_of_attack(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows[rows["schedule"] == _preferred(rows["schedule"], DEFAULT_SCHEDULE)]
    rows = rows[rows["coupled_batch"] == _preferred(rows["coupled_batch"], "")]
    return rows[rows["n"] == rows["n"].max()]


def describe_rows(rows: pd.DataFrame) -> str:
    """What a figure's attack rows are, for its caption: precision, test images per
    attack and any schedule other than the default, e.g. ``bf16; 10,000 test images``."""
    if rows.empty:
        return ""
    parts = [f"{'/'.join(sorted(set(rows['precision'])))}"]
    counts = {attack: image_counts(group["n"]) for attack, group in rows.groupby("attack", sort=True)}
    if len(set(counts.values())) == 1:
        parts.append(f"{next(iter(counts.values()))} test images")
    else:
        parts.append(", ".join(f"{attack.upper()} on {n} test images" for attack, n in counts.items()))
    schedules = {f"{attack.upper()} schedule {schedule}"
                 for attack, schedule in zip(rows["attack"], rows["schedule"]) if schedule != DEFAULT_SCHEDULE}
    return "; ".join(parts + sorted(schedules))


def image_counts(values: pd.Series) -> str:
    """The distinct counts of ``values`` for a caption, e.g. ``10,000`` or ``40/100``
    (``?`` when none is known)."""
    return "/".join(f"{v:,}" for v in sorted({int(v) for v in values.dropna()})) or "?"


def _most_rows(values: pd.Series, tie: str) -> str:
    """The most common value; ``tie`` when it is among those tied for most."""
    counts = values.value_counts()
    top = counts[counts == counts.max()].index
    return tie if tie in top else str(sorted(top)[0])
