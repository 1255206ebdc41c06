"""Peer backends (robench.attacks.backends): torchattacks 3.5.1 and ART 1.20.1 run exactly
the attack asked for, with the native budget, or refuse it.

Offline, CPU, one thread. The model is a tiny conv net trained for a few seconds on
sklearn's digits; the attacks run on 256 of its test images — a power of two, so the
peers' gradient of the batch-*mean* loss is exactly 1/256 of native's gradient of the sum
and L2 directions g/‖g‖ come out bit for bit the same.

* Deterministic attacks (fgsm, ifgsm, fgm, pgd and pgd-l2 without random start): native
  and each peer agree element by element — bit-identical where the peer's float32
  arithmetic is native's (torchattacks' FGSM and BIM; its FGM and L2 PGD at ε a power of
  two: its ε/‖δ‖ is Python's ``eps / tensor``, computed as ε·(1/‖δ‖), which rounds like a
  division only then), within a few float32 ulps (≤ 1e-6) otherwise, where the peer
  re-adds the projected perturbation to x₀ (ART everywhere, torchattacks' L∞ PGD), and
  with the same number of correct predictions.
  ART's L2 PGD clips to [0, 1] before its ε-projection, so it is checked against that
  update written out here, and native's robust count within 3 samples of it.
* Random attacks (pgd with random start, apgd-*, square): robust accuracy of native within
  a few points of the peer's (the attacks draw different random numbers).
"""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench.attacks import ENSEMBLES, backend_names, craft, create_attack, list_attacks
from robench.attacks.backends import BACKENDS, PEER_ATTACKS, PeerAttack, peer_attack
from robench.errors import UserError

PEERS = ["torchattacks", "art"]
N = 256
#: robust accuracy: |native − peer| at most this (a few points; 0.04 ≈ 10 of 256 samples)
RANDOM_TOLERANCE = 0.04
SQUARE_TOLERANCE = 0.05


def _need(backend: str) -> None:
    pytest.importorskip({"torchattacks": "torchattacks", "art": "art"}[backend])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models are tiny: extra intra-op threads only add overhead (and spin on busy CPUs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained(trained):
    """conftest's digits conv net and the first N of its test images."""
    model, x, y = trained
    return model, x[:N], y[:N]


@pytest.fixture
def small(trained):
    model, x, y = trained
    return model, x[:32], y[:32]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _n_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum())


def _runs(backend: str) -> str:
    return ", ".join(PEER_ATTACKS[backend])


# ---- names and the wrapper -----------------------------------------------------------------
def test_backend_names():
    assert backend_names() == ["native", "torchattacks", "art"]
    assert BACKENDS == ("native", "torchattacks", "art")
    assert set(PEER_ATTACKS) == {"torchattacks", "art"}
    assert set(PEER_ATTACKS["art"]) < set(PEER_ATTACKS["torchattacks"]) <= set(list_attacks())


def test_native_is_the_attack_itself():
    for name in list_attacks():
        attack = create_attack(name)
        assert peer_attack("native", attack) is attack


BUDGET_OPTIONS = {"pgd": dict(steps=7, restarts=2), "pgd-l2": dict(steps=7, random_start=False),
                  "ifgsm": dict(steps=3, step_size=0.01), "apgd-ce": dict(steps=30, restarts=2),
                  "apgd-t": dict(steps=20, targets=4), "square": dict(queries=500, p_init=0.3, restarts=2)}


@pytest.mark.parametrize("backend", PEERS)
def test_wrapper_has_the_native_budget(backend):
    for name in PEER_ATTACKS[backend]:
        attack = create_attack(name, seed=5, **BUDGET_OPTIONS.get(name, {}))
        wrapper = peer_attack(backend, attack)
        assert isinstance(wrapper, PeerAttack) and wrapper.backend == backend and wrapper.native is attack
        assert (wrapper.name, wrapper.norm.name, wrapper.loss.name) == (attack.name, attack.norm.name,
                                                                        attack.loss.name)
        assert wrapper.deterministic == attack.deterministic
        assert wrapper.seed == (None if attack.deterministic else 5) == attack.seed
        assert wrapper.batch_size == attack.batch_size
        for eps in (0.0, 0.1, 0.3):
            assert wrapper.budget(eps) == attack.budget(eps)
        assert backend in repr(wrapper) and name in repr(wrapper)
    assert peer_attack(backend, create_attack("pgd", random_start=False)).deterministic
    attack = create_attack("ifgsm")
    wrapper = peer_attack(backend, attack)
    assert peer_attack("native", wrapper) is attack and peer_attack(backend, wrapper).native is attack
    assert not peer_attack(backend, create_attack("pgd")).deterministic


# ---- deterministic attacks: element-wise agreement -------------------------------------------
DETERMINISTIC = [
    ("fgsm", {}, (0.05, 0.1, 0.2)),
    ("ifgsm", {}, (0.05, 0.1, 0.2)),
    ("pgd", dict(random_start=False, steps=10), (0.05, 0.1, 0.2)),
    ("fgm", {}, (0.5, 1.0, 1.5)),
    ("pgd-l2", dict(random_start=False, steps=10), (0.5, 1.0, 1.5)),
]
#: (backend, attack) whose float32 arithmetic is native's: bit-identical results
IDENTICAL = {("torchattacks", "fgsm"), ("torchattacks", "ifgsm"), ("torchattacks", "fgm"),
             ("torchattacks", "pgd-l2")}


@pytest.fixture(scope="module")
def native_results(trained):
    model, x, y = trained
    return {(name, eps): craft("native", name, model, x, y, eps, **options)
            for name, options, values in DETERMINISTIC for eps in values}


def _clip_then_project_l2(model, x, y, eps, steps, alpha):
    """ART's L2 PGD from x₀: x ← x₀ + Π_ε(clip₀¹(x + α g/‖g‖) − x₀), g = ∇ₓ Σ CE."""
    x_adv = x.clone()
    for _ in range(steps):
        xg = x_adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
        step = grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        delta = (x_adv + alpha * step).clamp(0, 1) - x
        norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        x_adv = x + delta * torch.clamp(eps / norm, max=1.0)
    return x_adv


@pytest.mark.parametrize("backend", PEERS)
@pytest.mark.parametrize("name, options, eps_values", DETERMINISTIC, ids=[d[0] for d in DETERMINISTIC])
def test_deterministic_attack_agrees_with_peer(trained, native_results, backend, name, options, eps_values,
                                               record_property):
    _need(backend)
    model, x, y = trained
    norm = create_attack(name).norm
    for eps in eps_values:
        native = native_results[(name, eps)]
        peer = craft(backend, name, model, x, y, eps, **options)
        assert peer.shape == x.shape and peer.dtype == x.dtype
        assert norm.size(peer - x).max().item() <= eps + 1e-5
        assert peer.min().item() >= 0 and peer.max().item() <= 1
        difference = (peer - native).abs()
        record_property(f"eps={eps}: elements differing", int((difference > 0).sum()))
        record_property(f"eps={eps}: max difference", difference.max().item())
        if (backend, name) == ("art", "pgd-l2"):  # ART clips before its ε-projection
            steps, alpha = create_attack(name, **options).schedule(eps)
            expected = _clip_then_project_l2(model, x, y, eps, steps, alpha)
            assert (peer - expected).abs().max().item() <= 1e-6, eps
            assert abs(_n_correct(model, peer, y) - _n_correct(model, native, y)) <= 3, eps
            continue
        assert _n_correct(model, peer, y) == _n_correct(model, native, y), eps
        if (backend, name) in IDENTICAL and (norm.name == "linf" or math.log2(eps).is_integer()):
            assert torch.equal(peer, native), (eps, int((difference > 0).sum()))
        else:  # the re-addition x₀ + (x − x₀) and its rounding: a few float32 ulps
            assert difference.max().item() <= 1e-6, (eps, difference.max().item())


def test_pgd_without_random_start_and_ifgsm_schedule_is_torchattacks_bim(trained):
    """PGD with IFGSM's steps and step size is IFGSM (pgd.py); torchattacks' PGD reaches
    the same points up to the rounding of its re-addition."""
    _need("torchattacks")
    model, x, y = trained
    options = dict(random_start=False, steps=10, step_size=1 / 255)
    ifgsm = craft("torchattacks", "ifgsm", model, x, y, 0.05, steps=10, step_size=1 / 255)
    pgd = craft("torchattacks", "pgd", model, x, y, 0.05, **options)
    assert (ifgsm - pgd).abs().max().item() <= 1e-6
    assert torch.equal(ifgsm, craft("native", "pgd", model, x, y, 0.05, **options))


# ---- random attacks: robust accuracy -----------------------------------------------------------
RANDOM = [
    ("pgd", dict(steps=20), 0.1),
    ("pgd", dict(steps=20, restarts=3), 0.1),
    ("pgd-l2", dict(steps=20), 0.75),
    ("pgd-l2", dict(steps=20, restarts=3), 0.75),
    ("apgd-ce", dict(steps=50), 0.1),
    ("apgd-dlr", dict(steps=50), 0.1),
    ("apgd-t", dict(steps=50, targets=3), 0.1),
    ("apgd-ce-l2", dict(steps=50), 0.75),
    ("apgd-dlr-l2", dict(steps=50), 0.75),
    ("apgd-t-l2", dict(steps=50, targets=3), 0.75),
]
RANDOM_CASES = [pytest.param(backend, name, options, eps, id=f"{backend}-{name}-{'-'.join(map(str, options.values()))}")
                for name, options, eps in RANDOM for backend in PEERS if name in PEER_ATTACKS[backend]]


@pytest.fixture(scope="module")
def native_accuracy(trained):
    model, x, y = trained
    cache = {}

    def get(name, options, eps):
        key = (name, tuple(sorted(options.items())), eps)
        if key not in cache:
            cache[key] = _accuracy(model, craft("native", name, model, x, y, eps, **options), y)
        return cache[key]

    return get


@pytest.mark.parametrize("backend, name, options, eps", RANDOM_CASES)
def test_random_attack_robust_accuracy_close_to_peer(trained, native_accuracy, backend, name, options, eps,
                                                     record_property):
    _need(backend)
    model, x, y = trained
    peer = craft(backend, name, model, x, y, eps, **options)
    assert create_attack(name).norm.size(peer - x).max().item() <= eps + 1e-5
    assert peer.min().item() >= 0 and peer.max().item() <= 1
    native, theirs = native_accuracy(name, options, eps), _accuracy(model, peer, y)
    record_property("native robust accuracy", native)
    record_property("peer robust accuracy", theirs)
    assert theirs < _accuracy(model, x, y) - 0.3  # the peer does attack
    assert abs(native - theirs) <= RANDOM_TOLERANCE, (native, theirs)


class _SeesChannelZero8x8(nn.Module):
    """The digits model on channel 0 and the top-left 8×8 pixels of a (N, 3, 9, 9) input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inp):
        return self.model(inp[:, :1, :8, :8])


@pytest.mark.parametrize("backend", PEERS)
def test_square_robust_accuracy_close_to_peer(trained, backend, record_property):
    """Square on three-channel 9×9 inputs whose last row and column the model ignores:
    where the peers' two Square details (no square on the last row and column, no redraw
    of an unchanged proposal; module docstring of backends.py) do not matter, the robust
    accuracies are within a few points. On the raw one-channel 8×8 digits native is the
    stronger attack (about 9 points at 300 queries)."""
    _need(backend)
    model, x, y = trained
    wide = _SeesChannelZero8x8(model).eval()
    x_wide = F.pad(x, (0, 1, 0, 1)).repeat(1, 3, 1, 1)  # (N, 3, 9, 9)
    native = _accuracy(wide, craft("native", "square", wide, x_wide, y, 0.1, queries=300), y)
    peer_adv = craft(backend, "square", wide, x_wide, y, 0.1, queries=300)
    assert (peer_adv - x_wide).abs().max().item() <= 0.1 + 1e-6
    theirs = _accuracy(wide, peer_adv, y)
    record_property("robust accuracy, 3×9×9 (native, peer)", (native, theirs))
    assert abs(native - theirs) <= SQUARE_TOLERANCE, (native, theirs)
    raw_native = _accuracy(model, craft("native", "square", model, x, y, 0.1, queries=300), y)
    raw_theirs = _accuracy(model, craft(backend, "square", model, x, y, 0.1, queries=300), y)
    record_property("robust accuracy, 1×8×8 (native, peer)", (raw_native, raw_theirs))
    assert raw_theirs < _accuracy(model, x, y) - 0.2  # the peer does attack
    assert raw_native <= raw_theirs + 0.02, (raw_native, raw_theirs)


# ---- per-sample ε, sweeps, seeds ---------------------------------------------------------------
@pytest.mark.parametrize("backend", PEERS)
def test_per_sample_eps_groups_by_eps(small, backend):
    _need(backend)
    model, x, y = small
    values = (0.0, 0.05, 0.1)
    eps = torch.tensor([values[i % 3] for i in range(len(x))], dtype=torch.float64)  # (B,): exactly these ε
    for name, options in (("ifgsm", {}), ("apgd-ce", dict(steps=10))):
        wrapper = peer_attack(backend, create_attack(name, precision="fp32", **options))
        adv = wrapper(model, x, y, eps)
        assert torch.equal(adv[0::3], x[0::3])  # ε = 0
        for k in (1, 2):  # each ε group is one peer call on its samples
            assert torch.equal(adv[k::3], wrapper(model, x[k::3], y[k::3], values[k])), (name, k)
        swept = wrapper.sweep(model, x, y, list(values))
        for e, batch in zip(values, swept):
            assert torch.equal(batch, wrapper(model, x, y, e)), (name, e)
    if backend == "torchattacks":  # its BIM is native's arithmetic: per-sample ε too
        native = create_attack("ifgsm", precision="fp32")(model, x, y, eps)
        assert torch.equal(peer_attack(backend, create_attack("ifgsm", precision="fp32"))(model, x, y, eps), native)


@pytest.mark.parametrize("backend", PEERS)
def test_random_peer_is_seeded_and_leaves_global_rngs_alone(small, backend):
    _need(backend)
    model, x, y = small
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    first = craft(backend, "pgd", model, x, y, 0.1, steps=3, seed=1)
    assert torch.equal(first, craft(backend, "pgd", model, x, y, 0.1, steps=3, seed=1))
    assert not torch.equal(first, craft(backend, "pgd", model, x, y, 0.1, steps=3, seed=2))
    craft(backend, "apgd-ce", model, x, y, 0.1, steps=5)
    craft(backend, "square", model, x, y, 0.1, queries=20)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


# ---- refusals --------------------------------------------------------------------------------
def _one_line_user_error(call, match: str) -> str:
    with pytest.raises(UserError, match=match) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("backend", PEERS)
def test_unknown_and_ensemble_names_are_refused(small, backend):
    model, x, y = small
    for name in ("cw-l2", "deepfool", "FGSM"):
        _one_line_user_error(lambda: craft(backend, name, model, x, y, 0.1),
                             rf"^backend '{backend}' has no {name}; it runs: {_runs(backend)}$")
    for name in ENSEMBLES:  # an ensemble is not an attack of one backend
        _one_line_user_error(lambda: peer_attack(backend, create_attack(name)),
                             rf"^backend '{backend}' has no {name}; it runs: {_runs(backend)}$")
        _one_line_user_error(lambda: craft(backend, name, model, x, y, 0.1),
                             rf"^backend '{backend}' has no {name}; it runs: {_runs(backend)}$")


def test_unknown_backend_is_refused(small):
    model, x, y = small
    for call in (lambda: craft("foolbox", "fgsm", model, x, y, 0.1),
                 lambda: peer_attack("foolbox", create_attack("fgsm")),
                 lambda: PeerAttack("foolbox", create_attack("fgsm"))):
        _one_line_user_error(call, "unknown (attack|peer) backend 'foolbox'; valid: ")


def test_art_refuses_apgd_t(small):
    model, x, y = small
    for name in ("apgd-t", "apgd-t-l2"):
        message = _one_line_user_error(lambda: peer_attack("art", create_attack(name)),
                                       rf"^backend 'art' has no {name}; it runs: {_runs('art')} \(")
        assert "targeted" in message
        _one_line_user_error(lambda: craft("art", name, model, x, y, 0.1), f"has no {name}")


@pytest.mark.parametrize("backend", PEERS)
@pytest.mark.parametrize("loss", ["cw", "model"])
def test_non_ce_losses_are_refused(backend, loss):
    def member_loss(logits, labels, reduction="mean"):
        return F.cross_entropy(logits, labels, reduction=reduction)

    for name in ("fgsm", "ifgsm", "pgd", "pgd-l2", "fgm"):
        attack = create_attack(name, loss=loss, model_loss=member_loss)
        _one_line_user_error(lambda: peer_attack(backend, attack),
                             rf"^backend '{backend}' supports only the 'ce' attack loss for {name}, not '{loss}'; "
                             "use backend 'native'")


def test_art_refuses_what_it_cannot_run(small):
    model, x, y = small
    attack = create_attack("apgd-ce")
    attack.rho = 0.5  # ART hard-codes 0.75
    _one_line_user_error(lambda: peer_attack("art", attack), r"rho = 0.75 only .* not 0.5")
    assert isinstance(peer_attack("torchattacks", attack), PeerAttack)  # torchattacks takes rho
    _need("art")
    _one_line_user_error(lambda: craft("art", "square", model, x, y, 0.1, queries=2), "at least 3 queries")
    _one_line_user_error(lambda: craft("art", "square", model, x, y, 0.1, p_init=1.0), "smaller p_init")
    model64 = copy.deepcopy(model).double()
    _one_line_user_error(lambda: craft("art", "fgsm", model64, x.double(), y, 0.1), "float32 only")


@pytest.mark.parametrize("backend", PEERS)
def test_peer_checks_inputs(small, backend):
    model, x, y = small
    for bad in (x * 2 - 0.5, torch.full_like(x, float("nan"))):
        with pytest.raises(UserError):
            craft(backend, "ifgsm", model, bad, y, 0.1)
    with pytest.raises(UserError):
        craft(backend, "fgsm", model, x, y, 1.5)
    with pytest.raises(UserError):
        craft(backend, "apgd-ce", model, x.flatten(1), y, 0.1)  # not images


# ---- the model and the input are left alone -----------------------------------------------------
@pytest.mark.parametrize("backend", PEERS)
@pytest.mark.parametrize("name, options", [("ifgsm", {}), ("pgd", dict(steps=3)), ("apgd-ce", dict(steps=5)),
                                           ("square", dict(queries=20))], ids=["ifgsm", "pgd", "apgd-ce", "square"])
def test_peer_call_leaves_model_alone(small, backend, name, options):
    _need(backend)
    model, x, y = small
    model.train()
    model[1].eval()  # a mixed state survives too
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    before = [p.detach().clone() for p in model.parameters()]
    try:
        x_before = x.clone()
        craft(backend, name, model, x, y, 0.05, **options)
        assert torch.equal(x, x_before)
        assert model.training and model[0].training and not model[1].training and model[3].training
        assert all(p.requires_grad for p in model.parameters())
        assert torch.equal(first.grad, torch.ones_like(first))
        assert all(p.grad is None for p in list(model.parameters())[1:])
        assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    finally:
        first.grad = None
        model.eval()


@pytest.mark.parametrize("backend", PEERS)
def test_peer_zero_steps_and_eps(small, backend):
    _need(backend)
    model, x, y = small
    assert torch.equal(craft(backend, "ifgsm", model, x, y, 0.1, steps=0), x)
    assert torch.equal(craft(backend, "pgd", model, x, y, 0.1, steps=0, random_start=False), x)
    for name in PEER_ATTACKS[backend]:
        adv = craft(backend, name, model, x, y, 0.0)
        assert torch.equal(adv, x) and adv.data_ptr() != x.data_ptr(), name
