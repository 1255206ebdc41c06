"""Attacks: invariants, ε-sweeps, losses, bad inputs, and agreement with torchattacks / ART.

Offline, CPU. The fixture model is a tiny conv net trained for a second or two on sklearn's
digits, so the attacks run against a real classifier.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench.attacks import (
    ATTACK_LOSSES,
    ATTACKS,
    KURAKIN_STEP_SIZE,
    backend_names,
    craft,
    create_attack,
    create_attack_loss,
    kurakin_steps,
)
from robench.errors import UserError

ATTACK_NAMES = ["fgsm", "ifgsm"]
LOSS_NAMES = ["ce", "cw"]
AGREEMENT_EPS = [0.05, 0.1, 0.2]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models are tiny: extra intra-op threads only add overhead (and spin on busy CPUs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)  # (N, 1, 8, 8)
    y = torch.tensor(data.target, dtype=torch.long)  # (N,)
    return x, y


def _digits_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10)
    )


@pytest.fixture(scope="module")
def trained(digits):
    """(model, x_test (300, 1, 8, 8), y_test (300,)): an accurate (>0.9) digits classifier."""
    x, y = digits
    x_train, y_train, x_test, y_test = x[:-300], y[:-300], x[-300:], y[-300:]
    torch.manual_seed(0)
    model = _digits_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(250):
        idx = torch.randint(0, len(x_train), (128,), generator=gen)
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert acc > 0.9, acc
    return model, x_test, y_test


@pytest.fixture
def small(trained):
    model, x, y = trained
    return model, x[:64], y[:64]


def _n_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum())


# ---- invariants -----------------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("name", ATTACK_NAMES)
@pytest.mark.parametrize("eps", [0.05, 0.2])
def test_budget_box_and_input_untouched(small, name, loss, eps):
    model, x, y = small
    x_before = x.clone()
    adv = create_attack(name, loss=loss)(model, x, y, eps)
    assert torch.equal(x, x_before)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert (adv - x).abs().max().item() <= eps + 1e-6
    assert adv.min().item() >= 0.0 and adv.max().item() <= 1.0
    assert not adv.requires_grad
    assert _n_correct(model, adv, y) < _n_correct(model, x, y)  # it does attack


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_eps_zero_returns_the_input(small, name, loss):
    model, x, y = small
    adv = create_attack(name, loss=loss)(model, x, y, 0.0)
    assert torch.equal(adv, x)
    assert adv.data_ptr() != x.data_ptr()
    # also with forced steps: the 0-ball projection pins every pixel
    if name == "ifgsm":
        assert torch.equal(create_attack(name, loss=loss, steps=3)(model, x, y, 0.0), x)


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_one_sample_alone_equals_batched(small, name, loss):
    model, x, y = small
    attack = create_attack(name, loss=loss)
    batched = attack(model, x, y, 0.1)
    for i in (0, 7, 33):
        alone = attack(model, x[i : i + 1], y[i : i + 1], 0.1)
        assert torch.equal(alone[0], batched[i]), i


@pytest.mark.parametrize("name", ATTACK_NAMES)
@pytest.mark.parametrize("training", [True, False])
def test_model_mode_restored(small, name, training):
    model, x, y = small
    model.train(training)
    model[1].train(not training)  # a mixed state survives too
    try:
        create_attack(name)(model, x, y, 0.1)
        assert model.training is training and model[0].training is training
        assert model[1].training is (not training)
    finally:
        model.eval()


def test_model_mode_restored_on_error(small):
    _, x, y = small

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(64, 10)

        def forward(self, inp):
            assert not self.training, "attack must run in eval mode"
            raise RuntimeError("boom")

    model = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        create_attack("ifgsm")(model, x, y, 0.1)
    assert model.training and model.linear.training


def test_parameters_untouched(small):
    model, x, y = small
    before = [p.clone() for p in model.parameters()]
    create_attack("ifgsm")(model, x, y, 0.1)
    for p, b in zip(model.parameters(), before):
        assert p.grad is None and p.requires_grad and torch.equal(p, b)


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_per_sample_eps(small, name, loss):
    model, x, y = small
    attack = create_attack(name, loss=loss)
    values = (0.0, 0.05, 0.1)
    eps = torch.tensor([values[i % 3] for i in range(len(x))])  # (B,)
    adv = attack(model, x, y, eps)
    assert ((adv - x).abs().flatten(1).amax(1) <= eps + 1e-6).all()
    for k, e in enumerate(values):
        assert torch.equal(adv[k::3], attack(model, x, y, e)[k::3])


def test_kurakin_steps():
    # ⌊min(255ε + 4, 1.25·255ε)⌋: 0.05 → ⌊min(16.75, 15.94)⌋ = 15
    assert kurakin_steps(0.05) == 15
    assert kurakin_steps(0.1) == 29
    assert kurakin_steps(0.2) == 55
    assert kurakin_steps(0.3) == 80
    assert kurakin_steps(2 / 255) == 2
    assert [kurakin_steps(k / 255) for k in (4, 8, 12, 16)] == [5, 10, 15, 20]
    assert kurakin_steps(0.0) == 0
    ifgsm = create_attack("ifgsm")
    assert ifgsm.schedule(0.3) == (80, KURAKIN_STEP_SIZE)
    assert create_attack("ifgsm", steps=7, step_size=0.01).schedule(0.3) == (7, 0.01)
    assert create_attack("fgsm").schedule(0.3) == (1, 0.3)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_fgsm_on_linear_model_is_closed_form(loss):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(2, 20, generator=gen)  # (K=2, D)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(w)
    x = torch.rand(50, 1, 4, 5, generator=gen) * 0.2 + 0.4  # (B, 1, 4, 5)
    y = torch.randint(0, 2, (50,), generator=gen)
    eps = 0.1
    direction = (w[1 - y] - w[y]).sign().view_as(x)  # sign(w_other − w_y)
    expected = torch.clamp(x + eps * direction, 0, 1)
    assert torch.equal(create_attack("fgsm", loss=loss)(model, x, y, eps), expected)


# ---- sweeps ----------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [4096, 700, 100])
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_sweep_equals_per_eps_calls(trained, name, loss, batch_size):
    model, x, y = trained
    x, y = x[:200], y[:200]
    attack = create_attack(name, loss=loss, batch_size=batch_size)
    eps_values = [0.0, 0.05, 0.1, 2 / 255, 0.2]
    swept = attack.sweep(model, x, y, eps_values)
    assert len(swept) == len(eps_values)
    for e, adv in zip(eps_values, swept):
        assert torch.equal(adv, attack(model, x, y, e)), e


class _CountingModel(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, inp):
        self.calls += 1
        return self.inner(inp)


def test_fgsm_sweep_takes_one_gradient_ifgsm_stacks(trained):
    model, x, y = trained
    counting = _CountingModel(model)
    create_attack("fgsm").sweep(counting, x, y, [0.05, 0.1, 0.2, 0.3])
    assert counting.calls == 1
    counting.calls = 0
    create_attack("ifgsm").sweep(counting, x, y, [0.05, 0.1, 0.2])
    assert counting.calls == kurakin_steps(0.2)  # one stacked batch, longest schedule
    assert create_attack("ifgsm").sweep(model, x, y, []) == []


def test_model_loss_sweep_and_coupling(small):
    model, x, y = small
    seen = []

    def member_loss(logits, labels, reduction="mean"):
        seen.append((reduction, logits.shape[0]))
        return F.cross_entropy(logits, labels, reduction=reduction)

    attack = create_attack("ifgsm", loss="model", model_loss=member_loss)
    assert attack.loss.couples_batch
    swept = attack.sweep(model, x, y, [0.05, 0.1])
    assert {r for r, _ in seen} == {"none"} and {n for _, n in seen} == {len(x)}  # never stacked
    assert torch.equal(swept[1], attack(model, x, y, 0.1))
    assert torch.equal(swept[1], create_attack("ifgsm")(model, x, y, 0.1))  # CE: same as "ce"


# ---- losses ----------------------------------------------------------------------------
def test_attack_losses():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 4, generator=gen)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    ce = create_attack_loss("ce")(logits, labels)
    assert torch.allclose(ce, F.cross_entropy(logits, labels, reduction="none"))
    cw = create_attack_loss("cw")(logits, labels)
    for i in range(6):
        others = [logits[i, k] for k in range(4) if k != labels[i]]
        assert math.isclose(cw[i].item(), (max(others) - logits[i, labels[i]]).item(), abs_tol=1e-6)
    assert ATTACK_LOSSES.names() == ["ce", "cw", "model"]
    assert ATTACKS.names() == ["fgsm", "ifgsm"]


# ---- bad inputs ------------------------------------------------------------------------
def test_bad_inputs_are_user_errors(small):
    model, x, y = small
    fgsm = create_attack("fgsm")
    for bad_x in (x * 2 - 0.5, x + 1.5, torch.full_like(x, float("nan")), (x * 255).to(torch.uint8)):
        with pytest.raises(UserError):
            fgsm(model, bad_x, y, 0.1)
    for bad_eps in (-0.01, 1.01, float("nan"), "a", torch.full((3,), 0.1), torch.full((len(x),), -0.1)):
        with pytest.raises(UserError):
            fgsm(model, x, y, bad_eps)
    with pytest.raises(UserError):
        fgsm.sweep(model, x, y, [0.1, 2.0])
    with pytest.raises(UserError):
        fgsm(model, x, y[:-1], 0.1)
    with pytest.raises(UserError):
        fgsm(model, x, y.float(), 0.1)
    with pytest.raises(UserError, match="unknown attack 'pgd'"):
        create_attack("pgd")
    with pytest.raises(UserError, match="unknown attack loss"):
        create_attack("fgsm", loss="hinge")
    with pytest.raises(UserError, match="model_loss"):
        create_attack("fgsm", loss="model")
    with pytest.raises(UserError):
        create_attack("fgsm", steps=3)
    with pytest.raises(UserError):
        create_attack("ifgsm", steps=-1)
    with pytest.raises(UserError):
        create_attack("ifgsm", step_size=0.0)
    with pytest.raises(UserError):
        kurakin_steps(-0.1)
    with pytest.raises(UserError, match="unknown attack backend"):
        craft("foolbox", "fgsm", model, x, y, 0.1)
    for backend in ("torchattacks", "art"):
        with pytest.raises(UserError, match="only the 'ce'"):
            craft(backend, "fgsm", model, x, y, 0.1, loss="cw")
        with pytest.raises(UserError):
            craft(backend, "ifgsm", model, x * 2 - 0.5, y, 0.1)


# ---- agreement with the peers ----------------------------------------------------------
def test_backend_names():
    assert backend_names() == ["native", "torchattacks", "art"]


@pytest.fixture(scope="module")
def native_results(trained):
    model, x, y = trained
    return {
        (name, eps): craft("native", name, model, x, y, eps)
        for name in ATTACK_NAMES
        for eps in AGREEMENT_EPS
    }


@pytest.mark.parametrize("eps", AGREEMENT_EPS)
@pytest.mark.parametrize("name", ATTACK_NAMES)
@pytest.mark.parametrize("backend", ["torchattacks", "art"])
def test_agrees_with_peer(trained, native_results, backend, name, eps, record_property):
    pytest.importorskip({"torchattacks": "torchattacks", "art": "art"}[backend])
    model, x, y = trained
    native = native_results[(name, eps)]
    peer = craft(backend, name, model, x, y, eps)
    assert peer.shape == x.shape and peer.dtype == x.dtype
    assert _n_correct(model, peer, y) == _n_correct(model, native, y)
    close = (peer - native).abs() <= 1e-6
    n_far = int((~close).sum())  # sign flips of rounding-level gradients, if any
    n_diff = int((peer != native).sum())
    record_property("elements_differing", n_diff)
    record_property("elements_beyond_1e-6", n_far)
    assert n_far <= 1e-3 * native.numel(), (n_far, n_diff)
    assert (peer - x).abs().max().item() <= eps + 1e-6
    if backend == "torchattacks":  # same float32 operations: identical
        assert n_diff == 0


@pytest.mark.parametrize("backend", ["torchattacks", "art"])
def test_peer_call_leaves_model_alone(small, backend):
    pytest.importorskip({"torchattacks": "torchattacks", "art": "art"}[backend])
    model, x, y = small
    model.train()
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    try:
        x_before = x.clone()
        craft(backend, "ifgsm", model, x, y, 0.05)
        assert torch.equal(x, x_before)
        assert model.training and all(m.training for m in model.modules())
        assert all(p.requires_grad for p in model.parameters())
        assert torch.equal(first.grad, torch.ones_like(first))
        assert all(p.grad is None for p in list(model.parameters())[1:])
    finally:
        first.grad = None
        model.eval()


@pytest.mark.parametrize("backend", ["torchattacks", "art"])
def test_peer_zero_steps_and_eps(small, backend):
    pytest.importorskip({"torchattacks": "torchattacks", "art": "art"}[backend])
    model, x, y = small
    assert torch.equal(craft(backend, "ifgsm", model, x, y, 0.1, steps=0), x)
    assert torch.equal(craft(backend, "ifgsm", model, x, y, 0.0), x)
    assert torch.equal(craft(backend, "fgsm", model, x, y, 0.0), x)
