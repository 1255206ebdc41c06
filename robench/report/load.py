"""Reading a dataset's stored records and zoo cards into pandas frames.

Every input may be missing: a results folder without a store gives empty frames, and
the report says what to run instead of failing. Attack records of mode ``sanity`` (the
ε = 1 checks of ``large_eps_to_chance``) are kept apart from the sweep records and out
of tables and figures. Records computed on weights a member no longer has, and older
runs of a cell, are left out (:func:`robench.evaluate.current.current_attack_records`),
with a note saying so; so are records of other datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from robench.evaluate.current import current_attack_records
from robench.evaluate.schedule import DEFAULT_SCHEDULE
from robench.evaluate.validity import compute_flags
from robench.store import SANITY, AttackRecord, ExperimentRecord, FlagRecord, ResultStore, RunRecord
from robench.store.progress import unfinished_runs
from robench.zoo import list_members

EXPERIMENTS = ("generalization", "noise")


@dataclass
class Results:
    """Everything a report reads for one dataset (frames are empty when absent)."""

    dataset: str
    results_dir: Path
    zoo_dir: Path
    attacks: pd.DataFrame  # current sweep records (white-box and black-box) of every evaluation
    sanity: pd.DataFrame
    records: list[AttackRecord]  # the current records of both frames
    flags: pd.DataFrame
    experiments: dict[str, pd.DataFrame]  # "generalization" / "noise" -> records
    runs: pd.DataFrame
    cards: list[dict[str, Any]]
    digest: str  # of every stored record (robench.store.integrity.records_digest); "" without a store
    unfinished: list[str]  # runs on this store that stopped early or are still running, in words
    problems: list[str] = field(default_factory=list)  # unreadable inputs, in words
    notes: list[str] = field(default_factory=list)  # records left out, in words

    @property
    def ran_anything(self) -> bool:
        return bool(len(self.attacks) or len(self.flags) or any(len(f) for f in self.experiments.values()))


def records_frame(records: list[Any], cls: type) -> pd.DataFrame:
    """``records`` as a frame with ``cls``'s stored columns (``cell`` included)."""
    return pd.DataFrame([{**r.as_dict(), "cell": r.cell} for r in records], columns=list(cls.columns()))


def _of_dataset(records: list[Any], dataset: str, what: str, notes: list[str]) -> list[Any]:
    """The records of ``dataset`` (those of others noted and left out)."""
    others = sorted({r.dataset for r in records if r.dataset != dataset})
    if others:
        count = sum(r.dataset != dataset for r in records)
        notes.append(f"{count} {what} of other datasets ({', '.join(others)}) were left out.")
    return [r for r in records if r.dataset == dataset]


def load_attacks(store: ResultStore, dataset: str, hashes: dict[str, str],
                 notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[AttackRecord]]:
    """(sweep records, sanity records, both as records) of ``dataset``, one per cell on
    the weights of ``hashes`` (member name → sha256 of the zoo's weights); what was left
    out goes to ``notes``."""
    records = _of_dataset(store.records(AttackRecord), dataset, "attack records", notes)
    current, note = current_attack_records(records, hashes)
    if note:
        notes.append(note)
    frame = records_frame(current, AttackRecord)
    sanity = frame["mode"] == SANITY
    return frame[~sanity].reset_index(drop=True), frame[sanity].reset_index(drop=True), current


FLAG_COLUMNS = ["flag", "passed", "scope", "detail"]


def load_flags(store: ResultStore, current: list[AttackRecord]) -> pd.DataFrame:
    """The validity flags of the ``current`` records, recomputed from them
    (:func:`robench.evaluate.validity.compute_flags`) rather than read back from the store,
    whose flags table records what an attack run found; and the stored
    ``gradient_saturation`` flags, which are measured on the models, not computed from
    records. Failures first, then by flag and scope."""
    computed = pd.DataFrame(compute_flags(current), columns=[*FLAG_COLUMNS, "members"])[FLAG_COLUMNS]
    stored = store.frame(FlagRecord)
    measured = stored.loc[stored["flag"] == "gradient_saturation", FLAG_COLUMNS]
    frame = pd.concat([computed, measured], ignore_index=True) if len(measured) else computed
    frame["passed"] = frame["passed"].astype(bool)
    return frame.sort_values(["passed", "flag", "scope"], kind="stable").reset_index(drop=True)


def load_cards(zoo_dir: Path, dataset: str, problems: list[str]) -> list[dict[str, Any]]:
    """Cards of the trained zoo members of ``dataset`` (experiment members excluded).

    A card that cannot be trusted — invalid, edited since training, lying in another
    member's folder, or beside weights that do not carry it (:func:`robench.zoo.list_members`)
    — is a UserError: the report would count its records under what the card says. A
    zoo folder that cannot be read goes to ``problems``."""
    try:
        return list_members(zoo_dir, dataset)
    except OSError as exc:
        problems.append(f"zoo cards under {zoo_dir}: {exc}")
        return []


def load_results(dataset: str, results_dir: Path, zoo_dir: Path) -> Results:
    """Read the store of ``results_dir`` (records of ``dataset``) and the zoo cards."""
    results_dir, zoo_dir = Path(results_dir), Path(zoo_dir)
    problems: list[str] = []
    notes: list[str] = []
    cards = load_cards(zoo_dir, dataset, problems)
    hashes = {c["name"]: c["weights_sha256"] for c in cards if c.get("weights_sha256")}
    with ResultStore(results_dir) as store:
        attacks, sanity, current = load_attacks(store, dataset, hashes, notes)
        experiments = records_frame(_of_dataset(store.records(ExperimentRecord), dataset, "experiment records", notes),
                                    ExperimentRecord)
        flags = load_flags(store, current)
        runs = store.frame(RunRecord)
        digest = store.digest() if store.exists else ""
        unfinished = unfinished_runs(results_dir, store.cells(AttackRecord) | store.cells(ExperimentRecord))
    return Results(
        dataset=dataset,
        results_dir=results_dir,
        zoo_dir=zoo_dir,
        attacks=attacks,
        sanity=sanity,
        records=current,
        flags=flags,
        experiments={name: experiments[experiments["experiment"] == name].reset_index(drop=True)
                     for name in EXPERIMENTS},
        runs=runs,
        cards=cards,
        digest=digest,
        unfinished=unfinished,
        problems=problems,
        notes=notes,
    )


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
