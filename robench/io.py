"""Atomic file writes, bounded reads and hashing: nothing half-written is ever left
behind, and no read of a file a user can hand robench blocks or reads without bound.

Every write goes to a temporary file in the target's folder and is renamed over the
target, so a crash leaves either the old file or the new one, never a torn one. A
temporary is named ``.<target>.<host>.<pid>.<random>.tmp``, so the next write can tell
one that a killed process left (its PID gone on this host) and remove it.

Every file robench reads from a path a user gives or can replace (a zoo definition, a
card, a checkpoint, ``explained_flags.toml``, weights to hash) is opened by
:func:`open_regular`: a FIFO, a device (``/dev/zero``), a socket or a link to one is
refused before anything is read, so such a read cannot hang or fill memory; small files
are read whole by :func:`read_bounded`, which refuses one past its size bound.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import socket
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable

from robench.errors import DiskFull, UserError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full device, an exceeded quota
FULL_BELOW_BYTES = 64 * 1024  # free space under which a device counts as full: less than a checkpoint or a figure
NONBLOCKING = getattr(os, "O_NONBLOCK", 0)  # POSIX; elsewhere no FIFO can be opened by a path anyway


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
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def process_alive(pid: int) -> bool:
    """True when a process ``pid`` of this host (of this PID namespace) exists."""
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


def _file_kind(mode: int) -> str:
    """What a file of ``mode`` is, for a message: a FIFO, a character device, ..."""
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _refuse_special(path: Path, mode: int, remedy: str) -> None:
    if not stat.S_ISREG(mode):
        raise UserError(f"{path} is {_file_kind(mode)}, not a regular file; {remedy}")


def open_regular(path: Path, remedy: str) -> BinaryIO:
    """``path`` opened for binary reading; a one-line UserError ending in ``remedy`` when it
    cannot be opened or is not a regular file (a FIFO, a device, a socket, a folder, or a
    link to one).

    The path is stat'ed first, so a device is never opened (opening some has effects); it is
    then opened with ``O_NONBLOCK``, so a FIFO put there in between cannot block the open,
    and the opened descriptor is checked again (``fstat``), so what is read is what was
    checked."""
    path = Path(path)
    try:
        _refuse_special(path, os.stat(path).st_mode, remedy)
        fd = os.open(path, os.O_RDONLY | NONBLOCKING | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({exc.strerror or type(exc).__name__}); {remedy}") from None
    try:
        _refuse_special(path, os.fstat(fd).st_mode, remedy)
        if NONBLOCKING:
            os.set_blocking(fd, True)  # a regular file: reads never block anyway; undo the open's flag
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, max_bytes: int, remedy: str) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_regular`); a UserError ending in
    ``remedy`` when it holds more than ``max_bytes`` (checked on its size first, then on
    what is read, so a file growing meanwhile is cut off too)."""
    with open_regular(path, remedy) as f:
        size = os.fstat(f.fileno()).st_size
        data = b"" if size > max_bytes else f.read(max_bytes + 1)
    if size > max_bytes or len(data) > max_bytes:
        raise UserError(f"{path} is larger than the {max_bytes:,} bytes such a file can have; {remedy}")
    return data


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a regular file's bytes (a UserError for a FIFO or a device,
    :func:`open_regular`)."""
    digest = hashlib.sha256()
    with open_regular(path, "put back the file robench wrote there") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
