"""A kill -9 harness: run a robench command, SIGKILL it at a chosen moment, run it again
to the end, and compare what it left with an uninterrupted run.

Commands run in children forked from a ``forkserver`` that imported robench and torch
once, so a run costs its work and not five seconds of imports; each child is a whole
``robench.cli.main`` in a process group of its own (the pipeline's worker processes
join it). Every child runs the same shrunken configuration (:func:`shrink`: digits,
three epochs, one setting and two repeats per experiment, a checkpoint after every
epoch, one thread), so killed, resumed and uninterrupted runs are comparable bit for bit.

A kill point is either a time after the start or a named moment, reached for the
``nth`` time in the process (:data:`NAMED_POINTS`): the child kills itself there with
SIGKILL, as the kernel's OOM killer or ``kill -9`` would.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import re
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

TIMEOUT_S = 300.0

# A zoo of two defenders and one attacker at one seed: every stage of `robench run` has work.
TINY_ZOO = """architecture = "digits-cnn"
seeds = [0]

[[members]]
loss = "ce"

[[members]]
loss = "1toN"
bound = "sym"
delta = 1.0

[[attackers]]
loss = "ce"
seeds = [100]
"""

NAMED_POINTS = {
    "checkpoint tensors": "inside the atomic write of a checkpoint's tensor file, before its rename",
    "checkpoint json": "between a checkpoint's tensor file and the JSON that names it",
    "weights → card": "between a member's weights file and its card",
    "store transaction": "inside a store transaction, its rows inserted and not committed",
    "report figure": "inside the atomic write of a report figure, before its rename",
    "report page": "before the report writes index.html (report.md written)",
    "export": "inside the atomic write of a CSV export, before its rename",
}


@dataclass(frozen=True)
class KillPoint:
    """Where to kill: after ``fraction`` of the time the command takes uninterrupted (a
    share, not seconds, so that a faster machine kills it at the same stage), or the ``nth`` time the
    command reaches the named point ``name``."""

    name: str = ""
    nth: int = 1
    fraction: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.fraction:.0%} of its run" if self.fraction else f"{self.name} #{self.nth}"


# ------------------------------------------------------------ inside the child


def shrink() -> None:
    """The small configuration every child runs (killed, resumed or uninterrupted alike)."""
    import torch

    from robench import presets
    from robench.experiments import common
    from robench.train import trainer

    torch.set_num_threads(1)
    presets._QUICK["digits"] = (dict(lr=0.003), 3, 3)
    common.PLANS[("generalization", "quick", "digits")] = common.ExperimentPlan(
        "generalization", "quick", settings=(0.125,), repeats=2)
    common.PLANS[("noise", "quick", "digits")] = common.ExperimentPlan(
        "noise", "quick", settings=(0.4,), repeats=2, stop_train_accuracy=0.8)
    trainer.CHECKPOINT_SECONDS = 0.0  # a checkpoint after every epoch


def _arm(point: KillPoint) -> None:
    """Make the ``point.nth`` arrival at ``point.name`` SIGKILL this process."""
    from robench import report, zoo
    from robench.report import figures
    from robench.store import export, sqlite
    from robench.train import checkpoint

    arrivals = itertools.count(1)

    def hit() -> None:
        if next(arrivals) == point.nth:
            os.kill(os.getpid(), signal.SIGKILL)

    def before(function):
        return lambda *args, **kwargs: (hit(), function(*args, **kwargs))[1]

    def inside(function):  # the temporary file written, the rename not done
        return lambda path, write: function(path, lambda tmp: (write(tmp), hit()))

    def before_index(function):
        return lambda path, text: (path.name == "index.html" and hit(), function(path, text))[1]

    patches = {
        "checkpoint tensors": (checkpoint, "atomic_write", inside(checkpoint.atomic_write)),
        "checkpoint json": (checkpoint, "atomic_write_json", before(checkpoint.atomic_write_json)),
        "weights → card": (zoo, "atomic_write_json", before(zoo.atomic_write_json)),
        "store transaction": (sqlite.ResultStore, "_connect", _killing_commits(sqlite.ResultStore._connect, hit)),
        "report figure": (figures, "atomic_write", inside(figures.atomic_write)),
        "report page": (report, "atomic_write_text", before_index(report.atomic_write_text)),
        "export": (export, "atomic_write_text", lambda path, text: _atomic_text_then(path, text, hit)),
    }
    module, attribute, replacement = patches[point.name]
    setattr(module, attribute, replacement)


def _atomic_text_then(path: Path, text: str, hit) -> None:
    from robench.io import atomic_write

    atomic_write(path, lambda tmp: (tmp.write_text(text, encoding="utf-8"), hit()))


class _CommitKiller:
    """A store's SQLite connection that runs ``hit`` just before each COMMIT: inside the
    store's own transaction, its rows inserted and not committed."""

    def __init__(self, connection, hit) -> None:
        self._connection, self._hit = connection, hit

    def execute(self, sql, *args):
        if sql == "COMMIT":
            self._hit()
        return self._connection.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._connection, name)


def _killing_commits(connect, hit):
    """``ResultStore._connect`` whose connection is a :class:`_CommitKiller`."""

    def _connect(self, create: bool):
        connection = connect(self, create)
        return None if connection is None else _CommitKiller(connection, hit)

    return _connect


def _child(argv: list[str], cwd: str, point: KillPoint | None, log_name: str) -> None:
    os.setpgid(0, 0)  # a group of its own, which the pipeline's workers join
    os.chdir(cwd)
    log = os.open(log_name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    shrink()
    if point is not None and point.name:
        _arm(point)
    from robench.cli import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ------------------------------------------------------------ the parent


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "robench.cli", "robench.train.members", "robench.evaluate.attack_runner",
                                    "robench.experiments", "robench.report", "robench.pipeline", "kill_harness"])
    return context


@dataclass(frozen=True)
class Outcome:
    """How a child ended: ``exit_code`` (negative: the signal), seconds it ran, and
    whether its process group was gone right after (no orphan kept working)."""

    exit_code: int
    seconds: float
    group_gone: bool

    @property
    def killed(self) -> bool:
        return self.exit_code == -signal.SIGKILL


def run(argv: list[str], cwd: Path, point: KillPoint | None = None, seconds: float = 0.0,
        log_name: str = "robench.log") -> Outcome:
    """Run ``robench argv`` in ``cwd``; kill it at ``point`` (None: to the end); a point
    in time is a share of ``seconds``, the command's uninterrupted duration."""
    process = _context().Process(target=_child, args=(argv, str(cwd), point, log_name))
    start = time.perf_counter()
    process.start()
    deadline = point.fraction * seconds if point is not None and point.fraction else TIMEOUT_S
    process.join(deadline)
    if process.is_alive():
        os.kill(process.pid, signal.SIGKILL)
        process.join()
    seconds = time.perf_counter() - start
    return Outcome(process.exitcode, seconds, _group_gone(process.pid))


def _group_gone(group: int, wait_s: float = 10.0) -> bool:
    """True once no process of process group ``group`` is left (within ``wait_s``)."""
    until = time.monotonic() + wait_s
    while time.monotonic() < until:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        time.sleep(0.05)
    return False


# ------------------------------------------------------------ what a run left


def weights(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``'s zoo folder that holds a model or a checkpoint."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "zoo").rglob("*.safetensors"))}


def leftovers(root: Path) -> list[str]:
    """Checkpoints, partial folders and temporaries still under ``root`` after a finished run."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name in (".partial", "checkpoint.json") or ".tmp" in p.name
                  or p.name.startswith("checkpoint."))


VOLATILE = ("timestamp", "run_id")  # when a record was written and by which run configuration


def records(results: Path, volatile: tuple[str, ...] = VOLATILE) -> dict[str, pd.DataFrame]:
    """Every stored table, sorted by cell (runs by id), without the ``volatile`` columns
    (a run's ``created`` is its ``timestamp``). No cell can be stored twice: the store's
    unique index on it refuses that, and the check here is the file's integrity."""
    path = results / "results.sqlite"
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok", path
        tables = {}
        for table in ("attacks", "experiments", "flags"):
            frame = pd.read_sql_query(f"SELECT * FROM {table}", connection)
            tables[table] = frame.drop(columns=list(volatile)).sort_values("cell").reset_index(drop=True)
        runs = pd.read_sql_query("SELECT * FROM runs", connection).drop(columns="created")
        tables["runs"] = runs.sort_values("run_id").reset_index(drop=True)
        return tables
    finally:
        connection.close()


_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?Z?( UTC)?")


def report_text(folder: Path) -> dict[str, str]:
    """report.md and every table file of a report, times of day replaced."""
    files = [folder / "report.md", *sorted((folder / "tables").glob("*"))]
    return {p.name: _TIME.sub("<time>", p.read_text()) for p in files}
