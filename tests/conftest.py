"""Shared fixtures: the digits dataset and a small trained digits zoo, built once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from robench.data import load_dataset
from robench.presets import train_spec, with_overrides
from robench.train.members import train_member
from robench.zoo import load_definition, member_dir

REPO = Path(__file__).resolve().parent.parent
FIXTURE_EPOCHS = 10  # a third of the quick preset: every member reaches 0.897-0.97 (AMD EPYC and earlier boxes)


@pytest.fixture(scope="session")
def digits():
    """The digits dataset on CPU."""
    return load_dataset("digits")


def one_seed_definition(text: str) -> str:
    """A zoo definition with one seed per configuration (0) and one attacker (ce-s100)."""
    text = re.sub(r"^seeds = .*$", "seeds = [0]", text, count=1, flags=re.M)
    return re.sub(r"^seeds = \[100, 101, 102\]$", "seeds = [100]", text, flags=re.M)


@pytest.fixture(scope="session")
def digits_zoo(tmp_path_factory, digits) -> Path:
    """The default digits zoo at one seed (ce with the linear and the unit head, hinge,
    1toN sym and zero at two δ, 1toN+ce, seed 0) and its first attacker (ce-s100),
    trained for FIXTURE_EPOCHS epochs with the quick recipe."""
    zoo_dir = tmp_path_factory.mktemp("zoo")
    (zoo_dir / "digits.toml").write_text(one_seed_definition((REPO / "zoo" / "digits.toml").read_text()))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    for member in load_definition("digits", zoo_dir):
        spec = with_overrides(train_spec("digits", "quick", member.loss.name), epochs=FIXTURE_EPOCHS)
        card = train_member(digits, member, spec, member_dir(zoo_dir, "digits", member.name))
        assert card["clean_test_accuracy"] > 0.85, card["name"]
    torch.set_num_threads(threads)
    return zoo_dir
