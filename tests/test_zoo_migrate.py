"""``robench zoo migrate``: members saved before cards were bound to their weights get
their card's configuration into their weights' metadata — tensors byte for byte the
same, cards naming the new hash — and the records of the stores given follow the new
hashes, cells recomputed; a re-run changes nothing, a killed run is finished by the
next, and a zoo it cannot trust is refused with nothing written."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

import robench.zoo_migrate
from factories import attack_record, experiment_record, store_in_runs
from robench.binding import METADATA_KEY
from robench.cli import main
from robench.config import LossSpec, to_dict
from robench.models import create_model
from robench.store import AttackRecord, ExperimentRecord, ResultStore
from robench.store.records import cell_of
from robench.tensorfile import read_header_and_metadata
from robench.zoo import CARD, WEIGHTS, list_members, load

STALE = "e" * 64  # a hash of weights no member has now


def _old_member(folder: Path, loss: LossSpec, head: str, seed: int, **extra) -> dict:
    """An untrained digits-cnn member saved as robench saved members before the binding:
    weights without metadata, the card naming their SHA-256."""
    torch.manual_seed(seed)
    model = create_model("digits-cnn", 10, head, (0.3,), (0.37,))
    data = save({k: v.contiguous() for k, v in model.state_dict().items()})
    folder.mkdir(parents=True)
    (folder / WEIGHTS).write_bytes(data)
    card = {"name": folder.name, "dataset": "digits", "architecture": "digits-cnn", "num_classes": 10,
            "head": head, "mean": [0.3], "std": [0.37], "loss": to_dict(loss), "seed": seed, "role": "defender",
            "clean_test_accuracy": 0.1, "val_accuracy": 0.1, "epochs": 1, "created": "2026-01-01T00:00:00Z",
            "weights_sha256": hashlib.sha256(data).hexdigest(), **extra}
    (folder / CARD).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


@pytest.fixture
def old(tmp_path) -> tuple[Path, Path, dict[str, str]]:
    """(zoo, results folder, member or model name → its old hash): two members and an
    experiment model saved before the binding, and a store holding a white-box and a
    black-box attack record on them, an experiment record on the model, and records on
    weights no member has now."""
    zoo, results = tmp_path / "zoo", tmp_path / "results"
    ce = _old_member(zoo / "digits" / "ce-s0", LossSpec("ce"), "linear", 0)
    hinge = _old_member(zoo / "digits" / "hinge-d1-s0", LossSpec("hinge", 1.0), "linear", 0)
    model = _old_member(zoo / "digits" / "experiments" / "ce-s0-gen0.5-r1", LossSpec("ce"), "linear", 1,
                        base_member="ce-s0", experiment="generalization", fraction=0.5, repeat=1,
                        val_accuracy=float("nan"))
    sha = {c["name"]: c["weights_sha256"] for c in (ce, hinge, model)}
    with ResultStore(results) as store:
        store_in_runs(store, [
            attack_record("ce-s0", "ce-s0", attacker_sha256=sha["ce-s0"], defender_sha256=sha["ce-s0"]),
            attack_record("ce-s0", "hinge-d1-s0", attacker_sha256=sha["ce-s0"], defender_sha256=sha["hinge-d1-s0"]),
            attack_record("ce-s0", "hinge-d1-s0", eps=0.2, attacker_sha256=sha["ce-s0"], defender_sha256=STALE),
            experiment_record("ce-s0", 0.5, 1, model="ce-s0-gen0.5-r1", weights_sha256=sha["ce-s0-gen0.5-r1"]),
            experiment_record("ce-s0", 0.5, 2, model="ce-s0-gen0.5-r2", weights_sha256=STALE),
        ])
    return zoo, results, sha


def _migrate(capsys, zoo: Path, *results: Path) -> tuple[int, list[str], list[str]]:
    """Exit code, stdout and stderr lines of ``robench zoo migrate``."""
    capsys.readouterr()
    argv = ["zoo", "migrate", "--zoo-dir", str(zoo)] + [a for r in results for a in ("--results-dir", str(r))]
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err.splitlines()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(results: Path, cls) -> list[dict]:
    """Every stored row of ``cls``'s table, read with SQLite alone (``cell`` included)."""
    connection = sqlite3.connect(f"file:{results / 'results.sqlite'}?mode=ro", uri=True)
    try:
        columns = cls.columns()
        return [dict(zip(columns, row)) for row in connection.execute(f"SELECT {', '.join(columns)} FROM {cls.TABLE}")]
    finally:
        connection.close()


def _tensors(data: bytes) -> tuple[dict, bytes]:
    """(the header's tensor entries, the data after the header) of safetensors bytes."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    header.pop("__metadata__", None)
    return header, data[8 + length:]


def test_migration_binds_cards_keeps_tensors_and_rewrites_the_stores_hashes(old, capsys):
    zoo, results, sha = old
    before = _files(zoo)
    code, out, err = _migrate(capsys, zoo, results)
    assert code == 0, err
    assert out[0] == f"{zoo}: 3 members bound to their weights (tensors unchanged, cards updated), 0 bound already"
    assert out[1].endswith("3 attack records and 1 experiment records rewritten to the new weight hashes")
    new = {}
    for name, old_sha in sha.items():
        folder = next(p.parent for p in zoo.rglob(CARD) if p.parent.name == name)
        rel = str(folder.relative_to(zoo))
        weights = (folder / WEIGHTS).read_bytes()
        assert _tensors(weights) == _tensors(before[f"{rel}/{WEIGHTS}"])  # tensors byte for byte
        assert read_header_and_metadata(folder / WEIGHTS)[1].keys() == {METADATA_KEY}
        card, old_card = json.loads((folder / CARD).read_text()), json.loads(before[f"{rel}/{CARD}"])
        new[name] = hashlib.sha256(weights).hexdigest()
        assert card.keys() == old_card.keys() and new[name] != old_sha
        assert json.dumps(card) == json.dumps({**old_card, "weights_sha256": new[name]})  # NaN equal to NaN
        assert load(folder)[1]["weights_sha256"] == new[name]
    assert [c["name"] for c in list_members(zoo, "digits")] == ["ce-s0", "hinge-d1-s0"]

    attacks = _rows(results, AttackRecord)
    assert [(r["attacker_sha256"], r["defender_sha256"]) for r in attacks] == [
        (new["ce-s0"], new["ce-s0"]), (new["ce-s0"], new["hinge-d1-s0"]), (new["ce-s0"], STALE)]
    experiments = _rows(results, ExperimentRecord)
    assert [r["weights_sha256"] for r in experiments] == [new["ce-s0-gen0.5-r1"], STALE]
    for cls, rows in ((AttackRecord, attacks), (ExperimentRecord, experiments)):
        assert all(r["cell"] == cell_of(r, cls.KEY) for r in rows)
    with ResultStore(results) as store:  # the store's own checks of every record hold
        assert len(store.records(AttackRecord)) == 3 and len(store.records(ExperimentRecord)) == 2

    migrated = (_files(zoo), _files(results))
    code, out, err = _migrate(capsys, zoo, results)
    assert code == 0, err
    assert out == [f"{zoo}: 0 members bound to their weights (tensors unchanged, cards updated), 3 bound already",
                   f"{results / 'results.sqlite'}: 0 attack records and 0 experiment records rewritten to the new "
                   "weight hashes"]
    assert (_files(zoo), _files(results)) == migrated, "a re-run must change nothing"


def test_a_store_given_to_a_later_run_is_rewritten_too(old, tmp_path, capsys):
    """Migrated without the store first: a second run with it maps each record's hash
    (the member's tensors saved without metadata) to the bound weights."""
    zoo, results, sha = old
    assert _migrate(capsys, zoo)[0] == 0
    assert _rows(results, AttackRecord)[0]["attacker_sha256"] == sha["ce-s0"]
    code, out, err = _migrate(capsys, zoo, results)
    assert code == 0, err
    assert out[1].endswith("3 attack records and 1 experiment records rewritten to the new weight hashes")
    bound = json.loads((zoo / "digits" / "ce-s0" / CARD).read_text())["weights_sha256"]
    assert _rows(results, AttackRecord)[0]["attacker_sha256"] == bound


def test_a_migration_killed_between_card_and_weights_is_finished_by_the_next(old, tmp_path, capsys, monkeypatch):
    zoo, results, _ = old
    reference = Path(shutil.copytree(zoo, tmp_path / "reference"))
    reference_results = Path(shutil.copytree(results, tmp_path / "reference-results"))
    assert _migrate(capsys, reference, reference_results)[0] == 0

    def killed(path, write):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(robench.zoo_migrate, "atomic_write", killed)  # the weights' write; the card's is done
        assert _migrate(capsys, zoo, results)[0] == 130
    code, _, err = _attack(capsys, zoo)  # ce-s0's card names weights not written yet: refused
    assert code == 2 and len(err) == 1 and str(zoo / "digits" / "ce-s0" / WEIGHTS) in err[0], err
    code, out, err = _migrate(capsys, zoo, results)
    assert code == 0, err
    assert out[0].startswith(f"{zoo}: 3 members bound")
    assert _files(zoo) == _files(reference) and _rows(results, AttackRecord) == _rows(reference_results, AttackRecord)


def _attack(capsys, zoo: Path) -> tuple[int, list[str], list[str]]:
    """Exit code, stdout and stderr lines of a white-box attack on ce-s0 of ``zoo``."""
    capsys.readouterr()
    code = main(["attack", "--whitebox", "--dataset", "digits", "--zoo-dir", str(zoo), "--defenders", "ce-s0",
                 "--eps", "0.1", "--num-samples", "4", "--results-dir", str(zoo.parent / "unused")])
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err.splitlines()


def _edited_loss(zoo: Path) -> tuple[Path, str]:
    path = zoo / "digits" / "ce-s0" / CARD
    card = json.loads(path.read_text())
    path.write_text(json.dumps({**card, "loss": to_dict(LossSpec("hinge", 1.0))}))
    return path, "says name 'ce-s0' but its loss, head and seed name the member 'hinge-d1-s0'"


def _changed_weights(zoo: Path) -> tuple[Path, str]:
    path = zoo / "digits" / "hinge-d1-s0" / WEIGHTS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    return path, "does not match the SHA-256 in its card"


def _misplaced(zoo: Path) -> tuple[Path, str]:
    shutil.copytree(zoo / "digits" / "ce-s0", zoo / "digits" / "ce-s1")
    return zoo / "digits" / "ce-s1" / CARD, 'says name "ce-s0" but it lies in folder "ce-s1"'


def _wrong_dataset(zoo: Path) -> tuple[Path, str]:
    (zoo / "mnist").mkdir()
    shutil.move(zoo / "digits" / "hinge-d1-s0", zoo / "mnist" / "hinge-d1-s0")
    return zoo / "mnist" / "hinge-d1-s0" / CARD, "says dataset 'digits' but lies in the mnist zoo"


@pytest.mark.parametrize("spoil", [_edited_loss, _changed_weights, _misplaced, _wrong_dataset])
def test_a_zoo_it_cannot_trust_is_refused_with_nothing_written(spoil, old, capsys):
    """The migration binds a card as it is, so it refuses one it can tell is not its
    weights' — and binds no other member either."""
    zoo, results, _ = old
    path, says = spoil(zoo)
    before = (_files(zoo), _files(results))
    code, out, err = _migrate(capsys, zoo, results)
    assert code == 2 and len(err) == 1 and not out, (out, err)
    assert str(path) in err[0] and says in err[0], err[0]
    assert (_files(zoo), _files(results)) == before


def test_a_bound_member_saves_the_bytes_the_migration_writes(old, tmp_path, capsys):
    """A member trained now and one migrated have the same weights file, byte for byte,
    for the same tensors and card."""
    from robench.zoo import save_member

    zoo, results, _ = old
    card = json.loads((zoo / "digits" / "ce-s0" / CARD).read_text())
    assert _migrate(capsys, zoo)[0] == 0
    torch.manual_seed(0)
    model = create_model("digits-cnn", 10, "linear", (0.3,), (0.37,))
    fresh = save_member(tmp_path / "fresh" / "ce-s0", model, {k: v for k, v in card.items() if k != "weights_sha256"})
    assert (tmp_path / "fresh" / "ce-s0" / WEIGHTS).read_bytes() == (zoo / "digits" / "ce-s0" / WEIGHTS).read_bytes()
    assert fresh["weights_sha256"] == json.loads((zoo / "digits" / "ce-s0" / CARD).read_text())["weights_sha256"]
