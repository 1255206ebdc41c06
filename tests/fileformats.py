"""Writers of tiny dataset files in the exact real formats (idx, CIFAR-10 pickles,
Imagenet32 npz); each image encodes its own index in its first pixels.

The loaders refuse any copy whose sample counts differ from the published ones, so a
test that loads tiny files first sets each source's official counts to the tiny counts
written, with the :func:`tiny_counts` fixture (import it into the test module).
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from robench.data import cifar10, imagenet32, mnist
from robench.data.idx import write_idx_images, write_idx_labels


class TinyCounts:
    """Sets the official-count constants of the file-based sources (mnist and
    fashion-mnist, cifar10, imagenet32) for one test, through ``monkeypatch``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def idx(self, n_train: int = 50, n_test: int = 20) -> None:
        """mnist and fashion-mnist: the counts :func:`write_idx_set` wrote."""
        self.monkeypatch.setitem(mnist.OFFICIAL_COUNTS, "train", n_train)
        self.monkeypatch.setitem(mnist.OFFICIAL_COUNTS, "t10k", n_test)

    def cifar(self, per_batch: int = 20, n_test: int = 20) -> None:
        """cifar10: the counts :func:`write_cifar` wrote."""
        for name in cifar10.TRAIN_FILES:
            self.monkeypatch.setitem(cifar10.OFFICIAL_COUNTS, name, per_batch)
        self.monkeypatch.setitem(cifar10.OFFICIAL_COUNTS, cifar10.TEST_FILE, n_test)

    def imagenet32(self, per_file: int = 7, n_val: int = 11) -> None:
        """imagenet32: the counts :func:`write_imagenet32` wrote."""
        self.monkeypatch.setitem(imagenet32.OFFICIAL_COUNTS, "train", 10 * per_file)
        self.monkeypatch.setitem(imagenet32.OFFICIAL_COUNTS, "val", n_val)


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


def _py2_str(value: bytes) -> bytes:
    """SHORT_BINSTRING: a Python 2 ``str`` (bytes when read with encoding="bytes")."""
    return b"U" + bytes([len(value)]) + value


def _py2_int(value: int) -> bytes:
    """BININT1 or BININT2."""
    return b"K" + bytes([value]) if value < 256 else b"M" + struct.pack("<H", value)


def python2_cifar_batch(data: np.ndarray, labels: list[int], label: bytes) -> bytes:
    """One CIFAR-10 batch with the opcodes of the real files (Python 2 cPickle, protocol
    2) apart from cPickle's memo PUTs and its 1,000-item chunks of long lists, written
    opcode by opcode (this Python's pickle writes ``numpy._core`` globals and unicode
    strings instead). A dict of str keys; ``data`` through
    ``numpy.core.multiarray._reconstruct`` and a BUILD of (1, shape, dtype('u1'), False,
    raw bytes as a str); ``labels`` a list of ints; ``filenames`` a list of str."""
    n, size = data.shape
    dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"  # dtype('u1', False, True)
             + b"(K\x03" + _py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")  # its state
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_str(b"b") + b"\x87R"
             + b"(K\x01" + _py2_int(n) + _py2_int(size) + b"\x86" + dtype + b"\x89"  # version, shape, dtype, C order
             + b"T" + struct.pack("<I", data.nbytes) + data.tobytes() + b"tb")  # raw bytes; BUILD
    label_list = b"](" + b"".join(_py2_int(int(v)) for v in labels) + b"e"
    names = b"](" + b"".join(_py2_str(f"img_{i}.png".encode()) for i in range(n)) + b"e"
    return (b"\x80\x02}(" + _py2_str(b"batch_label") + _py2_str(label) + _py2_str(b"data") + array
            + _py2_str(b"labels") + label_list + _py2_str(b"filenames") + names + b"u.")


def write_cifar(root: Path, per_batch: int = 20, n_test: int = 20, protocol: int | str = 2, seed=0):
    """cifar-10-batches-py: five training batches and a test batch, pickled with
    ``protocol`` or, with ``protocol="python2"``, as Python 2 pickled the real ones."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_x = _images(5 * per_batch, (3072,), seed)
    train_y = rng.integers(0, 10, 5 * per_batch)
    test_x = _images(n_test, (3072,), seed + 1)
    test_y = rng.integers(0, 10, n_test)
    parts = [(f"data_batch_{i + 1}", train_x[i * per_batch : (i + 1) * per_batch],
              train_y[i * per_batch : (i + 1) * per_batch], f"training batch {i + 1} of 5".encode())
             for i in range(5)]
    for name, x, y, label in [*parts, ("test_batch", test_x, test_y, b"testing batch 1 of 1")]:
        if protocol == "python2":
            (folder / name).write_bytes(python2_cifar_batch(x, [int(v) for v in y], label))
        else:
            batch = {b"batch_label": label, b"data": x, b"labels": [int(v) for v in y]}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
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
