"""Shared fixtures: the digits dataset and a small trained digits zoo, built once."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leak_check import no_leaks  # noqa: F401 (an autouse fixture: every test is checked)
from robench import settings
from robench.data import load_dataset
from robench.presets import train_spec, with_overrides
from robench.train.members import train_member
from robench.zoo import load_definition, member_dir

REPO = Path(__file__).resolve().parent.parent
FIXTURE_EPOCHS = 10  # a third of the quick preset: every member reaches 0.897-0.97 (AMD EPYC and earlier boxes)


@pytest.fixture
def process_settings():
    """The process settings (:mod:`robench.settings`) as they were before the test, written
    back afterwards: a test that sets threads, TF32, determinism or robench's precision and
    compile defaults asks for this fixture."""
    with settings.preserved() as before:
        yield before


@pytest.fixture
def tiny_counts(monkeypatch):
    """Every dataset source's official counts set to the tiny counts tests/fileformats.py
    writes by default; call the returned object's methods to set others."""
    from fileformats import TinyCounts

    counts = TinyCounts(monkeypatch)
    counts.idx()
    counts.cifar()
    counts.imagenet32()
    return counts


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
    with settings.preserved():
        torch.set_num_threads(2)
        for member in load_definition("digits", zoo_dir):
            spec = with_overrides(train_spec("digits", "quick", member.loss.name), epochs=FIXTURE_EPOCHS)
            card = train_member(digits, member, spec, member_dir(zoo_dir, "digits", member.name))
            assert card["clean_test_accuracy"] > 0.85, card["name"]
    return zoo_dir


@pytest.fixture(scope="session")
def sklearn_digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)  # (N, 1, 8, 8)
    y = torch.tensor(data.target, dtype=torch.long)  # (N,)
    return x, y


def digits_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10)
    )


def fit_adam(model: nn.Module, batches, lr: float) -> nn.Module:
    """``model`` trained with Adam on cross entropy over the (x, y) ``batches``, returned
    in eval mode with no parameter gradients left."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for xb, yb in batches:
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


@pytest.fixture(scope="module")
def trained(trained_once):
    """(model, x_test, y_test) of :func:`trained_once`, the model a copy of its own for each
    test module (a test may leave gradients or hooks on it)."""
    model, x, y = trained_once
    return copy.deepcopy(model), x, y


@pytest.fixture(scope="session")
def trained_once(sklearn_digits):
    """(model, x_test (300, 1, 8, 8), y_test (300,)): an accurate (>0.9) digits classifier,
    trained once with one thread (the attack tests run on it)."""
    x, y = sklearn_digits
    x_train, y_train, x_test, y_test = x[:-300], y[:-300], x[-300:], y[-300:]
    with settings.preserved():
        torch.set_num_threads(1)
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        draws = (torch.randint(0, len(x_train), (128,), generator=gen) for _ in range(250))
        model = fit_adam(digits_cnn(), ((x_train[idx], y_train[idx]) for idx in draws), lr=1e-2)
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert acc > 0.9, acc
    return model, x_test, y_test
