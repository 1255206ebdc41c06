"""Reader and writer of the idx format of MNIST and Fashion-MNIST (PROTOCOL.md, "Data").

An idx file is a big-endian header — magic ``0x000008DD`` (unsigned bytes, ``DD``
dimensions), then one uint32 per dimension — followed by exactly ``prod(dims)`` bytes.
Images are ``0x00000803`` (N, H, W); labels ``0x00000801`` (N,). Files ending in ``.gz``
are gzip-compressed. Any defect raises a UserError that names the file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from robench.data.base import one_line
from robench.errors import UserError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def _open(path: Path, mode: str):
    return gzip.open(path, mode) if path.name.endswith(".gz") else open(path, mode)


def _read_bytes(path: Path) -> bytes:
    try:
        with _open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read idx file ({one_line(e)})") from None


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """The array stored in idx file ``path``, whose magic must be ``magic``."""
    path = Path(path)
    raw = _read_bytes(path)
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    if len(raw) < 4:
        raise UserError(f"{path}: truncated idx file: {len(raw)} bytes, no header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise UserError(
            f"{path}: bad idx magic 0x{found:08x}; idx {kind} files start with 0x{magic:08x}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated idx header: {len(raw)} bytes, need {header}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(dims)
    if len(raw) != expected:
        defect = "truncated" if len(raw) < expected else f"{len(raw) - expected} extra bytes"
        raise UserError(
            f"{path}: {defect}: {len(raw)} bytes, but shape {dims} needs exactly {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx_images(path: str | Path) -> np.ndarray:
    """(N, H, W) uint8 images from an idx3 file."""
    return read_idx(path, IMAGES_MAGIC)


def read_idx_labels(path: str | Path, num_classes: int = 10) -> np.ndarray:
    """(N,) int64 labels from an idx1 file; each must be in 0..num_classes-1."""
    labels = read_idx(path, LABELS_MAGIC).astype(np.int64)  # (N,) int64
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
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wb") if path.name.endswith(".gz") else open(tmp, "wb") as f:
        f.write(header)
        f.write(array.tobytes())
    os.replace(tmp, path)


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
