"""Zoo store: naming, definitions, cards, verified safetensors loading."""

from __future__ import annotations

import re

import json
import shutil
from pathlib import Path

import pytest
import torch

from robench.binding import METADATA_KEY
from robench.config import LossSpec, TrainSpec
from robench.errors import UserError
from robench.tensorfile import read_header_and_metadata
from robench.train.members import train_member
from robench.zoo import (
    CARD,
    WEIGHTS,
    MemberDef,
    list_members,
    load,
    load_definition,
    member_name,
    save_member,
    select_members,
)

REPO = Path(__file__).resolve().parent.parent
TINY = TrainSpec(epochs=1, lr=0.001, batch_size=128)


@pytest.mark.parametrize(
    "loss, head, seed, expected",
    [
        (LossSpec("ce"), "linear", 0, "ce-s0"),
        (LossSpec("hinge", 1.0), "linear", 0, "hinge-d1-s0"),
        (LossSpec("1toN", 4.0, "sym"), "unit", 0, "1toN-sym-d4-s0"),
        (LossSpec("1toN", 0.5, "zero"), "unit", 2, "1toN-zero-d0.5-s2"),
        (LossSpec("1toN+ce", 4.0, "sym"), "unit", 0, "1toN+ce-sym-d4-s0"),
        (LossSpec("ce"), "unit", 1, "ce-unit-s1"),
    ],
)
def test_member_names(loss, head, seed, expected):
    assert member_name(loss, head, seed) == expected


@pytest.mark.parametrize("dataset", ["digits", "mnist", "fashion-mnist", "cifar10", "imagenet32"])
def test_committed_definitions_hold_the_required_members(dataset):
    members = load_definition(dataset, REPO / "zoo")
    losses = {(m.loss.name, m.loss.bound if m.loss.is_one_to_n else "") for m in members}
    assert {("ce", ""), ("hinge", ""), ("1toN", "sym"), ("1toN", "zero"), ("1toN+ce", "sym")} <= losses
    assert {m.head for m in members if m.loss.name == "ce" and m.role == "defender"} == {"linear", "unit"}
    defender_seeds = {m.seed for m in members if m.role == "defender"}
    attackers = [m for m in members if m.role == "attacker"]
    assert len(defender_seeds) >= (5 if dataset == "digits" else 3)  # S seeds per configuration (quick)
    assert len(load_definition(dataset, REPO / "zoo", "paper")) >= 5 * 8
    assert len(attackers) >= 3 and all(m.loss.name == "ce" for m in attackers)
    assert not {m.seed for m in attackers} & defender_seeds
    for bound in ("sym", "zero"):
        deltas = {m.loss.delta for m in members if m.loss.name == "1toN" and m.loss.bound == bound}
        assert len(deltas) >= 2, f"{dataset}: 1toN {bound} needs a small and a large delta"
    assert len({m.name for m in members}) == len(members)


def test_definition_errors(tmp_path):
    (tmp_path / "bad.toml").write_text('architecture = "digits-cnn"\n[[members]]\nloss = "ce"\nsede = [0]\n')
    with pytest.raises(UserError, match="unknown member keys"):
        load_definition("bad", tmp_path)
    (tmp_path / "broken.toml").write_text("architecture = \n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_definition("broken", tmp_path)
    with pytest.raises(UserError, match="no zoo definition"):
        load_definition("nothing", tmp_path / "empty")


@pytest.mark.parametrize("text, message", [
    ('architecture = "digits-cnn"\nseed = [0]\n[[members]]\nloss = "ce"\n', "unknown keys ['seed']"),
    ('architecture = "digits-cnn"\nseeds = {quick = [0]}\n[[members]]\nloss = "ce"\n', "no entry for preset 'paper'"),
    ('architecture = "digits-cnn"\nseeds = []\n[[members]]\nloss = "ce"\n', "non-empty list"),
    ('architecture = "digits-cnn"\n[[members]]\nloss = "ce"\n[[members]]\nloss = "ce"\n', "'ce-s0' is defined twice"),
    ('architecture = "digits-cnn"\n[[members]]\nloss = "ce"\n[[attackers]]\nloss = "ce"\n', "needs its own seeds"),
    ('architecture = "digits-cnn"\nseeds = [0, 1]\n[[members]]\nloss = "hinge"\n[[attackers]]\nloss = "ce"\n'
     'seeds = [1]\n', "attacker seed 1 is also a defender's seed"),
])
def test_definition_errors_of_seeds_and_attackers(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(UserError, match=re.escape(message)):
        load_definition("bad", tmp_path, "paper")


def test_definition_seeds_per_preset_and_attackers(tmp_path):
    (tmp_path / "d.toml").write_text('architecture = "digits-cnn"\nseeds = {quick = [0, 1], paper = [0, 1, 2]}\n'
                                      '[[members]]\nloss = "hinge"\n[[attackers]]\nloss = "ce"\nseeds = [7]\n')
    quick, paper = load_definition("d", tmp_path, "quick"), load_definition("d", tmp_path, "paper")
    assert [(m.name, m.role) for m in quick] == [("hinge-d1-s0", "defender"), ("hinge-d1-s1", "defender"),
                                                 ("ce-s7", "attacker")]
    assert [m.name for m in paper] == ["hinge-d1-s0", "hinge-d1-s1", "hinge-d1-s2", "ce-s7"]
    assert {m.configuration for m in paper} == {"hinge-d1", "ce"}



def test_an_entrys_own_seeds_may_be_given_per_preset(tmp_path):
    (tmp_path / "d.toml").write_text('architecture = "digits-cnn"\nseeds = [0]\n[[members]]\nloss = "ce"\n'
                                      '[[attackers]]\nloss = "ce"\nseeds = {quick = [100], paper = [100, 101]}\n')
    assert [m.name for m in load_definition("d", tmp_path, "quick")] == ["ce-s0", "ce-s100"]
    assert [m.name for m in load_definition("d", tmp_path, "paper")] == ["ce-s0", "ce-s100", "ce-s101"]
    with pytest.raises(UserError, match="seeds has no entry for preset 'huge'; it has paper, quick"):
        load_definition("d", tmp_path, "huge")


def test_select_members():
    members = load_definition("digits", REPO / "zoo")
    assert [m.name for m in select_members(members, ["ce"], [0, 1])] == ["ce-s0", "ce-s1", "ce-unit-s0", "ce-unit-s1"]
    assert [m.name for m in select_members(members, ["ce"], [100])] == ["ce-s100"]
    with pytest.raises(UserError, match="unknown member 'nope'; valid: ce-s0"):
        select_members(members, ["nope"], None)


@pytest.fixture(scope="module")
def stored(digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo") / "digits" / "1toN-zero-d2-s0"
    member = MemberDef(LossSpec("1toN", 2.0, "zero"), "unit", 0, "digits-cnn")
    card = train_member(digits, member, TINY, folder)
    return folder, card


def test_card_records_everything(stored, digits):
    folder, card = stored
    on_disk = json.loads((folder / CARD).read_text())
    assert on_disk == card
    for key in ("name", "dataset", "architecture", "head", "loss", "train", "seed", "split_hash",
                "clean_test_accuracy", "val_accuracy", "epochs", "steps", "stop_reason",
                "wall_time_s", "device", "versions", "weights_sha256"):
        assert key in card, key
    assert card["loss"] == {"name": "1toN", "delta": 2.0, "bound": "zero"}
    assert card["split_hash"] == digits.split_hash
    assert card["versions"]["torch"] == torch.__version__
    assert not (folder / ".partial").exists()


def test_load_rebuilds_the_same_model(stored, digits):
    folder, card = stored
    model, loaded_card = load(folder)
    assert loaded_card["weights_sha256"] == card["weights_sha256"]
    assert not model.training
    preds = model(digits.to_float(digits.test.x)).argmax(1)
    acc = (preds == digits.test.y).float().mean().item()
    assert acc == pytest.approx(card["clean_test_accuracy"], abs=1e-9)


def test_tampered_weights_are_refused(stored, tmp_path):
    folder, _ = stored
    copy = tmp_path / "m"
    copy.mkdir()
    for name in (CARD, WEIGHTS):
        (copy / name).write_bytes((folder / name).read_bytes())
    data = bytearray((copy / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (copy / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match the SHA-256"):
        load(copy)


def test_mismatched_architecture_is_refused(stored, tmp_path):
    folder, card = stored
    copy = tmp_path / "m"
    copy.mkdir()
    (copy / WEIGHTS).write_bytes((folder / WEIGHTS).read_bytes())
    (copy / CARD).write_text(json.dumps({**card, "architecture": "mnist-cnn"}))
    with pytest.raises(UserError, match="does not fit architecture 'mnist-cnn'"):
        load(copy)


def test_missing_and_corrupt_cards(tmp_path):
    with pytest.raises(UserError, match="card.json missing"):
        load(tmp_path)
    (tmp_path / CARD).write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        load(tmp_path)


def test_retraining_with_another_config_needs_force(stored, digits):
    folder, card = stored
    member = MemberDef(LossSpec("1toN", 2.0, "zero"), "unit", 0, "digits-cnn")
    assert train_member(digits, member, TINY, folder) == card  # trained: skipped
    with pytest.raises(UserError, match="different train"):
        train_member(digits, member, TrainSpec(epochs=2, lr=0.001, batch_size=128), folder)


def test_list_members(stored):
    folder, card = stored
    cards = list_members(folder.parent.parent, "digits")
    assert [c["name"] for c in cards] == [card["name"]]


def test_weights_carry_the_cards_configuration(stored):
    """The card's configuration is in the weights' metadata, covered by the weights'
    SHA-256 (robench.binding): everything but the hash and when/how long it trained."""
    folder, card = stored
    metadata = read_header_and_metadata(folder / WEIGHTS)[1]
    carried = json.loads(metadata[METADATA_KEY])
    assert carried == {k: v for k, v in card.items() if k not in ("weights_sha256", "created", "wall_time_s",
                                                                 "git_commit")}
    assert carried["loss"] == {"name": "1toN", "delta": 2.0, "bound": "zero"} and carried["seed"] == 0


def test_saving_a_member_again_gives_the_same_bytes(stored, tmp_path):
    """No time in the weights: the same tensors and configuration give the same file."""
    folder, card = stored
    model, _ = load(folder)
    again = save_member(tmp_path / card["name"], model, {**card, "created": "later", "wall_time_s": 99.0})
    assert (tmp_path / card["name"] / WEIGHTS).read_bytes() == (folder / WEIGHTS).read_bytes()
    assert again["weights_sha256"] == card["weights_sha256"]


def test_an_edited_card_is_refused_by_load_list_and_training(stored, digits, tmp_path):
    folder, card = stored
    copy = tmp_path / "digits" / card["name"]
    shutil.copytree(folder, copy)
    (copy / CARD).write_text(json.dumps({**card, "loss": {"name": "1toN", "delta": 4.0, "bound": "zero"}}))
    says = "card.json says loss delta 4.0 but its weights were trained with 2.0; the card was edited"
    member = MemberDef(LossSpec("1toN", 4.0, "zero"), "unit", 0, "digits-cnn")
    for refused in (lambda: load(copy), lambda: list_members(tmp_path), lambda: train_member(digits, member, TINY, copy)):
        with pytest.raises(UserError, match=re.escape(says)):
            refused()
