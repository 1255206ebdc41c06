"""cifar10 from torchvision's ``cifar-10-batches-py`` (PROTOCOL.md, "Data").

``ROOT/cifar-10-batches-py/data_batch_1`` … ``data_batch_5`` and ``test_batch`` are Python
pickles of ``{b'data': (N, 3072) uint8 (R, G, B planes of 32×32), b'labels': [N ints]}``,
each of 10,000 images in the published set (:data:`OFFICIAL_COUNTS`); a batch of another
size (a partial or altered copy) is refused. The format cannot be read without
unpickling, so :mod:`robench.data.safe_pickle` reads it without running any of it: the
opcodes are checked first (bounded by the size of a batch of that count), only numpy's
array-building globals resolve, to inert records, and the arrays are built after their
shape, dtype and bytes are checked; anything else is a UserError naming the file.
Split: a fixed-seed 90 / 10 train / validation hold-out of the 50k training images
(45k / 5k), ``test_batch`` as test. Augmentation: flip and pad-4 random crop.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from robench.data import safe_pickle
from robench.data.base import (
    Dataset,
    DatasetSource,
    Split,
    holdout,
    make_dataset,
    one_line,
    register_source,
)
from robench.errors import UserError

log = logging.getLogger(__name__)

NAME = "cifar10"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
# Images per batch file of the published CIFAR-10: five training batches and the test batch.
OFFICIAL_COUNTS = {name: 10_000 for name in (*TRAIN_FILES, TEST_FILE)}
IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
WHAT = "CIFAR-10 batch"
# Bounds of a batch of N images, checked before unpickling: its file is about N × 3,104
# bytes and N × 4 opcodes as Python 2 wrote it (a label, a file name and its memo PUT
# per image); these leave room for any protocol's overhead.
BYTES_PER_IMAGE = 4 * 3072
OPS_PER_IMAGE = 32
BASE_BYTES = 1 << 16
BASE_OPS = 1_000


def _labels(path: Path, labels: object, n: int) -> np.ndarray:
    """(n,) int64 labels 0..9 from a list of ints or an integer array."""
    array = safe_pickle.to_array(labels)
    if array is None:
        if not isinstance(labels, list) or not all(type(v) is int for v in labels):
            raise UserError(f"{path}: labels are a {type(labels).__name__}; valid: {n} integers")
        array = np.array(labels, dtype=np.int64)  # (n,); OverflowError beyond int64
    if array.shape != (n,):
        raise UserError(f"{path}: labels are {array.dtype} {array.shape}; valid: {n} integers")
    if n and (array.min() < 0 or array.max() >= NUM_CLASSES):
        bad = int(array.min() if array.min() < 0 else array.max())
        raise UserError(f"{path}: label {bad} out of range; valid labels are 0..{NUM_CLASSES - 1}")
    return array.astype(np.int64)


def _data(path: Path, data: object, count: int) -> np.ndarray:
    """(count, 3072) uint8 pixels of the batch's data record."""
    size = int(np.prod(IMAGE_SHAPE))
    array = safe_pickle.to_array(data)
    if array is None:
        kind = type(data).__name__
        raise UserError(f"{path}: corrupt {WHAT}: b'data' is a {kind}; valid: a numpy uint8 array")
    if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != size:
        raise UserError(f"{path}: data is {array.dtype} {array.shape}; valid: uint8 (N, {size})")
    if len(array) != count:
        raise UserError(
            f"{path}: {len(array):,} images, but an official {WHAT} holds {count:,} (a partial "
            "or altered copy)"
        )
    return np.ascontiguousarray(array)


# Leading bytes of files often found where a batch should be, and what they are.
NOT_PICKLES = {b"PK\x03\x04": "a zip archive", b"\x1f\x8b": "gzip data (the .tar.gz download?)",
               b"<": "text (an HTML page?)"}


def _sniff(path: Path) -> None:
    """Refuse a file whose first bytes say it is a known non-pickle format."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return  # the pickle reader reports it
    for magic, what in NOT_PICKLES.items():
        if head.startswith(magic):
            raise UserError(f"{path}: {what}, not a pickled {WHAT}")


def read_batch(path: Path, count: int | None = None) -> Split:
    """One CIFAR-10 batch file as a Split of exactly ``count`` images (default: the
    official count of its file name), validated: (N, 3, 32, 32) uint8 and labels 0..9."""
    count = OFFICIAL_COUNTS[path.name] if count is None else count
    max_bytes = BASE_BYTES + count * BYTES_PER_IMAGE
    _sniff(path)
    batch = safe_pickle.load(path, max_bytes, BASE_OPS + count * OPS_PER_IMAGE, WHAT)
    if not isinstance(batch, dict):
        raise UserError(f"{path}: corrupt {WHAT}: holds a {type(batch).__name__}, not a dict")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise UserError(f"{path}: corrupt {WHAT}: needs keys b'data' (array) and b'labels'")
    try:
        x = _data(path, data, count)  # (count, 3072) uint8
        y = _labels(path, labels, count)  # (count,) int64
    except (ValueError, TypeError, OverflowError, MemoryError, RecursionError) as e:  # ill-formed arrays
        raise UserError(f"{path}: corrupt {WHAT} ({one_line(e)})") from None
    return Split(torch.from_numpy(x).view(-1, *IMAGE_SHAPE), torch.from_numpy(y))  # (N, 3, 32, 32) uint8


def _files(root: Path) -> list[Path]:
    folder = root / FOLDER
    return [folder / name for name in (*TRAIN_FILES, TEST_FILE)]


def _download(root: Path) -> None:
    import torchvision.datasets

    try:
        torchvision.datasets.CIFAR10(str(root), download=True)
    except Exception as e:
        raise UserError(
            f"{NAME}: download into {root / FOLDER} failed ({one_line(e)}); "
            "put the extracted python batches there by hand"
        ) from None


def _read_batches(root: Path) -> tuple[Split, Split]:
    """(the five training batches as one split, the test batch)."""
    *train_files, test_file = _files(root)
    parts = [read_batch(p) for p in train_files]
    full = Split(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
    del parts
    return full, read_batch(test_file)


def _load(root: Path, download: bool) -> Dataset:
    missing = SOURCE.missing(root)
    if missing and download:
        _download(root)
        missing = SOURCE.missing(root)
    if missing:
        raise SOURCE.missing_error(missing)
    try:
        full, test = _read_batches(root)
    except UserError as error:
        if not download:
            raise UserError(f"{error}; extract the batches again or pass --download") from None
        log.warning("%s; downloading again (torchvision checks each batch's MD5)", error)
        _download(root)
        full, test = _read_batches(root)
    train, val = holdout(full)
    return make_dataset(
        NAME, train, val, test,
        num_classes=NUM_CLASSES, pixel_max=255.0, mean=MEAN, std=STD, augment=True,
    )


SOURCE = register_source(
    DatasetSource(
        name=NAME,
        load=_load,
        files=_files,
        hint="put the extracted CIFAR-10 python batches there or pass --download",
        failed_training_below=0.40,  # WRN-28-2 reaches about 0.95; the paper reports close to that
    )
)
