"""mnist and fashion-mnist from idx files (PROTOCOL.md, "Data").

Layout: torchvision's ``ROOT/MNIST/raw`` and ``ROOT/FashionMNIST/raw`` holding
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``, each plain or ``.gz`` (plain wins when both exist).
fashion-mnist is also found where Debian's package ``dataset-fashion-mnist`` installs it,
``/usr/share/datasets/fashion-mnist`` (the same four names, ``.gz``), searched after ROOT.
Split: a fixed-seed 90 / 10 train / validation hold-out of the training file (54k / 6k on
the full set); the t10k file is the test split. No augmentation.
Both datasets hold 60,000 training and 10,000 test images (:data:`OFFICIAL_COUNTS`); a
copy whose header says otherwise (a partial or altered download) is refused from its
header, before its data is read.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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
from robench.data.idx import read_idx_images, read_idx_labels
from robench.errors import UserError

log = logging.getLogger(__name__)

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGE_SIZE = (28, 28)
# Images (and labels) per file of the published mnist and fashion-mnist, by file prefix.
OFFICIAL_COUNTS = {"train": 60_000, "t10k": 10_000}

# Directories searched after ROOT/<folder>/raw when that one is incomplete.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "mnist": (),
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}


@dataclass(frozen=True)
class IdxSpec:
    """What differs between mnist and fashion-mnist."""

    name: str
    folder: str  # torchvision's class name: ROOT/<folder>/raw
    torchvision_class: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


SPECS = (
    IdxSpec("mnist", "MNIST", "MNIST", (0.1307,), (0.3081,)),
    IdxSpec("fashion-mnist", "FashionMNIST", "FashionMNIST", (0.2860,), (0.3530,)),
)


def _resolve(directory: Path, stem: str) -> Path:
    """``directory/stem``, or ``directory/stem.gz`` when only that exists."""
    plain = directory / stem
    packed = directory / f"{stem}.gz"
    return packed if not plain.is_file() and packed.is_file() else plain


def _files(spec: IdxSpec, root: Path) -> list[Path]:
    """The four idx files from the first complete directory; ROOT's when none is complete."""
    directories = [root / spec.folder / "raw", *SYSTEM_DIRS.get(spec.name, ())]
    for directory in directories:
        files = [_resolve(directory, stem) for stem in IDX_NAMES]
        if all(f.is_file() for f in files):
            return files
    return [_resolve(directories[0], stem) for stem in IDX_NAMES]


def _download(spec: IdxSpec, root: Path) -> None:
    import torchvision.datasets

    try:
        getattr(torchvision.datasets, spec.torchvision_class)(str(root), download=True)
    except Exception as e:  # network, disk, checksum: all the user's to fix
        raise UserError(
            f"{spec.name}: download into {root / spec.folder / 'raw'} failed ({one_line(e)}); "
            "put the idx files there by hand"
        ) from None


def _official_count(path: Path) -> int:
    """The published number of samples of idx file ``path`` (by its train / t10k prefix)."""
    return OFFICIAL_COUNTS[path.name.split("-", 1)[0]]


def _check_count(path: Path, kind: str, found: int) -> None:
    official = _official_count(path)
    if found != official:
        raise UserError(
            f"{path}: {found:,} {kind}, but the official file holds {official:,} (a partial "
            "or altered copy); download and extract it again"
        )


def _check_images(path: Path) -> Callable[[tuple[int, ...]], None]:
    """The header check of an images file: 28×28 images, the official count."""

    def check(dims: tuple[int, ...]) -> None:
        if dims[1:] != IMAGE_SIZE:
            raise UserError(
                f"{path}: images are {dims[1]}x{dims[2]}; valid: {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}"
            )
        _check_count(path, "images", dims[0])

    return check


def _check_labels(path: Path) -> Callable[[tuple[int, ...]], None]:
    """The header check of a labels file: the official count."""
    return lambda dims: _check_count(path, "labels", dims[0])


def _split(images: Path, labels: Path) -> Split:
    x = read_idx_images(images, _check_images(images))  # (N, 28, 28) uint8
    y = read_idx_labels(labels, check_dims=_check_labels(labels))  # (N,) int64
    if len(x) != len(y):
        raise UserError(f"{labels}: {len(y)} labels for {len(x)} images in {images}")
    return Split(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(np.asarray(y)))


def _packed(path: Path) -> Path:
    return path if path.suffix == ".gz" else path.with_name(f"{path.name}.gz")


def _read_split(images: Path, labels: Path) -> Split:
    """:func:`_split` of the two files; when a plain file cannot be read and both .gz
    files lie beside them, the .gz files (a download killed while extracting leaves a
    truncated plain file next to its complete archive)."""
    try:
        return _split(images, labels)
    except UserError as error:
        packed = [_packed(images), _packed(labels)]
        if packed == [images, labels] or not all(p.is_file() for p in packed):
            raise
        log.warning("%s; reading %s and %s instead", error, packed[0].name, packed[1].name)
        return _split(*packed)


def _load(spec: IdxSpec, root: Path, download: bool) -> Dataset:
    source = SOURCES[spec.name]
    missing = source.missing(root)
    if missing and download:
        _download(spec, root)
        missing = source.missing(root)
    if missing:
        raise source.missing_error(missing)
    train_images, train_labels, test_images, test_labels = _files(spec, root)
    train, val = holdout(_read_split(train_images, train_labels))
    test = _read_split(test_images, test_labels)
    return make_dataset(
        spec.name, train, val, test,
        num_classes=10, pixel_max=255.0, mean=spec.mean, std=spec.std, augment=False,
    )


_HINTS = {
    "mnist": "put the idx files there or pass --download",
    "fashion-mnist": "put the idx files there, install the Debian package "
    "dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), or pass --download",
}

_FAILED_TRAINING_BELOW = {
    "mnist": 0.90,  # the paper's CNN reaches about 0.99 (close to the state of the art, its §IV)
    "fashion-mnist": 0.70,  # the quick preset's members reach 0.83-0.91
}

SOURCES: dict[str, DatasetSource] = {
    spec.name: register_source(
        DatasetSource(
            name=spec.name,
            load=functools.partial(_load, spec),
            files=functools.partial(_files, spec),
            hint=_HINTS[spec.name],
            failed_training_below=_FAILED_TRAINING_BELOW[spec.name],
            gz_optional=True,
            paper_counterpart=None if spec.name == "mnist" else "mnist",  # Fashion-MNIST: MNIST's format and protocol
        )
    )
    for spec in SPECS
}
