"""Records verified on read, and a published report verified from its records and cards.

Each tampering case edits a real store with SQL, as a user with any SQLite tool could.
An inconsistent edit is refused by every reader (the report, the export, the claims),
naming the rows; a consistent edit of a measured value passes the row checks and is
caught by the records digest that the report prints and ``robench results verify``
recomputes. The flags a report shows are recomputed from the records, whatever the
store's flags table says.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from factories import attack_record, experiment_record, store_in_runs
from robench.errors import UserError
from robench.store import AttackRecord, ExperimentRecord, FlagRecord, ResultStore
from robench.store.records import cell_of
from test_report import DATASET, make_results, make_zoo, one_thread  # noqa: F401 (an autouse fixture)

REPO = Path(__file__).resolve().parent.parent


def _store(results: Path) -> list:
    """A white-box run (n = 32, ε 0 and 0.1 and 0.2, FGSM) and an experiment run."""
    records = [attack_record(eps=eps, correct=correct, clean=30, n=32)
               for eps, correct in ((0.0, 30), (0.1, 20), (0.2, 10))]
    with ResultStore(results) as store:
        return store_in_runs(store, records + [experiment_record()])


def _sql(results: Path, statement: str, *values) -> None:
    with sqlite3.connect(results / "results.sqlite") as connection:
        connection.execute(statement, values)


def _insert_copy(results: Path, changes: dict) -> None:
    """A copy of the ε = 0.1 attack row with ``changes``, its cell recomputed (a forged row)."""
    row = next(r for r in ResultStore(results).records(AttackRecord) if r.eps == 0.1)
    values = {**{k: v for k, v in row.as_dict().items()}, **changes}
    values["accuracy"], values["clean_accuracy"] = values["correct"] / values["n"], values["clean_correct"] / values["n"]
    columns = AttackRecord.columns()
    values["cell"] = cell_of(values, AttackRecord.KEY)
    _sql(results, f"INSERT INTO attacks ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
         *[values[c] for c in columns])


TAMPERING = {  # case -> (edit, what the refusal says)
    "count above n": (lambda r: _sql(r, "UPDATE attacks SET correct = 64, accuracy = 2.0 WHERE eps = 0.1"),
                      "correct 64 is outside 0..n = 32"),
    "negative count": (lambda r: _sql(r, "UPDATE attacks SET correct = -1, accuracy = -1.0/32 WHERE eps = 0.1"),
                       "correct -1 is outside"),
    "clean count above n": (lambda r: _sql(r, "UPDATE attacks SET clean_correct = 33 WHERE eps = 0.1"),
                            "clean_correct 33 is outside"),
    "accuracy column alone": (lambda r: _sql(r, "UPDATE attacks SET accuracy = 1.0 WHERE eps = 0.1"),
                              "accuracy 1.0 is not correct / n = 20/32"),
    "a key field changed": (lambda r: _sql(r, "UPDATE attacks SET eps = 0.15 WHERE eps = 0.1"),
                            "its cell is not the hash of its key fields"),
    "another defender": (lambda r: _sql(r, "UPDATE attacks SET defender = 'b' WHERE eps = 0.1"),
                         "its cell is not the hash of its key fields"),
    "an inserted row off the run's grid": (lambda r: _insert_copy(r, {"eps": 0.4, "correct": 32}),
                                           "its eps 0.4 is not in its run"),
    "an inserted row with another n": (lambda r: _insert_copy(r, {"n": 64, "correct": 64, "clean_correct": 64}),
                                       "its n 64 is not in its run"),
    "an inserted row of another mode": (lambda r: _insert_copy(r, {"mode": "blackbox", "attacker": "c"}),
                                        "its mode \"blackbox\" is not in its run"),
    "a row of an unknown run": (lambda r: _sql(r, "UPDATE attacks SET run_id = 'nowhere' WHERE eps = 0.1"),
                                "its run 'nowhere' is not in the runs table"),
    "a run removed": (lambda r: _sql(r, "DELETE FROM runs WHERE kind = 'attack'"), "is not in the runs table"),
    "an experiment accuracy above 1": (lambda r: _sql(r, "UPDATE experiments SET test_accuracy = 1.5"),
                                       "test accuracy 1.5 on 360 images is not a proportion"),
    "an experiment moved to another experiment": (
        lambda r: _sql(r, "UPDATE experiments SET experiment = 'noise'"), "its cell is not the hash"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_an_inconsistent_record_is_refused_by_every_reader_naming_its_row(tmp_path, case):
    edit, message = TAMPERING[case]
    _store(tmp_path)
    edit(tmp_path)
    table = ExperimentRecord if "experiment" in case else AttackRecord
    for read in (lambda s: s.records(table), lambda s: s.frame(table), lambda s: s.digest()):
        with pytest.raises(UserError) as refused:
            with ResultStore(tmp_path) as store:
                read(store)
        assert message in str(refused.value) and "row " in str(refused.value) and "\n" not in str(refused.value)


def test_genuine_records_pass_and_a_consistent_edit_changes_only_the_digest(tmp_path):
    _store(tmp_path)
    with ResultStore(tmp_path) as store:
        before = store.digest()
        assert len(store.records(AttackRecord)) == 3
    _sql(tmp_path, "UPDATE attacks SET timestamp = '2030-01-01T00:00:00Z'")  # when, not what
    assert ResultStore(tmp_path).digest() == before
    _sql(tmp_path, "UPDATE attacks SET correct = 32, accuracy = 1.0 WHERE eps = 0.2")  # within 0..n, consistent
    with ResultStore(tmp_path) as store:
        assert [r.correct for r in store.records(AttackRecord)] == [30, 20, 32]  # the row checks cannot see it
        assert store.digest() != before


def test_a_tampered_store_makes_report_and_export_exit_2_with_one_line(tmp_path):
    _store(tmp_path / "results")
    _sql(tmp_path / "results", "UPDATE attacks SET correct = 64, accuracy = 2.0 WHERE eps = 0.1")
    for command in (["report", "--dataset", DATASET, "--zoo-dir", str(tmp_path / "zoo"), "--out", str(tmp_path / "out")],
                    ["results", "export", "--out", str(tmp_path / "export")]):
        done = subprocess.run([sys.executable, "-m", "robench.cli", *command, "--results-dir", str(tmp_path / "results")],
                              capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "correct 64 is outside 0..n = 32" in done.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "export").exists()


# ---------------------------------------------------------------- a report verified

@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """A report of the test_report fixture's records (margins left out), as published."""
    root = tmp_path_factory.mktemp("published")
    make_zoo(root / "zoo")
    make_results(root / "results", root / "zoo")
    from robench.report import write_report

    torch.set_num_threads(1)
    write_report(DATASET, root / "results", root / "zoo", root / "report", margins=False)
    return root


def _verify(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robench.cli", "results", "verify", "--dataset", DATASET,
                           "--results-dir", str(root / "results"), "--zoo-dir", str(root / "zoo"),
                           "--report", str(root / "report")],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO)


def test_a_report_states_its_digest_and_verifies_against_its_records(published):
    digest = json.loads((published / "report" / "provenance.json").read_text())["records_digest"]
    assert f"`{digest}`" in (published / "report" / "report.md").read_text()
    assert digest == ResultStore(published / "results").digest()
    done = _verify(published)
    assert done.returncode == 0, done.stderr
    assert "all" in done.stdout and "tables equal the report computed again" in done.stdout


def test_verify_catches_an_edited_record_and_an_edited_table(published, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(published, root)
    claims = root / "report" / "tables" / "claims.csv"
    text = claims.read_text()
    claims.write_text(text.replace("inconclusive", "supported", 1))
    done = _verify(root)
    assert done.returncode == 2 and "claims.csv" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    claims.write_text(text)
    _sql(root / "results", "UPDATE attacks SET correct = n, accuracy = 1.0 WHERE rowid = 5")  # consistent, within n
    done = _verify(root)
    assert done.returncode == 2 and "was not computed from the records" in done.stderr, done.stderr


def test_the_flags_a_report_shows_are_recomputed_from_the_records(published, tmp_path):
    """A store whose flags table says every check passed, while its records break ε = 0 =
    clean: the report's flags say failed (the stored table is not read back)."""
    from robench.report.load import load_results

    root = tmp_path / "copy"
    shutil.copytree(published, root)
    _sql(root / "results", "UPDATE attacks SET correct = correct - 5, accuracy = (correct - 5) * 1.0 / n "
                           "WHERE eps = 0.0 AND mode = 'whitebox' AND defender = 'ce-s0' AND attack = 'fgsm'")
    with sqlite3.connect(root / "results" / "results.sqlite") as connection:
        connection.execute("UPDATE flags SET passed = 1")
    flags = load_results(DATASET, root / "results", root / "zoo").flags
    failed = flags[~flags["passed"]]
    assert ("eps0_is_clean", "fgsm/ce/native ce-s0 -> ce-s0") in set(zip(failed["flag"], failed["scope"]))
    stored = ResultStore(root / "results").frame(FlagRecord)
    assert stored["passed"].all()
