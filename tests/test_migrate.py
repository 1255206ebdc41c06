"""``robench results migrate``: the legacy result CSVs become records, row for row, or
nothing at all is written; the committed reports rebuild identically from the store."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from robench.errors import UserError
from robench.report import write_report
from robench.store import AttackRecord, ExperimentRecord, FlagRecord, ResultStore
from robench.store.export import TABLES, export_results
from robench.store.migrate import ATTACK_VARIANTS, migrate, schedule_label
from robench.store.sqlite import LEGACY_FILES

LEGACY = Path(__file__).resolve().parent / "data" / "legacy-results"  # the committed reports' CSVs before the store
DIGITS = LEGACY / "digits"


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV file, every value a string."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def _write(path: Path, columns: list[str], rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Write ``rows`` under ``columns`` as the old writer did (blank where a row lacks a
    column, other keys dropped); returns the rows as written."""
    written = [{c: row.get(c, "") for c in columns} for row in rows]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(written)
    return written


def _copy_results(dataset: str, to: Path) -> Path:
    return Path(shutil.copytree(LEGACY / dataset, to))


def _counts(results_dir: Path) -> dict[str, int]:
    """Rows of each legacy file in ``results_dir``."""
    return {name: len(_read(results_dir / name)[1]) for name in LEGACY_FILES}


def _records(results_dir: Path, cls: type) -> list:
    with ResultStore(results_dir) as store:
        return store.records(cls)


def _robench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robench.cli", *args], capture_output=True, text=True,
                          timeout=300)


def _sample_attack_rows() -> list[dict[str, str]]:
    """The first committed digits row of each (attack, mode, ε): FGSM and IFGSM,
    white-box, black-box and sanity, all on their attack's own schedule."""
    first: dict[tuple[str, str, str], dict[str, str]] = {}
    for row in _read(DIGITS / "attacks.csv")[1]:
        first.setdefault((row["attack"], row["experiment"], row["eps"]), row)
    return list(first.values())


def _assert_copied(record, row: dict[str, str], skip=(), renamed=None) -> None:
    """Every non-blank value of ``row`` is the record's field of that name, as its type."""
    for column, value in row.items():
        if value == "" or column in skip:
            continue
        got = getattr(record, (renamed or {}).get(column, column))
        assert got == type(got)(value), (column, value, got)


def _assert_attack(record: AttackRecord, row: dict[str, str]) -> None:
    """``record`` holds ``row``'s values; what the row leaves blank or lacks is filled as
    the migrate module's docstring says."""
    _assert_copied(record, row, skip=("repeat", "accuracy", "clean_accuracy"), renamed={"experiment": "mode"})
    assert record.accuracy == int(row["correct"]) / int(row["n"]) == float(row["accuracy"])
    assert record.clean_accuracy == float(row["clean_accuracy"])
    assert record.precision == (row.get("precision") or "fp32")
    assert (record.attack_loss, record.backend) == (row["attack_loss"] or "ce", row["backend"] or "native")
    assert record.coupled_batch == (int(row["coupled_batch"]) if row.get("coupled_batch") else None)
    assert record.schedule == (row.get("schedule") or "default")
    assert (record.norm, record.restarts, record.queries, record.attack_seed) == ("linf", 1, None, None)


# ------------------------------------------------------------ attacks.csv


@pytest.mark.parametrize("variant", list(ATTACK_VARIANTS))
def test_each_attack_variant_migrates_row_for_row(tmp_path, variant):
    """Each column set attacks.csv had, in another column order, is recognised and
    each row becomes a record of its values, blanks and absent columns filled."""
    rows = _sample_attack_rows()
    rows[0] = {**rows[0], "precision": "", "attack_loss": "", "backend": ""}
    rows[1] = {**rows[1], "precision": "bf16", "attack_loss": "cw", "backend": "torchattacks",
               "schedule": "default", "coupled_batch": "64"}
    written = _write(tmp_path / "attacks.csv", sorted(ATTACK_VARIANTS[variant]), rows)
    [line, _] = migrate(tmp_path)
    assert f"(columns: {variant})" in line
    records = _records(tmp_path, AttackRecord)
    assert len(records) == len(written)
    for record, row in zip(records, written):
        _assert_attack(record, row)


def test_columns_appended_at_the_end_are_blank_in_older_rows(tmp_path):
    """A header with the later columns at its end and older rows blank there (the old
    writer's layout) migrates, the older rows' blanks filled."""
    first = [c for c in _read(DIGITS / "attacks.csv")[0] if c != "precision"]
    rows = _sample_attack_rows()
    older = [{**r, "precision": ""} for r in rows[:4]]
    newer = [{**r, "schedule": "default", "coupled_batch": "128"} for r in rows[4:]]
    written = _write(tmp_path / "attacks.csv", [*first, "precision", "schedule", "coupled_batch"], older + newer)
    assert (tmp_path / "attacks.csv").read_text().splitlines()[1].endswith(",,,")
    migrate(tmp_path)
    records = _records(tmp_path, AttackRecord)
    assert len(records) == len(written)
    for record, row in zip(records, written):
        _assert_attack(record, row)


def test_overridden_ifgsm_steps_get_their_schedule_label(tmp_path):
    """An IFGSM row of 10 steps at ε 0.3 (Kurakin's is 80) is labelled with its override."""
    header, rows = _read(DIGITS / "attacks.csv")
    row = next(r for r in rows if r["attack"] == "ifgsm" and float(r["eps"]) == 0.3)
    _write(tmp_path / "attacks.csv", header, [{**row, "steps": "10"}])
    migrate(tmp_path)
    [record] = _records(tmp_path, AttackRecord)
    assert (record.steps, record.schedule) == (10, "steps 10, step default")


@pytest.mark.parametrize("attack, eps, steps, step_size, label", [
    ("ifgsm", 0.3, 80, 1 / 255, "default"),
    ("ifgsm", 0.0, 0, 1 / 255, "default"),
    ("ifgsm", 0.1, 29, 0.01, "steps default, step 0.01"),
    ("ifgsm", 0.3, 10, 0.01, "steps 10, step 0.01"),
    ("fgsm", 0.1, 1, 0.1, "default"),
    ("fgsm", 0.1, 1, 0.2, "steps default, step 0.2"),
])
def test_schedule_label_names_what_differs_from_the_attacks_own(attack, eps, steps, step_size, label):
    """``default`` for the attack's own (steps, step size) at ε, else the part overridden."""
    assert schedule_label(attack, eps, steps, step_size) == label


def test_two_rows_of_one_cell_keep_the_later(tmp_path):
    """A blank-precision row and a later fp32 row of the same cell become one record
    holding the later row's values, and the output says one row was merged."""
    header, rows = _read(DIGITS / "attacks.csv")
    correct = int(rows[0]["correct"]) - 1
    newer = {**rows[0], "correct": str(correct), "accuracy": str(correct / int(rows[0]["n"]))}
    _write(tmp_path / "attacks.csv", header, [{**rows[0], "precision": ""}, newer])
    [line, _] = migrate(tmp_path)
    [record] = _records(tmp_path, AttackRecord)
    _assert_attack(record, newer)
    assert "2 rows -> 1 attack records" in line and re.search(r"\(1 rows? merged", line)


# ------------------------------------------------------------ experiments and flags


@pytest.mark.parametrize("spec_hash", [True, False], ids=["with spec_hash", "without spec_hash"])
@pytest.mark.parametrize("name", ["generalization.csv", "noise.csv"])
def test_experiment_files_migrate_row_for_row(tmp_path, name, spec_hash):
    """Both variants of the experiment files: records equal the rows, versions split in
    two, blank delta / num_flipped and a missing spec_hash stored as None."""
    header, rows = _read(DIGITS / name)
    written = _write(tmp_path / name, [c for c in header if spec_hash or c != "spec_hash"], rows)
    migrate(tmp_path)
    records = _records(tmp_path, ExperimentRecord)
    assert len(records) == len(written) and any(r["delta"] == "" for r in written)
    for record, row in zip(records, written):
        _assert_copied(record, row, skip=("versions",))
        versions = json.loads(row["versions"])
        assert (record.robench_version, record.torch_version) == (versions["robench"], versions["torch"])
        assert record.delta == (float(row["delta"]) if row["delta"] else None)
        assert record.num_flipped == (int(row["num_flipped"]) if row["num_flipped"] else None)
        assert (record.spec_hash, record.bound) == (row.get("spec_hash"), row["bound"])


def test_flags_migrate_with_passed_as_bool(tmp_path):
    """flags.csv rows become flag records, passed parsed to a bool, timestamped with the
    file's modification time (the rows have none)."""
    path = Path(shutil.copy2(DIGITS / "flags.csv", tmp_path))
    written = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
    rows = _read(path)[1]
    migrate(tmp_path)
    records = _records(tmp_path, FlagRecord)
    assert [(r.flag, r.passed, r.scope, r.detail) for r in records] == [
        (row["flag"], row["passed"] == "True", row["scope"], row["detail"]) for row in rows]
    assert {type(r.passed) for r in records} == {bool} and {r.passed for r in records} == {True, False}
    assert {r.timestamp for r in records} == {written}


# ------------------------------------------------------------ refusals


def _rewrite(path: Path, columns=None, row: int = 1, **values: str) -> None:
    """Rewrite ``path`` under ``columns`` (default its own), ``values`` set in row ``row``."""
    header, rows = _read(path)
    rows[row].update(values)
    _write(path, columns or header, rows)


def _extra_field(path: Path) -> None:
    """Append a copy of the last row with one field more than the header."""
    path.write_text(path.read_text() + path.read_text().splitlines()[-1] + ",1\n")


def _latin1(path: Path) -> None:
    """Put a Latin-1 byte (not UTF-8) into the first row."""
    path.write_bytes(path.read_bytes().replace(b"digits", "dígits".encode("latin-1"), 1))


REFUSALS = {  # id: (file, how it is spoiled, what the refusal says)
    "unknown column": ("attacks.csv", lambda p: _rewrite(p, [*_read(p)[0], "norm"], norm="linf"), "unexpected norm"),
    "missing column": ("attacks.csv", lambda p: _rewrite(p, [c for c in _read(p)[0] if c != "split_hash"]),
                       "missing split_hash"),
    "too many fields": ("attacks.csv", _extra_field, "more fields than its header"),
    "non-numeric correct": ("attacks.csv", lambda p: _rewrite(p, correct="many"), "line 3: correct 'many' is not a number"),
    "accuracy not correct over n": ("attacks.csv", lambda p: _rewrite(p, accuracy="0.5"), "accuracy 0.5 is not"),
    "not UTF-8": ("attacks.csv", _latin1, "'utf-8' codec can't decode"),
    "flag passed maybe": ("flags.csv", lambda p: _rewrite(p, passed="maybe"), "passed is 'maybe'"),
    "bad noise.csv beside a good attacks.csv": ("noise.csv", lambda p: _rewrite(p, test_accuracy="high"), "'high'"),
}


@pytest.mark.parametrize("name, spoil, reason", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_bad_file_is_refused_and_nothing_is_written(tmp_path, name, spoil, reason):
    """A file no robench wrote is refused with a UserError naming it, and nothing at
    all is written: no store, no migrated/ folder, every legacy file (the good ones
    too) in place and unchanged."""
    results = _copy_results("digits", tmp_path / "results")
    spoil(results / name)
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    with pytest.raises(UserError, match="not migrated") as refused:
        migrate(results)
    assert str(results / name) in str(refused.value) and reason in str(refused.value)
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before


# ------------------------------------------------------------ the command line and the store


def test_cli_migrate_prints_each_files_counts_then_nothing_to_migrate(tmp_path):
    """`robench results migrate` exits 0 with one line per file and its row and record
    counts; run again it has nothing to migrate."""
    results = _copy_results("digits", tmp_path / "results")
    counts = _counts(results)
    done = _robench("results", "migrate", str(results))
    assert done.returncode == 0, done.stderr
    for name, rows in counts.items():
        [line] = [line for line in done.stdout.splitlines() if line.startswith(name)]
        assert f": {rows} rows -> {rows} " in line
    again = _robench("results", "migrate", str(results))
    assert again.returncode == 0 and "nothing to migrate" in again.stdout


def test_cli_refuses_a_foreign_attacks_csv_with_one_line(tmp_path):
    """A foreign attacks.csv: exit code 2, exactly one line on stderr, no store."""
    _write(tmp_path / "attacks.csv", ["model", "accuracy"], [{"model": "m", "accuracy": "0.9"}])
    done = _robench("results", "migrate", str(tmp_path))
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "attacks.csv" in line and "not migrated" in line
    assert not (tmp_path / "results.sqlite").exists()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[dict[str, int], Path]:
    """The legacy digits row counts, and the CSV export of their migrated store."""
    results = _copy_results("digits", tmp_path_factory.mktemp("exported") / "results")
    counts = _counts(results)
    migrate(results)
    done = _robench("results", "export", "--results-dir", str(results), "--format", "csv",
                    "--out", str(results.parent / "export"))
    assert done.returncode == 0, done.stderr
    return counts, results


def test_csv_export_row_counts_equal_the_legacy_rows(exported):
    """The exported tables hold every migrated row: attacks, generalization + noise,
    flags, and one migration run per file."""
    counts, results = exported
    out = results.parent / "export"
    assert {name: len(_read(out / f"{name}.csv")[1]) for name in TABLES} == {
        "attacks": counts["attacks.csv"], "experiments": counts["generalization.csv"] + counts["noise.csv"],
        "flags": counts["flags.csv"], "runs": len(LEGACY_FILES)}


def test_parquet_export_equals_the_csv_export(exported, tmp_path):
    """The Parquet export reads back equal to the CSV one, up to what a CSV cannot
    tell: an empty string from a missing value, and the dtype of an all-empty column."""
    pytest.importorskip("pyarrow")
    _, results = exported
    done = _robench("results", "export", "--results-dir", str(results), "--format", "parquet", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    for name in TABLES:
        from_csv = pd.read_csv(results.parent / "export" / f"{name}.csv")
        from_parquet = pd.read_parquet(tmp_path / f"{name}.parquet")
        from_parquet = from_parquet.mask(from_parquet.eq(""))
        empty = [c for c in from_csv if from_csv[c].isna().all()]
        assert from_parquet[empty].isna().all().all(), name
        pd.testing.assert_frame_equal(from_csv.drop(columns=empty), from_parquet.drop(columns=empty))


def test_store_refuses_an_unmigrated_folder_and_opens_once_migrated(tmp_path):
    """ResultStore refuses a folder holding an unmigrated attacks.csv, naming the
    command that migrates it; after the migration it opens and reads the records."""
    path = Path(shutil.copy(DIGITS / "attacks.csv", tmp_path))
    rows = len(_read(path)[1])
    with pytest.raises(UserError, match="robench results migrate"):
        ResultStore(tmp_path)
    migrate(tmp_path)
    assert len(_records(tmp_path, AttackRecord)) == rows


def test_csv_exports_beside_the_store_are_not_taken_for_legacy_files(tmp_path):
    """The CSV exports `robench run` writes beside the store leave the folder readable."""
    results = _copy_results("digits", tmp_path / "results")
    migrate(results)
    with ResultStore(results) as store:
        export_results(store, results)
    ResultStore(results)


# ------------------------------------------------------------ the committed reports


@pytest.mark.parametrize("dataset", ["digits", "fashion-mnist"])
def test_a_report_from_the_migrated_results_holds_every_legacy_number(tmp_path, dataset):
    """The reports of the legacy results (the committed reports before the store) rebuild
    from the migrated store with every attack cell's accuracy and every experiment mean
    of the legacy files."""
    results = _copy_results(dataset, tmp_path / "results")
    legacy_attacks = pd.read_csv(results / "attacks.csv")
    legacy_experiments = pd.concat([pd.read_csv(results / f"{name}.csv") for name in ("generalization", "noise")])
    migrate(results)
    (tmp_path / "zoo").mkdir()
    write_report(dataset, results, zoo_dir=tmp_path / "zoo", out_dir=tmp_path / "report", margins=False)
    tables = tmp_path / "report" / "tables"
    key = ["attacker", "defender", "attack", "eps"]
    for mode in ("whitebox", "blackbox"):
        built = pd.read_csv(tables / f"{mode}.csv").set_index(key)["accuracy"].sort_index()
        legacy = legacy_attacks[legacy_attacks["experiment"] == mode].set_index(key)["accuracy"].sort_index()
        pd.testing.assert_series_equal(built, legacy, check_exact=True)
    for experiment in ("generalization", "noise"):
        built = pd.read_csv(tables / f"{experiment}.csv").set_index(["setting", "member"])["mean"].sort_index()
        rows = legacy_experiments[legacy_experiments["experiment"] == experiment]
        legacy = rows.groupby(["setting", "member"])["test_accuracy"].mean().sort_index()
        pd.testing.assert_series_equal(built, legacy.rename("mean"), check_exact=False, rtol=0, atol=1e-15)


def _schema_1_store(results_dir: Path) -> list[AttackRecord]:
    """A store as schema 1 wrote it (no threads or determinism columns, user_version 1,
    rows of schema_version 1), holding three attack records and one experiment record;
    returns the attack records as written."""
    import dataclasses
    import sqlite3

    from factories import attack_record, experiment_record, store_in_runs

    stored = [attack_record(eps=e) for e in (0.1, 0.2, 0.3)]
    with ResultStore(results_dir) as store:
        stored = store_in_runs(store, stored)
        store_in_runs(store, [experiment_record()])
    connection = sqlite3.connect(results_dir / "results.sqlite", isolation_level=None)
    for table in ("attacks", "experiments"):
        for column in ("threads", "determinism"):
            connection.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    for table in ("attacks", "experiments"):
        connection.execute(f"UPDATE {table} SET schema_version = 1")
    connection.execute("PRAGMA user_version = 1")
    connection.close()
    return [dataclasses.replace(r, schema_version=1) for r in stored]


def test_a_schema_1_store_is_refused_then_upgraded_once_with_empty_thread_columns(tmp_path):
    import dataclasses

    stored = _schema_1_store(tmp_path)
    with pytest.raises(UserError, match="result schema 1, not 2; run `robench results migrate"):
        ResultStore(tmp_path).records(AttackRecord)
    lines = migrate(tmp_path)
    assert lines == [f"{tmp_path / 'results.sqlite'}: result schema 1 -> 2 (4 columns added, empty in the stored rows)"]
    with ResultStore(tmp_path) as store:
        upgraded = store.records(AttackRecord)
        experiments = store.records(ExperimentRecord)
    assert upgraded == [dataclasses.replace(r, threads=None, determinism=None) for r in stored]
    assert [(e.threads, e.determinism, e.schema_version) for e in experiments] == [(None, None, 1)]
    assert "nothing to migrate" in migrate(tmp_path)[0]
