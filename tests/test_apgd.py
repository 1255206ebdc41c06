"""APGD (L∞ and L2; CE, DLR, targeted DLR): invariants, checkpoints, losses, bad options,
and robust accuracy against torchattacks 3.5.1 and ART 1.20.1 on the same images and budgets.

Offline, CPU, one thread. The fixture model is a tiny conv net trained for a fraction of a
second on sklearn's digits (as in tests/test_attacks.py), so the attacks face a real
classifier. Robust accuracy of a random-start attack varies with its seed by a few images
out of 300, so the comparisons average a few seeds with a few restarts on each side.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robench.attacks import ATTACKS, create_attack, create_attack_loss
from robench.attacks.apgd import APGD_TARGETS, checkpoints, targeted_dlr
from robench.attacks.attack import Budget
from robench.errors import UserError

LINF = ["apgd-ce", "apgd-dlr", "apgd-t"]
L2 = ["apgd-ce-l2", "apgd-dlr-l2", "apgd-t-l2"]
ALL = LINF + L2
EPS = {"linf": 0.1, "l2": 0.5}
FAST = {"steps": 20}  # the invariant tests: short runs

# the comparisons: 300 test images, COMPARE_STEPS steps, COMPARE_RESTARTS restarts, the
# mean over COMPARE_SEEDS seeds on each side; robench may be at most SLACK points weaker
COMPARE_STEPS = 50
COMPARE_RESTARTS = 3
COMPARE_SEEDS = (0, 1, 2)
LINF_EPS = (0.05, 0.1, 0.15)
L2_EPS = (0.25, 0.5, 1.0)
SLACK = 0.5  # percentage points of robust accuracy


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models are tiny: extra intra-op threads only add overhead (and spin on busy CPUs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _digits_cnn(classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, classes))


@pytest.fixture
def small(trained):
    model, x, y = trained
    return model, x[:24], y[:24]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _norm_of(name: str) -> str:
    return "l2" if name.endswith("-l2") else "linf"


# ---- invariants -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_budget_box_input_untouched(small, name):
    model, x, y = small
    eps = EPS[_norm_of(name)]
    x_before = x.clone()
    adv = create_attack(name, **FAST)(model, x, y, eps)
    assert torch.equal(x, x_before)
    assert adv.shape == x.shape and adv.dtype == x.dtype and not adv.requires_grad
    delta = (adv - x).flatten(1)
    if _norm_of(name) == "linf":  # inside the clamp bounds exactly; |δ| ≤ ε up to the rounding of x ± ε
        assert ((adv >= (x - eps).clamp_min(0)) & (adv <= (x + eps).clamp_max(1))).all()
        assert (delta.abs().amax(1) <= eps + 1e-6).all()
    else:
        assert (delta.norm(dim=1) <= eps + 1e-6).all()
    assert adv.min().item() >= 0.0 and adv.max().item() <= 1.0
    assert _accuracy(model, adv, y) < _accuracy(model, x, y)  # it does attack


@pytest.mark.parametrize("name", ALL)
def test_batch_equals_one_by_one(small, name):
    model, x, y = small
    x, y = x[:8], y[:8]
    attack = create_attack(name, **FAST)
    batched = attack(model, x, y, EPS[_norm_of(name)])
    alone = torch.cat([attack(model, x[i: i + 1], y[i: i + 1], EPS[_norm_of(name)]) for i in range(len(x))])
    if _norm_of(name) == "linf":
        assert torch.equal(alone, batched)
    else:  # batched matmuls round differently from single-row ones
        assert torch.allclose(alone, batched, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_seeds(small, name):
    model, x, y = small
    eps = EPS[_norm_of(name)]
    first = create_attack(name, seed=3, **FAST)(model, x, y, eps)
    assert torch.equal(first, create_attack(name, seed=3, **FAST)(model, x, y, eps))
    other = create_attack(name, seed=4, **FAST)
    assert other.seed == 4 and other.budget(eps).seed == 4
    assert other(model, x[:8], y[:8], eps).shape == x[:8].shape
    assert create_attack(name).seed == 0  # a random attack records its default seed


@pytest.mark.parametrize("name", ["apgd-ce", "apgd-t-l2"])
def test_eps_zero_returns_the_input(small, name):
    model, x, y = small
    assert torch.equal(create_attack(name, steps=5)(model, x, y, 0.0), x)


def test_per_sample_eps_and_sweep(small):
    model, x, y = small
    attack = create_attack("apgd-dlr", **FAST)
    values = (0.05, 0.1, 0.15)
    eps = torch.tensor([values[i % 3] for i in range(len(x))])  # (B,)
    adv = attack(model, x, y, eps)
    swept = attack.sweep(model, x, y, list(values))
    for k, e in enumerate(values):
        alone = attack(model, x, y, e)
        assert torch.equal(adv[k::3], alone[k::3])
        assert torch.equal(swept[k], alone)


def test_restarts_only_help(trained):
    model, x, y = trained
    x, y = x[:100], y[:100]
    one = create_attack("apgd-ce", steps=20, restarts=1)(model, x, y, 0.1)
    three = create_attack("apgd-ce", steps=20, restarts=3)(model, x, y, 0.1)
    fooled_one = model(one).argmax(1) != y
    fooled_three = model(three).argmax(1) != y
    assert (fooled_three | ~fooled_one).all()  # the first run is the same; later ones add
    assert torch.equal(three[fooled_one], one[fooled_one])


def test_first_adversarial_point_is_kept(trained):
    model, x, y = trained
    x, y = x[:100], y[:100]
    short = create_attack("apgd-ce", steps=1)(model, x, y, 0.15)  # x⁰, x¹: no checkpoint yet
    long = create_attack("apgd-ce", steps=30)(model, x, y, 0.15)
    fooled_early = model(short).argmax(1) != y
    assert fooled_early.any()
    assert torch.equal(long[fooled_early], short[fooled_early])
    already_wrong = model(x).argmax(1) != y
    assert torch.equal(long[already_wrong], x[already_wrong])


def _linear_two_classes() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A linear 2-class model that predicts class 0 by a wide margin, inputs (16, 1, 8, 8)
    in [0.4, 0.6] labelled 0, and the ascent direction u = w₁ − w₀ (64,) of the CE loss."""
    gen = torch.Generator().manual_seed(8)
    x = 0.4 + 0.2 * torch.rand(16, 1, 8, 8, generator=gen)  # (16, 1, 8, 8)
    y = torch.zeros(16, dtype=torch.long)
    weight = torch.randn(2, 64, generator=gen)  # (2, 64)
    u = weight[1] - weight[0]  # (64,)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).eval()
    with torch.no_grad():  # margin z₀ − z₁ ≥ 10 at every input: no ε here can fool it (nor flatten the CE)
        model[1].weight.copy_(weight)
        model[1].bias.copy_(torch.tensor([10.0 + (x.flatten(1) @ u).max().item(), 0.0]))
    return model, x, y, u


def test_linf_reaches_the_corner_of_a_linear_model():
    # CE of a linear model grows along u everywhere: x¹ = P(x⁰ + 2ε·sign(u)) is already the
    # corner x + ε·sign(u) of the ball, the loss's maximiser, and APGD keeps it
    model, x, y, u = _linear_two_classes()
    for steps in (1, 10):
        adv = create_attack("apgd-ce", steps=steps)(model, x, y, 0.05)
        assert (model(adv).argmax(1) == y).all()  # too robust to fool: the best point is returned
        assert torch.equal(adv, (x + 0.05 * u.sign().view(1, 1, 8, 8)).clamp(0, 1))


def test_l2_converges_to_the_maximiser_of_a_linear_model():
    # the maximiser of a linear loss in the L2 ball (away from the box) is x + ε·u/‖u‖₂
    model, x, y, u = _linear_two_classes()
    adv = create_attack("apgd-ce-l2", steps=50)(model, x, y, 0.3)
    along = ((adv - x).flatten(1) @ (u / u.norm()))  # (16,)
    assert (along >= 0.3 * (1 - 1e-3)).all() and (along <= 0.3 + 1e-6).all()


# ---- attributes, schedule, losses ---------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_attributes_and_budget(name):
    attack = create_attack(name)
    targeted = name.startswith("apgd-t")
    assert name in ATTACKS.names()
    assert (attack.steps, attack.restarts, attack.rho, attack.momentum) == (100, 1, 0.75, 0.75)
    assert attack.targeted is targeted and attack.deterministic is False
    assert attack.targets == (APGD_TARGETS if targeted else None)
    assert attack.norm.name == _norm_of(name)
    assert attack.loss.name == ("dlr-targeted" if targeted else "dlr" if "dlr" in name else "ce")
    assert type(attack).OPTIONS == (("steps", "restarts", "targets") if targeted else ("steps", "restarts"))
    custom = create_attack(name, steps=40, restarts=2, seed=7, **({"targets": 3} if targeted else {}))
    assert custom.budget(0.1) == Budget(steps=40, step_size=0.2, restarts=2 * (3 if targeted else 1),
                                        queries=None, seed=7)


def test_checkpoints():
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (Croce & Hein 2020, §3)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(50) == [11, 21, 29, 35, 40, 44, 47, 50]
    assert checkpoints(1) == [1]
    for n in range(1, 300):
        w = checkpoints(n)
        assert w == sorted(set(w)) and 1 <= w[0] and w[-1] <= n


def test_dlr_loss_values():
    loss = create_attack_loss("dlr")
    z = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 5.0, 1.0]])  # (2, 4)
    y = torch.tensor([0, 1])
    # sample 0: −(3 − 1)/(3 − 0); sample 1: −(2 − 5)/(5 − 1)
    assert torch.allclose(loss(z, y), torch.tensor([-2 / 3, 3 / 4]))
    assert torch.allclose(loss(3 * z + 7, y), loss(z, y))  # shift- and scale-invariant
    t = torch.tensor([2, 2])
    # sample 0: −(3 − 0)/(3 − (0 − 1)/2); sample 1: −(2 − 5)/(5 − (1 + 0)/2)
    assert torch.allclose(targeted_dlr(z, y, t), torch.tensor([-3 / 3.5, 3 / 4.5]))


# ---- errors -----------------------------------------------------------------------------
def test_dlr_needs_three_classes(small):
    _, x, y = small
    two = _digits_cnn(2).eval()
    with pytest.raises(UserError, match="the DLR loss needs at least 3 classes, the model has 2"):
        create_attack("apgd-dlr", steps=2)(two, x, y % 2, 0.1)
    with pytest.raises(UserError, match="needs at least 3 classes"):
        create_attack("apgd-dlr-l2", steps=2)(two, x, y % 2, 0.5)
    with pytest.raises(UserError, match="needs at least 3 classes, the model has 2"):
        create_attack_loss("dlr")(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("name", ["apgd-t", "apgd-t-l2"])
def test_targeted_needs_four_classes(small, name):
    _, x, y = small
    three = _digits_cnn(3).eval()
    with pytest.raises(UserError, match="the targeted DLR loss needs at least 4 classes, the model has 3"):
        create_attack(name, steps=2)(three, x, y % 3, EPS[_norm_of(name)])


@pytest.mark.parametrize("option", ["steps", "restarts", "targets"])
@pytest.mark.parametrize("value", [0, -1, 2.5, True, "3"])
def test_bad_counts(option, value):
    with pytest.raises(UserError, match=option):
        create_attack("apgd-t", **{option: value})
    if option != "targets":
        with pytest.raises(UserError, match=option):
            create_attack("apgd-ce-l2", **{option: value})


def test_bad_options():
    with pytest.raises(UserError, match="takes no targets"):
        create_attack("apgd-ce", targets=3)
    with pytest.raises(UserError, match="takes no step_size"):
        create_attack("apgd-dlr", step_size=0.1)
    with pytest.raises(UserError, match="ascends the ce loss"):
        create_attack("apgd-ce", loss="cw")
    with pytest.raises(UserError, match="ascends the dlr-targeted loss"):
        create_attack("apgd-t", loss="dlr")
    assert create_attack("apgd-t", loss="dlr-targeted").loss.name == "dlr-targeted"


# ---- agreement with torchattacks and ART -----------------------------------------------------
def _robench(model, x, y, name, eps, seed, restarts=COMPARE_RESTARTS, **options):
    attack = create_attack(name, steps=COMPARE_STEPS, restarts=restarts, seed=seed, precision="fp32", **options)
    return attack(model, x, y, eps)


def _torchattacks(model, x, y, kind, norm, eps, seed, restarts=COMPARE_RESTARTS, targets=None):
    ta = pytest.importorskip("torchattacks")
    common = dict(norm=norm, eps=eps, steps=COMPARE_STEPS, n_restarts=restarts, seed=seed)
    if kind == "t":  # its number of targets is n_classes − 1
        attack = ta.APGDT(model, n_classes=targets + 1, **common)
    else:
        attack = ta.APGD(model, loss=kind, **common)
    return attack(x, y)


def _art(model, x, y, kind, eps, seed):
    pytest.importorskip("art")
    from art.attacks.evasion import AutoProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=10, clip_values=(0.0, 1.0))
    np.random.seed(seed)  # ART draws its starts from NumPy's global generator
    attack = AutoProjectedGradientDescent(
        classifier, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=COMPARE_STEPS,
        nb_random_init=COMPARE_RESTARTS, batch_size=len(x), verbose=False,
        loss_type={"ce": "cross_entropy", "dlr": "difference_logits_ratio"}[kind],
    )
    return torch.from_numpy(attack.generate(x=x.numpy(), y=y.numpy()))


def _robust_percent(model, x, y, craft) -> float:
    """Mean robust accuracy (percent) over COMPARE_SEEDS of ``craft(seed)``."""
    return 100 * float(np.mean([_accuracy(model, craft(seed), y) for seed in COMPARE_SEEDS]))


def _assert_not_weaker(table: dict[float, dict[str, float]]) -> None:
    for eps, row in table.items():
        for peer, value in row.items():
            assert row["robench"] <= value + SLACK, f"robench weaker than {peer} at eps={eps}: {table}"


@pytest.mark.parametrize("kind", ["ce", "dlr"])
def test_linf_agrees_with_torchattacks_and_art(trained, kind):
    model, x, y = trained
    table = {}
    for eps in LINF_EPS:
        table[eps] = {
            "robench": _robust_percent(model, x, y, lambda s: _robench(model, x, y, f"apgd-{kind}", eps, s)),
            "torchattacks": _robust_percent(model, x, y, lambda s: _torchattacks(model, x, y, kind, "Linf", eps, s)),
            "art": _robust_percent(model, x, y, lambda s: _art(model, x, y, kind, eps, s)),
        }
    assert table[LINF_EPS[-1]]["robench"] < table[LINF_EPS[0]]["robench"] < 100 * _accuracy(model, x, y)
    _assert_not_weaker(table)


def test_targeted_agrees_with_torchattacks(trained):
    # 3 targets of one run each (AutoAttack runs APGD-T with one restart per target)
    model, x, y = trained
    table = {}
    for eps in LINF_EPS:
        ours = lambda s: _robench(model, x, y, "apgd-t", eps, s, restarts=1, targets=3)  # noqa: E731
        peer = lambda s: _torchattacks(model, x, y, "t", "Linf", eps, s, restarts=1, targets=3)  # noqa: E731
        table[eps] = {"robench": _robust_percent(model, x, y, ours),
                      "torchattacks": _robust_percent(model, x, y, peer)}
    _assert_not_weaker(table)


def test_l2_agrees_with_torchattacks(trained):
    model, x, y = trained
    table = {}
    for eps in L2_EPS:
        table[eps] = {
            "robench": _robust_percent(model, x, y, lambda s: _robench(model, x, y, "apgd-ce-l2", eps, s)),
            "torchattacks": _robust_percent(model, x, y, lambda s: _torchattacks(model, x, y, "ce", "L2", eps, s)),
        }
    _assert_not_weaker(table)
