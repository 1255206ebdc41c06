"""Reading numpy arrays out of a pickle without running any of it (CIFAR-10 batches,
PROTOCOL.md "Data").

A pickle is a program; this reader runs none of its calls. It works in three steps:

1. :func:`scan` walks the opcodes with :mod:`pickletools` (which reads every length
   prefix against the bytes really there) and tracks the stack depth, refusing what
   would make the C unpickler allocate more than the file or take more than linear
   time: a length running past the end of the data, a memo index larger than the
   opcodes seen, a frame longer than the rest, more opcodes than the caller allows, a
   stack underflow, integers of 2**64 or more, sets, and more than :data:`MAX_ENTRIES`
   dict entries in all (keys
   built to share one hash, say colliding ints or tuples, make each insertion scan all
   the others: quadratic time; a batch has four keys).
2. :class:`RestrictedUnpickler` resolves only the globals numpy's array pickles name
   (``numpy.core``/``numpy._core`` ``multiarray._reconstruct`` and
   ``numeric._frombuffer``, ``numpy.dtype``, ``numpy.ndarray`` and ``_codecs.encode``)
   and maps each to an inert :class:`Deferred` record of its arguments and state;
   ``_codecs.encode`` becomes a Latin-1 encoder, the only codec array pickles use. Any
   other global is a UserError naming the file; numpy itself is never called.
3. :func:`to_array` builds a numpy array from such a record after checking it: an
   integer dtype, non-negative dimensions, and a buffer of exactly the bytes the
   shape needs.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from pathlib import Path

import numpy as np

from robench.data.base import one_line
from robench.errors import UserError

MAX_ENTRIES = 1024  # dict entries in all; a CIFAR-10 batch has 4
INT_LIMIT = 2**64  # no number in an array pickle is this large (shapes, labels, versions)
INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
SET_OPS = {"EMPTY_SET", "ADDITEMS", "FROZENSET"}
# The integer dtypes an array of a CIFAR batch may have (pixels uint8, labels any int).
DTYPES = {f"{kind}{size}" for kind in "iu" for size in (1, 2, 4, 8)}
ENDIAN = {"|", "<", ">", "="}
MAX_DIMS = 64  # numpy's NPY_MAXDIMS
LOAD_ERRORS = (pickle.UnpicklingError, ValueError, TypeError, EOFError, KeyError, IndexError,
               AttributeError, UnicodeError, OverflowError, MemoryError, RecursionError)


class Deferred:
    """A call the pickle asked for, recorded instead of made: ``kind``, its ``args`` and
    the state a later BUILD gave it."""

    def __init__(self, kind: str, *args: object) -> None:
        self.kind = kind
        self.args = args
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class _Global:
    """The stand-in for one allowed global: calling it records a :class:`Deferred`
    (``encode`` encodes Latin-1 instead). Immutable, so a BUILD cannot alter it."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        object.__setattr__(self, "kind", kind)

    def __setattr__(self, name: str, value: object) -> None:
        raise pickle.UnpicklingError(f"cannot set {name} on numpy.{self.kind}")

    def __call__(self, *args: object) -> Deferred | bytes:
        return _latin1(*args) if self.kind == "encode" else Deferred(self.kind, *args)


NDARRAY = _Global("ndarray")  # only ever an argument of _reconstruct


def _latin1(text: object = None, encoding: object = "utf-8", *rest: object) -> bytes:
    """``_codecs.encode`` as array pickles use it: a str of bytes 0..255, in Latin-1."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or rest:
        raise pickle.UnpicklingError(f"_codecs.encode of a {type(text).__name__}; valid: a str in latin1")
    return text.encode("latin1")


def _allowed() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): NDARRAY,
        ("numpy", "dtype"): _Global("dtype"),
        ("_codecs", "encode"): _Global("encode"),
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = _Global("reconstruct")
        allowed[(f"{module}.numeric", "_frombuffer")] = _Global("frombuffer")  # protocol 5
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array-building globals, each to an inert
    stand-in (:class:`Deferred`); any other global is a UserError naming ``path``."""

    def __init__(self, file, path: Path, what: str) -> None:
        super().__init__(file, encoding="bytes")  # Python 2 strs stay bytes
        self.path = path
        self.what = what
        self.allowed = _allowed()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            named = " ".join(f"{module}.{name}".split())[:100]  # STACK_GLOBAL names are any str
            raise UserError(
                f"{self.path}: pickle refers to {named}, which is not allowed; "
                f"a {self.what} may hold only numpy arrays, lists and bytes"
            ) from None

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _entries(name: str, items: int) -> int:
    """Dict entries an opcode adds, given the items it takes from above its mark."""
    if name in ("SETITEMS", "DICT"):
        return items // 2
    return 1 if name == "SETITEM" else 0


def scan(raw: bytes, max_ops: int) -> None:
    """Check the opcodes of pickle ``raw`` (see the module docstring); ValueError if bad."""
    depth, marks, entries = 0, [], 0  # stack items, the depth at each open MARK
    for ops, (op, arg, pos) in enumerate(pickletools.genops(io.BytesIO(raw)), 1):
        name, before, after = op.name, op.stack_before, op.stack_after
        if ops > max_ops:
            raise ValueError(f"more than {max_ops} opcodes")
        if name in SET_OPS:
            raise ValueError(f"set opcode {name} at byte {pos}")
        if name in INT_OPS and isinstance(arg, int) and abs(arg) >= INT_LIMIT:
            raise ValueError(f"integer {name} at byte {pos} out of range")
        if name in PUT_OPS and not 0 <= arg < ops:
            raise ValueError(f"memo index {arg} at byte {pos}")
        if name == "FRAME" and arg > len(raw) - pos:
            raise ValueError(f"frame of {arg} bytes at byte {pos} runs past the end")
        items = 0
        if pickletools.markobject in before or (name == "POP" and marks and depth == marks[-1]):
            if not marks:
                raise ValueError(f"{name} at byte {pos} without a MARK")
            mark = marks.pop()
            items, depth = depth - mark, mark
            taken = before.index(pickletools.markobject) if name != "POP" else 0
        else:
            taken = len(before)
        if depth - taken < (marks[-1] if marks else 0):
            raise ValueError(f"{name} at byte {pos} takes more than the stack holds")
        entries += _entries(name, items)
        if entries > MAX_ENTRIES:
            raise ValueError(f"more than {MAX_ENTRIES} dict entries")
        depth -= taken
        if pickletools.markobject in after:
            marks.append(depth)
        else:
            depth += len(after)
        if name == "STOP":
            return
    raise ValueError("no STOP opcode")


def load(path: Path, max_bytes: int, max_ops: int, what: str) -> object:
    """The object pickled in ``path``, its arrays left as :class:`Deferred` records.

    A file over ``max_bytes`` or over ``max_ops`` opcodes is refused unread; every
    failure is a UserError naming ``path``.
    """
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UserError(f"{path}: {size:,} bytes, more than a {what} can take ({max_bytes:,})")
        raw = path.read_bytes()
        scan(raw, max_ops)
        return RestrictedUnpickler(io.BytesIO(raw), path, what).load()
    except UserError:
        raise
    except (OSError, *LOAD_ERRORS) as e:  # truncated, garbage, hostile: all corrupt files
        raise UserError(f"{path}: corrupt {what} ({one_line(e)})") from None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin1")
    return value if isinstance(value, str) else None


def _dtype(value: object) -> np.dtype:
    """The dtype a ``numpy.dtype(code, align, copy)`` record with state describes."""
    if not isinstance(value, Deferred) or value.kind != "dtype" or not value.args:
        raise ValueError("array dtype is not a numpy.dtype")
    code = _text(value.args[0])
    if code not in DTYPES:
        raise ValueError(f"dtype {code!r:.20} is not an integer dtype")
    state = value.state
    endian = _text(state[1]) if isinstance(state, tuple) and len(state) > 1 else "|"
    if endian not in ENDIAN:
        raise ValueError(f"dtype byte order {endian!r:.20}; valid: |, <, >, =")
    return np.dtype(code).newbyteorder("=" if endian == "|" else endian)


def _shape(value: object) -> tuple[int, ...]:
    """``value`` as an array shape: a tuple of at most :data:`MAX_DIMS` ints in
    0..2**63-1 (numpy's limits; their product is then cheap to compute)."""
    if (not isinstance(value, tuple) or len(value) > MAX_DIMS
            or not all(type(d) is int and 0 <= d < 2**63 for d in value)):
        raise ValueError(f"array shape is not a tuple of at most {MAX_DIMS} sizes")
    return value


def _from_bytes(buffer: object, dtype: np.dtype, shape: tuple[int, ...], fortran: bool) -> np.ndarray:
    """A writable array of ``shape`` from ``buffer``, which must hold exactly its bytes."""
    if not isinstance(buffer, (bytes, bytearray)):
        raise ValueError(f"array data is a {type(buffer).__name__}, not bytes")
    if len(buffer) != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"array data has {len(buffer)} bytes, shape {shape} needs "
                         f"{math.prod(shape) * dtype.itemsize}")
    flat = np.frombuffer(buffer, dtype=dtype).copy()  # (prod(shape),)
    return flat.reshape(shape, order="F" if fortran else "C")


def _reconstructed(value: Deferred) -> np.ndarray:
    """``_reconstruct(ndarray, (0,), 'b')`` then BUILD with (version, shape, dtype,
    fortran, data): numpy's array pickle up to protocol 4."""
    if not value.args or value.args[0] is not NDARRAY:
        raise ValueError("_reconstruct of something other than numpy.ndarray")
    state = value.state
    if isinstance(state, tuple) and len(state) == 5:
        state = state[1:]  # drop the version
    if not isinstance(state, tuple) or len(state) != 4:
        raise ValueError("array state is not (shape, dtype, fortran, data)")
    shape, dtype, fortran, data = state
    return _from_bytes(data, _dtype(dtype), _shape(shape), bool(fortran))


def _frombuffer(value: Deferred) -> np.ndarray:
    """``_frombuffer(buffer, dtype, shape, order)``: numpy's protocol-5 array pickle."""
    if len(value.args) != 4 or value.state is not None:
        raise ValueError("_frombuffer needs (buffer, dtype, shape, order)")
    buffer, dtype, shape, order = value.args
    if _text(order) not in ("C", "F"):
        raise ValueError("array order is not C or F")
    return _from_bytes(buffer, _dtype(dtype), _shape(shape), _text(order) == "F")


def to_array(value: object) -> np.ndarray | None:
    """The array a :class:`Deferred` record describes; None when ``value`` is not one.
    ValueError when the record is not a well-formed integer array."""
    if not isinstance(value, Deferred):
        return None
    if value.kind == "reconstruct":
        return _reconstructed(value)
    if value.kind == "frombuffer":
        return _frombuffer(value)
    raise ValueError(f"a bare numpy {value.kind} where an array belongs")
