"""imagenet32: the 32×32 downsampled ImageNet of Chrabaszcz et al. (PROTOCOL.md, "Data").

Files: ``ROOT/Imagenet32_train_npz/train_data_batch_{1..10}.npz`` and
``ROOT/Imagenet32_val_npz/val_data.npz``, each with ``data`` (N, 3072) uint8 (R, G, B
planes of 32×32) and ``labels`` 1..1000, stored here as 0..999. The published set holds
1,281,167 training images over the ten batches and 50,000 validation images
(:data:`OFFICIAL_COUNTS`): the counts are read from the arrays' headers
(:mod:`robench.data.npz`, no pickles) and a copy of other counts (a partial or altered
one) is refused before any pixel is read; the pixels are then read into one
preallocated uint8 tensor (≈3.9 GB for the 1.28 M training images; never a float copy
of the whole set).

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
    register_source,
)
from robench.data.npz import Archive
from robench.errors import UserError

NAME = "imagenet32"
TRAIN_FOLDER = "Imagenet32_train_npz"
VAL_FOLDER = "Imagenet32_val_npz"
TRAIN_FILES = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
VAL_FILE = "val_data.npz"
# Images of the published Imagenet32: all ten training batches together, and the val file.
OFFICIAL_COUNTS = {"train": 1_281_167, "val": 50_000}
IMAGE_SHAPE = (3, 32, 32)
IMAGE_SIZE = 3 * 32 * 32
NUM_CLASSES = 1000
MEAN = (0.4811, 0.4575, 0.4078)
STD = (0.2605, 0.2533, 0.2683)
HASH_STRIDE = 997  # the split hash reads every 997th image's pixels (and all labels)
KEYS = ("data", "labels")


def count_images(path: Path) -> int:
    """The number of images of npz file ``path``, from its array headers only: ``data``
    must be uint8 (N, 3072) and ``labels`` (N,) integers."""
    with Archive(path) as archive:
        missing = [k for k in KEYS if k not in archive.files()]
        if missing:
            raise UserError(
                f"{path}: no {missing[0]!r} array; an Imagenet32 npz holds 'data' and 'labels'"
            )
        data, labels = archive.member("data"), archive.member("labels")
    if data.dtype != np.uint8 or len(data.shape) != 2 or data.shape[1] != IMAGE_SIZE:
        raise UserError(
            f"{path}: data is {data.dtype} {data.shape}; valid: uint8 (N, {IMAGE_SIZE})"
        )
    if len(labels.shape) != 1 or labels.dtype.kind not in "iu" or labels.dtype.itemsize > 8:
        raise UserError(f"{path}: labels are {labels.dtype} {labels.shape}; valid: (N,) integers")
    if labels.shape[0] != data.shape[0]:
        raise UserError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images")
    return data.shape[0]


def check_counts(paths: list[Path], counts: list[int], official: int, split: str) -> None:
    """The files' image counts must add up to the ``official`` count of ``split``; the
    error names the file with the fewest images (the most, when there are too many): the
    short file of a partial copy."""
    total = sum(counts)
    if total == official:
        return
    short = total < official
    worst = (min if short else max)(range(len(paths)), key=lambda i: counts[i])
    found = f"{counts[worst]:,} images"
    if len(paths) > 1:
        found += f", {total:,} in the {len(paths)} {split} files"
    raise UserError(
        f"{paths[worst]}: {found}, but the official Imagenet32 {split} split holds {official:,} "
        "(a partial or altered copy); download and unpack Imagenet32 again"
    )


def _read_file(path: Path, n: int, out: torch.Tensor) -> np.ndarray:
    """Fill ``out`` ((n, 3, 32, 32) uint8) with the file's pixels; its (n,) int64 labels
    0..999 from the file's 1..1000."""
    with Archive(path) as archive:
        data, labels = archive.member("data"), archive.member("labels")
        if data.shape != (n, IMAGE_SIZE) or labels.shape != (n,):
            raise UserError(f"{path}: changed while it was read; read it again")
        y = archive.read(labels)  # (n,) integers
        if n and (y.min() < 1 or y.max() > NUM_CLASSES):
            bad = int(y.min() if y.min() < 1 else y.max())
            raise UserError(f"{path}: label {bad} out of range; valid labels are 1..{NUM_CLASSES}")
        archive.read(data, out.view(n, IMAGE_SIZE).numpy())
    return y.astype(np.int64) - 1


def read_files(paths: list[Path], official: int, split: str) -> Split:
    """One Split of several npz files holding ``official`` images together, filled into
    a single uint8 tensor allocated once their headers have been checked."""
    counts = [count_images(p) for p in paths]
    check_counts(paths, counts, official, split)
    x = torch.empty((official, *IMAGE_SHAPE), dtype=torch.uint8)  # (N, 3, 32, 32) uint8
    labels, start = [], 0
    for path, n in zip(paths, counts):
        labels.append(_read_file(path, n, x[start : start + n]))
        start += n
    y = torch.from_numpy(np.concatenate(labels) if labels else np.zeros(0, np.int64))  # (N,) int64
    return Split(x, y)


def _files(root: Path) -> list[Path]:
    return [root / TRAIN_FOLDER / f for f in TRAIN_FILES] + [root / VAL_FOLDER / VAL_FILE]


def _load(root: Path, download: bool) -> Dataset:
    missing = SOURCE.missing(root)
    if missing:
        raise SOURCE.missing_error(missing)
    *train_files, val_file = _files(root)
    train = read_files(train_files, OFFICIAL_COUNTS["train"], "train")
    test = read_files([val_file], OFFICIAL_COUNTS["val"], "val")
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
        failed_training_below=0.05,  # WRN-28-2 reaches about 0.43 top-1 (the paper's [19]); chance 0.001
    )
)
