"""``robench results migrate DIR``: the result CSVs of robench before the store, turned
into records once; a store of an older schema upgraded first (:mod:`robench.store.upgrade`).

Before the store, a results folder held ``attacks.csv``, ``generalization.csv``,
``noise.csv`` and ``flags.csv``, rewritten whole on every append; a column added to
the writer was appended to the file's header and left blank in the rows written
before it. This module is the one place that knows those files. It recognises every
set of columns robench wrote (:data:`ATTACK_VARIANTS`, :data:`EXPERIMENT_VARIANTS`,
:data:`FLAG_VARIANTS`) and refuses any other file. What an older row lacks is filled
here and nowhere else, from what robench did when the row was written:

- ``precision`` absent or blank: ``fp32`` (bf16 attacks came with the column);
- ``attack_loss`` / ``backend`` blank: ``ce`` / ``native`` (the only ones at first);
- ``coupled_batch`` absent or blank: none (the CE and CW losses couple no samples);
- ``schedule`` absent or blank: read from the row's steps and step size at its ε
  (:func:`schedule_label`: ``default`` where they are the attack's own rule);
- norm ``linf``, one restart, no query budget or attack seed: FGSM and IFGSM;
- an experiment row without ``spec_hash`` keeps none, so ``robench experiment``
  treats its cell as trained with an unknown spec (recompute it with ``--force``).

Rows are stored in file order, so of two rows of one cell (a blank and a filled
``precision``, say) the later, newer one is kept. Every record of a file gets the
``run_id`` of a migration run whose configuration names the file, its SHA-256 and its
variant. All files are read and checked before anything is written; the records go in
with one transaction; then the originals move to ``DIR/migrated/<time>/``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from robench.errors import UserError
from robench.io import sha256_file
from robench.jsonfile import one_line
from robench.store.records import SCHEMA_VERSION, AttackRecord, ExperimentRecord, FlagRecord, Record, RunRecord
from robench.store.sqlite import DATABASE, LEGACY_FILES, ResultStore, legacy_files
from robench.store.upgrade import upgrade_store

_ATTACK_FIRST = (
    "experiment", "dataset", "attacker", "defender", "attack", "attack_loss", "backend", "eps", "steps",
    "step_size", "n", "correct", "accuracy", "clean_correct", "clean_accuracy", "repeat", "num_classes",
    "defender_loss", "defender_bound", "defender_delta", "defender_head", "attacker_loss", "attacker_seed",
    "defender_seed", "attacker_sha256", "defender_sha256", "split_hash", "robench_version", "torch_version",
    "timestamp")
ATTACK_VARIANTS = {  # the column sets attacks.csv had, in the order they appeared
    "first version": frozenset(_ATTACK_FIRST),
    "first version + precision": frozenset({*_ATTACK_FIRST, "precision"}),
    "first version + precision, coupled_batch": frozenset({*_ATTACK_FIRST, "precision", "coupled_batch"}),
    "first version + precision, schedule, coupled_batch": frozenset({*_ATTACK_FIRST, "precision", "schedule",
                                                                      "coupled_batch"}),
}
_EXPERIMENT_FIRST = (
    "experiment", "dataset", "setting_name", "setting", "repeat", "member", "model", "loss", "bound", "delta",
    "head", "num_train", "num_flipped", "num_test", "test_accuracy", "stop_reason", "epochs", "steps",
    "weights_sha256", "split_hash", "seed", "train_seed", "preset", "versions", "timestamp")
EXPERIMENT_VARIANTS = {
    "first version": frozenset(_EXPERIMENT_FIRST),
    "first version + spec_hash": frozenset({*_EXPERIMENT_FIRST, "spec_hash"}),
}
FLAG_VARIANTS = {"first version": frozenset({"flag", "passed", "scope", "detail"})}
DEFAULT_SCHEDULE = "default"


# ------------------------------------------------------------ filling older rows

def _blank(value: str | None) -> bool:
    return value is None or value == ""


def _or(value: str | None, default: str) -> str:
    return default if _blank(value) else value


def schedule_label(attack: str, eps: float, steps: int, step_size: float) -> str:
    """``default`` when (steps, step size) is ``attack``'s own schedule at ε (FGSM: one
    step of ε; IFGSM: Kurakin's), else which part differs, as
    :func:`robench.evaluate.schedule.override_label` writes it."""
    from robench.attacks import create_attack, list_attacks
    from robench.evaluate.schedule import override_label

    if attack not in list_attacks():
        raise ValueError(f"unknown attack {attack!r}")
    want_steps, want_size = create_attack(attack).schedule(eps)
    same_steps = steps == want_steps
    same_size = math.isclose(step_size, want_size, rel_tol=1e-9, abs_tol=1e-12)
    if same_steps and same_size:
        return DEFAULT_SCHEDULE
    return override_label(None if same_steps else steps, None if same_size else step_size)


def _int(row: dict[str, str], column: str) -> int:
    number = _float(row, column)
    if not number.is_integer() or not -(2**63) <= number < 2**63:
        raise ValueError(f"{column} {row[column]!r} is not a whole number a store can hold")
    return int(number)


def _float(row: dict[str, str], column: str) -> float:
    try:
        number = float(row[column])
    except ValueError:
        raise ValueError(f"{column} {row[column][:40]!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{column} {row[column][:40]!r} is not a finite number")
    return number


def _optional_int(row: dict[str, str], column: str) -> int | None:
    return None if _blank(row.get(column)) else _int(row, column)


def _attack_record(row: dict[str, str], run_id: str) -> AttackRecord:
    eps, steps, step_size = _float(row, "eps"), _int(row, "steps"), _float(row, "step_size")
    record = AttackRecord(
        run_id=run_id, timestamp=row["timestamp"], dataset=row["dataset"], mode=row["experiment"],
        attacker=row["attacker"], attacker_sha256=row["attacker_sha256"], attacker_loss=row["attacker_loss"],
        attacker_seed=_int(row, "attacker_seed"), defender=row["defender"],
        defender_sha256=row["defender_sha256"], defender_loss=row["defender_loss"],
        defender_bound=row["defender_bound"], defender_delta=_float(row, "defender_delta"),
        defender_head=row["defender_head"], defender_seed=_int(row, "defender_seed"),
        split_hash=row["split_hash"], num_classes=_int(row, "num_classes"), attack=row["attack"],
        attack_loss=_or(row["attack_loss"], "ce"), backend=_or(row["backend"], "native"), eps=eps, steps=steps,
        step_size=step_size,
        schedule=_or(row.get("schedule"), "") or schedule_label(row["attack"], eps, steps, step_size),
        n=_int(row, "n"), precision=_or(row.get("precision"), "fp32"),
        coupled_batch=_optional_int(row, "coupled_batch"),
        correct=_int(row, "correct"), clean_correct=_int(row, "clean_correct"),
        threads=None, determinism=None,
        robench_version=row["robench_version"], torch_version=row["torch_version"])
    for column in ("accuracy", "clean_accuracy"):
        if not math.isclose(_float(row, column), getattr(record, column), rel_tol=0, abs_tol=1e-12):
            raise ValueError(f"{column} {row[column]} is not its count over n ({getattr(record, column)!r})")
    return record


def _versions(text: str) -> dict[str, str]:
    """The ``versions`` column: a JSON object with the robench and torch versions as strings."""
    try:
        versions = json.loads(text)
    except RecursionError:
        versions = None
    if not (isinstance(versions, dict) and all(isinstance(versions.get(k), str) for k in ("robench", "torch"))):
        raise ValueError(f"versions {text[:40]!r} is not an object with the robench and torch versions")
    return versions


def _experiment_record(row: dict[str, str], run_id: str) -> ExperimentRecord:
    versions = _versions(row["versions"])
    return ExperimentRecord(
        run_id=run_id, timestamp=row["timestamp"], dataset=row["dataset"], experiment=row["experiment"],
        setting_name=row["setting_name"], setting=_float(row, "setting"), repeat=_int(row, "repeat"),
        member=row["member"], model=row["model"], loss=row["loss"], bound=row["bound"],
        delta=None if _blank(row["delta"]) else _float(row, "delta"), head=row["head"],
        num_train=_int(row, "num_train"), num_flipped=_optional_int(row, "num_flipped"),
        num_test=_int(row, "num_test"), test_accuracy=_float(row, "test_accuracy"),
        stop_reason=row["stop_reason"], epochs=_int(row, "epochs"), steps=_int(row, "steps"),
        weights_sha256=row["weights_sha256"], split_hash=row["split_hash"], seed=_int(row, "seed"),
        train_seed=_int(row, "train_seed"), preset=row["preset"],
        spec_hash=None if _blank(row.get("spec_hash")) else row["spec_hash"],
        threads=None, determinism=None,
        robench_version=versions["robench"], torch_version=versions["torch"])


def _flag_record(row: dict[str, str], run_id: str) -> FlagRecord:
    passed = {"true": True, "false": False}.get(row["passed"].strip().lower())
    if passed is None:
        raise ValueError(f"passed is {row['passed']!r}, not True or False")
    return FlagRecord(run_id=run_id, flag=row["flag"], passed=passed, scope=row["scope"], detail=row["detail"])


@dataclass(frozen=True)
class _Kind:
    variants: dict[str, frozenset[str]]
    convert: Callable[[dict[str, str], str], Record]
    noun: str


KINDS = {
    "attacks.csv": _Kind(ATTACK_VARIANTS, _attack_record, "attack records"),
    "generalization.csv": _Kind(EXPERIMENT_VARIANTS, _experiment_record, "experiment records"),
    "noise.csv": _Kind(EXPERIMENT_VARIANTS, _experiment_record, "experiment records"),
    "flags.csv": _Kind(FLAG_VARIANTS, _flag_record, "flag records"),
}
assert set(KINDS) == set(LEGACY_FILES)


# ------------------------------------------------------------ reading one file

@dataclass
class _Migrated:
    path: Path
    variant: str
    run: RunRecord
    records: list[Record]

    @property
    def distinct(self) -> int:
        return len({r.cell for r in self.records})


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (csv.Error, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable CSV ({exc}); not migrated") from None


def _variant(path: Path, columns: list[str], variants: dict[str, frozenset[str]]) -> str:
    found = frozenset(columns)
    for label, expected in variants.items():
        if found == expected and len(columns) == len(found):
            return label
    closest = min(variants.values(), key=lambda v: len(v ^ found))
    extra = [name if name.isprintable() else repr(name) for name in sorted(found - closest)]  # one line
    missing = sorted(closest - found)
    detail = "; ".join(filter(None, [f"unexpected {', '.join(extra)}" if extra else "",
                                     f"missing {', '.join(missing)}" if missing else ""])) or "duplicate columns"
    raise UserError(f"{path} has columns no robench version wrote ({detail}); not migrated")


def _migrate_file(path: Path, robench_version: str) -> _Migrated:
    kind = KINDS[path.name]
    columns, rows = _read(path)
    variant = _variant(path, columns, kind.variants)
    run = RunRecord.of("migration", {"file": path.name, "sha256": sha256_file(path), "columns": variant},
                       robench_version)
    written = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))  # flags have no timestamp
    records = []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        if None in row or any(v is None for v in row.values()):
            raise UserError(f"{path} line {number} has {'more' if None in row else 'fewer'} fields than its header; "
                            "not migrated")
        try:
            record = kind.convert(row, run.run_id)
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:  # JSONDecodeError is a ValueError
            raise UserError(f"{path} line {number}: {one_line(exc)}; not migrated") from None
        records.append(record if "timestamp" in row else dataclasses.replace(record, timestamp=written))
    return _Migrated(path, variant, run, records)


# ------------------------------------------------------------ the command

def migrate(results_dir: Path) -> list[str]:
    """Turn the legacy result CSVs of ``results_dir`` into records of its store, then
    move them to ``results_dir/migrated/<time>/``; returns what was done, line by line."""
    import robench

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"{results_dir} is not a folder; give the results folder, e.g. reports/digits/results")
    paths = legacy_files(results_dir)
    migrated = [_migrate_file(p, robench.__version__) for p in paths]  # every file checked before any write
    upgraded = upgrade_store(results_dir / DATABASE)
    if not paths:
        return [upgraded] if upgraded else [
            f"nothing to migrate in {results_dir}: no result CSVs from before the store "
            f"({', '.join(LEGACY_FILES)}) and no store of a schema older than {SCHEMA_VERSION}"]
    with ResultStore(results_dir, legacy_ok=True) as store:
        for m in migrated:
            store.save_run(m.run)
        store.append([r for m in migrated for r in m.records], replace=True)
    backup = _new_folder(results_dir / "migrated", time.strftime("%Y%m%dT%H%M%S", time.gmtime()))
    lines = [upgraded] if upgraded else []
    for m in migrated:
        shutil.move(str(m.path), str(backup / m.path.name))
        merged = len(m.records) - m.distinct
        text = (f"{m.path.name} (columns: {m.variant}): {len(m.records)} rows -> {m.distinct} "
                f"{KINDS[m.path.name].noun}, run {m.run.run_id}")
        merged_text = f"{merged} row" if merged == 1 else f"{merged} rows"
        lines.append(text + (f" ({merged_text} merged into a later row of their cell)" if merged else ""))
    lines.append(f"records stored in {store.path}; the CSV files moved to {backup}")
    return lines


def _new_folder(parent: Path, name: str) -> Path:
    """A new folder ``parent/name`` (``name-2``, ``name-3``, … when it exists)."""
    for attempt in range(1, 1000):
        folder = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise UserError(f"cannot create a new folder under {parent}; move its old migrated/ folders away")
