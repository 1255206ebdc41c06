"""Dataset containers, the dataset registry and the split hash (PROTOCOL.md, "Data").

Every dataset is held as uint8 pixels plus int64 labels, already split into train /
validation / test. Float pixels in [0, 1] are ``x / pixel_max``; the model's first layer
normalises them with the dataset's ``mean`` / ``std``, so attacks live in pixel space.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from robench.errors import UserError
from robench.registry import Registry

# Fraction of the training file held out as validation and the seed of that hold-out.
VAL_FRACTION = 0.1
SPLIT_SEED = 0


@dataclass
class Split:
    """One split: images and labels, on one device."""

    x: torch.Tensor  # (N, C, H, W) uint8
    y: torch.Tensor  # (N,) int64

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"Split needs x (N, C, H, W) and y (N,); got {tuple(self.x.shape)} "
                f"and {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> "Split":
        """The same split on ``device`` (no copy when it is already there)."""
        return Split(self.x.to(device), self.y.to(device))

    def subset(self, index: torch.Tensor) -> "Split":
        """The samples at ``index`` (a (M,) integer or (N,) bool tensor), in that order."""
        index = index.to(self.x.device)
        return Split(self.x[index], self.y[index])


@dataclass
class Dataset:
    """A loaded dataset: three splits and what a model needs to know about them."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    pixel_max: float  # 255.0, or 16.0 for digits: float pixels = x / pixel_max in [0, 1]
    mean: tuple[float, ...]  # per channel, in [0, 1] pixel units
    std: tuple[float, ...]
    augment: bool  # flip + pad-4 random crop while training (PROTOCOL.md)
    split_hash: str  # sha256 hex of name, labels and a pixel fingerprint

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (..., C, H, W) -> float32 in [0, 1] (a new tensor; ``x`` is left alone)."""
        if x.dtype != torch.uint8:  # a float tensor would be divided again, in place
            raise TypeError(f"to_float takes uint8 pixels, got {x.dtype}")
        return x.to(torch.float32).div_(self.pixel_max)

    def to(self, device: torch.device | str) -> "Dataset":
        """The same dataset on ``device``; a val split that *is* the test split stays shared."""
        test = self.test.to(device)
        val = test if self.val is self.test else self.val.to(device)
        return dataclasses.replace(self, train=self.train.to(device), val=val, test=test)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train.x.shape[1:]
        return int(c), int(h), int(w)


@dataclass(frozen=True)
class DatasetSource:
    """How to find and load one dataset: what the registry holds.

    ``files(root)`` lists the files the dataset needs, resolved to the copy that exists
    where there are alternatives (plain or .gz, another directory); ``load(root,
    download)`` returns the :class:`Dataset`. ``hint`` ends the missing-files error.
    ``failed_training_below``: the clean test accuracy under which a trained zoo member of
    this dataset counts as a failed training (:mod:`robench.report.training_failures`),
    far under what every preset reaches. ``paper_counterpart``: the paper's dataset whose
    protocol this one's runs are compared with (None: this dataset is one of the paper's).
    """

    name: str
    load: Callable[[Path, bool], Dataset]
    files: Callable[[Path], list[Path]]
    hint: str
    failed_training_below: float
    gz_optional: bool = False  # idx files may be plain or .gz: shown as NAME[.gz]
    paper_counterpart: str | None = None

    def __call__(self, root: str | Path = "data", download: bool = False) -> Dataset:
        return self.load(Path(root), download)

    def missing(self, root: str | Path) -> list[Path]:
        return [p for p in self.files(Path(root)) if not p.is_file()]

    def missing_error(self, missing: list[Path]) -> UserError:
        suffix = "[.gz]" if self.gz_optional else ""
        listed = ", ".join(f"{p}{suffix}" for p in missing)
        return UserError(f"{self.name}: missing {listed}; {self.hint}")


DATASETS: Registry[Dataset] = Registry("dataset")


def register_source(source: DatasetSource) -> DatasetSource:
    """Put ``source`` in :data:`DATASETS` under its name."""
    DATASETS.register(source.name)(source)
    return source


def _source(name: str) -> DatasetSource:
    return DATASETS.get(name)  # type: ignore[return-value]


def load_dataset(name: str, root: str | Path = "data", download: bool = False) -> Dataset:
    """Load dataset ``name`` from ``root`` (CPU tensors); UserError if unknown or missing."""
    return _source(name)(root, download)


def required_files(name: str, root: str | Path = "data") -> list[Path]:
    """The files dataset ``name`` needs under ``root`` (empty for bundled digits)."""
    return _source(name).files(Path(root))


def missing_files(name: str, root: str | Path = "data") -> list[Path]:
    """The required files of ``name`` that do not exist."""
    return _source(name).missing(root)


def dataset_names(pattern: str = "*") -> list[str]:
    """Registered dataset names matching ``pattern``, sorted."""
    return DATASETS.names(pattern)


def holdout(
    split: Split, fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED
) -> tuple[Split, Split]:
    """Split ``split`` into (train, val) with a fixed-seed permutation; both keep file order.

    ``round(fraction * N)`` samples go to validation (at least one when N >= 2).
    """
    n = len(split)
    n_val = max(1, round(fraction * n)) if n >= 2 else 0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # (N,)
    val_idx, _ = perm[:n_val].sort()
    train_idx, _ = perm[n_val:].sort()
    return split.subset(train_idx), split.subset(val_idx)


def split_hash(name: str, train: Split, val: Split, test: Split, pixel_stride: int = 1) -> str:
    """sha256 hex over the name, each split's shape and labels, and every
    ``pixel_stride``-th image's bytes (1 = all pixels; imagenet32 uses 997)."""
    h = hashlib.sha256(name.encode())
    for tag, split in (("train", train), ("val", val), ("test", test)):
        x = split.x.cpu()
        h.update(f"|{tag}|{tuple(x.shape)}|".encode())
        h.update(np.ascontiguousarray(split.y.cpu().numpy().astype("<i8")))
        h.update(np.ascontiguousarray(x[::pixel_stride].numpy()))
    return h.hexdigest()


def make_dataset(
    name: str,
    train: Split,
    val: Split,
    test: Split,
    *,
    num_classes: int,
    pixel_max: float,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augment: bool,
    pixel_stride: int = 1,
) -> Dataset:
    """Build a :class:`Dataset`, computing its split hash."""
    return Dataset(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        pixel_max=pixel_max,
        mean=tuple(mean),
        std=tuple(std),
        augment=augment,
        split_hash=split_hash(name, train, val, test, pixel_stride),
    )


MESSAGE_LIMIT = 200  # characters of a wrapped error's text (a corrupt file's bytes can be long)


def one_line(error: BaseException) -> str:
    """``Type: message`` of ``error`` on one line, for wrapping in a UserError; a text
    over :data:`MESSAGE_LIMIT` characters is cut there."""
    text = " ".join(str(error).split())
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
