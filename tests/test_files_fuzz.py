"""Fuzzing every reader of a file that is not a dataset: a member's card and
weights, a zoo definition, a training checkpoint, the result store and the result CSVs
of robench before the store.

Each reader gets random bytes, random documents of its format and near-valid ones (a
valid file with values of the wrong type, keys missing or unknown, bytes flipped, cut
short). Each example is read or refused with a one-line UserError (exit code 2 and one
line on stderr through the command line); any other exception, a hang past the deadline
or a memory peak past :data:`PEAK_LIMIT` fails. What a reader accepts is checked to be
usable (a loaded model runs, a migrated store reads back). The runs are derandomized, so
CI sees the same examples every time.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import resource
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from factories import experiment_record, store_in_runs
from robench.cli import main
from robench.errors import UserError
from robench.models import MODELS, create_model
from robench.store import SCHEMA_VERSION, AttackRecord, ExperimentRecord, FlagRecord, ResultStore, RunRecord
from robench.store.migrate import migrate
from robench.store.sqlite import DATABASE, LEGACY_FILES
from robench.train.checkpoint import META, TrainState, load_checkpoint, save_checkpoint
from robench.train.rmsprop_tf import RMSPropTF
from robench.cards import ROLES
from robench.zoo import CARD, WEIGHTS, load, load_definition, read_card, save_member

LEGACY = Path(__file__).resolve().parent / "data" / "legacy-results" / "digits"
PEAK_LIMIT = 1024 * 2**20  # growth of the process's peak memory allowed while one test fuzzes
TABLES = (AttackRecord, ExperimentRecord, FlagRecord, RunRecord)


def fuzz(examples: int, deadline_s: float = 5.0):
    """Deterministic hypothesis settings: ``examples`` examples, each within ``deadline_s``."""
    return settings(max_examples=examples, derandomize=True, deadline=deadline_s * 1000, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


def _read_or_refuse(call: Callable[[], Any]) -> Any:
    """``call()``'s result, or the UserError it raised (its message one line); any other
    exception propagates and fails the example."""
    try:
        result = call()
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
        event("refused: " + _reason(str(exc)))
        return exc
    event("read")
    return result


def _reason(message: str) -> str:
    """A refusal's kind, for hypothesis' statistics (--hypothesis-show-statistics)."""
    words = message.split(" ")
    return " ".join(w for w in words[1:5] if "/" not in w)


def _cli(*argv: str) -> int:
    """Exit code of ``robench argv`` run in this process: 0, or 2 with one line on stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    lines = err.getvalue().splitlines()
    event(f"exit {code}")
    assert code in (0, 2), (code, err.getvalue())
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("robench: error: "), lines
    assert "Traceback" not in err.getvalue()
    return code


@contextlib.contextmanager
def _folder():
    with tempfile.TemporaryDirectory(prefix="fuzz-") as name:
        yield Path(name)


@pytest.fixture(autouse=True)
def _bounded_memory():
    """The process's peak memory grows by less than PEAK_LIMIT while a test fuzzes."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    yield
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < PEAK_LIMIT, f"peak memory grew by {grown / 2**20:.0f} MiB"


# ------------------------------------------------------------ JSON values

SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
           | st.text(max_size=12) | st.sampled_from(["", "ce", "digits-cnn", "unit", "../x", "0" * 64]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)


@st.composite
def near(draw, valid: dict[str, Any], plausible: st.SearchStrategy) -> dict[str, Any]:
    """``valid`` with a few keys deleted or given other values, and maybe unknown keys."""
    value = dict(valid)
    for key in draw(st.lists(st.sampled_from(sorted(valid)), max_size=3, unique=True)):
        if draw(st.integers(0, 3)) == 0:
            del value[key]
        else:
            value[key] = draw(plausible | JSON)
    value.update(draw(st.dictionaries(st.text(max_size=6), JSON, max_size=2)))
    return value


@st.composite
def json_files(draw, valid: dict[str, Any], plausible: st.SearchStrategy) -> bytes:
    """Bytes of a JSON file: random bytes, any JSON value, deep nesting, or ``valid`` with
    some values wrong (:func:`near`), now and then cut short."""
    kind = draw(st.sampled_from(["near", "near", "near", "near", "json", "deep", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    if kind == "deep":
        depth = draw(st.integers(100, 200_000))
        return ("[" * depth + "]" * depth).encode()
    text = json.dumps(draw(near(valid, plausible))).encode()
    if draw(st.integers(0, 9)) == 9:
        text = text[: draw(st.integers(0, len(text)))]
    return text


# ------------------------------------------------------------ safetensors files


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8: 8 + length]), data[8 + length:]


def _joined(header: Any, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + body


TENSOR_VALUES = st.sampled_from(["F32", "F64", "I64", "U8", "BF16", "X9", [], [10], [10**12], [0, 0], [0, 40],
                                 [0, 4 * 10**12], [-1, 3], 0, None])


@st.composite
def safetensors_files(draw, valid: bytes) -> bytes:
    """Bytes of a safetensors file near ``valid``: header bytes flipped, one tensor's
    dtype, shape or byte range changed, a tensor dropped or added, another header, a
    lying length prefix, the data cut short."""
    header, body = _split(valid)
    names = sorted(n for n in header if n != "__metadata__")
    kind = draw(st.sampled_from(["entry", "entry", "flip", "drop", "add", "header", "prefix", "cut"]))
    if kind == "flip":
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, min(len(data), 8 + 200) - 1))] ^= draw(st.integers(1, 255))
        return bytes(data)
    if kind in ("entry", "drop", "add"):
        name = draw(st.sampled_from(names))
        if kind == "drop":
            del header[name]
        elif kind == "add":
            header[draw(st.text(max_size=10))] = dict(header[name])
        else:
            header[name] = near_entry = dict(header[name])
            near_entry[draw(st.sampled_from(["dtype", "shape", "data_offsets"]))] = draw(TENSOR_VALUES | JSON)
        return _joined(header, body)
    if kind == "header":
        return _joined(draw(JSON), body)
    if kind == "prefix":
        return draw(st.integers(0, 2**64 - 1)).to_bytes(8, "little") + valid[8:]
    return valid[: draw(st.integers(0, len(valid)))]


# ------------------------------------------------------------ cards and weights

CARD_VALUES = st.sampled_from([10, 5, 1, 0, -1, 10.0, "10", True, 10**12, [], [0.3], [0.3, 0.3, 0.3], [0.0],
                               [float("nan")], "0.3", "digits-cnn", "mnist-cnn", "wrn-28-2", "unit", "linear",
                               "defender", "attacker", {"name": "ce", "bound": "sym", "delta": 1.0},
                               {"name": "1toN", "bound": "zero", "delta": -1}, {"name": "ce"}, "0" * 64])


@pytest.fixture(scope="module")
def member(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """(folder, card) of an untrained digits-cnn member ``ce-s0`` saved as training saves one."""
    folder = tmp_path_factory.mktemp("member") / "digits" / "ce-s0"
    torch.manual_seed(0)
    model = create_model("digits-cnn", 10, "linear", (0.3,), (0.37,))
    card = save_member(folder, model, {
        "name": "ce-s0", "dataset": "digits", "architecture": "digits-cnn", "num_classes": 10, "head": "linear",
        "mean": [0.3], "std": [0.37], "loss": {"name": "ce", "delta": 1.0, "bound": "sym"}, "seed": 0,
        "role": "defender", "clean_test_accuracy": 0.1, "val_accuracy": 0.1, "epochs": 1})
    return folder, card


def _member_copy(member_folder: Path, to: Path, card: bytes | None = None, weights: bytes | None = None) -> Path:
    """A zoo under ``to`` holding a copy of ``member_folder`` with ``card`` / ``weights`` bytes."""
    folder = to / "zoo" / "digits" / member_folder.name
    shutil.copytree(member_folder, folder)
    if card is not None:
        (folder / CARD).write_bytes(card)
    if weights is not None:
        (folder / WEIGHTS).write_bytes(weights)
    return folder


def _assert_runs(model: torch.nn.Module, card: dict[str, Any]) -> None:
    """A loaded member maps a batch of digits to one logit per class."""
    with torch.no_grad():
        logits = model(torch.rand(2, 1, 8, 8))
    assert logits.shape == (2, card["num_classes"])


@fuzz(150)
@given(data=st.data())
def test_card_json(member, data):
    """card.json through read_card, zoo.load and `robench zoo list`."""
    folder, card = member
    text = data.draw(json_files(card, CARD_VALUES))
    with _folder() as tmp:
        copy = _member_copy(folder, tmp, card=text)
        read = _read_or_refuse(lambda: read_card(copy))
        loaded = _read_or_refuse(lambda: load(copy))
        if isinstance(read, UserError):
            assert isinstance(loaded, UserError), "load must refuse a card that read_card refuses"
        if not isinstance(loaded, UserError):
            _assert_runs(*loaded)
        _cli("zoo", "list", "--dataset", "digits", "--zoo-dir", tmp / "zoo")


@fuzz(150)
@given(data=st.data())
def test_weights_safetensors(member, data):
    """weights.safetensors (its SHA-256 in the card updated to match) through zoo.load."""
    folder, card = member
    weights = data.draw(safetensors_files((folder / WEIGHTS).read_bytes()))
    with _folder() as tmp:
        copy = _member_copy(folder, tmp, weights=weights)
        (copy / CARD).write_text(json.dumps({**card, "weights_sha256": _sha256(copy / WEIGHTS)}))
        loaded = _read_or_refuse(lambda: load(copy))
        if not isinstance(loaded, UserError):
            _assert_runs(*loaded)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------ zoo definitions


def _toml_value(value: Any) -> str:
    """``value`` as a TOML value (tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string (JSON's escapes, and DEL escaped)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_document(document: dict[str, Any], tables: bool) -> str:
    """``document`` as TOML; lists of tables as ``[[name]]`` sections when ``tables``."""
    lines, sections = [], []
    for key, value in document.items():
        if tables and isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for entry in value:
                sections.append(f"[[{_toml_string(key)}]]")
                sections.extend(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in entry.items())
        else:
            lines.append(f"{_toml_string(key)} = {_toml_value(value)}")
    return "\n".join(lines + sections) + "\n"


TOML_SCALARS = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=10))
TOML_ANY = st.recursive(TOML_SCALARS, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
SEEDS = (st.lists(st.integers(-2, 2**33), max_size=4)
         | st.dictionaries(st.sampled_from(["quick", "paper", "other"]), st.lists(st.integers(0, 200), max_size=3),
                           max_size=3)
         | st.sampled_from(["0", 0, [True], [0.0], [[0]]]))
LOSSES = st.sampled_from(["ce", "hinge", "1toN", "1toN+ce"])


def _mostly(valid: st.SearchStrategy, other: st.SearchStrategy) -> st.SearchStrategy:
    """``valid`` five times in six, else ``other`` (the simplest draw is ``valid``'s)."""
    return st.integers(0, 5).flatmap(lambda k: other if k == 5 else valid)


ENTRY = st.fixed_dictionaries({"loss": _mostly(LOSSES, st.sampled_from(["CE", ""]) | TOML_ANY)}, optional={
    "delta": _mostly(st.floats(0.1, 10) | st.integers(1, 10), st.floats() | st.integers(-2, 0) | TOML_ANY),
    "bound": _mostly(st.sampled_from(["sym", "zero", "shifted"]), st.just("none") | TOML_ANY),
    "head": _mostly(st.sampled_from(["linear", "unit"]), st.just("cosine") | TOML_ANY),
    "seeds": _mostly(st.lists(st.integers(0, 200), min_size=1, max_size=3), SEEDS),
}).flatmap(lambda entry: st.sampled_from([entry] * 6 + [{**entry, "loss ": 1},
                                                         {k: v for k, v in entry.items() if k != "loss"}]))


@st.composite
def definitions(draw) -> bytes:
    """Bytes of a zoo definition: random bytes, the committed digits one with bytes
    flipped or cut, or a generated document with known and unknown keys of any type,
    duplicate members and missing tables."""
    kind = draw(st.sampled_from(["document", "document", "document", "document", "committed", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "committed":
        data = bytearray((Path(__file__).resolve().parent.parent / "zoo" / "digits.toml").read_bytes())
        for _ in range(draw(st.integers(0, 2))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data[: draw(st.integers(0, len(data)))] if draw(st.integers(0, 3)) == 3 else data)
    document: dict[str, Any] = {}  # the simplest draws make a valid definition
    if draw(st.integers(0, 9)) != 9:
        document["architecture"] = draw(_mostly(st.sampled_from(["digits-cnn", "mnist-cnn"]),
                                                st.just("vgg-16") | TOML_ANY))
    if draw(st.booleans()):
        document["seeds"] = draw(_mostly(st.lists(st.integers(0, 99), min_size=1, max_size=3), SEEDS))
    members = draw(st.lists(ENTRY, min_size=1, max_size=3))
    if draw(st.integers(0, 3)) == 3:
        members.append(dict(members[0]))  # a duplicate member
    if draw(st.integers(0, 9)) != 9:
        document["members"] = members if draw(st.integers(0, 5)) != 5 else draw(TOML_ANY)
    if draw(st.booleans()):
        document["attackers"] = draw(_mostly(st.lists(ENTRY, max_size=2), TOML_ANY))
    if draw(st.integers(0, 9)) == 9:
        document[draw(st.sampled_from(["unknown", "member", "Architecture"]))] = draw(TOML_ANY)
    return _toml_document(document, tables=draw(st.booleans())).encode()


VALID_DEFINITION = 'architecture = "digits-cnn"\nseeds = [0, 1]\n[[members]]\nloss = "ce"\n'
NAMED_DEFINITIONS = {  # the classic mistakes, run besides the generated ones
    "seeds a string": VALID_DEFINITION.replace("[0, 1]", '"0, 1"'),
    "delta a list": VALID_DEFINITION + 'delta = [1.0]\n',
    "loss an integer": VALID_DEFINITION.replace('loss = "ce"', "loss = 1"),
    "duplicate members": VALID_DEFINITION + '[[members]]\nloss = "ce"\n',
    "no members table": 'architecture = "digits-cnn"\nseeds = [0]\n',
    "members not tables": VALID_DEFINITION.replace('[[members]]\nloss = "ce"\n', 'members = ["ce"]\n'),
    "unknown key": VALID_DEFINITION + 'dropout = 0.5\n',
    "valid": VALID_DEFINITION,
}


def _named(cases: dict[str, str], test):
    """``test`` with one hypothesis @example per named case (text as bytes)."""
    for text in cases.values():
        test = example(text=text.encode(), preset="quick")(test)
    return test


@fuzz(300)
@given(text=definitions(), preset=st.sampled_from(["quick", "paper"]))
def test_zoo_definition(text, preset):
    """<zoo-dir>/digits.toml through load_definition."""
    with _folder() as tmp:
        (tmp / "digits.toml").write_bytes(text)
        members = _read_or_refuse(lambda: load_definition("digits", tmp, preset))
    if isinstance(members, UserError):
        return
    names = [m.name for m in members]
    assert members and len(set(names)) == len(names)
    assert any(m.role == "defender" for m in members) and all(m.role in ROLES for m in members)
    assert all(m.arch in MODELS and type(m.seed) is int and m.seed >= 0 for m in members)
    attacker_seeds = {m.seed for m in members if m.role == "attacker"}
    assert not attacker_seeds & {m.seed for m in members if m.role == "defender"}


test_zoo_definition = _named(NAMED_DEFINITIONS, test_zoo_definition)


@pytest.mark.parametrize("case", NAMED_DEFINITIONS)
def test_named_definitions_are_refused_or_read(case, tmp_path):
    """Each named case is refused with a UserError naming the file; the valid one reads."""
    (tmp_path / "digits.toml").write_text(NAMED_DEFINITIONS[case])
    if case == "valid":
        assert [m.name for m in load_definition("digits", tmp_path)] == ["ce-s0", "ce-s1"]
        return
    with pytest.raises(UserError, match=str(tmp_path / "digits.toml")):
        load_definition("digits", tmp_path)


# ------------------------------------------------------------ training checkpoints

FINGERPRINT = "fp"


def _run_state() -> tuple[torch.nn.Module, RMSPropTF, dict[str, torch.Generator]]:
    """A digits-cnn, its optimizer after one step, and the trainer's two generators."""
    torch.manual_seed(0)
    model = create_model("digits-cnn", 10, "linear", (0.3,), (0.37,))
    optimizer = RMSPropTF(model.parameters(), lr=0.01)
    model(torch.rand(4, 1, 8, 8)).sum().backward()
    optimizer.step()
    return model, optimizer, {"shuffle": torch.Generator().manual_seed(0), "augment": torch.Generator().manual_seed(1)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """(folder, its checkpoint.json) of a run checkpointed after one epoch."""
    folder = tmp_path_factory.mktemp("checkpoint")
    model, optimizer, rngs = _run_state()
    save_checkpoint(folder, model, optimizer, rngs, TrainState(1, 5, [{"epoch": 1, "loss": 2.3}], ""), FINGERPRINT)
    return folder, json.loads((folder / META).read_text())


META_VALUES = st.sampled_from(["fp", "other", "checkpoint.safetensors", "checkpoint.0123456789abcdef.safetensors",
                               "../checkpoint.json", "/etc/hostname", "checkpoint.json", "", -1, 0, 1, 10**30,
                               1.5, [], [{}], [1], {}, "epochs", "0" * 64])


def _resume(folder: Path) -> TrainState | None | UserError:
    """load_checkpoint of ``folder`` into a fresh run; a returned state is usable."""
    model, optimizer, rngs = _run_state()
    state = _read_or_refuse(lambda: load_checkpoint(folder, model, optimizer, rngs, FINGERPRINT))
    if isinstance(state, TrainState):
        assert type(state.epoch) is int and type(state.step) is int and state.epoch >= 0 and state.step >= 0
        assert isinstance(state.history, list) and isinstance(state.stop_reason, str)
        optimizer.step()  # the restored optimizer state fits the parameters
    return state


@fuzz(120)
@given(data=st.data())
def test_checkpoint_json(checkpoint, data):
    """A training checkpoint's checkpoint.json through load_checkpoint."""
    folder, meta = checkpoint
    text = data.draw(json_files(meta, META_VALUES))
    with _folder() as tmp:
        copy = Path(shutil.copytree(folder, tmp / "partial"))
        (copy / META).write_bytes(text)
        _resume(copy)


@fuzz(80)
@given(data=st.data())
def test_checkpoint_tensors(checkpoint, data):
    """A checkpoint's tensor file (its SHA-256 in checkpoint.json updated) through load_checkpoint."""
    folder, meta = checkpoint
    tensors = data.draw(safetensors_files((folder / meta["tensors"]).read_bytes()))
    with _folder() as tmp:
        copy = Path(shutil.copytree(folder, tmp / "partial"))
        (copy / meta["tensors"]).write_bytes(tensors)
        (copy / META).write_text(json.dumps({**meta, "sha256": _sha256(copy / meta["tensors"])}))
        _resume(copy)


# ------------------------------------------------------------ the result store


@pytest.fixture(scope="module")
def store(member, tmp_path_factory) -> tuple[Path, bytes]:
    """(a zoo holding :func:`member`, the bytes of a results.sqlite of a white-box attack
    on it, its flags and run, and two experiment records)."""
    root = tmp_path_factory.mktemp("store")
    zoo = _member_copy(member[0], root).parent.parent
    results = root / "results"
    assert main(["attack", "--whitebox", "--dataset", "digits", "--zoo-dir", str(zoo), "--defenders", "ce-s0",
                 "--eps", "0.1,0.2", "--num-samples", "20", "--results-dir", str(results)]) == 0
    with ResultStore(results) as opened:
        store_in_runs(opened, [experiment_record(setting=0.5), experiment_record(setting=0.5, repeat=1, accuracy=0.8)])
    assert sorted(p.name for p in results.iterdir()) == [DATABASE]
    return zoo, (results / DATABASE).read_bytes()


SQL_VALUES = (st.none() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=8)
              | st.binary(max_size=8))


@st.composite
def other_schemas(draw) -> tuple[int, list[tuple[str, list[str], list[list[Any]]]]]:
    """(user_version, tables): a SQLite database of another schema, some tables named
    and columned as robench's (without their types), holding any values."""
    version = draw(st.sampled_from([0, 1, SCHEMA_VERSION, SCHEMA_VERSION + 1, -1, 2**31 - 1]))
    tables = []
    for cls in draw(st.lists(st.sampled_from(TABLES), max_size=4, unique=True)):
        columns = list(cls.columns())
        if draw(st.booleans()):
            columns = draw(st.lists(st.sampled_from(columns), min_size=1, unique=True))
        rows = draw(st.lists(st.lists(SQL_VALUES, min_size=len(columns), max_size=len(columns)), max_size=3))
        tables.append((cls.TABLE, columns, rows))
    if draw(st.booleans()):
        tables.append(("other", ["a", "b"], [[1, "x"]]))
    return version, tables


def _build(path: Path, version: int, tables: list[tuple[str, list[str], list[list[Any]]]]) -> None:
    connection = sqlite3.connect(path)
    with connection:
        for name, columns, rows in tables:
            connection.execute(f"CREATE TABLE {name} ({', '.join(columns)})")
            connection.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(columns))})", rows)
        connection.execute(f"PRAGMA user_version = {version}")
    connection.close()


STORE_KINDS = ("flips", "flips", "flips", "schema", "cut", "empty", "bytes")


@st.composite
def store_files(draw, valid: bytes, kinds: tuple[str, ...] = STORE_KINDS, flips: int = 8) -> Callable[[Path], None]:
    """A writer of a results.sqlite: random bytes, an empty file, the valid store cut
    short or with up to ``flips`` bytes flipped, or a database of another schema."""
    kind = draw(st.sampled_from(kinds))
    if kind == "schema":
        version, tables = draw(other_schemas())
        return lambda path: _build(path, version, tables)
    if kind == "bytes":
        data = draw(st.binary(max_size=300))
    elif kind == "empty":
        data = b""
    elif kind == "cut":
        data = valid[: draw(st.integers(0, len(valid)))]
    else:
        flipped = bytearray(valid)
        for _ in range(draw(st.integers(1, flips))):
            flipped[draw(st.integers(0, len(valid) - 1))] ^= draw(st.integers(1, 255))
        data = bytes(flipped)
    return lambda path: path.write_bytes(data)


def _read_store(results: Path) -> None:
    """Every table through cells, frame and records; what reads is consistent."""
    with ResultStore(results) as opened:
        for cls in TABLES:
            frame = _read_or_refuse(lambda: opened.frame(cls))
            if not isinstance(frame, UserError):
                assert list(frame.columns) == list(cls.columns())
            if cls is RunRecord:
                continue
            cells = _read_or_refuse(lambda: opened.cells(cls))
            records = _read_or_refuse(lambda: opened.records(cls))
            if not isinstance(records, UserError):
                assert all(isinstance(r, cls) for r in records)
                if not isinstance(frame, UserError):
                    assert len(records) == len(frame)
                if not isinstance(cells, UserError):
                    assert len(cells) <= len(records)


@fuzz(150)
@given(data=st.data())
def test_result_store_reads(store, data):
    """results.sqlite through ResultStore.frame / records / cells."""
    write = data.draw(store_files(store[1]))
    with _folder() as tmp:
        write(tmp / DATABASE)
        _read_store(tmp)


@fuzz(40)
@given(data=st.data())
def test_result_store_export(store, data):
    """results.sqlite through `robench results export`."""
    write = data.draw(store_files(store[1]))
    with _folder() as tmp:
        write(tmp / DATABASE)
        if _cli("results", "export", "--results-dir", tmp, "--out", tmp / "out") == 0:
            assert {p.name for p in (tmp / "out").iterdir()} == {"attacks.csv", "experiments.csv", "flags.csv",
                                                                  "runs.csv"}


@fuzz(15, deadline_s=30)
@given(data=st.data())
def test_result_store_report(store, data):
    """results.sqlite through `robench report` (the zoo holding the attacked member);
    mostly single byte flips, so that many stores read and their values reach the report."""
    write = data.draw(store_files(store[1], ("flips", "flips", "flips", "schema", "cut"), flips=2))
    with _folder() as tmp:
        write(tmp / DATABASE)
        if _cli("report", "--dataset", "digits", "--zoo-dir", store[0], "--results-dir", tmp,
                "--out", tmp / "report") == 0:
            assert (tmp / "report" / "index.html").is_file()


@fuzz(60)
@given(data=st.data())
def test_result_store_schema_upgrade(store, data):
    """results.sqlite through `robench results migrate` (which upgrades a store of an
    older schema first): a store of schema 1, damaged or not, other schemas, junk."""
    write = data.draw(store_files(store[1], ("schema", "schema", "flips", "cut", "bytes")))
    with _folder() as tmp:
        write(tmp / DATABASE)
        if _cli("results", "migrate", tmp) == 0:
            _read_store(tmp)


# ------------------------------------------------------------ result CSVs of robench before the store


def _legacy(name: str, rows: int = 3) -> tuple[list[str], list[list[str]]]:
    with open(LEGACY / name, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        return next(reader), [list(row) for _, row in zip(range(rows), reader)]


CELL_VALUES = st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e400", "-1", "0", "1.5", "9" * 40, "abc", "True",
                               "true", "None", "{}", "[]", '{"robench": 1, "torch": 2}', '{"robench": "x"}',
                               "[" * 3000, "\x00", "é", '"', ",", "fgsm", "ifgsm", "pgd", "whitebox"])
COLUMN_NAMES = st.sampled_from(["schema_version", "norm", "precision", "schedule", "coupled_batch", "spec_hash",
                                "", "eps"])


@st.composite
def legacy_csv(draw, name: str) -> bytes:
    """Bytes of a legacy result CSV: random bytes, or the first committed rows with
    columns dropped, added or renamed, values replaced (wrong types, NaN, junk), garbage
    lines or binary junk put in."""
    if draw(st.integers(0, 7)) == 7:
        return draw(st.binary(max_size=300))
    header, rows = _legacy(name)
    edit = draw(st.sampled_from(["none", "none", "none", "none", "drop", "add", "rename"]))
    if edit != "none":
        index = draw(st.integers(0, len(header) - 1))
        if edit == "drop":
            header.pop(index)
            for row in rows:
                row.pop(index)
        elif edit == "add":
            header.append(draw(COLUMN_NAMES))
            for row in rows:
                row.append(draw(CELL_VALUES))
        else:
            header[index] = draw(COLUMN_NAMES | st.text(max_size=6))
    for _ in range(draw(st.integers(0, 2))):
        row = draw(st.sampled_from(rows)) if rows else None
        if row:
            row[draw(st.integers(0, len(row) - 1))] = draw(CELL_VALUES | st.text(max_size=12))
    data = _csv_bytes(header, rows)
    if draw(st.integers(0, 3)) == 3:  # a garbage line or binary junk
        junk = draw(st.binary(max_size=20) | st.text(max_size=30).map(lambda t: (t + "\n").encode()))
        at = draw(st.integers(0, len(data)))
        data = data[:at] + junk + data[at:]
    return data


def _csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *rows])
    return text.getvalue().encode()


@st.composite
def legacy_folders(draw) -> dict[str, bytes]:
    """Some of the four legacy files, each fuzzed or intact."""
    names = draw(st.lists(st.sampled_from(LEGACY_FILES), min_size=1, max_size=4, unique=True))
    return {name: draw(legacy_csv(name)) if draw(st.integers(0, 3)) else _csv_bytes(*_legacy(name, rows=20))
            for name in names}


def _write_legacy(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)


@fuzz(120)
@given(files=legacy_folders())
def test_legacy_csvs_through_migrate(files):
    """Legacy result CSVs through migrate: stored whole, in a store that reads back, or
    refused with nothing written."""
    with _folder() as tmp:
        results = tmp / "results"
        _write_legacy(results, files)
        before = {p.name: p.read_bytes() for p in results.iterdir()}
        lines = _read_or_refuse(lambda: migrate(results))
        if isinstance(lines, UserError):
            assert {p.name: p.read_bytes() for p in results.iterdir()} == before, "a refused migration wrote"
            return
        if (results / DATABASE).exists():  # the store written reads back whole
            with ResultStore(results) as migrated:
                assert len(migrated.frame(RunRecord)) >= 1
                for cls in (AttackRecord, ExperimentRecord, FlagRecord):
                    assert len(migrated.records(cls)) == len(migrated.frame(cls))


@fuzz(25)
@given(files=legacy_folders())
def test_legacy_csvs_through_cli_migrate(files):
    """Legacy result CSVs through `robench results migrate`."""
    with _folder() as tmp:
        _write_legacy(tmp / "results", files)
        _cli("results", "migrate", tmp / "results")
