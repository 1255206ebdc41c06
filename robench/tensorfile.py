"""Reading a safetensors file that robench wrote (member weights, training checkpoints)
only after its header says it holds the tensors expected.

The header (an 8-byte length, then JSON naming each tensor's dtype, shape and byte
range) is read first, bounded, and compared with the tensors the caller expects (a
model built on the ``meta`` device gives them without allocating anything). A file that
is not safetensors (a pickle, a zip, a web page), is cut short, or holds other tensors
(another architecture, another class count, a tensor claiming terabytes) is refused
with a one-line :class:`~robench.errors.UserError` before any tensor data is read.
Nothing is ever unpickled.

The header's ``__metadata__`` (string keys to string values, as safetensors allows) is
read with the rest of the header (:func:`read_header_and_metadata`, :func:`check_fit`):
a member's weights carry the training configuration of their card there
(:mod:`robench.binding`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from robench.errors import UserError
from robench.jsonfile import one_line

HEADER_LIMIT = 100 * 2**20  # safetensors' own limit on the header's length
MAX_DIMS = 64  # numpy's limit (no model has more); a longer shape is refused before its size is computed
DTYPES = {  # safetensors' dtype names and their sizes in bytes
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
TORCH_NAMES = {torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.float16: "F16",
               torch.bfloat16: "BF16", torch.int32: "I32", torch.float32: "F32", torch.int64: "I64",
               torch.float64: "F64"}

Spec = tuple[str, tuple[int, ...]]  # (safetensors dtype name, shape)


class NotSafetensors(Exception):
    """The file is not a well-formed safetensors file (the message says why)."""


def spec_of(tensor: torch.Tensor) -> Spec:
    """The (dtype name, shape) a safetensors header gives ``tensor``."""
    return TORCH_NAMES.get(tensor.dtype, str(tensor.dtype)), tuple(tensor.shape)


def read_header_and_metadata(path: Path) -> tuple[dict[str, Spec], dict[str, str] | None]:
    """(name → (dtype, shape) of every tensor, the ``__metadata__`` or None) of the
    safetensors file ``path``, from one read of its header.

    Raises :class:`NotSafetensors` when the header is absent, longer than the file or
    :data:`HEADER_LIMIT`, not a JSON object, describes tensors whose byte ranges do not
    fit their dtype and shape or lie outside the file, or has a ``__metadata__`` that is
    not an object of strings (which safetensors itself refuses)."""
    header, data_size = _header_object(path)
    metadata = header.get("__metadata__")
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(isinstance(v, str) for v in metadata.values())):
        raise NotSafetensors("its __metadata__ is not an object of strings")
    tensors = {name: _entry(name, info, data_size) for name, info in header.items() if name != "__metadata__"}
    return tensors, metadata


def _header_object(path: Path) -> tuple[dict, int]:
    """(the header's JSON object, the size of the data after it), read within
    :data:`HEADER_LIMIT` and the file's size."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(8)
        if len(prefix) < 8:
            raise NotSafetensors(f"{size} bytes, shorter than a safetensors header")
        length = int.from_bytes(prefix, "little")
        if length > min(HEADER_LIMIT, size - 8):
            raise NotSafetensors(f"its first 8 bytes give a header of {length} bytes, beyond the file's {size}")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise NotSafetensors("its header is not JSON") from None
    if not isinstance(header, dict):
        raise NotSafetensors("its header is not a JSON object")
    return header, size - 8 - length


def _entry(name: str, info: object, data_size: int) -> Spec:
    """The (dtype, shape) of one header entry, checked against the data's size."""
    if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or info["dtype"] not in DTYPES:
        raise NotSafetensors(f"tensor {name!r} has no known dtype")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or not all(type(d) is int and 0 <= d < 2**64 for d in shape)):
        raise NotSafetensors(f"tensor {name!r} has no valid shape")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size):
        raise NotSafetensors(f"tensor {name!r} lies outside the file")
    if offsets[1] - offsets[0] != math.prod(shape) * DTYPES[info["dtype"]]:
        raise NotSafetensors(f"tensor {name!r} claims shape {shape} but {offsets[1] - offsets[0]} bytes")
    return info["dtype"], tuple(shape)


def mismatch(found: dict[str, Spec], expected: Callable[[str], Spec | None], required: set[str]) -> str | None:
    """What is wrong with the tensors ``found`` (a missing ``required`` name, a name that
    ``expected`` does not know, another dtype or shape), or None when they fit."""
    missing = sorted(required - set(found))
    if missing:
        return f"it lacks tensor {missing[0]!r}"
    for name, spec in sorted(found.items()):
        want = expected(name)
        if want is None:
            return f"it holds tensor {name!r}, which is not expected"
        if spec != want:
            return f"tensor {name!r} is {_describe(spec)}, not {_describe(want)}"
    return None


def _describe(spec: Spec) -> str:
    return f"{spec[0]} of shape {list(spec[1])}"


def load_checked(path: Path, expected: Callable[[str], Spec | None], required: set[str], what: str,
                 remedy: str) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` once its header fits ``expected``/``required``
    (:func:`mismatch`); a one-line UserError naming the file, ``what`` it should fit
    and the ``remedy`` otherwise."""
    check_fit(path, expected, required, what, remedy)
    return read_tensors(path, remedy)


def check_fit(path: Path, expected: Callable[[str], Spec | None], required: set[str], what: str,
              remedy: str) -> dict[str, str] | None:
    """The ``__metadata__`` of ``path`` once its header fits ``expected``/``required``
    (:func:`mismatch`), no tensor read; a one-line UserError as :func:`load_checked` otherwise."""
    try:
        tensors, metadata = read_header_and_metadata(path)
    except NotSafetensors as exc:
        raise UserError(f"{path} is not a readable safetensors file ({exc}); {remedy}") from None
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({exc.strerror}); {remedy}") from None
    problem = mismatch(tensors, expected, required)
    if problem:
        raise UserError(f"{path} does not fit {what}: {problem}; {remedy}")
    return metadata


def read_tensors(path: Path, remedy: str) -> dict[str, torch.Tensor]:
    """Every tensor of ``path`` (a file :func:`check_fit` passed); a one-line UserError
    when safetensors cannot read it."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path} is not a readable safetensors file ({one_line(exc)}); {remedy}") from None
