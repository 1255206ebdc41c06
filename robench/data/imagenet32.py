"""imagenet32: the 32×32 downsampled ImageNet of Chrabaszcz et al. (PROTOCOL.md, "Data").

Files: ``ROOT/Imagenet32_train_npz/train_data_batch_{1..10}.npz`` and
``ROOT/Imagenet32_val_npz/val_data.npz``, each with ``data`` (N, 3072) uint8 (R, G, B
planes of 32×32) and ``labels`` 1..1000, stored here as 0..999. They are read with
``allow_pickle=False`` into one preallocated uint8 tensor (≈3.9 GB for the 1.28 M
training images; never a float copy of the whole set).

Split, per PROTOCOL.md "all train; val = test": every training image is in ``train`` and
there is no separate validation split — ``val`` *is* the ``test`` split (the same
tensors), so model selection on ``val`` for imagenet32 would be selection on test:
nothing in robench selects on it (cards record ``val_accuracy`` only, and
``scripts/margin_sweep.py`` refuses imagenet32). ImageNet cannot be downloaded
automatically: the error says where to get it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robench.data.base import (
    Dataset,
    DatasetSource,
    Split,
    make_dataset,
    one_line,
    register_source,
)
from robench.errors import UserError

NAME = "imagenet32"
TRAIN_FOLDER = "Imagenet32_train_npz"
VAL_FOLDER = "Imagenet32_val_npz"
TRAIN_FILES = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
VAL_FILE = "val_data.npz"
IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 1000
MEAN = (0.4811, 0.4575, 0.4078)
STD = (0.2605, 0.2533, 0.2683)
HASH_STRIDE = 997  # the split hash reads every 997th image's pixels (and all labels)


def _read(path: Path, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise UserError(
                    f"{path}: no {key!r} array; an Imagenet32 npz holds 'data' and 'labels'"
                )
            return npz[key]
    except UserError:
        raise
    except Exception as e:  # not a zip, truncated, pickled objects: all corrupt files
        raise UserError(f"{path}: corrupt Imagenet32 npz ({one_line(e)})") from None


def read_labels(path: Path) -> np.ndarray:
    """(N,) int64 labels 0..999 from the file's 1..1000."""
    labels = _read(path, "labels")
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise UserError(f"{path}: labels are {labels.dtype} {labels.shape}; valid: (N,) integers")
    if labels.size and (labels.min() < 1 or labels.max() > NUM_CLASSES):
        bad = int(labels.min() if labels.min() < 1 else labels.max())
        raise UserError(f"{path}: label {bad} out of range; valid labels are 1..{NUM_CLASSES}")
    return labels.astype(np.int64) - 1


def read_images(path: Path, n: int) -> torch.Tensor:
    """(n, 3, 32, 32) uint8 images of the file, which must hold exactly ``n``."""
    data = _read(path, "data")
    size = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.shape != (n, size):
        raise UserError(f"{path}: data is {data.dtype} {data.shape}; valid: uint8 ({n}, {size})")
    x = torch.from_numpy(np.ascontiguousarray(data))  # (n, 3072) uint8
    return x.view(n, *IMAGE_SHAPE)  # (n, 3, 32, 32) uint8


def read_files(paths: list[Path]) -> Split:
    """One Split of several npz files, filled into a single preallocated uint8 tensor."""
    labels = [read_labels(p) for p in paths]
    total = sum(len(y) for y in labels)
    x = torch.empty((total, *IMAGE_SHAPE), dtype=torch.uint8)  # (N, 3, 32, 32) uint8
    start = 0
    for path, y in zip(paths, labels):
        x[start : start + len(y)] = read_images(path, len(y))
        start += len(y)
    y = torch.from_numpy(np.concatenate(labels))  # (N,) int64
    return Split(x, y)


def _files(root: Path) -> list[Path]:
    return [root / TRAIN_FOLDER / f for f in TRAIN_FILES] + [root / VAL_FOLDER / VAL_FILE]


def _load(root: Path, download: bool) -> Dataset:
    missing = SOURCE.missing(root)
    if missing:
        raise SOURCE.missing_error(missing)
    *train_files, val_file = _files(root)
    train = read_files(train_files)
    test = read_files([val_file])
    return make_dataset(
        NAME, train, test, test,
        num_classes=NUM_CLASSES, pixel_max=255.0, mean=MEAN, std=STD, augment=True,
        pixel_stride=HASH_STRIDE,
    )


SOURCE = register_source(
    DatasetSource(
        name=NAME,
        load=_load,
        files=_files,
        hint="ImageNet cannot be downloaded automatically (--download does not apply): get "
        "Imagenet32 (npz) from https://image-net.org/download-images (Downsampled Images) "
        "and unpack it there",
    )
)
