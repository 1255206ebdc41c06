"""Runs that have not finished, made visible: a marker file per running command.

A command that computes cells (``attack``, ``experiment``) writes
``<results_dir>/running/<run_id>.<host>.<pid>.json`` before its first cell, holding the
cells it plans ([cell hash, a short description] in plan order), and removes it when every cell is
stored, together with the markers of the same run that processes now gone left (the same
command run again finishes their work). A marker that stays says the run stopped early: a
kill, Ctrl-C, SIGTERM or an error. A reader (:func:`unfinished_runs`) compares each
marker's cells with the store's and says which runs are unfinished or still in progress
(the marker's process alive on this host) and which cells they miss, so a report never
passes off a part of a run as the whole.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from robench.io import atomic_write_text, process_alive

RUNNING = "running"
MAX_MARKER_BYTES = 64 * 2**20  # a plan of a million cells; a larger file is not one robench wrote
SHOWN_CELLS = 3  # missing cells named per run


def _marker_name(run_id: str, host: str, pid: int) -> str:
    return f"{run_id}.{host}.{pid}.json"


class RunMarker:
    """The marker of one running command (a context manager): written on entry, removed
    with the gone processes' markers of the same run when the block ends without an
    exception; left in place when it raises."""

    def __init__(self, results_dir: Path, run_id: str, cells: Mapping[str, str]) -> None:
        self.folder = Path(results_dir) / RUNNING
        self.run_id = run_id
        self.cells = dict(cells)
        self.path = self.folder / _marker_name(run_id, socket.gethostname(), os.getpid())

    def __enter__(self) -> "RunMarker":
        self.folder.mkdir(parents=True, exist_ok=True)
        cells = [[cell, label] for cell, label in self.cells.items()]  # in plan order
        atomic_write_text(self.path, json.dumps({"run_id": self.run_id, "cells": cells}))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return
        self.path.unlink(missing_ok=True)
        for marker in self.folder.glob(f"{self.run_id}.*.json"):
            if not _marker(marker).alive:
                marker.unlink(missing_ok=True)
        try:
            self.folder.rmdir()  # only when no other run's marker is left
        except OSError:
            pass


@dataclass(frozen=True)
class _Marker:
    run_id: str
    host: str
    pid: int
    path: Path

    @property
    def alive(self) -> bool:
        """The process that wrote it runs on: on this host and alive (another host's
        process cannot be asked, so it counts as alive)."""
        return self.host != socket.gethostname() or process_alive(self.pid)


def _marker(path: Path) -> _Marker:
    run_id, rest = path.name.split(".", 1)
    host, _, pid = rest[: -len(".json")].rpartition(".")
    return _Marker(run_id, host, int(pid) if pid.isdigit() else -1, path)


def _planned(path: Path) -> dict[str, str] | None:
    """A marker's planned cells; None when it is not a marker robench wrote."""
    try:
        if path.stat().st_size > MAX_MARKER_BYTES or not path.is_file():
            return None
        pairs = json.loads(path.read_text(encoding="utf-8")).get("cells")
        cells = {cell: label for cell, label in pairs}
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return cells if all(isinstance(k, str) and isinstance(v, str) for k, v in cells.items()) else None


def unfinished_runs(results_dir: Path, stored: set[str]) -> list[str]:
    """One sentence per run of ``results_dir`` whose marker is left: in progress or
    unfinished, how many of its planned cells the store lacks (``stored``: the stored
    cells), and the first few of them."""
    folder = Path(results_dir) / RUNNING
    lines = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        marker, cells = _marker(path), _planned(path)
        if cells is None:
            lines.append(f"{path} is not a run marker robench wrote: whether a run is unfinished is unknown.")
            continue
        missing = [label for cell, label in cells.items() if cell not in stored]
        state = ("in progress (its process is running)" if marker.alive
                 else "unfinished (its process stopped before the end)")
        if not missing and not marker.alive:
            continue  # every cell stored: a run that stopped after its last write
        shown = "; ".join(missing[:SHOWN_CELLS]) + (" …" if len(missing) > SHOWN_CELLS else "")
        lines.append(f"Run {marker.run_id} is {state}: {len(missing)} of its {len(cells)} cells are not stored"
                     + (f" ({shown})" if missing else "") + "; the same command run again completes it.")
    return lines


__all__ = ["RUNNING", "RunMarker", "unfinished_runs"]
