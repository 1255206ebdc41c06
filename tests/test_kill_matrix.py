"""kill -9 at named points and moments of `train zoo`, `attack`, `experiment`, `report`
and `run`, then the same command again to the end: what it leaves equals an
uninterrupted run's (tests/kill_harness.py runs the commands; docs/reliability.md holds
the table).

Equal means: every weights file bit-identical (SHA-256) with no checkpoint left behind,
every stored record present exactly once with the same values (the store's integrity
check passing, no cell twice), the report's text and tables the same in every number.
The uninterrupted reference is one `robench run` of the shrunken configuration; each
command's own outputs are compared with the matching part of it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

import kill_harness as kh
from kill_harness import KillPoint

NUM_SAMPLES = ["--num-samples", "30"]
RUN = ["run", *NUM_SAMPLES]
TRAIN_ZOO = ["train", "zoo", "--dataset", "digits"]
ATTACK = ["attack", "--whitebox", "--dataset", "digits", *NUM_SAMPLES]
EXPERIMENT = ["experiment", "generalization", "--dataset", "digits"]
REPORT = ["report", "--dataset", "digits"]
RESULTS = Path("reports") / "digits" / "results"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> tuple[Path, float]:
    """One uninterrupted `robench run` of the shrunken configuration: (its folder, seconds)."""
    root = tmp_path_factory.mktemp("reference")
    _tiny_zoo(root)
    outcome = kh.run(RUN, root)
    assert outcome.exit_code == 0, (root / "robench.log").read_text()[-3000:]
    return root, outcome.seconds


@pytest.fixture(scope="module")
def reference(reference_run) -> Path:
    return reference_run[0]


@pytest.fixture(scope="module")
def seconds(reference_run, tmp_path_factory):
    """``seconds(argv)``: how long command ``argv`` takes uninterrupted on this machine,
    measured once (`train zoo` from nothing; the others on the reference's trained zoo)."""
    measured = {tuple(RUN): reference_run[1]}

    def of(argv: list[str]) -> float:
        if tuple(argv) not in measured:
            root = tmp_path_factory.mktemp("timed")
            _tiny_zoo(root) if argv == TRAIN_ZOO else _trained_zoo(reference_run[0], root)
            outcome = kh.run(argv, root)
            assert outcome.exit_code == 0, (root / "robench.log").read_text()[-3000:]
            measured[tuple(argv)] = outcome.seconds
        return measured[tuple(argv)]

    return of


def _tiny_zoo(root: Path) -> None:
    (root / "zoo").mkdir(parents=True, exist_ok=True)
    (root / "zoo" / "digits.toml").write_text(kh.TINY_ZOO)


def _killed_then_resumed(argv: list[str], root: Path, point: KillPoint, seconds) -> None:
    """Run ``argv`` in ``root``, kill it at ``point``, run it again to the end."""
    killed = kh.run(argv, root, point, seconds(argv) if point.fraction else 0.0)
    log = (root / "robench.log").read_text() if (root / "robench.log").exists() else ""
    assert killed.killed, f"{point.label} was not reached (exit {killed.exit_code}): {log[-2000:]}"
    assert killed.group_gone, "a process of the killed command kept running"
    resumed = kh.run(argv, root)
    assert resumed.exit_code == 0, (root / "robench.log").read_text()[-3000:]
    assert kh.leftovers(root) == []


def _records(root: Path) -> dict[str, pd.DataFrame]:
    return kh.records(root / RESULTS)


def _assert_same_frame(got: pd.DataFrame, want: pd.DataFrame) -> None:
    # a column that is empty in one frame is of dtype object there
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_exact=True,
                                  check_dtype=False)


# ------------------------------------------------------------ train zoo

ZOO_POINTS = [
    KillPoint(fraction=0.3),
    KillPoint(fraction=0.6),
    KillPoint("checkpoint tensors", 2),
    KillPoint("checkpoint json", 4),
    KillPoint("checkpoint tensors", 7),
    KillPoint("weights → card", 1),
    KillPoint("weights → card", 3),
]


@pytest.mark.parametrize("point", ZOO_POINTS, ids=lambda p: p.label)
def test_train_zoo_killed_resumes_to_bit_identical_weights(point, reference, seconds, tmp_path):
    _tiny_zoo(tmp_path)
    _killed_then_resumed(TRAIN_ZOO, tmp_path, point, seconds)
    want = {k: v for k, v in kh.weights(reference).items() if "experiments" not in k}
    assert kh.weights(tmp_path) == want


# ------------------------------------------------------------ attack

ATTACK_POINTS = [
    KillPoint(fraction=0.5),
    KillPoint("store transaction", 1),
    KillPoint("store transaction", 3),
    KillPoint("store transaction", 5),
]


def _trained_zoo(reference: Path, root: Path) -> None:
    """``reference``'s trained zoo, without its experiment models, copied to ``root``."""
    shutil.copytree(reference / "zoo", root / "zoo", ignore=shutil.ignore_patterns("experiments"))


@pytest.mark.parametrize("point", ATTACK_POINTS, ids=lambda p: p.label)
def test_attack_killed_resumes_to_every_record_once(point, reference, seconds, tmp_path):
    _trained_zoo(reference, tmp_path)
    _killed_then_resumed(ATTACK, tmp_path, point, seconds)
    got = _records(tmp_path)["attacks"]
    want = _records(reference)["attacks"]
    want = want[want["mode"].isin(["whitebox", "sanity"]) & want["attack"].isin(["fgsm", "ifgsm"])]
    _assert_same_frame(got, want)


# ------------------------------------------------------------ experiment

EXPERIMENT_POINTS = [
    KillPoint(fraction=0.5),
    KillPoint("checkpoint json", 2),
    KillPoint("weights → card", 3),
    KillPoint("store transaction", 2),
]


@pytest.mark.parametrize("point", EXPERIMENT_POINTS, ids=lambda p: p.label)
def test_experiment_killed_resumes_to_the_same_models_and_records(point, reference, seconds, tmp_path):
    _trained_zoo(reference, tmp_path)
    _killed_then_resumed(EXPERIMENT, tmp_path, point, seconds)
    want = _records(reference)["experiments"]
    _assert_same_frame(_records(tmp_path)["experiments"], want[want["experiment"] == "generalization"])
    trained = {k: v for k, v in kh.weights(reference).items() if "-gen" in k}
    assert {k: v for k, v in kh.weights(tmp_path).items() if "-gen" in k} == trained


# ------------------------------------------------------------ report

REPORT_POINTS = [
    KillPoint("report figure", 1),
    KillPoint("report figure", 6),
    KillPoint("report page", 1),
]


@pytest.mark.parametrize("point", REPORT_POINTS, ids=lambda p: p.label)
def test_report_killed_rewrites_the_same_report(point, reference, seconds, tmp_path):
    _trained_zoo(reference, tmp_path)
    shutil.copytree(reference / RESULTS, tmp_path / RESULTS)
    _killed_then_resumed(REPORT, tmp_path, point, seconds)
    assert kh.report_text(tmp_path / "reports" / "digits") == kh.report_text(reference / "reports" / "digits")


# ------------------------------------------------------------ run

RUN_POINTS = [
    KillPoint(fraction=0.35),  # in the worst-case stage: its worker processes die with the run
    KillPoint("export", 2),
]


@pytest.mark.parametrize("point", RUN_POINTS, ids=lambda p: p.label)
def test_run_killed_resumes_to_the_uninterrupted_result(point, reference, seconds, tmp_path):
    _tiny_zoo(tmp_path)
    _killed_then_resumed(RUN, tmp_path, point, seconds)
    assert kh.weights(tmp_path) == kh.weights(reference)
    got, want = _records(tmp_path), _records(reference)
    for table in want:
        _assert_same_frame(got[table], want[table])
    assert kh.report_text(tmp_path / "reports" / "digits") == kh.report_text(reference / "reports" / "digits")


# ------------------------------------------------------------ determinism


def test_run_twice_gives_identical_records_weights_and_report(reference, tmp_path):
    """The same `robench run` with the same settings (one thread, CPU) in another folder:
    the same weights bit for bit, the same records in every field but their time, the
    same report; each record and card says the thread count and settings it ran under."""
    import json

    from robench.determinism import settings_text

    _tiny_zoo(tmp_path)
    assert kh.run(RUN, tmp_path).exit_code == 0, (tmp_path / "robench.log").read_text()[-3000:]
    assert kh.weights(tmp_path) == kh.weights(reference)
    got, want = kh.records(tmp_path / RESULTS, ("timestamp",)), kh.records(reference / RESULTS, ("timestamp",))
    for table in want:
        _assert_same_frame(got[table], want[table])
    assert kh.report_text(tmp_path / "reports" / "digits") == kh.report_text(reference / "reports" / "digits")
    settings = {"deterministic_algorithms": False, "cudnn_deterministic": False, "cudnn_benchmark": False,
                "tf32": False}  # the CLI's on a CPU: PyTorch's defaults, but TF32 off (robench.device.use_ieee_fp32)
    for table in ("attacks", "experiments"):
        assert set(got[table]["threads"]) == {1}
        assert set(got[table]["determinism"]) == {settings_text(settings)}
    for card in sorted((tmp_path / "zoo").rglob("card.json")):
        data = json.loads(card.read_text())
        assert (data["threads"], data["determinism"]) == (1, settings), card


# ------------------------------------------------------------ what a killed write leaves


def test_temporaries_of_gone_processes_are_removed_and_the_others_kept(tmp_path):
    """A killed write's temporary goes at the next write; a live process's, another
    host's and another target's stay (robench.io.remove_stale_temporaries)."""
    import socket
    import subprocess
    import sys

    from robench.io import atomic_write_text, remove_stale_temporaries

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead, live, host = int(gone.stdout), os.getpid(), socket.gethostname()
    names = {
        "dead": f".a[1].csv.{host}.{dead}.x1.tmp",  # glob characters in the target's name
        "dead wal": f".a[1].csv.{host}.{dead}.x2.tmp-wal",
        "live": f".a[1].csv.{host}.{live}.x3.tmp",
        "other host": f".a[1].csv.{host}-other.{dead}.x4.tmp",
        "other target": f".b.csv.{host}.{dead}.x5.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_text("half")
    atomic_write_text(tmp_path / "a[1].csv", "whole\n")
    left = {k for k, name in names.items() if (tmp_path / name).exists()}
    assert left == {"live", "other host", "other target"}
    assert (tmp_path / "a[1].csv").read_text() == "whole\n"
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [names["other target"]]
