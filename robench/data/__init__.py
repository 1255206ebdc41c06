"""Datasets as uint8 tensors split into train / val / test (PROTOCOL.md, "Data").

Importing this package registers every dataset module in :data:`DATASETS`.
"""

from robench.data import cifar10, digits, imagenet32, mnist  # noqa: F401  (registration)
from robench.data.augment import random_flip_crop
from robench.data.base import (
    DATASETS,
    Dataset,
    Split,
    dataset_names,
    load_dataset,
    missing_files,
    required_files,
)
from robench.data.status import data_status

__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "data_status",
    "dataset_names",
    "load_dataset",
    "missing_files",
    "random_flip_crop",
    "required_files",
]
