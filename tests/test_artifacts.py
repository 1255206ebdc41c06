"""Hostile artifacts: member weights and cards, and training checkpoints, that
robench did not write or that changed since. Loaded through the command line, each is
refused with exit code 2 and one line on stderr naming the file, no traceback, and
nothing written: no result row, no card. Nothing is unpickled: a pickle whose loading
would run code (it writes a marker file) runs none, wherever it is put.

:data:`MEMBER_CASES` and :data:`CHECKPOINT_CASES` are the artifacts tried; a checkpoint
JSON naming a missing tensor file starts training over, as documented.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import sqlite3
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import save_file

import robench.presets
import robench.train.trainer as trainer
from robench.cli import main
from robench.models import create_model

MEMBER = "ce-s0"
WEIGHTS, CARD = "weights.safetensors", "card.json"


# ------------------------------------------------------------ payloads


class _RunsCode:
    """Pickled, it runs code when loaded: it writes ``marker`` (what a hostile pickle
    would do instead)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def _pickle_payload(marker: Path) -> bytes:
    """A plain pickle of a 'state dict' whose loading writes ``marker``."""
    return pickle.dumps({"head.weight": _RunsCode(marker)}, protocol=2)


def _torch_payload(marker: Path) -> bytes:
    """``torch.save`` of a 'state dict' (a zip holding a pickle) whose loading writes ``marker``."""
    path = marker.with_suffix(".pt")
    torch.save({"head.weight": _RunsCode(marker)}, path)
    return path.read_bytes()


def _proven(payload: bytes, marker: Path, load: Callable[[bytes], object]) -> bytes:
    """``payload`` after checking that loading it the unsafe way does run its code."""
    load(payload)
    assert marker.read_text() == "code ran", "the payload must really run code when unpickled"
    marker.unlink()
    return payload


def _unsafe_torch_load(payload: bytes) -> object:
    return torch.load(io.BytesIO(payload), weights_only=False)


# ------------------------------------------------------------ running the command line


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    """Exit code and stderr lines of ``robench argv`` run in this process."""
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err.splitlines()


def _assert_one_line_naming(code: int, err: list[str], path: Path, says: str) -> None:
    assert code == 2, err
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    assert str(path) in err[0], err[0]
    assert says in err[0], err[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------ member weights and cards


def _card(member: Path) -> dict:
    return json.loads((member / CARD).read_text())


def _set_card(member: Path, **values) -> Path:
    (member / CARD).write_text(json.dumps({**_card(member), **values}))
    return member / CARD


def _replace_weights(member: Path, data: bytes) -> Path:
    """Weights replaced by ``data``, the card's SHA-256 updated to match: only the format
    check can refuse them."""
    (member / WEIGHTS).write_bytes(data)
    _set_card(member, weights_sha256=_sha256(member / WEIGHTS))
    return member / WEIGHTS


def _safetensors_of(model: torch.nn.Module, tmp: Path) -> bytes:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    return tmp.read_bytes()


def _header_only(header: dict, body: bytes = b"\0" * 64) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + body


def _flip_weights(member: Path, marker: Path) -> tuple[Path, str]:
    data = bytearray((member / WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0x01
    (member / WEIGHTS).write_bytes(bytes(data))
    return member / WEIGHTS, "does not match the SHA-256 in its card"


def _card_text(text: bytes | str, says: str) -> Callable[[Path, Path], tuple[Path, str]]:
    def spoil(member: Path, marker: Path) -> tuple[Path, str]:
        path = member / CARD
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path, says
    return spoil


def _card_values(says: str, drop: tuple[str, ...] = (), named: str = CARD,
                 **values) -> Callable[[Path, Path], tuple[Path, str]]:
    """Card ``values`` set and ``drop`` keys removed; the refusal names file ``named``."""
    def spoil(member: Path, marker: Path) -> tuple[Path, str]:
        card = {k: v for k, v in {**_card(member), **values}.items() if k not in drop}
        (member / CARD).write_text(json.dumps(card))
        return member / named, says
    return spoil


def _weights(make: Callable[[Path, Path], bytes], says: str) -> Callable[[Path, Path], tuple[Path, str]]:
    def spoil(member: Path, marker: Path) -> tuple[Path, str]:
        return _replace_weights(member, make(member, marker)), says
    return spoil


def _truncated(keep: Callable[[int], int]) -> Callable[[Path, Path], bytes]:
    def make(member: Path, marker: Path) -> bytes:
        data = (member / WEIGHTS).read_bytes()
        return data[: keep(len(data))]
    return make


def _model_weights(arch: str, classes: int) -> Callable[[Path, Path], bytes]:
    def make(member: Path, marker: Path) -> bytes:
        model = create_model(arch, classes, "linear", (0.5,), (0.25,))
        return _safetensors_of(model, marker.with_name("other.safetensors"))
    return make


def _zip_archive(member: Path, marker: Path) -> bytes:
    path = marker.with_name("archive.zip")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights.bin", b"\0" * 4096)
    return path.read_bytes()


def _legacy_torch_pickle(member: Path, marker: Path) -> bytes:
    path = marker.with_name("state.pt")
    state = create_model("digits-cnn", 10, "linear", (0.5,), (0.25,)).state_dict()
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path.read_bytes()


def _torch_zip(member: Path, marker: Path) -> bytes:
    path = marker.with_name("state.pt")
    torch.save(create_model("digits-cnn", 10, "linear", (0.5,), (0.25,)).state_dict(), path)
    return path.read_bytes()


def _without_metadata(member: Path, marker: Path) -> bytes:
    """The member's tensors saved as before cards were bound to weights: no metadata."""
    from safetensors.torch import load_file

    path = marker.with_name("unbound.safetensors")
    save_file(load_file(str(member / WEIGHTS)), str(path))
    return path.read_bytes()


def _in_another_members_folder(member: Path, marker: Path) -> tuple[Path, str]:
    """The member's card and weights copied into the folder of another member (ce-s1)."""
    other = member.with_name("ce-s1")
    shutil.copytree(member, other)
    return other / CARD, 'says name "ce-s0" but it lies in folder "ce-s1"'


BINDING_CASES: dict[str, Callable[[Path, Path], tuple[Path, str]]] = {  # robench.binding: refused by zoo list and
    "card edited: loss hinge on CE weights": _card_values(                # report too
        "says loss hinge but its weights were trained with ce; the card was edited",
        loss={"name": "hinge", "bound": "sym", "delta": 1.0}),
    "card edited: seed 3": _card_values("says seed 3 but its weights were trained with 0", seed=3),
    "card and weights in another member's folder": _in_another_members_folder,
    "weights without the card's configuration": _weights(
        _without_metadata, "carries no training configuration (saved before cards were bound to their weights); "
                           "bind them once with `robench zoo migrate"),
}


def _fifo(path: Path) -> Path:
    """``path`` replaced by a FIFO no one writes: a read of it would wait forever."""
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


def _link_to_dev_zero(path: Path) -> Path:
    """``path`` replaced by a link to /dev/zero: a read of it would never end."""
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")
    return path


def _special_card(make: Callable[[Path], Path], says: str) -> Callable[[Path, Path], tuple[Path, str]]:
    def spoil(member: Path, marker: Path) -> tuple[Path, str]:
        return make(member / CARD), says
    return spoil


FIFO_SAYS, DEVICE_SAYS = "is a FIFO (named pipe), not a regular file", "is a character device, not a regular file"


@contextmanager
def _within(seconds: float):
    """Fail the test with an AssertionError, instead of hanging it, when the block runs
    longer than ``seconds`` (a blocked read of a FIFO is interrupted by SIGALRM)."""
    def late(signum, frame):
        raise AssertionError(f"still running after {seconds} s: a read blocked or never ended")

    previous = signal.signal(signal.SIGALRM, late)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


HTML = b"<!DOCTYPE html><html><head><title>Download</title></head><body>Sign in to continue</body></html>\n"
HUGE = 10**12  # elements a header claims for one tensor (4 TB of F32)

MEMBER_CASES: dict[str, Callable[[Path, Path], tuple[Path, str]]] = {  # case -> spoil(member, marker)
    "weights changed, card's SHA-256 kept": _flip_weights,
    "card not JSON": _card_text("{not json", "is corrupt (not JSON"),
    "card not UTF-8": _card_text(b'{"name": "\xff\xfe"}', "is corrupt (not JSON"),
    "card JSON nested 100000 deep": _card_text("[" * 100_000 + "]" * 100_000, "nested too deep"),
    "card a JSON array": _card_text("[1, 2, 3]", "a JSON array, not an object"),
    "card a JSON string": _card_text('"ce-s0"', "a JSON string, not an object"),
    "card lacks keys": _card_values("is incomplete (no num_classes, weights_sha256)",
                                    drop=("num_classes", "weights_sha256")),
    "num_classes 'ten'": _card_values('num_classes is "ten", not an integer', num_classes="ten"),
    "num_classes 10**12 (weights of 10)": _card_values("does not fit architecture 'digits-cnn' "
                                                       "(1000000000000 classes", named=WEIGHTS, num_classes=HUGE),
    "mean a string": _card_values('mean is "0.3", not a non-empty list', mean="0.3"),
    "std zero": _card_values("std is [0], not a non-empty list of positive", std=[0]),
    "architecture unknown": _card_values('architecture is "resnet-9000", not one of', architecture="resnet-9000"),
    "architecture a list": _card_values('architecture is ["digits-cnn"]', architecture=["digits-cnn"]),
    "head unknown": _card_values('head is "cosine", not one of linear, unit', head="cosine"),
    "loss delta a string": _card_values("loss is", loss={"name": "ce", "bound": "sym", "delta": "1"}),
    "seed a boolean": _card_values("seed is true", seed=True),
    "mean beyond a float": _card_values("mean is [1000000", mean=[10**400]),
    "weights_sha256 a number": _card_values("weights_sha256 is 0", weights_sha256=0),
    "card a FIFO": _special_card(_fifo, FIFO_SAYS),
    "card a link to /dev/zero": _special_card(_link_to_dev_zero, DEVICE_SAYS),
    **BINDING_CASES,
    "safetensors cut in half": _weights(_truncated(lambda n: n // 2), "is not a readable safetensors file"),
    "safetensors cut inside its header": _weights(_truncated(lambda n: 100), "is not a readable safetensors file"),
    "safetensors of 4 bytes": _weights(_truncated(lambda n: 4), "shorter than a safetensors header"),
    "header length of 2**62": _weights(lambda m, k: (2**62).to_bytes(8, "little") + b"{}",
                                       "is not a readable safetensors file"),
    "header claiming a 4 TB tensor": _weights(lambda m, k: _header_only(
        {"head.weight": {"dtype": "F32", "shape": [HUGE], "data_offsets": [0, 4 * HUGE]}}),
        "lies outside the file"),
    "header claiming a 4 TB tensor of 0 bytes": _weights(lambda m, k: _header_only(
        {"head.weight": {"dtype": "F32", "shape": [HUGE], "data_offsets": [0, 0]}}), "claims shape"),
    "header of a 200,000-dimensional tensor": _weights(lambda m, k: _header_only(
        {"head.weight": {"dtype": "F32", "shape": [2**40] * 200_000, "data_offsets": [0, 0]}}), "no valid shape"),
    "safetensors of another architecture": _weights(_model_weights("mnist-cnn", 10), "does not fit architecture"),
    "safetensors of another class count": _weights(_model_weights("digits-cnn", 5),
                                                   "tensor 'head.bias' is F32 of shape [5], not F32 of shape [10]"),
    "torch.save pickle (legacy format)": _weights(_legacy_torch_pickle, "is not a readable safetensors file"),
    "torch.save zip": _weights(_torch_zip, "is not a readable safetensors file"),
    "zip archive": _weights(_zip_archive, "is not a readable safetensors file"),
    "HTML page": _weights(lambda m, k: HTML, "is not a readable safetensors file"),
    "pickle that runs code": _weights(lambda m, k: _proven(_pickle_payload(k), k, pickle.loads),
                                      "is not a readable safetensors file"),
    "torch.save zip that runs code": _weights(lambda m, k: _proven(_torch_payload(k), k, _unsafe_torch_load),
                                              "is not a readable safetensors file"),
}


@pytest.fixture(scope="module")
def stored(digits_zoo, tmp_path_factory) -> tuple[Path, Path]:
    """(a zoo holding a copy of the fixture's ce-s0 alone, a results folder holding the
    store of one white-box attack on it)."""
    root = tmp_path_factory.mktemp("artifacts")
    zoo = root / "zoo"
    shutil.copytree(digits_zoo / "digits" / MEMBER, zoo / "digits" / MEMBER)
    results = root / "results"
    assert main(_attack(zoo, results)) == 0
    return zoo, results


def _attack(zoo: Path, results: Path) -> list[str]:
    return ["attack", "--whitebox", "--dataset", "digits", "--zoo-dir", str(zoo), "--defenders", MEMBER,
            "--eps", "0.1", "--num-samples", "20", "--results-dir", str(results)]


@pytest.fixture
def copies(stored, tmp_path) -> tuple[Path, Path, Path]:
    """(zoo, results folder, member folder): private copies of :func:`stored`'s."""
    zoo, results = (Path(shutil.copytree(p, tmp_path / p.name)) for p in stored)
    return zoo, results, zoo / "digits" / MEMBER


def _row_counts(results: Path) -> dict[str, int]:
    """Rows of each table of the store in ``results`` (read only)."""
    connection = sqlite3.connect(f"file:{results / 'results.sqlite'}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        connection.close()


def test_an_intact_member_copy_loads_and_adds_no_row(copies, capsys):
    """The control: the copied member loads, and every cell is stored already."""
    zoo, results, _ = copies
    before = _row_counts(results)
    code, err = _run(capsys, *_attack(zoo, results))
    assert code == 0, err
    assert before["attacks"] > 0 and _row_counts(results) == before


@pytest.mark.parametrize("case", MEMBER_CASES)
def test_a_hostile_member_file_is_refused_with_one_line(case, copies, tmp_path, capsys):
    zoo, results, member = copies
    marker = tmp_path / "marker"
    path, says = MEMBER_CASES[case](member, marker)
    before = _snapshot(results)
    with _within(60):
        code, err = _run(capsys, *_attack(zoo, results))
    _assert_one_line_naming(code, err, path, says)
    assert not marker.exists(), "loading the member ran the pickle's code"
    assert _snapshot(results) == before, "a refused member must add no result"


@pytest.mark.parametrize("command", ["zoo list", "report"])
@pytest.mark.parametrize("case", BINDING_CASES)
def test_a_card_not_bound_to_its_weights_is_refused_by_zoo_list_and_report(case, command, copies, tmp_path, capsys):
    """What `attack` refuses above, `zoo list` and `report` refuse too: exit 2, one line
    naming the file, no report written."""
    zoo, results, member = copies
    path, says = BINDING_CASES[case](member, tmp_path / "marker")
    before = _snapshot(results)
    argv = {"zoo list": ["zoo", "list", "--zoo-dir", str(zoo)],
            "report": ["report", "--dataset", "digits", "--zoo-dir", str(zoo), "--results-dir", str(results),
                       "--out", str(tmp_path / "report")]}[command]
    code, err = _run(capsys, *argv)
    _assert_one_line_naming(code, err, path, says)
    assert _snapshot(results) == before and not (tmp_path / "report").exists()


def test_swapped_member_folders_are_refused(digits_zoo, tmp_path, capsys):
    """Two members' folders swapped (each holds the other's card and weights): every
    command refuses the first it meets, instead of listing or attacking the members
    under each other's names."""
    zoo = tmp_path / "zoo" / "digits"
    shutil.copytree(digits_zoo / "digits" / MEMBER, zoo / "hinge-d1-s0")
    shutil.copytree(digits_zoo / "digits" / "hinge-d1-s0", zoo / MEMBER)
    for argv in (_attack(zoo.parent, tmp_path / "results"), ["zoo", "list", "--zoo-dir", str(zoo.parent)]):
        code, err = _run(capsys, *argv)
        _assert_one_line_naming(code, err, zoo / MEMBER / CARD, 'says name "hinge-d1-s0" but it lies in folder "ce-s0"')
    assert not (tmp_path / "results").exists()


def test_a_hostile_card_in_a_fresh_results_folder_creates_no_store(copies, tmp_path, capsys):
    zoo, _, member = copies
    _set_card(member, num_classes="ten")
    code, err = _run(capsys, *_attack(zoo, tmp_path / "fresh"))
    assert code == 2 and len(err) == 1
    assert not (tmp_path / "fresh" / "results.sqlite").exists()


# ------------------------------------------------------------ training checkpoints

EPOCHS = 3


def _short_spec(real: Callable) -> Callable:
    """The quick preset's train spec, cut to :data:`EPOCHS` epochs."""
    def spec(dataset: str, preset: str, loss: str):
        return robench.presets.with_overrides(real(dataset, preset, loss), epochs=EPOCHS)
    return spec


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """A digits zoo of one member (ce-s0) whose training was killed in its second epoch,
    leaving the checkpoint of its first in ``.partial``."""
    zoo = tmp_path_factory.mktemp("interrupted")
    (zoo / "digits.toml").write_text('architecture = "digits-cnn"\nseeds = [0]\n[[members]]\nloss = "ce"\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(robench.presets, "train_spec", _short_spec(robench.presets.train_spec))
        patch.setattr(trainer, "CHECKPOINT_SECONDS", 0.0)
        real_epoch, calls = trainer._run_epoch, []

        def dies_second(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real_epoch(*args, **kwargs)

        patch.setattr(trainer, "_run_epoch", dies_second)
        assert main(_train(zoo)) == 130
    meta = json.loads((_partial(zoo) / "checkpoint.json").read_text())
    assert meta["epoch"] == 1
    return zoo


def _train(zoo: Path) -> list[str]:
    return ["train", "zoo", "--dataset", "digits", "--zoo-dir", str(zoo)]


def _partial(zoo: Path) -> Path:
    return zoo / "digits" / MEMBER / ".partial"


def _meta(partial: Path) -> dict:
    return json.loads((partial / "checkpoint.json").read_text())


def _tensors(partial: Path) -> Path:
    return partial / _meta(partial)["tensors"]


def _set_meta(partial: Path, **values) -> Path:
    (partial / "checkpoint.json").write_text(json.dumps({**_meta(partial), **values}))
    return partial / "checkpoint.json"


def _replace_tensors(partial: Path, data: bytes) -> Path:
    """The checkpoint's tensor file replaced by ``data``, its JSON's SHA-256 updated."""
    path = _tensors(partial)
    path.write_bytes(data)
    _set_meta(partial, sha256=_sha256(path))
    return path


def _meta_text(text: str, says: str):
    def spoil(partial: Path, marker: Path) -> tuple[Path, str]:
        (partial / "checkpoint.json").write_text(text)
        return partial / "checkpoint.json", says
    return spoil


def _meta_values(says: str, **values):
    def spoil(partial: Path, marker: Path) -> tuple[Path, str]:
        return _set_meta(partial, **values), says
    return spoil


def _meta_without(partial: Path, key: str) -> Path:
    meta = _meta(partial)
    del meta[key]
    (partial / "checkpoint.json").write_text(json.dumps(meta))
    return partial / "checkpoint.json"


def _flip_tensors(partial: Path, marker: Path) -> tuple[Path, str]:
    path = _tensors(partial)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    return path, "does not match its SHA-256"


def _tensor_data(make: Callable[[Path, Path], bytes], says: str):
    def spoil(partial: Path, marker: Path) -> tuple[Path, str]:
        return _replace_tensors(partial, make(partial, marker)), says
    return spoil


def _without_rng(partial: Path, marker: Path) -> bytes:
    from safetensors.torch import load_file

    tensors = {k: v for k, v in load_file(str(_tensors(partial))).items() if not k.startswith("rng.")}
    path = marker.with_name("no-rng.safetensors")
    save_file(tensors, str(path))
    return path.read_bytes()


def _other_model_checkpoint(partial: Path, marker: Path) -> bytes:
    model = create_model("digits-cnn", 5, "linear", (0.5,), (0.25,))
    return _safetensors_of(model, marker.with_name("other.safetensors"))


CHECKPOINT_CASES: dict[str, Callable[[Path, Path], tuple[Path, str]]] = {  # case -> spoil(partial, marker)
    "checkpoint.json not JSON": _meta_text('{"epoch": 1,', "is corrupt (not JSON"),
    "checkpoint.json a JSON array": _meta_text("[]", "a JSON array, not an object"),
    "checkpoint.json without its SHA-256": lambda p, k: (_meta_without(p, "sha256"), "it has no sha256"),
    "checkpoint.json epoch a string": _meta_values('epoch is "one"', epoch="one"),
    "checkpoint.json history a string": _meta_values("history is", history="[]"),
    "checkpoint.json a FIFO": lambda p, k: (_fifo(p / "checkpoint.json"), FIFO_SAYS),
    "checkpoint.json naming a file in another folder": _meta_values("tensors is", tensors="../../card.json"),
    "tensor file changed, SHA-256 kept": _flip_tensors,
    "tensor file cut in half": _tensor_data(lambda p, k: _tensors(p).read_bytes()[:1000],
                                            "is not a readable safetensors file"),
    "tensor file without its RNG states": _tensor_data(_without_rng, "lacks tensor 'rng."),
    "tensor file of another model": _tensor_data(_other_model_checkpoint, "does not fit this run's model"),
    "tensor file an HTML page": _tensor_data(lambda p, k: HTML, "is not a readable safetensors file"),
    "tensor file a pickle that runs code": _tensor_data(lambda p, k: _proven(_pickle_payload(k), k, pickle.loads),
                                                        "is not a readable safetensors file"),
    "tensor file a torch.save zip that runs code": _tensor_data(
        lambda p, k: _proven(_torch_payload(k), k, _unsafe_torch_load), "is not a readable safetensors file"),
}


@pytest.fixture
def resuming(interrupted, tmp_path, monkeypatch) -> tuple[Path, list[int]]:
    """(a private copy of :func:`interrupted`'s zoo, the epochs run by the next training),
    with the same short train spec, so its checkpoint is this run's."""
    zoo = Path(shutil.copytree(interrupted, tmp_path / "zoo"))
    monkeypatch.setattr(robench.presets, "train_spec", _short_spec(robench.presets.train_spec))
    real_epoch, epochs = trainer._run_epoch, []

    def counted(*args, **kwargs):
        epochs.append(1)
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(trainer, "_run_epoch", counted)
    return zoo, epochs


def test_an_intact_checkpoint_resumes(resuming, capsys):
    """The control: the interrupted run resumes after its first epoch."""
    zoo, epochs = resuming
    code, err = _run(capsys, *_train(zoo))
    assert code == 0, err
    assert len(epochs) == EPOCHS - 1
    assert _card(zoo / "digits" / MEMBER)["epochs"] == EPOCHS


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_a_hostile_checkpoint_is_refused_with_one_line(case, resuming, tmp_path, capsys):
    zoo, epochs = resuming
    marker = tmp_path / "marker"
    path, says = CHECKPOINT_CASES[case](_partial(zoo), marker)
    with _within(60):
        code, err = _run(capsys, *_train(zoo))
    _assert_one_line_naming(code, err, path, says)
    assert "to start over" in err[0]
    assert not marker.exists(), "loading the checkpoint ran the pickle's code"
    assert not epochs and not (zoo / "digits" / MEMBER / CARD).exists()


def test_a_checkpoint_naming_a_missing_tensor_file_starts_over(resuming, capsys):
    """The JSON names a tensor file that is gone: as documented, no checkpoint, the run
    trains from its first epoch and leaves no checkpoint behind."""
    zoo, epochs = resuming
    _tensors(_partial(zoo)).unlink()
    code, err = _run(capsys, *_train(zoo))
    assert code == 0, err
    assert len(epochs) == EPOCHS
    assert _card(zoo / "digits" / MEMBER)["epochs"] == EPOCHS
    assert not _partial(zoo).exists()


# ------------------------------------------------------------ TOML files that are not files

def _oversize(path: Path) -> Path:
    """A TOML file of a comment over 1 MiB: larger than any definition robench reads."""
    path.write_bytes(b"# " + b"x" * 2**20 + b"\n")
    return path


TOML_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {  # case -> (make(path), what the line says)
    "a FIFO": (_fifo, FIFO_SAYS),
    "a link to /dev/zero": (_link_to_dev_zero, DEVICE_SAYS),
    "over 1 MiB": (_oversize, "is larger than the 1,048,576 bytes such a file can have"),
}


@pytest.mark.parametrize("case", TOML_CASES)
def test_a_zoo_definition_that_is_not_a_small_regular_file_is_refused_at_once(case, tmp_path, monkeypatch, capsys):
    """``<zoo>/digits.toml`` a FIFO, /dev/zero or too large: one line naming it, exit 2,
    within seconds (no blocked or endless read), nothing trained or written."""
    import robench.train.members as members

    make, says = TOML_CASES[case]
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    path = make(zoo / "digits.toml")
    monkeypatch.setattr(members, "train_model", lambda *a, **k: pytest.fail("a refused definition was trained"))
    with _within(60):
        code, err = _run(capsys, *_train(zoo))
    _assert_one_line_naming(code, err, path, says)
    assert sorted(p.name for p in zoo.iterdir()) == ["digits.toml"]


@pytest.mark.parametrize("case", TOML_CASES)
def test_an_explained_flags_file_that_is_not_a_small_regular_file_is_refused_at_once(case, tmp_path):
    """The report's ``explained_flags.toml`` is read through the same check."""
    from robench.errors import UserError
    from robench.report.gates import EXPLAINED, explained_flags

    make, says = TOML_CASES[case]
    path = make(tmp_path / EXPLAINED)
    with _within(30), pytest.raises(UserError, match=r"explained_flags\.toml ") as refused:
        explained_flags(tmp_path)
    assert says in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("make", [_fifo, _link_to_dev_zero], ids=["a FIFO", "a link to /dev/zero"])
def test_a_result_store_that_is_not_a_regular_file_is_refused_not_taken_for_none(make, tmp_path, capsys):
    """``results.sqlite`` a FIFO or a device: every command reading the store says so in
    one line and exits 2 (it is never read as "no results yet")."""
    make(tmp_path / "results.sqlite")
    with _within(30):
        code, err = _run(capsys, "results", "runs", "--results-dir", str(tmp_path))
    assert code == 2 and len(err) == 1 and "results.sqlite is not a regular file" in err[0], err
