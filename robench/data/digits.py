"""digits: scikit-learn's bundled 8×8 digits, the offline default (PROTOCOL.md, "Data").

Pixels are integers 0..16, stored as uint8 with ``pixel_max = 16`` so float pixels are
exactly ``v / 16``. Split: stratified 80 / 20 train / test (``random_state=0``), then a
stratified 10 % of train as validation (``random_state=0``): 1293 / 144 / 360 of 1797.
There is no published normalisation, so mean / std are those of the training split.
No files are needed; ``root`` is ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robench.data.base import DatasetSource, Dataset, Split, make_dataset, register_source

NAME = "digits"
SEED = 0


def _load(root: Path, download: bool) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)  # (1797, 1, 8, 8) uint8
    y = torch.from_numpy(bunch.target.astype(np.int64))  # (1797,) int64
    index = np.arange(len(y))
    rest, test = train_test_split(index, test_size=0.2, stratify=bunch.target, random_state=SEED)
    train, val = train_test_split(
        rest, test_size=0.1, stratify=bunch.target[rest], random_state=SEED
    )
    splits = []
    for part in (train, val, test):
        idx = torch.from_numpy(np.sort(part))  # (M,) int64
        splits.append(Split(x[idx], y[idx]))
    pixels = splits[0].x.to(torch.float64) / 16.0  # (N, 1, 8, 8) float64
    mean = round(float(pixels.mean()), 4)
    std = round(float(pixels.std()), 4)
    return make_dataset(
        NAME, *splits, num_classes=10, pixel_max=16.0, mean=(mean,), std=(std,), augment=False
    )


SOURCE = register_source(
    DatasetSource(name=NAME, load=_load, files=lambda root: [], hint="digits is bundled",
                  failed_training_below=0.80,  # the quick preset's members reach 0.91-0.99
                  paper_counterpart="mnist")  # a small stand-in for the paper's handwritten digits
)
