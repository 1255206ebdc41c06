"""Every dataset reader fed hostile bytes: the outcome is a valid result or a
one-line UserError naming the file, never another exception, a hang or a large
allocation.

Readers: idx images, idx labels, idx .gz (``robench.data.idx``), a CIFAR-10 batch
pickle (``cifar10.read_batch``), an Imagenet32 npz (``imagenet32.read_files``) and the
imagenet32 loader reading a damaged val or train file among intact ones. Each is fed
(a) random bytes, (b) a valid tiny file with random byte flips / overwrites /
insertions / deletions, biased to the head and tail where headers and directories live
(for npz files also inside a .npy member of a well-formed zip), (c) a valid tiny file
truncated at a length from each class (inside the header, anywhere, in the last bytes;
always refused) and (d) well-formed files whose headers claim huge dimensions, lengths
or sizes.

Bounds, per example: time by Hypothesis' deadline (2 s); memory by :mod:`tracemalloc`,
whose peak over the read must stay below 64 MiB. tracemalloc sees every Python and
numpy allocation (numpy reports its data buffers to it), which is where the readers
allocate from what a file claims; torch's allocator is not traced, and the one torch
allocation (imagenet32's image tensor) is sized from the checked official count, not
from the file. A resource limit (RLIMIT_AS) was not used: it would bound the whole
pytest process, whose torch import alone maps gigabytes of address space.

Examples are fixed (``derandomize=True``, no example database) and counted in
:data:`FUZZ_CASES`, so a run is the same on every machine.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tracemalloc
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fileformats import python2_cifar_batch, write_imagenet32
from robench.data import cifar10, imagenet32, load_dataset
from robench.data.base import Split
from robench.data.idx import read_idx_images, read_idx_labels
from robench.errors import UserError

MEMORY_LIMIT = 64 << 20  # tracemalloc peak per example
DEADLINE = timedelta(seconds=2)
KINDS = ("random", "mutated", "truncated", "huge")
# Examples per reader and kind of input; FUZZ_CASES sums them per reader.
EXAMPLES = {
    "idx-images": {"random": 50, "mutated": 200, "truncated": 50, "huge": 100},
    "idx-labels": {"random": 50, "mutated": 200, "truncated": 50, "huge": 100},
    "idx-gz": {"random": 50, "mutated": 200, "truncated": 50, "huge": 100},
    "cifar-batch": {"random": 100, "mutated": 300, "truncated": 100, "huge": 200},
    "imagenet32-npz": {"random": 50, "mutated": 300, "truncated": 50, "huge": 200},
    "imagenet32-loader": {"random": 20, "mutated": 100, "truncated": 30, "huge": 60},
}
FUZZ_CASES = {reader: sum(kinds.values()) for reader, kinds in EXAMPLES.items()}
N_CIFAR, N_NPZ = 2, 2  # images in the tiny CIFAR batch and npz file


# ------------------------------------------------------------------------- valid tiny files


def _pixels(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size), dtype=np.uint8)


def _idx(magic: int, dims: tuple[int, ...], data: bytes) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims) + data


IDX_IMAGES = _idx(0x803, (3, 28, 28), _pixels(3, 784).tobytes())
IDX_LABELS = _idx(0x801, (100,), (np.arange(100) % 10).astype(np.uint8).tobytes())  # more lengths than examples


def _cifar_batches() -> list[bytes]:
    """A tiny batch as Python 2 wrote the real ones and as protocols 0, 2 and 5 write it."""
    x, y = _pixels(N_CIFAR, 3072, 1), [3, 9]
    batch = {b"batch_label": b"tiny", b"data": x, b"labels": y}
    return [python2_cifar_batch(x, y, b"tiny")] + [pickle.dumps(batch, protocol=p) for p in (0, 2, 5)]


def _npz(compressed: bool, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _npz_files() -> list[bytes]:
    x = _pixels(N_NPZ, 3072, 2)
    x[:, ::2] = 7  # compressible, so the deflated member is not stored whole
    labels = np.array([1, 1000])
    return [_npz(False, data=x, labels=labels), _npz(True, data=x, labels=labels)]


def _npy_members() -> dict[str, bytes]:
    """The .npy members of the tiny npz file, as np.save writes them."""
    members = {}
    with np.load(io.BytesIO(_npz_files()[0])) as npz:
        for key in npz.files:
            buffer = io.BytesIO()
            np.save(buffer, npz[key])
            members[f"{key}.npy"] = buffer.getvalue()
    return members


CIFAR_BATCHES = _cifar_batches()
NPZ_FILES = _npz_files()
NPY_MEMBERS = _npy_members()


# ------------------------------------------------------------------------------ the readers


class Reader:
    """One reader under test: the files it reads (names under its folder), valid inputs
    (``bases[i]`` is a valid ``files[min(i, len(files) - 1)]``), how to read a folder
    and what a valid result must satisfy."""

    def __init__(self, name: str, files: list[str], bases: list[bytes],
                 read: Callable[[Path], object], check: Callable[[object], None]) -> None:
        self.name, self.files, self.bases, self.read, self.check = name, files, bases, read, check

    def file_of(self, base: int) -> str:
        return self.files[min(base, len(self.files) - 1)]


def _check_idx_images(x: np.ndarray) -> None:
    assert x.dtype == np.uint8 and x.ndim == 3


def _check_idx_labels(y: np.ndarray) -> None:
    assert y.dtype == np.int64 and y.ndim == 1 and (y.size == 0 or (y.min() >= 0 and y.max() <= 9))


def _check_split(n: int, classes: int) -> Callable[[Split], None]:
    def check(split: Split) -> None:
        assert len(split) == n and tuple(split.x.shape) == (n, 3, 32, 32)
        assert int(split.y.min()) >= 0 and int(split.y.max()) < classes

    return check


def _check_loader(ds) -> None:
    assert (len(ds.train), len(ds.test)) == (10, 2) and ds.val is ds.test


def _imagenet32_root(root: Path) -> list[bytes]:
    """A tiny Imagenet32 root: ten train files of one image, a val file of two; the
    valid bytes of its val file and its third train file (the ones the fuzzer damages)."""
    write_imagenet32(root, per_file=1, n_val=2)
    return [(root / name).read_bytes() for name in LOADER_FILES]


LOADER_FILES = ["Imagenet32_val_npz/val_data.npz", "Imagenet32_train_npz/train_data_batch_3.npz"]
READERS = {
    "idx-images": Reader("idx-images", ["train-images-idx3-ubyte"], [IDX_IMAGES],
                         lambda d: read_idx_images(d / "train-images-idx3-ubyte"), _check_idx_images),
    "idx-labels": Reader("idx-labels", ["train-labels-idx1-ubyte"], [IDX_LABELS],
                         lambda d: read_idx_labels(d / "train-labels-idx1-ubyte"), _check_idx_labels),
    "idx-gz": Reader("idx-gz", ["train-images-idx3-ubyte.gz"], [gzip.compress(IDX_IMAGES)],
                     lambda d: read_idx_images(d / "train-images-idx3-ubyte.gz"), _check_idx_images),
    "cifar-batch": Reader("cifar-batch", ["data_batch_1"], CIFAR_BATCHES,
                          lambda d: cifar10.read_batch(d / "data_batch_1", count=N_CIFAR),
                          _check_split(N_CIFAR, 10)),
    "imagenet32-npz": Reader("imagenet32-npz", ["val_data.npz"], NPZ_FILES,
                             lambda d: imagenet32.read_files([d / "val_data.npz"], N_NPZ, "val"),
                             _check_split(N_NPZ, 1000)),
}


@pytest.fixture(scope="module")
def readers(tmp_path_factory):
    """Each reader with its own folder; the loader's is a tiny Imagenet32 root, read
    with the official counts set to its own (10 train, 2 val images)."""
    out = {name: (reader, tmp_path_factory.mktemp(name)) for name, reader in READERS.items()}
    root = tmp_path_factory.mktemp("imagenet32-loader")
    loader = Reader("imagenet32-loader", LOADER_FILES, _imagenet32_root(root),
                    lambda d: load_dataset("imagenet32", d), _check_loader)
    out[loader.name] = (loader, root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(imagenet32.OFFICIAL_COUNTS, "train", 10)
        mp.setitem(imagenet32.OFFICIAL_COUNTS, "val", 2)
        yield out


def _write(reader: Reader, folder: Path, base: int, raw: bytes) -> Path:
    """Put ``raw`` in the file of ``base``, every other file of the reader valid again."""
    for i, name in enumerate(reader.files):
        (folder / name).write_bytes(reader.bases[i] if i < len(reader.bases) else b"")
    path = folder / reader.file_of(base)
    path.write_bytes(raw)
    return path


def _outcome(reader: Reader, folder: Path, path: Path, must_fail: bool = False) -> None:
    """Read ``folder``: a result ``reader.check`` accepts (unless ``must_fail``) or a
    one-line UserError naming ``path``; any other exception fails, and so does a
    tracemalloc peak over the limit."""
    tracemalloc.start()  # traced only while reading: Hypothesis' own work is not
    try:
        result = reader.read(folder)
    except UserError as e:
        result, message = None, str(e)
        assert str(path) in message and "\n" not in message and len(message) < 1000, message
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"{reader.name}: {peak} bytes traced"
    if result is not None:
        assert not must_fail, f"{reader.name}: {path} was read"
        reader.check(result)


def _settings(reader: str, kind: str) -> settings:
    return settings(max_examples=EXAMPLES[reader][kind], derandomize=True, database=None,
                    deadline=DEADLINE, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------------------ strategies


@st.composite
def mutated(draw, bases: list[bytes]) -> tuple[int, bytes]:
    """(i, bases[i] with 1-8 byte flips, overwrites, insertions or deletions, each at a
    position drawn from the head (first 128 bytes), anywhere, or the tail)."""
    base = draw(st.integers(0, len(bases) - 1))
    raw = bytearray(bases[base])
    for _ in range(draw(st.integers(1, 8))):
        n = len(raw)
        pos = draw(st.one_of(st.integers(0, min(n, 128)), st.integers(0, n), st.integers(max(0, n - 128), n)))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if op == "flip" and pos < n:
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and pos < n:
            raw[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del raw[pos : pos + draw(st.integers(1, 16))]
    return base, bytes(raw)


@st.composite
def npy_mutated(draw) -> tuple[int, bytes]:
    """(0, a well-formed zip, stored or deflated, of the tiny npz's .npy members with one
    of them mutated as :func:`mutated` does): damage past the zip layer."""
    members = dict(NPY_MEMBERS)
    name = draw(st.sampled_from(sorted(members)))
    _, members[name] = draw(mutated([members[name]]))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return 0, buffer.getvalue()


@st.composite
def truncated(draw, bases: list[bytes]) -> tuple[int, bytes]:
    """(i, bases[i] cut at a length inside its first 64 bytes, anywhere, or in its last 64)."""
    base = draw(st.integers(0, len(bases) - 1))
    raw = bases[base]
    n = len(raw)
    return base, raw[: draw(st.one_of(st.integers(0, min(n - 1, 64)), st.integers(0, n - 1),
                                st.integers(max(0, n - 64), n - 1)))]


DIM = st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1), st.sampled_from([2**31, 2**32 - 1, 60_000]))
BIG = st.one_of(st.integers(0, 2**16), st.integers(0, 2**64 - 1), st.sampled_from([2**31 - 1, 2**32, 2**63 - 1]))


@st.composite
def idx_huge(draw, magic: int, ndim: int, gz: bool) -> bytes:
    """A well-formed idx header of random (often huge) dimensions over a few bytes."""
    dims = tuple(draw(DIM) for _ in range(ndim))
    raw = _idx(magic, dims, bytes(draw(st.integers(0, 4096))))
    return gzip.compress(raw) if gz else raw


def _short(text: bytes) -> bytes:
    return b"\x8c" + bytes([len(text)]) + text


def _long1(value: int) -> bytes:
    data = value.to_bytes((value.bit_length() + 8) // 8 or 1, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


@st.composite
def cifar_huge(draw) -> bytes:
    """A protocol-5 batch dict whose array state, buffer lengths, memo indices or frame
    claim huge sizes."""
    shape = b"(" + b"".join(_long1(draw(BIG)) for _ in range(draw(st.integers(1, 3)))) + b"t"
    dtype = _short(b"numpy") + _short(b"dtype") + b"\x93" + _short(draw(st.sampled_from([b"u1", b"i8", b"O"]))) + b"\x85R"
    data = bytes(draw(st.integers(0, 64)))
    labels = b"C\x06labels(" + b"K\x00" * draw(st.integers(0, 4)) + b"l"
    head = b"\x80\x05}C\x04data"
    template = draw(st.sampled_from(["reconstruct", "frombuffer", "bytes8", "memo", "frame"]))
    if template == "reconstruct":
        value = (_short(b"numpy._core.multiarray") + _short(b"_reconstruct") + b"\x93"
                 + _short(b"numpy") + _short(b"ndarray") + b"\x93K\x00\x85C\x01b\x87R"
                 + b"(K\x01" + shape + dtype + b"\x89C" + bytes([len(data)]) + data + b"tb")
    elif template == "frombuffer":
        value = (_short(b"numpy._core.numeric") + _short(b"_frombuffer") + b"\x93"
                 + b"(C" + bytes([len(data)]) + data + dtype + shape + _short(b"C") + b"tR")
    elif template == "bytes8":
        opcode = draw(st.sampled_from([b"\x8e", b"\x8d", b"\x96", b"B", b"T", b"X"]))
        width = 8 if opcode in (b"\x8e", b"\x8d", b"\x96") else 4
        value = opcode + (draw(BIG) % 2 ** (8 * width)).to_bytes(width, "little") + data
    elif template == "memo":
        value = b"N\x94N\x94" + draw(st.sampled_from([b"r", b"j"])) + (draw(BIG) % 2**32).to_bytes(4, "little")
    else:
        return b"\x80\x05\x95" + (draw(BIG) % 2**64).to_bytes(8, "little") + head + b"Ns" + labels + b"s."
    return head + value + b"s" + labels + b"s."


def _npy(shape: tuple[int, ...], descr: str, payload: bytes, fortran: bool = False) -> bytes:
    header = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode()
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _patch_sizes(raw: bytes, size: int) -> bytes:
    """``raw`` (a zip) with every member's uncompressed size, in the local headers and the
    central directory, replaced by ``size``."""
    out = bytearray(raw)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = out.find(signature)
        while start >= 0:
            out[start + offset : start + offset + 4] = struct.pack("<I", size)
            start = out.find(signature, start + 4)
    return bytes(out)


@st.composite
def npz_huge(draw) -> bytes:
    """An npz whose data header claims a huge shape or odd dtype, or whose zip directory
    claims huge member sizes."""
    labels = _npy((N_NPZ,), "<i8", np.array([1, 2], "<i8").tobytes())
    if draw(st.booleans()):
        raw = draw(st.sampled_from(NPZ_FILES))
        return _patch_sizes(raw, draw(BIG) % 2**32)
    shape = tuple(draw(BIG) for _ in range(draw(st.integers(1, 3))))
    descr = draw(st.sampled_from(["|u1", "<i8", "|O", "<f4", "|V100000000", "(1000000,1000000)u1"]))
    data = _npy(shape, descr, bytes(draw(st.integers(0, 256))), draw(st.booleans()))
    return _zip({"data.npy": data, "labels.npy": labels})


HUGE = {
    "idx-images": idx_huge(0x803, 3, False),
    "idx-labels": idx_huge(0x801, 1, False),
    "idx-gz": idx_huge(0x803, 3, True),
    "cifar-batch": cifar_huge(),
    "imagenet32-npz": npz_huge(),
    "imagenet32-loader": npz_huge(),
}
ALL_READERS = list(EXAMPLES)


def _any_file(reader_name: str) -> st.SearchStrategy[int]:
    return st.integers(0, 1) if reader_name == "imagenet32-loader" else st.just(0)


# ----------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", ALL_READERS)
def test_random_bytes(name, readers):
    reader, folder = readers[name]

    @_settings(name, "random")
    @given(base=_any_file(name), raw=st.binary(max_size=8192))
    def run(base, raw):
        _outcome(reader, folder, _write(reader, folder, base, raw))

    run()


@pytest.mark.parametrize("name", ALL_READERS)
def test_mutated_valid_files(name, readers):
    reader, folder = readers[name]

    damaged = mutated(reader.bases)
    if name.startswith("imagenet32"):
        damaged = st.one_of(damaged, npy_mutated())

    @_settings(name, "mutated")
    @given(case=damaged)
    def run(case):
        _outcome(reader, folder, _write(reader, folder, *case))

    run()


@pytest.mark.parametrize("name", ALL_READERS)
def test_truncated_valid_files(name, readers):
    """A file cut anywhere is refused (every format here fixes its length)."""
    reader, folder = readers[name]

    @_settings(name, "truncated")
    @given(case=truncated(reader.bases))
    def run(case):
        _outcome(reader, folder, _write(reader, folder, *case), must_fail=True)

    run()


@pytest.mark.parametrize("name", ALL_READERS)
def test_huge_headers(name, readers):
    reader, folder = readers[name]

    @_settings(name, "huge")
    @given(base=_any_file(name), raw=HUGE[name])
    def run(base, raw):
        _outcome(reader, folder, _write(reader, folder, base, raw))

    run()


@pytest.mark.parametrize("name", ALL_READERS)
def test_valid_tiny_files_are_read(name, readers):
    """The fuzzers' starting points are valid: each base reads to a checked result."""
    reader, folder = readers[name]
    for base in range(len(reader.bases)):
        _write(reader, folder, base, reader.bases[base])
        reader.check(reader.read(folder))


def test_fuzz_cases_are_counted(readers):
    assert set(FUZZ_CASES) == set(readers) == set(HUGE)
    assert all(set(kinds) == set(KINDS) for kinds in EXAMPLES.values())
