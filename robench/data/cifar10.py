"""cifar10 from torchvision's ``cifar-10-batches-py`` (PROTOCOL.md, "Data").

``ROOT/cifar-10-batches-py/data_batch_1`` … ``data_batch_5`` and ``test_batch`` are Python
pickles of ``{b'data': (N, 3072) uint8 (R, G, B planes of 32×32), b'labels': [N ints]}``.
The format cannot be read without unpickling, so a restricted unpickler admits only the
numpy array-reconstruction callables (and ``_codecs.encode``, which protocol-2 pickles
of numpy arrays use); any other reference is a UserError naming the file.
Split: a fixed-seed 90 / 10 train / validation hold-out of the 50k training images
(45k / 5k), ``test_batch`` as test. Augmentation: flip and pad-4 random crop.
"""

from __future__ import annotations

import codecs
import logging
import pickle
from pathlib import Path

import numpy as np
import torch

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
IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def _allowed_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array-building globals."""

    def __init__(self, file, path: Path) -> None:
        super().__init__(file, encoding="bytes")  # the real batches are Python 2 pickles
        self.path = path
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UserError(
                f"{self.path}: pickle refers to {module}.{name}, which is not allowed; "
                "a CIFAR-10 batch may hold only numpy arrays, lists and bytes"
            ) from None


def read_batch(path: Path) -> Split:
    """One CIFAR-10 batch file as a Split, validated: (N, 3, 32, 32) uint8 and labels 0..9."""
    try:
        with open(path, "rb") as f:
            batch = RestrictedUnpickler(f, path).load()
    except UserError:
        raise
    except Exception as e:  # truncated, garbage, wrong protocol: all corrupt files
        raise UserError(f"{path}: corrupt CIFAR-10 batch ({one_line(e)})") from None
    if not isinstance(batch, dict):
        kind = type(batch).__name__
        raise UserError(f"{path}: corrupt CIFAR-10 batch: holds a {kind}, not a dict")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise UserError(
            f"{path}: corrupt CIFAR-10 batch: needs keys b'data' (array) and b'labels'"
        )
    size = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
        raise UserError(
            f"{path}: data is {data.dtype} {data.shape}; valid: uint8 (N, {size})"
        )
    labels = np.asarray(labels)
    if labels.shape != (len(data),) or (labels.size and labels.dtype.kind not in "iu"):
        raise UserError(
            f"{path}: labels are {labels.dtype} {labels.shape}; valid: {len(data)} integers"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = int(labels.min() if labels.min() < 0 else labels.max())
        raise UserError(f"{path}: label {bad} out of range; valid labels are 0..{NUM_CLASSES - 1}")
    x = torch.from_numpy(np.ascontiguousarray(data)).view(-1, *IMAGE_SHAPE)  # (N, 3, 32, 32) uint8
    y = torch.from_numpy(labels.astype(np.int64))  # (N,) int64
    return Split(x, y)


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
    )
)
