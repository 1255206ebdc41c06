"""robench.data: every dataset format read from tiny files written in the real format.

Offline and CPU-only. Fixtures write idx (plain and .gz), CIFAR-10 pickled batches and
Imagenet32 npz files into tmp_path; each image encodes its own index in its first pixels
so round trips and split membership can be checked exactly. The loaders refuse copies
whose counts are not the official ones, so tests loading tiny files set the official
counts to those written (the ``tiny_counts`` fixture of fileformats.py).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from robench.data import (
    DATASETS,
    Dataset,
    Split,
    data_status,
    dataset_names,
    load_dataset,
    missing_files,
    random_flip_crop,
    required_files,
)
from robench.data import mnist as mnist_module
from robench.data.idx import read_idx_labels, write_idx_images, write_idx_labels
from robench.errors import UserError
from fileformats import _index_of, write_cifar, write_idx_set, write_imagenet32

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}




@pytest.fixture
def no_system_dirs(monkeypatch):
    """Hide Debian's /usr/share/datasets/fashion-mnist so only tmp_path counts."""
    monkeypatch.setattr(mnist_module, "SYSTEM_DIRS", {"mnist": (), "fashion-mnist": ()})


def _user_error(match_path: Path | str, fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert str(match_path) in message, message
    return message


def _check_common(ds: Dataset) -> None:
    for split in (ds.train, ds.val, ds.test):
        assert split.x.dtype == torch.uint8 and split.y.dtype == torch.int64
        assert split.x.shape[1:] == ds.image_shape
        assert 0 <= int(split.y.min()) and int(split.y.max()) < ds.num_classes
    assert len(ds.mean) == len(ds.std) == ds.image_shape[0]
    f = ds.to_float(ds.train.x)
    assert f.dtype == torch.float32 and 0.0 <= float(f.min()) and float(f.max()) <= 1.0
    assert len(ds.split_hash) == 64


def _check_holdout(ds: Dataset, x: np.ndarray, y: np.ndarray) -> None:
    """train + val is the training file, 90 / 10, disjoint, in file order, pixels exact."""
    n = len(x)
    train_idx, val_idx = _index_of(ds.train.x), _index_of(ds.val.x)
    assert len(val_idx) == round(0.1 * n) and len(train_idx) == n - len(val_idx)
    assert not set(train_idx) & set(val_idx)
    assert sorted([*train_idx, *val_idx]) == list(range(n))
    assert (np.diff(train_idx) > 0).all() and (np.diff(val_idx) > 0).all()
    for split, idx in ((ds.train, train_idx), (ds.val, val_idx)):
        assert np.array_equal(split.x.reshape(len(idx), -1).numpy(), x[idx].reshape(len(idx), -1))
        assert np.array_equal(split.y.numpy(), y[idx].astype(np.int64))


# ------------------------------------------------------------------------------- registry


def test_registry_and_unknown_name():
    assert dataset_names() == ["cifar10", "digits", "fashion-mnist", "imagenet32", "mnist"]
    assert "digits" in DATASETS
    message = _user_error("cifar10", load_dataset, "svhn")
    assert "svhn" in message and "mnist" in message


# --------------------------------------------------------------------------------- digits


def test_digits_stratified_split_and_pixels():
    ds = load_dataset("digits", root="/nonexistent")
    _check_common(ds)
    assert ds.image_shape == (1, 8, 8) and ds.num_classes == 10 and ds.pixel_max == 16.0
    assert not ds.augment
    assert len(ds.train) + len(ds.val) == 1437 and len(ds.test) == 360
    assert len(ds.val) == 144  # 10 % of 1437, rounded up by scikit-learn
    from sklearn.datasets import load_digits

    bunch = load_digits()
    everything = torch.cat([ds.train.x, ds.val.x, ds.test.x]).flatten(1).numpy()
    assert sorted(map(bytes, everything)) == sorted(map(bytes, bunch.data.astype(np.uint8)))
    assert int(ds.train.x.max()) == 16
    f = ds.to_float(ds.train.x)
    assert torch.equal(f * 16, ds.train.x.float())  # exactly v / 16
    total = np.bincount(bunch.target, minlength=10)
    test = np.bincount(ds.test.y.numpy(), minlength=10)
    val = np.bincount(ds.val.y.numpy(), minlength=10)
    assert np.abs(test - 0.2 * total).max() <= 1  # stratified
    assert np.abs(val - 0.1 * (total - test)).max() <= 1
    again = load_dataset("digits")
    assert again.split_hash == ds.split_hash
    assert torch.equal(again.val.x, ds.val.x) and torch.equal(again.test.y, ds.test.y)
    assert missing_files("digits", "/nonexistent") == [] and required_files("digits") == []


# ------------------------------------------------------------------- mnist, fashion-mnist


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_datasets_load(tmp_path, tiny_counts, no_system_dirs, name, gz):
    arrays = write_idx_set(tmp_path / IDX_FOLDERS[name] / "raw", gz)
    ds = load_dataset(name, tmp_path)
    _check_common(ds)
    assert ds.image_shape == (1, 28, 28) and ds.pixel_max == 255.0 and not ds.augment
    assert (len(ds.train), len(ds.val), len(ds.test)) == (45, 5, 20)
    _check_holdout(ds, arrays["train_x"], arrays["train_y"])
    assert np.array_equal(ds.test.x[:, 0].numpy(), arrays["test_x"])
    assert np.array_equal(ds.test.y.numpy(), arrays["test_y"])
    assert ds.mean == ((0.1307,) if name == "mnist" else (0.2860,))
    assert load_dataset(name, tmp_path).split_hash == ds.split_hash


def test_idx_plain_and_gz_give_same_dataset(tmp_path, tiny_counts, no_system_dirs):
    write_idx_set(tmp_path / "a" / "MNIST" / "raw", gz=False)
    write_idx_set(tmp_path / "b" / "MNIST" / "raw", gz=True)
    a, b = load_dataset("mnist", tmp_path / "a"), load_dataset("mnist", tmp_path / "b")
    assert a.split_hash == b.split_hash
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)


def test_idx_header_written_by_hand(tmp_path, tiny_counts, no_system_dirs):
    """The idx layout from its specification, not from robench's writer: big-endian
    magic 0x00000803 / 0x00000801, big-endian dimensions, then row-major uint8."""
    tiny_counts.idx(n_train=20, n_test=3)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28).astype(np.uint8)
    for split, n in (("train", 20), ("t10k", 3)):
        x = np.resize(images, (n, 28, 28))
        (raw / f"{split}-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", n, 28, 28)
                                                       + x.tobytes())
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", n)
                                                       + bytes([7, 2, 5] * (n // 3) + [1] * (n % 3)))
    ds = load_dataset("mnist", tmp_path)
    assert np.array_equal(ds.test.x[:, 0].numpy(), images) and ds.test.y.tolist() == [7, 2, 5]
    assert int(ds.test.x[1, 0, 0, 1]) == (28 * 28 + 1) % 256  # image 1, row 0, column 1


def test_half_extracted_plain_file_falls_back_to_its_gz(tmp_path, tiny_counts, no_system_dirs):
    """A download killed while extracting leaves a truncated plain file beside the
    complete .gz; the .gz files are read instead, with the same data."""
    raw = tmp_path / "MNIST" / "raw"
    write_idx_set(raw, gz=True)
    reference = load_dataset("mnist", tmp_path)
    write_idx_set(raw, gz=False)
    plain = raw / "t10k-labels-idx1-ubyte"
    plain.write_bytes(plain.read_bytes()[:10])
    ds = load_dataset("mnist", tmp_path)
    assert ds.split_hash == reference.split_hash and torch.equal(ds.test.y, reference.test.y)
    for packed in raw.glob("*.gz"):
        packed.unlink()
    _user_error(plain, load_dataset, "mnist", tmp_path)  # no archive beside it: the error stands


def test_split_hash_changes_with_data_and_name(tmp_path, tiny_counts, no_system_dirs):
    arrays = write_idx_set(tmp_path / "a" / "MNIST" / "raw", gz=False)
    write_idx_set(tmp_path / "a" / "FashionMNIST" / "raw", gz=False)
    base = load_dataset("mnist", tmp_path / "a")
    assert load_dataset("fashion-mnist", tmp_path / "a").split_hash != base.split_hash
    raw = tmp_path / "b" / "MNIST" / "raw"
    write_idx_set(raw, gz=False)
    arrays["test_x"][3, 10, 10] ^= 1  # one pixel of the test set
    write_idx_images(raw / "t10k-images-idx3-ubyte", arrays["test_x"])
    assert load_dataset("mnist", tmp_path / "b").split_hash != base.split_hash
    write_idx_set(raw, gz=False)
    labels = arrays["train_y"].copy()
    labels[0] = (labels[0] + 1) % 10  # one training label
    write_idx_labels(raw / "train-labels-idx1-ubyte", labels)
    assert load_dataset("mnist", tmp_path / "b").split_hash != base.split_hash


def test_idx_missing_files(tmp_path, tiny_counts, no_system_dirs):
    raw = tmp_path / "MNIST" / "raw"
    message = _user_error(raw / "train-images-idx3-ubyte[.gz]", load_dataset, "mnist", tmp_path)
    assert "t10k-labels-idx1-ubyte[.gz]" in message and "--download" in message
    write_idx_set(raw, gz=True)
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    assert missing_files("mnist", tmp_path) == [raw / "t10k-labels-idx1-ubyte"]
    message = _user_error(raw / "t10k-labels-idx1-ubyte[.gz]", load_dataset, "mnist", tmp_path)
    assert "train-images" not in message
    fashion_raw = tmp_path / "FashionMNIST" / "raw"
    message = _user_error(fashion_raw, load_dataset, "fashion-mnist", tmp_path)
    assert "dataset-fashion-mnist" in message


def test_fashion_lookup_order(tmp_path, tiny_counts, monkeypatch):
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    write_idx_set(system, gz=True, n_train=30, seed=5)
    tiny_counts.idx(n_train=30)
    monkeypatch.setattr(mnist_module, "SYSTEM_DIRS", {"mnist": (), "fashion-mnist": (system,)})
    root = tmp_path / "root"
    assert required_files("fashion-mnist", root)[0] == system / "train-images-idx3-ubyte.gz"
    assert len(load_dataset("fashion-mnist", root).train) == 27  # from the system directory
    write_idx_set(root / "FashionMNIST" / "raw", gz=False, n_train=50)
    tiny_counts.idx(n_train=50)
    assert len(load_dataset("fashion-mnist", root).train) == 45  # ROOT comes first
    with pytest.raises(UserError):
        load_dataset("mnist", root)  # the Debian directory is for fashion-mnist only


def test_idx_download_uses_torchvision(tmp_path, tiny_counts, no_system_dirs, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_mnist(root, download):
        calls.append((root, download))
        write_idx_set(Path(root) / "MNIST" / "raw", gz=True)

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    ds = load_dataset("mnist", tmp_path, download=True)
    assert calls == [(str(tmp_path), True)] and len(ds.train) == 45

    def offline(root, download):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nno network")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    message = _user_error(tmp_path / "FashionMNIST" / "raw", load_dataset, "fashion-mnist",
                          tmp_path, download=True)
    assert "no network" in message


def _idx_case(raw: Path, case: str) -> Path:
    """Damage one file of a valid set in ``raw`` and return its path."""
    images, labels = raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"
    if case == "wrong magic":
        labels.write_bytes(images.read_bytes())
        return labels
    if case == "truncated":
        images.write_bytes(images.read_bytes()[:-7])
        return images
    if case == "extra bytes":
        images.write_bytes(images.read_bytes() + b"\0\0")
        return images
    if case == "short header":
        labels.write_bytes(b"\x00\x00\x08\x01\x00")
        return labels
    if case == "label out of range":
        write_idx_labels(labels, np.full(50, 10, dtype=np.uint8))
        return labels
    if case == "count mismatch":
        write_idx_labels(labels, np.zeros(49, dtype=np.uint8))
        return labels
    if case == "wrong image size":
        write_idx_images(images, np.zeros((50, 27, 28), dtype=np.uint8))
        return images
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["wrong magic", "truncated", "extra bytes", "short header", "label out of range",
     "count mismatch", "wrong image size"],
)
def test_idx_corrupt_files(tmp_path, tiny_counts, no_system_dirs, case):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_set(raw, gz=False)
    bad = _idx_case(raw, case)
    _user_error(bad, load_dataset, "mnist", tmp_path)


def test_idx_corrupt_gzip(tmp_path, tiny_counts, no_system_dirs):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_set(raw, gz=True)
    bad = raw / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated gzip stream
    _user_error(bad, load_dataset, "mnist", tmp_path)
    bad.write_bytes(b"not gzip at all")
    _user_error(bad, load_dataset, "mnist", tmp_path)
    packed = raw / "t10k-labels-idx1-ubyte.gz"
    packed.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 8))  # images magic
    message = _user_error(packed, read_idx_labels, packed)
    assert "magic 0x00000803" in message


@pytest.mark.skipif(
    not DEBIAN_FASHION.is_dir(), reason="Debian dataset-fashion-mnist not installed"
)
def test_debian_fashion_mnist(tmp_path):
    ds = load_dataset("fashion-mnist", tmp_path)  # tmp_path has no FashionMNIST/raw
    _check_common(ds)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (54000, 6000, 10000)
    assert ds.image_shape == (1, 28, 28)
    assert abs(float(ds.to_float(ds.train.x[:5000]).mean()) - 0.2860) < 0.01
    assert np.bincount(ds.test.y.numpy()).tolist() == [1000] * 10


# -------------------------------------------------------------------------------- cifar10


@pytest.mark.parametrize("protocol", ["python2", 2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_load(tmp_path, tiny_counts, protocol):
    train_x, train_y, test_x, test_y = write_cifar(tmp_path, protocol=protocol)
    ds = load_dataset("cifar10", tmp_path)
    _check_common(ds)
    assert ds.image_shape == (3, 32, 32) and ds.augment and ds.num_classes == 10
    assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2470, 0.2435, 0.2616)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (90, 10, 20)
    _check_holdout(ds, train_x, train_y)
    assert np.array_equal(ds.test.x.numpy(), test_x.reshape(-1, 3, 32, 32))  # R, G, B planes
    assert np.array_equal(ds.test.y.numpy(), test_y)
    assert load_dataset("cifar10", tmp_path).split_hash == ds.split_hash


class _Evil:
    """Pickles as a call of os.system: the restricted unpickler must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar_case(folder: Path, case: str, tmp_path: Path) -> Path:
    path = folder / "data_batch_3"
    good = {b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 20}
    if case == "forbidden class":
        obj = {b"data": _Evil(tmp_path / "pwned"), b"labels": [0] * 20}
    elif case == "truncated":
        path.write_bytes(path.read_bytes()[:100])
        return path
    elif case == "garbage":
        path.write_bytes(b"this is not a pickle")
        return path
    elif case == "wrong shape":
        obj = {**good, b"data": np.zeros((20, 3000), np.uint8)}
    elif case == "wrong dtype":
        obj = {**good, b"data": np.zeros((20, 3072), np.float32)}
    elif case == "label out of range":
        obj = {**good, b"labels": [0] * 19 + [10]}
    elif case == "label count":
        obj = {**good, b"labels": [0] * 19}
    elif case == "not a dict":
        obj = [1, 2, 3]
    elif case == "no data key":
        obj = {b"labels": [0] * 20}
    else:
        raise AssertionError(case)
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


@pytest.mark.parametrize(
    "case",
    ["forbidden class", "truncated", "garbage", "wrong shape", "wrong dtype",
     "label out of range", "label count", "not a dict", "no data key"],
)
def test_cifar10_corrupt(tmp_path, tiny_counts, case):
    write_cifar(tmp_path)
    bad = _cifar_case(tmp_path / "cifar-10-batches-py", case, tmp_path)
    message = _user_error(bad, load_dataset, "cifar10", tmp_path)
    if case == "forbidden class":
        assert "system" in message and "not allowed" in message
        assert not (tmp_path / "pwned").exists()


def test_python2_batch_fixture_is_what_python2_wrote():
    """The fixture's opcodes: protocol 2, numpy.core globals, Python 2 strs (bytes), no
    unicode; a plain unpickler reads the same array and labels."""
    import pickletools

    from fileformats import python2_cifar_batch

    data = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072).astype(np.uint8)
    raw = python2_cifar_batch(data, [3, 9], b"training batch 1 of 5")
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(raw)]
    assert ops[0] == ("PROTO", 2) and ("GLOBAL", "numpy.core.multiarray _reconstruct") in ops
    assert not any(name.endswith("UNICODE") for name, _ in ops)
    batch = pickle.loads(raw, encoding="bytes")
    assert set(batch) == {b"batch_label", b"data", b"labels", b"filenames"}
    assert np.array_equal(batch[b"data"], data) and batch[b"labels"] == [3, 9]


def test_cifar10_corrupt_batch_is_fetched_again_with_download(tmp_path, tiny_counts, monkeypatch):
    """A batch cut short (extraction killed) passes the existence check; with --download
    the batches are fetched again (torchvision checks their MD5s), without it the error
    says how to repair."""
    import robench.data.cifar10 as cifar

    train_x, *_ = write_cifar(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    intact = bad.read_bytes()
    bad.write_bytes(intact[: len(intact) // 2])
    message = _user_error(bad, load_dataset, "cifar10", tmp_path)
    assert "pass --download" in message
    fetched = []
    monkeypatch.setattr(cifar, "_download", lambda root: (fetched.append(root), bad.write_bytes(intact)))
    ds = load_dataset("cifar10", tmp_path, download=True)
    assert fetched == [tmp_path] and len(ds.train) + len(ds.val) == len(train_x)


def test_cifar10_missing(tmp_path, tiny_counts):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    message = _user_error(tmp_path / "cifar-10-batches-py" / "test_batch", load_dataset,
                          "cifar10", tmp_path)
    assert "data_batch_1" not in message and "--download" in message


# ----------------------------------------------------------------------------- imagenet32


def test_imagenet32_load(tmp_path, tiny_counts):
    train_x, train_y, val_x, val_y = write_imagenet32(tmp_path)
    ds = load_dataset("imagenet32", tmp_path)
    _check_common(ds)
    assert ds.num_classes == 1000 and ds.augment and ds.image_shape == (3, 32, 32)
    assert (len(ds.train), len(ds.test)) == (70, 11)
    assert ds.val is ds.test  # PROTOCOL.md: all train; val = test
    assert np.array_equal(ds.train.x.numpy(), train_x.reshape(-1, 3, 32, 32))
    assert np.array_equal(ds.train.y.numpy(), train_y - 1)  # 1..1000 -> 0..999
    assert ds.train.y[:2].tolist() == [0, 999]
    assert np.array_equal(ds.test.x.numpy(), val_x.reshape(-1, 3, 32, 32))
    assert np.array_equal(ds.test.y.numpy(), val_y - 1)
    assert load_dataset("imagenet32", tmp_path).split_hash == ds.split_hash
    moved = ds.to("cpu")
    assert moved.val is moved.test


def test_imagenet32_hash_sees_labels(tmp_path, tiny_counts):
    write_imagenet32(tmp_path / "a")
    _, train_y, _, _ = write_imagenet32(tmp_path / "b")
    path = tmp_path / "b" / "Imagenet32_train_npz" / "train_data_batch_10.npz"
    with np.load(path) as npz:
        data, labels = npz["data"], npz["labels"].copy()
    labels[-1] = labels[-1] % 1000 + 1
    np.savez(path, data=data, labels=labels)
    assert load_dataset("imagenet32", tmp_path / "a").split_hash != load_dataset(
        "imagenet32", tmp_path / "b").split_hash


@pytest.mark.parametrize(
    "case", ["label 0", "label 1001", "wrong shape", "wrong dtype", "no labels", "garbage",
             "object array"]
)
def test_imagenet32_corrupt(tmp_path, tiny_counts, case):
    write_imagenet32(tmp_path)
    path = tmp_path / "Imagenet32_train_npz" / "train_data_batch_4.npz"
    data, labels = np.zeros((7, 3072), np.uint8), np.arange(1, 8)
    if case == "label 0":
        np.savez(path, data=data, labels=labels - 1)
    elif case == "label 1001":
        np.savez(path, data=data, labels=labels + 994)
    elif case == "wrong shape":
        np.savez(path, data=np.zeros((7, 3, 32, 32), np.uint8), labels=labels)
    elif case == "wrong dtype":
        np.savez(path, data=data.astype(np.float32), labels=labels)
    elif case == "no labels":
        np.savez(path, data=data)
    elif case == "garbage":
        path.write_bytes(b"PK\x03\x04 truncated zip")
    elif case == "object array":
        np.savez(path, data=data, labels=np.array([object()] * 7, dtype=object))
    _user_error(path, load_dataset, "imagenet32", tmp_path)


def _npy(header: str, payload: bytes) -> bytes:
    """A version-1.0 .npy member with ``header`` written verbatim."""
    raw = header.encode()
    raw += b" " * ((64 - (10 + len(raw) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw + payload


@pytest.mark.parametrize("variant", ["python 2 header", "fortran order", "big-endian labels"])
def test_imagenet32_valid_npy_variants(tmp_path, tiny_counts, variant):
    """Members numpy reads are read the same, silently: a header Python 2 wrote
    (``7L``), Fortran-ordered pixels, big-endian labels."""
    import warnings
    import zipfile

    _, _, val_x, val_y = write_imagenet32(tmp_path)
    path = tmp_path / "Imagenet32_val_npz" / "val_data.npz"
    if variant == "python 2 header":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("data.npy", _npy("{'descr': '|u1', 'fortran_order': False, 'shape': (11L, 3072L), }",
                                              val_x.tobytes()))
            archive.writestr("labels.npy", _npy("{'descr': '<i8', 'fortran_order': False, 'shape': (11L,), }",
                                                val_y.astype("<i8").tobytes()))
    elif variant == "fortran order":
        np.savez(path, data=np.asfortranarray(val_x), labels=val_y)
    else:
        np.savez(path, data=val_x, labels=val_y.astype(">i4"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset("imagenet32", tmp_path)
    assert np.array_equal(ds.test.x.numpy(), val_x.reshape(-1, 3, 32, 32))
    assert np.array_equal(ds.test.y.numpy(), val_y - 1)


def test_imagenet32_missing_is_manual(tmp_path, tiny_counts):
    write_imagenet32(tmp_path)
    (tmp_path / "Imagenet32_val_npz" / "val_data.npz").unlink()
    message = _user_error(tmp_path / "Imagenet32_val_npz" / "val_data.npz", load_dataset,
                          "imagenet32", tmp_path, download=True)
    assert "image-net.org" in message and "train_data_batch" not in message


# -------------------------------------------------------------------------- official counts


def _partial_idx(root: Path, name: str) -> Path:
    raw = root / IDX_FOLDERS[name] / "raw"
    write_idx_set(raw, gz=True)
    arrays = write_idx_set(raw / "partial", gz=True, n_train=30)
    bad = raw / "train-images-idx3-ubyte.gz"
    write_idx_images(bad, arrays["train_x"])  # 30 of the 50 training images, labels intact
    return bad


def _partial_cifar(root: Path) -> Path:
    write_cifar(root)
    write_cifar(root / "partial", per_batch=12)
    bad = root / "cifar-10-batches-py" / "data_batch_4"
    bad.write_bytes((root / "partial" / "cifar-10-batches-py" / "data_batch_4").read_bytes())
    return bad


def _partial_imagenet32(root: Path) -> Path:
    write_imagenet32(root)
    bad = root / "Imagenet32_train_npz" / "train_data_batch_4.npz"
    with np.load(bad) as npz:
        data, labels = npz["data"], npz["labels"]
    np.savez(bad, data=data[:5], labels=labels[:5])
    return bad


@pytest.mark.parametrize(
    "name, damage, found, official",
    [("mnist", "idx", "30 images", "holds 50"), ("fashion-mnist", "idx", "30 images", "holds 50"),
     ("cifar10", "cifar", "12 images", "holds 20"),
     ("imagenet32", "imagenet32", "5 images, 68 in the 10 train files", "holds 70")],
)
def test_partial_copy_is_refused(tmp_path, no_system_dirs, tiny_counts, name, damage, found, official):
    """A copy with fewer images than the official count (monkeypatched here to the tiny
    counts written) is a UserError naming the short file, both counts and the remedy."""
    bad = {"idx": lambda: _partial_idx(tmp_path, name), "cifar": lambda: _partial_cifar(tmp_path),
           "imagenet32": lambda: _partial_imagenet32(tmp_path)}[damage]()
    message = _user_error(bad, load_dataset, name, tmp_path)
    assert found in message and official in message and "partial" in message, message
    assert "again" in message, message  # download / extract / unpack it again


def test_official_counts_are_the_published_ones():
    """The constants the loaders check (PROTOCOL.md "Data"): 60k / 10k idx images,
    six CIFAR-10 batches of 10k, 1,281,167 + 50k Imagenet32 images."""
    from robench.data import cifar10, imagenet32

    assert mnist_module.OFFICIAL_COUNTS == {"train": 60_000, "t10k": 10_000}
    assert cifar10.OFFICIAL_COUNTS == {**{f"data_batch_{i}": 10_000 for i in range(1, 6)},
                                       "test_batch": 10_000}
    assert imagenet32.OFFICIAL_COUNTS == {"train": 1_281_167, "val": 50_000}


def test_idx_count_is_refused_from_the_header(tmp_path, no_system_dirs, tiny_counts):
    """A header claiming 10**9 images is refused before any data are read: the file
    holds none, and nothing near 10**9 × 784 bytes is allocated."""
    import tracemalloc

    raw = tmp_path / "MNIST" / "raw"
    write_idx_set(raw, gz=True)
    bad = raw / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(struct.pack(">4I", 0x803, 10**9, 28, 28)))
    tracemalloc.start()
    try:
        message = _user_error(bad, load_dataset, "mnist", tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "1,000,000,000 images" in message and "holds 50" in message
    assert peak < 64 << 20


def test_gzip_bomb_is_read_only_as_far_as_its_header(tmp_path, no_system_dirs, tiny_counts):
    """A .gz whose header is right but which decompresses to 1 GiB more is refused after
    the header's 50 × 784 bytes and one more: it is never decompressed whole."""
    import time
    import tracemalloc

    raw = tmp_path / "MNIST" / "raw"
    arrays = write_idx_set(raw, gz=True)
    bad = raw / "train-images-idx3-ubyte.gz"
    header = gzip.compress(struct.pack(">4I", 0x803, 50, 28, 28) + arrays["train_x"].tobytes())
    bad.write_bytes(header + gzip.compress(bytes(64 << 20)) * 16)  # gzip members: 1 GiB of zeros after
    assert bad.stat().st_size < 2 << 20
    tracemalloc.start()
    start = time.perf_counter()
    try:
        message = _user_error(bad, load_dataset, "mnist", tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "extra bytes" in message and time.perf_counter() - start < 5
    assert peak < 64 << 20


# ----------------------------------------------------------------------- hostile pickles


def _write_marker(path: str) -> None:
    """What a hostile pickle would run: create ``path``."""
    Path(path).write_text("code ran")


def _text_op(text: str, protocol: int) -> bytes:
    if protocol == 0:
        return b"V" + text.encode("raw_unicode_escape") + b"\n"
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _hostile_pickle(module: str, name: str, args: tuple, protocol: int) -> bytes:
    """``{b'data': module.name(*args), b'labels': [0]}`` written opcode by opcode, with
    GLOBAL (protocols 0, 2) or STACK_GLOBAL (5); an arg that is a list of strs is
    written as a list."""
    def value(arg) -> bytes:
        if isinstance(arg, list):
            return b"(" + b"".join(_text_op(a, protocol) for a in arg) + b"l"
        return _text_op(arg, protocol)

    call_args = b"(" + b"".join(value(a) for a in args) + b"t"
    if protocol == 5:
        short = lambda s: b"\x8c" + bytes([len(s)]) + s.encode()  # noqa: E731
        call = short(module) + short(name) + b"\x93" + call_args + b"R"
        head, key, labels = b"\x80\x05}", b"C\x04data", b"C\x06labels(K\x00l"
    elif protocol == 2:
        call = f"c{module}\n{name}\n".encode() + call_args + b"R"
        head, key, labels = b"\x80\x02}", b"U\x04data", b"U\x06labels(K\x00l"
    else:
        call = f"c{module}\n{name}\n".encode() + call_args + b"R"
        head, key, labels = b"(d", b"S'data'\n", b"S'labels'\n(I0\nl"
    return head + key + call + b"s" + labels + b"s."


def _payloads(marker: Path) -> dict[str, tuple[str, str, tuple]]:
    m = str(marker)
    return {
        "builtins.eval": ("builtins", "eval", (f"open({m!r}, 'w').close()",)),
        "builtins.exec": ("builtins", "exec", (f"open({m!r}, 'w').close()",)),
        "os.system": ("os", "system", (f"touch '{m}'",)),
        "posix.system": ("posix", "system", (f"touch '{m}'",)),
        "subprocess.Popen": ("subprocess", "Popen", (["touch", m],)),
        "function": (_write_marker.__module__, "_write_marker", (m,)),
    }


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("payload", ["builtins.eval", "builtins.exec", "os.system", "posix.system",
                                     "subprocess.Popen", "function"])
def test_hostile_cifar_pickle_runs_nothing(tmp_path, tiny_counts, payload, protocol):
    """A batch whose pickle would run code is refused naming the global, and the code
    did not run: its marker file does not exist. The same payload through a plain
    unpickler does create its marker (so the payload is a working one)."""
    write_cifar(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    module, name, args = _payloads(tmp_path / "pwned")[payload]
    bad.write_bytes(_hostile_pickle(module, name, args, protocol))
    message = _user_error(bad, load_dataset, "cifar10", tmp_path)
    assert f"{module}.{name}" in message and "not allowed" in message, message
    assert not (tmp_path / "pwned").exists()

    control = tmp_path / "control"
    module, name, args = _payloads(control)[payload]
    ran = pickle.loads(_hostile_pickle(module, name, args, protocol), encoding="bytes")[b"data"]
    if hasattr(ran, "wait"):
        ran.wait()  # subprocess.Popen
    assert control.exists()


_DTYPE_U1 = b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x85R"
_RECONSTRUCT = b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
_DATA, _LABELS = b"\x80\x02}C\x04data", b"sC\x06labels]s."  # {b"data": ..., b"labels": []}
_DEEP_LISTS = b"]" * 30_000 + b"a" * 29_999  # 30 × the recursion limit
def _colliding_tuple_keys(n: int) -> list[tuple[int, int]]:
    """``n`` pairs of ints with one and the same hash, from CPython's tuple hash (an
    xxHash round per item, Python >= 3.8, 64-bit): pick ``a``, solve for the hash of
    ``b``, keep the pairs whose ``b`` is an int hashing to it (|b| < 2**61 - 1)."""
    m, x1, x2, x5, p61 = 2**64, 11400714785074694791, 14029467366897019727, 2870177450012600261, 2**61 - 1

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (64 - r))) % m

    def step(acc: int, h: int) -> int:
        return rotl((acc + h % m * x2) % m, 31) * x1 % m

    target = rotl(step(step(x5, 0), 0) * pow(x1, -1, m) % m, 64 - 31)  # what (0, 0) reaches
    pairs, a = [], 0
    while len(pairs) < n:
        hb = (target - step(x5, a)) * pow(x2, -1, m) % m
        b = hb if hb < p61 else hb - m if hb > m - p61 else None
        if b is not None and b != -1:
            pairs.append((a, b))
        a += 1
    return pairs


def _colliding_dict(n: int) -> bytes:
    """A protocol-2 pickle of a dict of ``n`` keys of one hash (each insertion compares
    with all before it: 30,000 take about 10 s, 60,000 half a minute)."""
    keys = _colliding_tuple_keys(n)
    assert len({hash(k) for k in keys}) == 1
    long1 = lambda v: b"\x8a\x09" + v.to_bytes(9, "little", signed=True)  # noqa: E731
    return b"\x80\x02}(" + b"".join(long1(a) + long1(b) + b"\x86N" for a, b in keys) + b"u."


HOSTILE = {  # case: (pickle, what the refusal says)
    "bytes8 length 2**62": (b"\x80\x05\x8e" + struct.pack("<Q", 2**62) + b"abc.", "bytes8"),
    "binunicode8 length 2**40": (b"\x80\x05\x8d" + struct.pack("<Q", 2**40) + b"abc.", "unicodestring8"),
    "memo index 2**31": (b"\x80\x02Nr" + struct.pack("<I", 2**31 - 1) + b".", "memo index"),
    "frame 2**60": (b"\x80\x05\x95" + struct.pack("<Q", 2**60) + b"N.", "frame of"),
    "deep lists": (_DATA + _DEEP_LISTS + b"sC\x06labels" + _DEEP_LISTS + b"s.", "b'data' is a list"),
    "deep dicts": (b"\x80\x02" + b"}K\x00" * 50_000 + b"}" + b"s" * 50_000 + b".", "dict entries"),
    "30,000 keys of one hash": (lambda: _colliding_dict(30_000), "dict entries"),
    "a set": (b"\x80\x04\x8f(K\x01K\x02\x90.", "set opcode"),
    "stack underflow": (b"\x80\x02K\x01\x86.", "takes more than the stack holds"),
    "shape 10**12 in the array state": (
        _DATA + _RECONSTRUCT + b"(K\x01\x8a\x06" + (10**12).to_bytes(6, "little") + b"M\x00\x0c\x86"
        + _DTYPE_U1 + b"\x89C\x00tb" + _LABELS, "shape (1000000000000, 3072) needs"),
    "long of 10**5 digits": (b"(I" + b"7" * 100_000 + b"\n.", "integer"),
    "long4 of 10**6 bytes": (b"\x80\x02\x8b" + struct.pack("<I", 10**6) + b"\x7f" * 10**6 + b".", "integer"),
    "dtype object": (_DATA + _RECONSTRUCT + b"(K\x01K\x01\x85" + b"cnumpy\ndtype\nX\x02\x00\x00\x00O8\x85R"
                     + b"\x89]tb" + _LABELS, "not an integer dtype"),
    "frombuffer of 10**12": (
        _DATA + b"\x8c\x13numpy._core.numeric\x8c\x0b_frombuffer\x93(C\x00\x8c\x05numpy\x8c\x05dtype\x93"
        + b"\x8c\x02u1\x85R\x8a\x06" + (10**12).to_bytes(6, "little") + b"\x85\x8c\x01CtR" + _LABELS,
        "shape (1000000000000,) needs"),
    "a global named over two lines": (b"\x80\x04\x8c\x02os\x8c\x07sys\ntem\x93N\x85R.", "not allowed"),
    "ndarray called": (_DATA + b"cnumpy\nndarray\n\x8a\x06" + (10**12).to_bytes(6, "little") + b"\x85R" + _LABELS,
                       "bare numpy ndarray"),  # recorded, never called
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_cifar_structure_is_refused_cheaply(tmp_path, case):
    """Pickles built to exhaust memory, stack or time (30,000 dict keys of one hash take
    about 10 s to insert) are refused with a UserError saying why, within 64 MiB
    (tracemalloc peak) and 5 s."""
    import time
    import tracemalloc

    from robench.data.cifar10 import read_batch

    raw, reason = HOSTILE[case]
    path = tmp_path / "data_batch_1"
    path.write_bytes(raw() if callable(raw) else raw)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        message = _user_error(path, read_batch, path, count=20_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reason in message, message
    assert peak < 64 << 20 and time.perf_counter() - start < 5


# ------------------------------------------------------- a data root of wrong files, CLI


def _html(path: Path) -> None:
    path.write_bytes(b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n")


def _wrong_root(root: Path, case: str) -> tuple[str, Path]:
    """A data root holding the dataset with one wrong file: (dataset, that file)."""
    raw = root / "MNIST" / "raw"
    if case in ("html page", "gzip of garbage", "labels magic", "32x32", "count mismatch", "partial mnist"):
        write_idx_set(raw, gz=False)
    images, labels = raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"
    if case == "html page":
        _html(images)
    elif case == "gzip of garbage":
        images.unlink()
        images = raw / "train-images-idx3-ubyte.gz"
        images.write_bytes(gzip.compress(os.urandom(5000)))
    elif case == "labels magic":
        labels.write_bytes(b"\x00\x00\x08\x02" + labels.read_bytes()[4:])
        return "mnist", labels
    elif case == "32x32":
        write_idx_images(images, np.zeros((50, 32, 32), np.uint8))
    elif case == "count mismatch":
        write_idx_labels(labels, np.zeros(49, np.uint8))
        return "mnist", labels
    elif case == "partial mnist":
        write_idx_images(images, np.zeros((30, 28, 28), np.uint8))
        write_idx_labels(labels, np.zeros(30, np.uint8))
    elif case == "cifar batch is a zip":
        write_cifar(root)
        bad = root / "cifar-10-batches-py" / "test_batch"
        np.savez(root / "batch.npz", data=np.zeros((20, 3072), np.uint8))
        bad.write_bytes((root / "batch.npz").read_bytes())
        return "cifar10", bad
    elif case == "npz wrong keys":
        write_imagenet32(root)
        bad = root / "Imagenet32_val_npz" / "val_data.npz"
        np.savez(bad, x=np.zeros((11, 3072), np.uint8), y=np.ones(11, np.int64))
        return "imagenet32", bad
    elif case == "partial imagenet32":
        write_imagenet32(root)
        bad = root / "Imagenet32_val_npz" / "val_data.npz"
        np.savez(bad, data=np.zeros((10, 3072), np.uint8), labels=np.ones(10, np.int64))
        return "imagenet32", bad
    return "mnist", images


@pytest.mark.parametrize(
    "case",
    ["html page", "gzip of garbage", "labels magic", "32x32", "count mismatch", "partial mnist",
     "cifar batch is a zip", "npz wrong keys", "partial imagenet32"],
)
def test_cli_wrong_data_files_exit_2_with_one_line(tmp_path, no_system_dirs, tiny_counts, capsys, case):
    """``robench train zoo`` on a data root with one wrong file: exit 2, one stderr line
    naming the file, no traceback, nothing written under the zoo folder."""
    from robench.cli import main

    root, zoo = tmp_path / "data", tmp_path / "zoo"
    dataset, bad = _wrong_root(root, case)
    capsys.readouterr()
    code = main(["train", "zoo", "--dataset", dataset, "--data-root", str(root), "--zoo-dir", str(zoo),
                 "--device", "cpu"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and str(bad) in lines[0], err
    assert "Traceback" not in err
    assert not zoo.exists() or not any(zoo.iterdir())


# --------------------------------------------------------------------- containers, status


def test_split_and_dataset_helpers(tmp_path):
    ds = load_dataset("digits")
    part = ds.train.subset(torch.tensor([3, 1]))
    assert len(part) == 2 and torch.equal(part.x[0], ds.train.x[3])
    mask = ds.train.y == 0
    assert len(ds.train.subset(mask)) == int(mask.sum())
    moved = ds.to("cpu")
    assert moved.split_hash == ds.split_hash and torch.equal(moved.test.x, ds.test.x)
    with pytest.raises(ValueError):
        Split(torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError):
        Split(torch.zeros(3, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))


def test_data_status(tmp_path, tiny_counts, no_system_dirs):
    write_cifar(tmp_path)
    write_idx_set(tmp_path / "MNIST" / "raw", gz=True)
    rows = {row["name"]: row for row in data_status(tmp_path)}
    assert set(rows) == set(dataset_names())
    assert rows["digits"]["present"] and rows["digits"]["missing"] == []
    assert rows["cifar10"]["present"] and rows["mnist"]["present"]
    assert rows["mnist"]["files"][0].endswith("train-images-idx3-ubyte.gz")
    assert not rows["fashion-mnist"]["present"] and len(rows["fashion-mnist"]["missing"]) == 4
    assert not rows["imagenet32"]["present"] and len(rows["imagenet32"]["missing"]) == 11
    assert "image-net.org" in rows["imagenet32"]["hint"]


# ---------------------------------------------------------------------------- augmentation


def _reference_crops(image: torch.Tensor, pad: int = 4) -> list[torch.Tensor]:
    """Every flip x pad-crop of one (C, H, W) image, by padding and slicing."""
    _, h, w = image.shape
    out = []
    for flipped in (image, image.flip(-1)):
        padded = torch.nn.functional.pad(flipped, (pad, pad, pad, pad))
        offsets = range(2 * pad + 1)
        out += [padded[:, i : i + h, j : j + w] for i in offsets for j in offsets]
    return out


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_flip_crop(dtype):
    gen = torch.Generator().manual_seed(0)
    base = torch.randint(1, 256, (3, 10, 12), generator=gen).to(dtype)  # no zeros in the image
    x = base.expand(48, -1, -1, -1).clone()  # (48, 3, 10, 12), one image repeated
    before = x.clone()
    out = random_flip_crop(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == dtype and torch.equal(x, before)
    again = random_flip_crop(x, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # deterministic for a seeded generator
    other = random_flip_crop(x, torch.Generator().manual_seed(2))
    assert not torch.equal(out, other)
    references = _reference_crops(base)
    which = []
    for sample in out:
        matches = [k for k, ref in enumerate(references) if torch.equal(sample, ref)]
        assert matches, "every output is a flip + pad-4 crop of its input"
        which.append(matches[0])
        values, counts = (t.tolist() for t in sample[sample != 0].unique(return_counts=True))
        kept = dict(zip(*(t.tolist() for t in base.unique(return_counts=True))))
        assert all(c <= kept[v] for v, c in zip(values, counts))  # only zeros were added
    assert len(set(which)) > 10  # per-sample draws, not one draw for the batch
    assert any(k < 81 for k in which) and any(k >= 81 for k in which)  # both flips occur


def test_random_flip_crop_per_sample_identity():
    x = torch.arange(16 * 2 * 4 * 4, dtype=torch.float32).view(16, 2, 4, 4)
    out = random_flip_crop(x, torch.Generator().manual_seed(0), pad=0)
    for sample, source in zip(out, x):  # pad 0: only flips, and each of its own sample
        assert torch.equal(sample, source) or torch.equal(sample, source.flip(-1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_random_flip_crop_cuda():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    cpu = random_flip_crop(x, torch.Generator().manual_seed(3))
    gpu = random_flip_crop(x.cuda(), torch.Generator().manual_seed(3))
    assert torch.equal(cpu, gpu.cpu())
    on_device = random_flip_crop(x.cuda(), torch.Generator("cuda").manual_seed(3))
    assert on_device.device.type == "cuda" and on_device.shape == x.shape
