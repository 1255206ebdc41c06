"""Unfinished and running runs made visible: the marker a computing command leaves while
it runs, and what a reader of the store says about it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from factories import attack_record, store_in_runs
from robench.store import AttackRecord, ResultStore
from robench.store.progress import RUNNING, RunMarker, unfinished_runs


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _plan(tmp_path: Path) -> tuple[str, dict[str, str], set[str]]:
    """A run of three cells of which the store holds the first: (run id, planned, stored)."""
    records = [attack_record(eps=eps) for eps in (0.0, 0.1, 0.2)]
    with ResultStore(tmp_path) as store:
        stored = store_in_runs(store, records[:1])
    planned = {r.cell: f"fgsm a -> a at eps {r.eps:g}" for r in records}
    return stored[0].run_id, planned, {stored[0].cell}


def _as_dead(marker: RunMarker) -> Path:
    """``marker``'s file renamed as if a process now gone had written it."""
    dead = marker.path.with_name(marker.path.name.rsplit(".", 2)[0] + f".{_dead_pid()}.json")
    marker.path.rename(dead)
    return dead


def test_a_run_that_stopped_early_is_named_with_its_missing_cells(tmp_path):
    run_id, planned, stored = _plan(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with RunMarker(tmp_path, run_id, planned) as marker:
            raise KeyboardInterrupt  # Ctrl-C, SIGTERM and errors leave the marker
    [line] = unfinished_runs(tmp_path, stored)
    assert line.startswith(f"Run {run_id} is in progress")  # its process (this one) still runs
    _as_dead(marker)
    [line] = unfinished_runs(tmp_path, stored)
    assert line.startswith(f"Run {run_id} is unfinished (its process stopped before the end): 2 of its 3 cells "
                           "are not stored (fgsm a -> a at eps 0.1; fgsm a -> a at eps 0.2)")


def test_the_same_run_finished_removes_the_markers_of_its_stopped_processes(tmp_path):
    run_id, planned, stored = _plan(tmp_path)
    with pytest.raises(RuntimeError):
        with RunMarker(tmp_path, run_id, planned) as stopped:
            raise RuntimeError("stopped")
    left = _as_dead(stopped)
    with RunMarker(tmp_path, "other", {"x": "another run's cell"}):
        with RunMarker(tmp_path, run_id, planned):
            assert len(list((tmp_path / RUNNING).glob("*.json"))) == 3
        assert not left.exists() and len(list((tmp_path / RUNNING).glob("*.json"))) == 1  # the other run's kept
    assert not (tmp_path / RUNNING).exists()
    assert unfinished_runs(tmp_path, stored) == []


def test_a_stopped_run_with_every_cell_stored_is_not_reported(tmp_path):
    run_id, planned, _ = _plan(tmp_path)
    with pytest.raises(RuntimeError):
        with RunMarker(tmp_path, run_id, planned) as marker:
            raise RuntimeError("stopped after its last write")
    _as_dead(marker)
    assert unfinished_runs(tmp_path, set(planned)) == []


def test_a_file_that_is_not_a_marker_is_said_to_be_unknown(tmp_path):
    (tmp_path / RUNNING).mkdir()
    (tmp_path / RUNNING / "x.host.1.json").write_text("[not a marker")
    [line] = unfinished_runs(tmp_path, set())
    assert "is not a run marker robench wrote" in line


def test_an_interrupted_attack_leaves_its_marker_and_the_report_names_it(tmp_path, monkeypatch):
    """A white-box attack stopped after its first block of cells (Ctrl-C): the results
    folder keeps the marker and the report's reader says which cells are missing; the same
    command run again completes the run and leaves no marker."""
    from robench.cli import main
    from robench.evaluate import attack_runner
    from robench.report.load import load_results

    zoo = _untrained(tmp_path / "zoo")
    real, calls = attack_runner._attack_cell_block, []

    def stop_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(attack_runner, "_attack_cell_block", stop_after_one)
    command = ["attack", "--whitebox", "--dataset", "digits", "--zoo-dir", str(zoo), "--attacks", "fgsm,ifgsm",
               "--eps", "0,0.1", "--num-samples", "8", "--results-dir", str(tmp_path / "results")]
    assert main(command) == 130
    [marker] = (tmp_path / "results" / RUNNING).glob("*.json")
    dead = marker.with_name(marker.name.rsplit(".", 2)[0] + f".{_dead_pid()}.json")
    marker.rename(dead)
    [line] = load_results("digits", tmp_path / "results", zoo).unfinished
    assert "is unfinished" in line and "2 of its 4 cells are not stored (ifgsm ce-s0 -> ce-s0 at eps 0;" in line
    monkeypatch.setattr(attack_runner, "_attack_cell_block", real)
    assert main(command) == 0
    assert not (tmp_path / "results" / RUNNING).exists()
    assert len(ResultStore(tmp_path / "results").records(AttackRecord)) >= 4
    assert load_results("digits", tmp_path / "results", zoo).unfinished == []


def _untrained(zoo_dir: Path) -> Path:
    """A digits zoo of one untrained defender, ce-s0."""
    from robench.config import LossSpec, to_dict
    from robench.models import create_model
    from robench.zoo import member_dir, save_member

    card = {"name": "ce-s0", "dataset": "digits", "architecture": "digits-cnn", "num_classes": 10, "head": "linear",
            "mean": [0.3], "std": [0.4], "loss": to_dict(LossSpec("ce")), "seed": 0, "role": "defender"}
    save_member(member_dir(zoo_dir, "digits", "ce-s0"), create_model("digits-cnn", 10, "linear", (0.3,), (0.4,)), card)
    return zoo_dir
