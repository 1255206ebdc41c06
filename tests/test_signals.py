"""Ctrl-C (SIGINT) and a polite kill (SIGTERM): one line, the shell's exit code (130,
143), and the store as of its last committed batch.

A signal during start-up (inside ``import torch``) is sent to a real ``python -m robench``
process; SIGTERM inside a store transaction is sent by the test process to itself while
``robench.cli.main`` runs in it, at a chosen moment: after a batch's rows are inserted and
before its COMMIT (the moment tests/kill_harness.py kills at with SIGKILL).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kill_harness as kh
from robench.cli import main
from robench.store import sqlite as store_sqlite

REPO = Path(__file__).resolve().parent.parent
TERMINATED = "robench: terminated (SIGTERM); every finished result is kept: re-run the same command to resume"
INTERRUPTED = "robench: interrupted; every finished result is kept: re-run the same command to resume"


# ------------------------------------------------------------ during start-up

def _wait_until_torch_loads(process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Return once ``process`` has mapped PyTorch's shared library: it is inside ``import
    torch``, which takes a second or more after that."""
    maps = Path(f"/proc/{process.pid}/maps")
    until = time.monotonic() + timeout_s
    while time.monotonic() < until:
        try:
            if "libtorch" in maps.read_text():
                return
        except (FileNotFoundError, ProcessLookupError):
            break
        if process.poll() is not None:
            break
        time.sleep(0.002)
    process.kill()
    pytest.fail(f"the process did not reach `import torch` (exit {process.poll()})")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="finds the moment through Linux's /proc/<pid>/maps")
@pytest.mark.parametrize(("signum", "code", "line"), [(signal.SIGINT, 130, INTERRUPTED),
                                                      (signal.SIGTERM, 143, TERMINATED)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_start_up_ends_in_one_line(signum, code, line, tmp_path):
    """Ctrl-C or SIGTERM while robench imports torch: one line and 130 or 143, no traceback."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "robench", "data", "list"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_until_torch_loads(process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert (process.returncode, err.splitlines(), out) == (code, [line], "")


# ------------------------------------------------------------ inside a store transaction

def _untrained_zoo(zoo_dir: Path, seeds: tuple[int, ...]) -> None:
    """Digits members ce-s<seed> with untrained weights: attacked in a second."""
    from robench.config import LossSpec, to_dict
    from robench.models import create_model
    from robench.zoo import member_dir, save_member

    for seed in seeds:
        card = {"name": f"ce-s{seed}", "dataset": "digits", "architecture": "digits-cnn", "num_classes": 10,
                "head": "linear", "mean": [0.3], "std": [0.4], "loss": to_dict(LossSpec("ce")), "seed": seed,
                "role": "defender"}
        model = create_model(card["architecture"], 10, card["head"], (0.3,), (0.4,))
        save_member(member_dir(zoo_dir, "digits", card["name"]), model, card)


def _attack(zoo: Path, results: Path) -> list[str]:
    return ["attack", "--whitebox", "--dataset", "digits", "--zoo-dir", str(zoo), "--results-dir", str(results),
            "--attacks", "fgsm", "--eps", "0,0.1", "--num-samples", "20"]


def _attack_rows(results: Path) -> list[tuple[str, float]]:
    """(defender, ε) of every stored attack row, after the store's integrity check."""
    connection = sqlite3.connect(f"file:{results / 'results.sqlite'}?mode=ro", uri=True)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return sorted(connection.execute("SELECT defender, eps FROM attacks").fetchall())
    finally:
        connection.close()


def test_sigterm_inside_a_store_transaction_rolls_it_back_and_ends_in_one_line(tmp_path, monkeypatch, capsys):
    """SIGTERM after the second member's rows are inserted, before their COMMIT: exit 143
    and one line; the store passes its integrity check and holds the first member's rows
    alone (none of the batch it was in; a re-run resumes from there as after a kill -9,
    tests/test_kill_matrix.py). SIGTERM's previous handler is back after main returns."""
    zoo, results = tmp_path / "zoo", tmp_path / "results"
    _untrained_zoo(zoo, (0, 1))
    commits = iter(range(1, 100))

    def terminate_at_third_commit() -> None:  # 1: the run record, 2: ce-s0's rows, 3: ce-s1's rows
        if next(commits) == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    connect = store_sqlite.ResultStore._connect
    before = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patch:
        patch.setattr(store_sqlite.ResultStore, "_connect", kh._killing_commits(connect, terminate_at_third_commit))
        capsys.readouterr()
        code = main(_attack(zoo, results))
    err = capsys.readouterr().err
    assert (code, err.splitlines()) == (143, [TERMINATED])
    assert signal.getsignal(signal.SIGTERM) is before
    assert _attack_rows(results) == [("ce-s0", 0.0), ("ce-s0", 0.1)]
