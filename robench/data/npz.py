"""Reading arrays out of an ``.npz`` archive with bounded memory and no pickles
(Imagenet32, PROTOCOL.md "Data").

An npz file is a zip archive of ``.npy`` members: a magic and version, a header dict
(shape, fortran_order, descr), then exactly ``prod(shape) × itemsize`` bytes. Each
member's header is read first (``numpy.lib.format.read_magic`` and
``read_array_header_1_0`` / ``_2_0``, after its length is checked) and its shape × item
size compared with the member's size in the zip directory before any data is read; a
member's size is in turn bounded by its compressed size (stored: equal; deflated: at
most 1032:1; other methods are refused) and that by the archive's size. Object dtypes
are refused (the same as ``numpy.load(..., allow_pickle=False)``), so nothing is
unpickled. Data are read in chunks straight into the destination array. Every failure
is a UserError naming the file.
"""

from __future__ import annotations

import io
import math
import struct
import tokenize
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robench.data.base import one_line
from robench.errors import UserError

MAX_HEADER = 10_000  # numpy's own limit of a safe header (these are < 128 bytes)
CHUNK = 1 << 22
DEFLATE_MAX_RATIO = 1032
COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error,
               ValueError, TypeError, KeyError, struct.error, SyntaxError, UnicodeError,
               NotImplementedError, RuntimeError, OverflowError, MemoryError, RecursionError,
               tokenize.TokenError)


@dataclass(frozen=True)
class Member:
    """The header of one ``.npy`` member: where it is and what its data are."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int  # bytes of magic + header before the data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _read_exact(fp, n: int) -> bytes:
    """Exactly ``n`` bytes of ``fp`` in bounded chunks; ValueError when it ends first."""
    parts, left = [], n
    while left:
        chunk = fp.read(min(left, CHUNK))
        if not chunk:
            raise ValueError(f"member ends {left} bytes early")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _check_info(info: zipfile.ZipInfo, archive_size: int) -> None:
    """The member's sizes must be possible for this archive (before it is opened)."""
    if info.compress_type not in COMPRESSIONS:
        raise ValueError(f"{info.filename} uses zip compression {info.compress_type}; "
                         "valid: stored or deflated")
    if info.compress_size > archive_size:
        raise ValueError(f"{info.filename} claims {info.compress_size} compressed bytes in a "
                         f"{archive_size}-byte archive")
    limit = info.compress_size * (DEFLATE_MAX_RATIO if info.compress_type else 1)
    if info.file_size > limit:
        raise ValueError(f"{info.filename} claims {info.file_size} bytes from "
                         f"{info.compress_size} compressed")


def _parse_header(fp) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran, dtype, bytes before the data) of the .npy stream ``fp``."""
    prefix = _read_exact(fp, 8)
    version = np.lib.format.read_magic(io.BytesIO(prefix))
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"npy format version {version[0]}.{version[1]}; valid: 1.0, 2.0")
    length_format = "<H" if version == (1, 0) else "<I"
    length_bytes = _read_exact(fp, struct.calcsize(length_format))
    (length,) = struct.unpack(length_format, length_bytes)
    if length > MAX_HEADER:
        raise ValueError(f"npy header of {length} bytes; valid: at most {MAX_HEADER}")
    header = io.BytesIO(length_bytes + _read_exact(fp, length))
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    with warnings.catch_warnings():  # a header Python 2 wrote (128116L) is read quietly
        warnings.simplefilter("ignore", UserWarning)
        shape, fortran, dtype = read(header, max_header_size=MAX_HEADER)
    if any(d < 0 for d in shape):
        raise ValueError(f"npy shape {shape} has a negative size")
    if dtype.hasobject:
        raise ValueError(f"{dtype} array holds Python objects (pickles are not allowed)")
    return shape, fortran, dtype, 8 + len(length_bytes) + length


class Archive:
    """An opened npz file: member headers and bounded reads. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.size = path.stat().st_size
            self.zip = zipfile.ZipFile(path)
        except READ_ERRORS as e:
            raise self.error(e) from None

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.zip.close()

    def error(self, e: BaseException) -> UserError:
        return UserError(f"{self.path}: corrupt npz file ({one_line(e)})")

    def files(self) -> list[str]:
        """The array names, as ``numpy.load(...).files`` lists them."""
        return [n[: -len(".npy")] if n.endswith(".npy") else n for n in self.zip.namelist()]

    def _info(self, key: str) -> zipfile.ZipInfo:
        names = self.zip.namelist()
        name = f"{key}.npy" if f"{key}.npy" in names else key
        return self.zip.getinfo(name)

    def member(self, key: str) -> Member:
        """The header of array ``key``, its size checked against the zip directory."""
        try:
            info = self._info(key)
            _check_info(info, self.size)
            with self.zip.open(info) as fp:
                shape, fortran, dtype, offset = _parse_header(fp)
            member = Member(info, shape, dtype, fortran, offset)
            if offset + member.nbytes != info.file_size:
                raise ValueError(
                    f"{info.filename} is {info.file_size} bytes, but its header's shape {shape} "
                    f"of {dtype} needs {offset + member.nbytes}"
                )
            return member
        except READ_ERRORS as e:
            raise self.error(e) from None

    def read(self, member: Member, out: np.ndarray | None = None) -> np.ndarray:
        """The data of ``member`` as an array of its shape; filled into ``out`` (a
        C-contiguous array of that shape and dtype) and returned as it when given."""
        try:
            order = member.shape[::-1] if member.fortran else member.shape
            target = out if out is not None and not member.fortran else np.empty(order, member.dtype)
            self._fill(member, memoryview(target.reshape(-1).view(np.uint8)))
            array = target.T if member.fortran else target  # (*member.shape)
            if out is not None and array is not out:
                out[...] = array
                return out
            return array
        except READ_ERRORS as e:
            raise self.error(e) from None

    def _fill(self, member: Member, view: memoryview) -> None:
        """Read the member's data bytes into ``view`` (exactly ``member.nbytes`` long)."""
        with self.zip.open(member.info) as fp:
            _read_exact(fp, member.offset)
            pos = 0
            while pos < member.nbytes:
                chunk = fp.read(min(member.nbytes - pos, CHUNK))
                if not chunk:
                    raise ValueError(f"{member.info.filename} ends {member.nbytes - pos} bytes early")
                view[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
            if fp.read(1):
                raise ValueError(f"{member.info.filename} has bytes after its data")
