"""Reader and writer of the idx format of MNIST and Fashion-MNIST (PROTOCOL.md, "Data").

An idx file is a big-endian header — magic ``0x000008DD`` (unsigned bytes, ``DD``
dimensions), then one uint32 per dimension — followed by exactly ``prod(dims)`` bytes.
Images are ``0x00000803`` (N, H, W); labels ``0x00000801`` (N,). Files ending in ``.gz``
are gzip-compressed. Any defect raises a UserError that names the file.

The header is read first and the data never beyond the size it implies: a plain file
must be exactly that long (checked against its size before any data is read), a .gz
file is decompressed only up to that size (deflate expands at most 1032:1, so a header
needing more than 1032 × the archive's size is refused unread), so neither a lying
header nor a gzip bomb allocates more than the header's shape.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from robench.data.base import one_line
from robench.errors import UserError
from robench.io import atomic_write

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
DEFLATE_MAX_RATIO = 1032  # deflate's largest expansion (RFC 1951: 258 bytes from 2 bits)
GZIP_SLACK = 1 << 16  # gzip headers, trailers and stored blocks on top of that ratio
CHUNK = 1 << 20
READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, struct.error, MemoryError)

DimsCheck = Callable[[tuple[int, ...]], None]


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _kind(magic: int) -> str:
    return "images" if magic == IMAGES_MAGIC else "labels"


def _what(head: bytes) -> str:
    """A hint at what a file starting with ``head`` (not an idx magic) is."""
    if head[:2] == b"\x1f\x8b":
        return " (gzip data in a file not named .gz)"
    if head.isascii() and head.decode().isprintable():
        return f" (text {head.decode()!r}: an HTML page or an error message?)"
    return ""


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes of ``f`` (fewer only at the end of the stream)."""
    parts, left = [], n
    while left:
        chunk = f.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _read_header(f: BinaryIO, path: Path, magic: int) -> tuple[tuple[int, ...], int]:
    """(dims, header length) of an idx stream whose magic must be ``magic``."""
    head = _read_exact(f, 4)
    if len(head) < 4:
        raise UserError(f"{path}: truncated idx file: {len(head)} bytes, no header")
    found = int.from_bytes(head, "big")
    if found != magic:
        raise UserError(
            f"{path}: bad idx magic 0x{found:08x}{_what(head)}; idx {_kind(magic)} files start "
            f"with 0x{magic:08x}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    rest = _read_exact(f, 4 * ndim)
    if len(rest) < 4 * ndim:
        raise UserError(f"{path}: truncated idx header: {4 + len(rest)} bytes, need {header}")
    return struct.unpack(f">{ndim}I", rest), header


def _check_size(path: Path, dims: tuple[int, ...], header: int) -> int:
    """The data bytes ``dims`` need, refused when the file cannot hold them."""
    need = math.prod(dims)
    size = path.stat().st_size
    if not path.name.endswith(".gz"):
        if size != header + need:
            defect = "truncated" if size < header + need else f"{size - header - need} extra bytes"
            raise UserError(
                f"{path}: {defect}: {size} bytes, but shape {dims} needs exactly {header + need}"
            )
    elif header + need > DEFLATE_MAX_RATIO * size + GZIP_SLACK:
        raise UserError(
            f"{path}: header shape {dims} needs {header + need} bytes, more than this "
            f"{size}-byte gzip file can hold (deflate expands at most {DEFLATE_MAX_RATIO}:1); "
            "the file is corrupt"
        )
    return need


def _read_data(f: BinaryIO, path: Path, dims: tuple[int, ...], header: int) -> np.ndarray:
    """The ``prod(dims)`` data bytes after the header, in chunks: never more than the
    stream really holds, nor than the header implies."""
    need = math.prod(dims)
    data = bytearray()
    while len(data) < need:
        chunk = f.read(min(CHUNK, need - len(data)))
        if not chunk:
            raise UserError(
                f"{path}: truncated: {header + len(data)} bytes, but shape {dims} needs "
                f"exactly {header + need}"
            )
        data += chunk
    if f.read(1):
        raise UserError(f"{path}: extra bytes after the {header + need} that shape {dims} needs")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)  # (*dims) uint8, writable


def read_idx(path: str | Path, magic: int, check_dims: DimsCheck | None = None) -> np.ndarray:
    """The array stored in idx file ``path``, whose magic must be ``magic``.

    ``check_dims(dims)`` may refuse the header's dimensions (by raising a UserError)
    before any data is read or allocated.
    """
    path = Path(path)
    try:
        with _open(path) as f:
            dims, header = _read_header(f, path, magic)
            if check_dims is not None:
                check_dims(dims)
            _check_size(path, dims, header)
            return _read_data(f, path, dims, header)
    except READ_ERRORS as e:
        raise UserError(f"{path}: cannot read idx file ({one_line(e)})") from None


def read_idx_images(path: str | Path, check_dims: DimsCheck | None = None) -> np.ndarray:
    """(N, H, W) uint8 images from an idx3 file (``check_dims`` as in :func:`read_idx`)."""
    return read_idx(path, IMAGES_MAGIC, check_dims)


def read_idx_labels(
    path: str | Path, num_classes: int = 10, check_dims: DimsCheck | None = None
) -> np.ndarray:
    """(N,) int64 labels from an idx1 file; each must be in 0..num_classes-1."""
    labels = read_idx(path, LABELS_MAGIC, check_dims).astype(np.int64)  # (N,) int64
    if labels.size and labels.max() >= num_classes:
        raise UserError(
            f"{Path(path)}: label {int(labels.max())} out of range; valid labels are "
            f"0..{num_classes - 1}"
        )
    return labels


def _write(path: str | Path, magic: int, array: np.ndarray) -> None:
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)

    def write(tmp: Path) -> None:
        with gzip.open(tmp, "wb") if path.name.endswith(".gz") else open(tmp, "wb") as f:
            f.write(header)
            f.write(array.tobytes())

    atomic_write(path, write)


def write_idx_images(path: str | Path, array: np.ndarray) -> None:
    """Write (N, H, W) uint8 ``array`` as an idx3 file (gzip when ``path`` ends .gz)."""
    if np.ndim(array) != 3:
        raise ValueError(f"idx images are (N, H, W); got shape {np.shape(array)}")
    _write(path, IMAGES_MAGIC, array)


def write_idx_labels(path: str | Path, array: np.ndarray) -> None:
    """Write (N,) labels 0..255 as an idx1 file (gzip when ``path`` ends .gz)."""
    if np.ndim(array) != 1:
        raise ValueError(f"idx labels are (N,); got shape {np.shape(array)}")
    _write(path, LABELS_MAGIC, array)
