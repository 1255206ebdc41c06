"""Attacks: invariants, ε-sweeps, losses and bad inputs (agreement with torchattacks / ART:
test_backends.py).

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
    craft,
    create_attack,
    create_attack_loss,
    kurakin_steps,
)
from robench.attacks.prefix_sweep import branch_step
from robench.attacks.ifgsm import IFGSM
from robench.errors import UserError
from conftest import fit_adam

ATTACK_NAMES = ["fgsm", "ifgsm"]
LOSS_NAMES = ["ce", "cw"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models are tiny: extra intra-op threads only add overhead (and spin on busy CPUs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
    fgsm = create_attack("fgsm")
    fgsm.sweep(counting, x, y, [0.05, 0.1, 0.2, 0.3])
    assert counting.calls == 1 and fgsm.last_sweep_image_steps == len(x)
    counting.calls = 0
    create_attack("ifgsm").sweep(counting, x, y, [0.05, 0.1, 0.2])
    # trunk to k(0.2) = 50, then one stacked batch of the branches (3, 4 and 5 steps left)
    assert counting.calls == 50 + 5 == kurakin_steps(0.2)
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


# ---- IFGSM prefix sharing -----------------------------------------------------------------
MNIST_GRID = [round(0.05 * i, 2) for i in range(7)]  # 0, 0.05, …, 0.3
MULTIPLES_GRID = [k / 255 for k in range(11)]  # ε exactly k·α for α = 1/255
# k_ε on the MNIST grid for fp32 and α = 1/255: ⌊255ε⌋, except 0.2 = 51/255 up to rounding → 50
MNIST_BRANCH = [0, 12, 25, 38, 50, 63, 76]
MNIST_STEPS = [0, 15, 29, 42, 55, 67, 80]  # Kurakin: Σ = 288


class _CountingRows(nn.Module):
    """Counts the forward calls and their rows (one forward per input-gradient)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.rows = 0
        self.max_rows = 0

    def forward(self, inp):
        self.calls += 1
        self.rows += inp.shape[0]
        self.max_rows = max(self.max_rows, inp.shape[0])
        return self.inner(inp)


def _tiny(arch: str) -> nn.Module:
    torch.manual_seed(3)
    if arch == "cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
        )
    else:
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10))
    return model.double() if arch == "mlp64" else model


def _tiny_batch(n: int = 12, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantised pixels m/255 (as real images), some exactly 0 and 1: (n, 1, 8, 8), (n,)."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randint(0, 256, (n, 1, 8, 8), generator=gen).to(dtype) / 255
    x[:, :, 0, :2] = 0.0
    x[:, :, 1, :2] = 1.0
    return x, torch.randint(0, 10, (n,), generator=gen)


def _prefix_image_steps(eps_values, n, attack, dtype=torch.float32) -> int:
    """The prefix-shared count: per sample, the trunk to max k_ε plus every branch."""
    schedules = [attack.schedule(e) if e > 0 else (0, 0.0) for e in eps_values]
    ks = [branch_step(e, s, a, dtype) for e, (s, a) in zip(eps_values, schedules)]
    return n * (max(ks) + sum(s - k for (s, _), k in zip(schedules, ks)))


def test_branch_step():
    assert [branch_step(e, kurakin_steps(e), KURAKIN_STEP_SIZE) for e in MNIST_GRID] == MNIST_BRANCH
    # ε = k/255 exactly: one step before the exact-arithmetic branch point k
    assert [branch_step(e, kurakin_steps(e), KURAKIN_STEP_SIZE) for e in MULTIPLES_GRID] == [
        0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
    ]
    assert branch_step(4 / 255, 100, 1 / 255) == 3
    assert branch_step(4.5 / 255, 100, 1 / 255) == 4
    assert branch_step(0.3, 7, 0.01) == 7  # never more than the schedule
    assert branch_step(0.0, 80, 1 / 255) == 0 and branch_step(0.1, 0, 1 / 255) == 0
    assert branch_step(0.1, 80, 1.5) == 0  # one step already leaves the ball
    assert branch_step(0.2, 1000, 1 / 255, torch.float64) == 50  # 0.2 is 51 steps up to rounding


def test_branch_point_needs_the_rounding_margin():
    """At ε = 3/255 = 3α, three unprojected fp32 steps overshoot fl(x₀ + ε) for some x₀:
    branching at ε/α would differ from the per-ε attack; at branch_step (2) it cannot."""
    gen = torch.Generator().manual_seed(5)
    x0 = torch.rand(100_000, generator=gen)  # (N,)
    alpha, eps = torch.tensor(1 / 255), 3 / 255
    lo, hi = (x0 - eps).clamp_min(0), (x0 + eps).clamp_max(1)

    def differs_after(k: int, sign: float) -> int:
        free, projected = x0.clone(), x0.clone()
        for _ in range(k):
            free = torch.clamp(free + alpha * sign, 0, 1)
            projected = torch.clamp(projected + alpha * sign, lo, hi)
        return int((free != projected).sum())

    assert differs_after(3, 1.0) + differs_after(3, -1.0) > 0
    k = branch_step(eps, 3, 1 / 255)
    assert k == 2 and differs_after(k, 1.0) + differs_after(k, -1.0) == 0


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("grid", ["mnist", "multiples"])
@pytest.mark.parametrize("arch", ["cnn", "mlp", "mlp64"])
def test_prefix_sweep_bit_identical_to_per_eps_calls(arch, grid, loss):
    dtype = torch.float64 if arch == "mlp64" else torch.float32
    model, (x, y) = _tiny(arch), _tiny_batch(dtype=dtype)
    eps_values = MNIST_GRID if grid == "mnist" else MULTIPLES_GRID
    attack = create_attack("ifgsm", loss=loss)
    swept = attack.sweep(model, x, y, eps_values)
    assert attack.last_sweep_image_steps == _prefix_image_steps(eps_values, len(x), attack, dtype)
    for e, adv in zip(eps_values, swept):
        assert adv.dtype == dtype
        assert torch.equal(adv, attack(model, x, y, e)), e
    assert torch.equal(swept[0], x)  # ε = 0: x unchanged


@pytest.mark.parametrize("batch_size", [30, 12, 5])  # 2 ε blocks a chunk; B = bs; B > bs
def test_prefix_sweep_chunks(batch_size):
    model, (x, y) = _tiny("cnn"), _tiny_batch()
    attack = create_attack("ifgsm", batch_size=batch_size)
    counting = _CountingRows(model)
    swept = attack.sweep(counting, x, y, MNIST_GRID)
    assert counting.rows == attack.last_sweep_image_steps == len(x) * 100
    # whole ε blocks of B rows per chunk; with B > batch_size, chunks of the samples
    assert counting.max_rows == (batch_size // len(x) * len(x) if batch_size >= len(x) else batch_size)
    for e, adv in zip(MNIST_GRID, swept):
        assert torch.equal(adv, attack(model, x, y, e)), e


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prefix_sweep_equals_per_eps_calls_on_cuda():
    """fp32 on CUDA: the prefix-shared sweep gives the per-ε adversarials (cuDNN may pick
    batch-size-dependent kernels, so allow a rare gradient-sign flip at rounding level)."""
    model, (x, y) = _tiny("cnn").cuda(), _tiny_batch(256)
    x, y = x.cuda(), y.cuda()
    attack = create_attack("ifgsm", precision="fp32")
    for e, adv in zip(MNIST_GRID, attack.sweep(model, x, y, MNIST_GRID)):
        differing = (adv != attack(model, x, y, e)).float().mean().item()
        assert differing <= 1e-3, (e, differing)


def test_prefix_sweep_image_steps_on_the_mnist_grid():
    model, (x, y) = _tiny("cnn"), _tiny_batch()
    n = len(x)
    attack = create_attack("ifgsm")
    assert [kurakin_steps(e) for e in MNIST_GRID] == MNIST_STEPS
    per_eps = n * sum(MNIST_STEPS)  # the per-ε loop: Σ_ε steps(ε) · B = 288 B
    shared = n * (max(MNIST_BRANCH) + sum(s - k for s, k in zip(MNIST_STEPS, MNIST_BRANCH)))
    assert shared == n * (76 + 24) == _prefix_image_steps(MNIST_GRID, n, attack)
    counting = _CountingRows(model)
    for e in MNIST_GRID:
        attack(counting, x, y, e)
    assert counting.rows == per_eps
    counting.rows = 0
    attack.sweep(counting, x, y, MNIST_GRID)
    assert attack.last_sweep_image_steps == counting.rows == shared
    assert shared <= 0.4 * per_eps  # 100 / 288 ≈ 35 %


def test_prefix_sweep_with_step_override():
    model, (x, y) = _tiny("cnn"), _tiny_batch()
    attack = create_attack("ifgsm", steps=7, step_size=0.01)
    eps_values = [0.0, 0.02, 0.05, 0.1, 1.0]  # k_ε = 0, 1 (0.02 = 2α), 4 (0.05 = 5α), 7, 7
    swept = attack.sweep(model, x, y, eps_values)
    assert attack.last_sweep_image_steps == len(x) * (7 + 6 + 3) == _prefix_image_steps(eps_values, len(x), attack)
    for e, adv in zip(eps_values, swept):
        assert torch.equal(adv, attack(model, x, y, e)), e


class _QuarterSteps(IFGSM):
    """Four steps of ε/4: no step size shared across ε, so no prefix to share."""

    def schedule(self, eps):
        return 4, eps / 4


def test_sweep_without_common_step_size_stacks_from_x0():
    model, (x, y) = _tiny("cnn"), _tiny_batch()
    attack = _QuarterSteps()
    eps_values = [0.05, 0.1, 0.2]
    swept = attack.sweep(model, x, y, eps_values)
    assert attack.last_sweep_image_steps == 4 * 3 * len(x)  # one stacked batch, 4 steps
    for e, adv in zip(eps_values, swept):
        assert torch.equal(adv, attack(model, x, y, e)), e


# ---- precision ---------------------------------------------------------------------------
def _prototype_data(n: int, gen: torch.Generator, protos: torch.Tensor):
    """Separable 10 classes: a class prototype (10, 1, 12, 12) plus noise, in [0, 1]."""
    y = torch.randint(0, 10, (n,), generator=gen)  # (n,)
    x = (protos[y] + 0.15 * torch.randn(n, 1, 12, 12, generator=gen)).clamp(0, 1)  # (n, 1, 12, 12)
    return x, y


@pytest.fixture(scope="module")
def prototypes_cnn():
    """A small CNN trained 40 Adam steps on the prototype data, and a test batch of 64."""
    gen = torch.Generator().manual_seed(6)
    protos = torch.rand(10, 1, 12, 12, generator=gen)
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 12 * 12, 32), nn.ReLU(), nn.Linear(32, 10),
    )
    model = fit_adam(model, (_prototype_data(64, gen, protos) for _ in range(40)), lr=3e-3)
    x, y = _prototype_data(64, gen, protos)
    assert _n_correct(model, x, y) >= 58  # learnt (> 90 %)
    return model, x, y


_DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                  reason="needs CUDA"))]


@pytest.mark.parametrize("device", _DEVICES)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_bf16_gradient_signs_agree_with_fp32(prototypes_cnn, loss, device):
    """bf16 autocast (on the CPU) keeps ≥ 90 % of the input-gradient signs where they matter.

    "Not tiny": |g| > 0.1 × the sample's mean |g| in fp32. bf16 keeps 8 significant bits
    (unit roundoff 2⁻⁹ ≈ 0.2 %), and the forward and backward passes accumulate such
    errors over every layer, so bf16 gradients differ from fp32 by a few % of a sample's
    gradient scale (≈ 2.5 % here): entries below 10 % of that scale may flip sign
    legitimately, larger ones should not. The mask keeps most pixels (asserted ≥ 50 %, so
    the check is not vacuous); a broken bf16 path (wrong or random gradients) agrees on
    about half of them, as the gradient for other labels shows.
    """
    model, x, y = (t.to(device) for t in prototypes_cnn)
    dtypes = []
    hook = model[0].register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    try:
        g32 = create_attack("ifgsm", loss=loss, precision="fp32").input_grad(model, x, y)
        g16 = create_attack("ifgsm", loss=loss, precision="bf16").input_grad(model, x, y)
    finally:
        hook.remove()
    assert dtypes == [torch.float32, torch.bfloat16]  # autocast did run the model in bf16
    assert g16.dtype == torch.float32
    scale = g32.abs().flatten(1).mean(1).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    mask = g32.abs() > 0.1 * scale  # (B, 1, 12, 12)
    assert mask.float().mean().item() >= 0.5
    agree = (g32.sign() == g16.sign())[mask].float().mean().item()
    assert agree >= 0.9, agree
    g_other = create_attack("ifgsm", loss=loss, precision="fp32").input_grad(model, x, (y + 1) % 10)
    assert (g32.sign() == g_other.sign())[mask].float().mean().item() < 0.9  # the check can fail


def _reference_ifgsm(model, x, y, eps, steps, alpha):
    """Plain fp32 BIM: x ← clamp(x + α·sign(∇ₓ Σ CE), max(x₀ − ε, 0), min(x₀ + ε, 1))."""
    lo, hi = (x - torch.tensor(eps)).clamp_min(0), (x + torch.tensor(eps)).clamp_max(1)
    x_adv = x.clone()
    for _ in range(steps):
        xg = x_adv.detach().requires_grad_(True)
        total = F.cross_entropy(model(xg), y, reduction="none").float().sum()
        (grad,) = torch.autograd.grad(total, xg)
        x_adv = torch.clamp(x_adv + torch.tensor(alpha) * grad.sign(), lo, hi)
    return x_adv


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_fp32_precision_is_the_plain_fp32_attack(small, precision):
    model, x, y = small
    attack = create_attack("ifgsm", precision=precision)
    expected = _reference_ifgsm(model, x, y, 0.1, kurakin_steps(0.1), KURAKIN_STEP_SIZE)
    assert torch.equal(attack(model, x, y, 0.1), expected)
    assert torch.equal(attack.sweep(model, x, y, [0.05, 0.1])[1], expected)


def test_precision_names_and_create_attack_options():
    for name in ATTACK_NAMES:
        with pytest.raises(UserError, match="unknown precision 'fp16'; valid: auto, fp32, bf16"):
            create_attack(name, precision="fp16")
    with pytest.raises(UserError, match="unknown precision"):
        IFGSM(precision=None)  # type: ignore[arg-type]
    attack = create_attack("ifgsm", loss="cw", steps=5, step_size=0.01, batch_size=64, precision="bf16")
    assert (attack.loss.name, attack.steps, attack.step_size, attack.batch_size, attack.precision) == (
        "cw", 5, 0.01, 64, "bf16"
    )
    assert create_attack("fgsm").precision == "auto"
    assert "precision='bf16'" in repr(attack)


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
    assert {"ce", "cw", "dlr", "margin", "model"} <= set(ATTACK_LOSSES.names())
    assert {"fgsm", "ifgsm", "fgm", "pgd", "pgd-l2", "square", "worst", "aa"} <= set(ATTACKS.names())


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
    with pytest.raises(UserError, match="unknown attack 'cw'"):
        create_attack("cw")
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
