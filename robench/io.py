"""Atomic file writes and hashing: nothing half-written is ever left behind.

Every write goes to a temporary file in the target's folder and is renamed over the
target, so a crash leaves either the old file or the new one, never a torn one. A
temporary is named ``.<target>.<host>.<pid>.<random>.tmp``, so the next write can tell
one that a killed process left (its PID gone on this host) and remove it.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

from robench.errors import DiskFull

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full device, an exceeded quota
FULL_BELOW_BYTES = 64 * 1024  # free space under which a device counts as full: less than a checkpoint or a figure


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it over ``path``.
    Temporaries of ``path`` that a killed process of this host left are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    fd, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(path.name) + f"{os.getpid()}.", suffix=".tmp",
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise DiskFull(path) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _temporary_prefix(name: str) -> str:
    """``.<name>.<host>.``: a temporary's name goes on with the writer's PID and a random part."""
    return f".{name}.{socket.gethostname()}."


def temporary_path(path: Path) -> Path:
    """A new temporary's path beside ``path``, named as :func:`atomic_write` names its own."""
    path = Path(path)
    return path.with_name(f"{_temporary_prefix(path.name)}{os.getpid()}.{uuid.uuid4().hex}.tmp")


def remove_stale_temporaries(folder: Path, name: str = "*") -> list[Path]:
    """Remove the temporaries of ``name`` (any name: ``*``) in ``folder`` whose writer, a
    process of this host, is gone (a kill between writing and renaming leaves one).
    Another host's temporaries (a shared file system) and a live process's are kept;
    processes of other PID namespaces that share this host name and folder (containers
    on one volume) look gone, so such containers must not write one folder at once."""
    removed = []
    pattern = "*" if name == "*" else glob.escape(name)
    for tmp in Path(folder).glob(f".{pattern}.{glob.escape(socket.gethostname())}.*.tmp*"):  # and SQLite's -wal, -shm
        pid = tmp.name[: tmp.name.rindex(".tmp")].split(".")[-2]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def no_space_left(folder: Path) -> bool:
    """True when the device holding ``folder`` has less than :data:`FULL_BELOW_BYTES`
    free for this user (how an I/O error that does not say why is told to be a full device)."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < FULL_BELOW_BYTES


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
