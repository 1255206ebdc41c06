"""Writers of tiny dataset files in the exact real formats (idx, CIFAR-10 pickles,
Imagenet32 npz); each image encodes its own index in its first pixels."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from robench.data.idx import write_idx_images, write_idx_labels


def _images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """(n, *shape) uint8 random images whose first two values encode the index."""
    x = np.random.default_rng(seed).integers(1, 256, size=(n, *shape), dtype=np.uint8)
    flat = x.reshape(n, -1)
    flat[:, 0] = np.arange(n) % 256
    flat[:, 1] = np.arange(n) // 256
    return x


def _index_of(x: torch.Tensor) -> np.ndarray:
    """Recover the encoded index of each image of a (N, C, H, W) batch."""
    flat = x.reshape(len(x), -1).numpy().astype(np.int64)
    return flat[:, 0] + 256 * flat[:, 1]


def write_idx_set(directory: Path, gz: bool, n_train: int = 50, n_test: int = 20, seed: int = 0):
    """The four MNIST idx files in ``directory``; returns the arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": _images(n_train, (28, 28), seed),
        "train_y": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_x": _images(n_test, (28, 28), seed + 1),
        "test_y": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    write_idx_images(directory / f"train-images-idx3-ubyte{ext}", arrays["train_x"])
    write_idx_labels(directory / f"train-labels-idx1-ubyte{ext}", arrays["train_y"])
    write_idx_images(directory / f"t10k-images-idx3-ubyte{ext}", arrays["test_x"])
    write_idx_labels(directory / f"t10k-labels-idx1-ubyte{ext}", arrays["test_y"])
    return arrays


def write_cifar(root: Path, per_batch: int = 20, n_test: int = 20, protocol: int = 2, seed=0):
    """cifar-10-batches-py: five training batches and a test batch, pickled like the real ones."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_x = _images(5 * per_batch, (3072,), seed)
    train_y = rng.integers(0, 10, 5 * per_batch)
    test_x = _images(n_test, (3072,), seed + 1)
    test_y = rng.integers(0, 10, n_test)
    for i in range(5):
        part = slice(i * per_batch, (i + 1) * per_batch)
        batch = {b"batch_label": b"training batch", b"data": train_x[part],
                 b"labels": [int(v) for v in train_y[part]]}
        with open(folder / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": test_x, b"labels": [int(v) for v in test_y]}, f, protocol=protocol)
    return train_x, train_y, test_x, test_y


def write_imagenet32(root: Path, per_file: int = 7, n_val: int = 11, seed: int = 0):
    """Imagenet32 npz files: 10 training batches and the validation file; labels 1..1000."""
    (root / "Imagenet32_train_npz").mkdir(parents=True, exist_ok=True)
    (root / "Imagenet32_val_npz").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_x = _images(10 * per_file, (3072,), seed)
    train_y = rng.integers(1, 1001, 10 * per_file)
    train_y[:2] = [1, 1000]
    val_x = _images(n_val, (3072,), seed + 1)
    val_y = rng.integers(1, 1001, n_val)
    for i in range(10):
        part = slice(i * per_file, (i + 1) * per_file)
        np.savez(root / "Imagenet32_train_npz" / f"train_data_batch_{i + 1}.npz",
                 data=train_x[part], labels=list(train_y[part]), mean=np.zeros(3072))
    np.savez(root / "Imagenet32_val_npz" / "val_data.npz", data=val_x, labels=list(val_y))
    return train_x, train_y, val_x, val_y
