"""One process at a time trains a zoo member: a lock file beside its folder.

Two ``robench`` processes training the same member into one zoo (two ``train zoo`` runs,
or ``run`` beside ``train zoo``) would each write its weights and card, and the last
writer would win silently. The first takes an exclusive ``flock`` on
``<zoo>/<dataset>/.<member>.lock`` until the member is saved; the second waits for it,
then finds the member trained and reuses it when it was trained as it would train it, or
refuses it when not (:func:`robench.train.members.train_member`). The kernel releases
the lock of a killed process, so a kill never leaves a member locked. The holder removes
the file when it is done; a waiter that then holds a lock on a removed file takes the
new one instead, so two processes never both hold the member.
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from robench.errors import UserError

log = logging.getLogger("robench")


def _lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write into {path.parent} ({exc.strerror}); give a zoo folder robench can "
                        "write with --zoo-dir") from None


def _take(fd: int, path: Path, member: str) -> None:
    """Block until ``fd`` holds the exclusive lock, saying so when another process has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.warning("%s is being trained by another robench process; waiting for it", member)
        fcntl.flock(fd, fcntl.LOCK_EX)


def _still_there(fd: int, path: Path) -> bool:
    """True when ``path`` is still the file ``fd`` locks (not removed by the last holder)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
    except FileNotFoundError:
        return False


@contextmanager
def member_lock(folder: Path) -> Iterator[None]:
    """Hold the training lock of the member in ``folder`` for the block."""
    path = _lock_path(Path(folder))
    while True:
        fd = _open(path)
        _take(fd, path, Path(folder).name)
        if _still_there(fd, path):
            break
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
