"""Shared fixtures: a small trained digits zoo built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robench.data import load_dataset

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def digits():
    """The digits dataset on CPU."""
    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_zoo(tmp_path_factory) -> Path:
    """A quick-trained digits zoo (ce at two seeds, hinge, 1toN sym and zero, 1toN+ce)."""
    from robench.train.members import train_zoo

    zoo_dir = tmp_path_factory.mktemp("zoo")
    (zoo_dir / "digits.toml").write_text((REPO / "zoo" / "digits.toml").read_text())
    torch.set_num_threads(2)
    train_zoo("digits", "quick", zoo_dir=zoo_dir, device="cpu")
    return zoo_dir
