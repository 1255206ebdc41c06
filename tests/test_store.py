"""The result store: typed records in SQLite, one transaction per batch, two writers
that both keep every row, and a kill -9 at any moment leaving the last committed batch."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from factories import attack_record, experiment_record, store_in_runs
from robench.errors import UserError
from robench.store import SCHEMA_VERSION, AttackRecord, ExperimentRecord, FlagRecord, ResultStore, RunRecord

REPO = Path(__file__).resolve().parent.parent


def _batch(writer: int, batch: int, size: int) -> list[AttackRecord]:
    """``size`` distinct cells of one writer's batch (defender ``w<writer>``, ε encodes the row)."""
    return [attack_record("a", f"w{writer}", eps=round((batch * size + i) * 1e-4, 6), correct=i % 90,
                          run_id=f"batch-{batch}") for i in range(size)]


# ---------------------------------------------------------------- records

def test_records_round_trip_with_their_types(tmp_path):
    records = [attack_record(coupled_batch=None), attack_record(eps=0.2, coupled_batch=256, attack_seed=3),
               experiment_record(), experiment_record(repeat=1, delta=4.0, num_flipped=12),
               FlagRecord(run_id="r", flag="eps0_is_clean", passed=False, scope="x", detail="y")]
    with ResultStore(tmp_path) as store:
        records = store_in_runs(store, records)
        assert store.records(AttackRecord) + store.records(ExperimentRecord) + store.records(FlagRecord) == records
        frame = store.frame(FlagRecord)
    assert frame["passed"].tolist() == [False]
    assert records[0].accuracy == records[0].correct / records[0].n


def test_cell_is_the_key_and_not_the_measurement():
    base = attack_record()
    assert dataclasses.replace(base, correct=1, timestamp="later", run_id="other").cell == base.cell
    for field, value in (("eps", 0.2), ("precision", "bf16"), ("schedule", "steps 3, step default"),
                         ("defender_sha256", "x"), ("attack_seed", 7), ("coupled_batch", 40)):
        assert dataclasses.replace(base, **{field: value}).cell != base.cell, field


def test_a_stored_cell_is_kept_unless_replaced(tmp_path):
    first, again = attack_record(correct=10), attack_record(correct=20)
    with ResultStore(tmp_path) as store:
        store_in_runs(store, [first])
        store_in_runs(store, [again])  # another process computed the cell first: kept
        assert [r.correct for r in store.records(AttackRecord)] == [10]
        store_in_runs(store, [again], replace=True)  # --force
        assert [r.correct for r in store.records(AttackRecord)] == [20]
        assert store.cells(AttackRecord) == {first.cell}


def test_runs_are_stored_once_under_the_hash_of_their_config(tmp_path):
    run = RunRecord.of("attack", {"eps": [0.1], "mode": "whitebox"}, "0.1.0")
    same = RunRecord.of("attack", {"mode": "whitebox", "eps": [0.1]}, "0.1.0")
    assert run.run_id == same.run_id != RunRecord.of("attack", {"eps": [0.2], "mode": "whitebox"}, "0.1.0").run_id
    with ResultStore(tmp_path) as store:
        store.save_run(run)
        store.save_run(dataclasses.replace(same, created="later"))
        assert store.frame(RunRecord)["created"].tolist() == [run.created]


def test_a_wrong_type_is_refused_by_the_table(tmp_path):
    with ResultStore(tmp_path) as store:
        with pytest.raises(sqlite3.IntegrityError):
            store.append([attack_record(attacker_seed="one")])
        assert store.records(AttackRecord) == []  # the transaction was rolled back


def test_reading_creates_nothing(tmp_path):
    store = ResultStore(tmp_path / "results")
    assert store.records(AttackRecord) == [] and store.frame(ExperimentRecord).empty
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("content, message", [
    (b"not a database at all, just text" * 100, "not a readable robench result store"),
    (None, "newer than this robench"),
])
def test_an_unreadable_or_newer_store_is_a_user_error(tmp_path, content, message):
    path = tmp_path / "results.sqlite"
    if content is None:
        with sqlite3.connect(path) as connection:
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
            connection.execute("CREATE TABLE attacks (x)")
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        ResultStore(tmp_path).records(AttackRecord)


def test_legacy_csv_files_are_refused_until_migrated(tmp_path):
    (tmp_path / "noise.csv").write_text("experiment,dataset\nnoise,digits\n")
    with pytest.raises(UserError, match=f"robench results migrate {tmp_path}"):
        ResultStore(tmp_path)
    (tmp_path / "noise.csv").write_text("schema_version,dataset\n1,digits\n")  # an export is not legacy
    assert ResultStore(tmp_path).records(ExperimentRecord) == []


# ---------------------------------------------------------------- two writers

def _writer(results_dir: str, writer: int, batches: int, size: int, barrier) -> None:
    store = ResultStore(Path(results_dir))
    for batch in range(batches):
        barrier.wait(timeout=120)  # both start each batch together, so their transactions contend
        store_in_runs(store, _batch(writer, batch, size) + [attack_record("a", "shared", eps=batch * 1e-3)])
    store.close()


def test_two_processes_writing_one_folder_keep_every_row(tmp_path):
    """Two processes append batches in lockstep (a barrier before each batch), so every
    batch of one contends with a batch of the other for the write lock; every row of both
    is stored once, and each batch whole."""
    batches, size = 20, 50
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_writer, args=(str(tmp_path), w, batches, size, barrier), daemon=True)
               for w in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    for worker in workers:  # a writer that failed breaks the other's barrier; none is left running
        if worker.is_alive():
            worker.kill()
    assert [worker.exitcode for worker in workers] == [0, 0]
    stored = ResultStore(tmp_path).records(AttackRecord)
    expected = [r.cell for w in (0, 1) for b in range(batches) for r in _batch(w, b, size)]
    assert sorted(r.cell for r in stored if r.defender != "shared") == sorted(expected)
    assert sum(r.defender == "shared" for r in stored) == batches  # a cell both wrote: once
    order = [r.defender for r in stored if r.defender != "shared"]
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert switches >= batches  # the writers' batches interleave ...
    assert all(len(set(order[i:i + size])) == 1 for i in range(0, len(order), size))  # ... each batch whole


def _creator(root: str, writer: int, folders: int, barrier) -> None:
    for folder in range(folders):
        barrier.wait(timeout=120)  # every process opens the not yet existing store at once
        with ResultStore(Path(root) / str(folder)) as store:
            store_in_runs(store, [attack_record("a", f"w{writer}")])


def test_processes_creating_one_store_at_once_all_write(tmp_path):
    """Four processes create the same folder's store at the same moment, twenty times:
    each store appears whole (one schema, no leftover drafts) and keeps every process's row."""
    processes, folders = 4, 20
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    workers = [context.Process(target=_creator, args=(str(tmp_path), w, folders, barrier), daemon=True)
               for w in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    for worker in workers:
        if worker.is_alive():
            worker.kill()
    assert [worker.exitcode for worker in workers] == [0] * processes
    for folder in range(folders):
        stored = ResultStore(tmp_path / str(folder)).records(AttackRecord)
        assert sorted(r.defender for r in stored) == [f"w{w}" for w in range(processes)]
        assert sorted(p.name for p in (tmp_path / str(folder)).iterdir()
                      if not p.name.startswith("results.sqlite")) == []


# ---------------------------------------------------------------- kill -9

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_store import _batch
    from factories import store_in_runs
    from robench.store import ResultStore
    from robench.store import AttackRecord

    results, size, pause = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "pause"
    inserts = ResultStore._inserts

    def slow_inserts(records, conflict):  # stop halfway through the batch, inside the transaction
        statements = inserts(records, conflict)
        sql, rows = statements[0]
        def rows_then_wait():
            for i, row in enumerate(rows):
                if pause and i == len(rows) // 2:
                    (results / "inside").write_text("")
                    time.sleep(60)
                yield row
        return [(sql, rows_then_wait())]

    ResultStore._inserts = staticmethod(slow_inserts)
    store = ResultStore(results)
    start = len(store.cells(AttackRecord)) // size  # continue after the last whole batch
    for batch in range(start, 10**6):
        store_in_runs(store, _batch(0, batch, size))
""")


def _start_writer(results: Path, size: int, pause: bool) -> subprocess.Popen:
    script = WRITER.format(tests=str(REPO / "tests"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", script, str(results), str(size), "pause" if pause else "run"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stored_batches(results: Path, size: int) -> int:
    """The number of whole batches stored; fails unless the store is consistent and holds
    exactly the first m batches, each complete."""
    with sqlite3.connect(results / "results.sqlite") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = ResultStore(results).records(AttackRecord)
    assert len(stored) % size == 0, len(stored)
    batches = len(stored) // size
    assert [r.cell for r in stored] == [r.cell for b in range(batches) for r in _batch(0, b, size)]
    return batches


def test_kill_9_inside_a_transaction_leaves_the_committed_batches(tmp_path):
    """The writer is killed halfway through inserting a batch (its transaction open):
    the store holds every earlier batch whole and nothing of that one."""
    size = 40
    writer = _start_writer(tmp_path, size, pause=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "inside").exists():
        assert writer.poll() is None, writer.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert _stored_batches(tmp_path, size) == 0  # killed inside the first batch's transaction
    store_in_runs(ResultStore(tmp_path), _batch(0, 0, size))  # the store takes writes again
    assert _stored_batches(tmp_path, size) == 1


def test_kill_9_at_random_moments_never_tears_a_batch(tmp_path):
    """Five kills at random moments of a writer appending batches; each restart continues
    after the last whole batch, and the store stays consistent throughout."""
    import random

    size, rng, seen = 100, random.Random(0), [0]
    for _ in range(5):
        writer = _start_writer(tmp_path, size, pause=False)
        while _count(tmp_path) <= seen[-1] * size:  # until it has written (imports take a few seconds)
            assert writer.poll() is None, writer.stderr.read().decode()
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        seen.append(_stored_batches(tmp_path, size))
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen  # each writer got further


def _count(results: Path) -> int:
    if not (results / "results.sqlite").exists():
        return 0
    with sqlite3.connect(results / "results.sqlite", timeout=60) as connection:  # it appears whole
        return connection.execute("SELECT count(*) FROM attacks").fetchone()[0]
