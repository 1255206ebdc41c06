"""Losses against slow reference loops written straight from the paper's equations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robench.config import LossSpec
from robench.errors import UserError
from robench.losses import (
    LOSSES,
    CrossEntropyLoss,
    HingeLoss,
    OneToNCELoss,
    OneToNLoss,
    create_loss,
)



@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add contention on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DELTAS = (0.5, 1.0, 4.0)
BOUNDS = ("sym", "zero", "shifted")
# (loss name, bound); ce and hinge have no bound
LOSS_BOUNDS = [("ce", "sym"), ("hinge", "sym")] + [
    (name, b) for name in ("1toN", "1toN+ce") for b in BOUNDS
]
# (loss name, bound, δ); ce ignores δ, so it is checked at one δ only
LOSS_BOUND_DELTAS = [("ce", "sym", 1.0)] + [
    (name, b, d) for name, b in LOSS_BOUNDS if name != "ce" for d in DELTAS
]


# ---------------------------------------------------------------- reference loops


def _neg_bound(v: float, delta: float, bound: str) -> float:
    if bound == "sym":  # −δ + [δ + f]₊  (Eq. 8)
        return -delta + max(delta + v, 0.0)
    if bound == "zero":  # [0, δ] of Figure 1
        return max(v, 0.0)
    if bound == "shifted":  # e^{[δ + f]₊}, the text after Eq. 14
        return max(delta + v, 0.0)
    raise AssertionError(bound)


def reference_losses(name, z, y, delta, bound):
    """Per-sample L_i by explicit Python loops over i, j, k in float64 math."""
    z = z.detach().double().tolist()
    y = y.tolist()
    B, K = len(z), len(z[0])
    out = []
    for i in range(B):
        yi = y[i]
        if name == "ce":  # Eq. 1-2: −log(e^{z_iy} / Σ_k e^{z_ik})
            denom = sum(math.exp(z[i][k]) for k in range(K))
            out.append(-math.log(math.exp(z[i][yi]) / denom))
        elif name == "hinge":  # Eq. 10, λ = 0
            total = 0.0
            for k in range(K):
                t = 1.0 if k == yi else -1.0
                total += max(delta - t * z[i][k], 0.0) ** 2
            out.append(total)
        else:
            pos = delta - max(delta - z[i][yi], 0.0)  # δ − [δ − f]₊
            negs = [_neg_bound(z[j][yi], delta, bound) for j in range(B) if y[j] != yi]
            if name == "1toN":  # Eq. 8-9
                denom = math.exp(pos) + sum(math.exp(n) for n in negs)
            else:  # Eq. 14
                denom = sum(math.exp(n) for n in negs) + sum(
                    math.exp(z[i][k]) for k in range(K)
                )
            out.append(-math.log(math.exp(pos) / denom))
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- inputs


def _tied_logits(B, K, delta, gen):
    """Logits drawn from a small set with ±δ, 0 and repeats, plus some continuous ones."""
    choices = torch.tensor([-delta, 0.0, delta, -1.5, 1.5, 2.0 * delta, -3.0, 0.25])
    z = choices[torch.randint(len(choices), (B, K), generator=gen)]
    cont = torch.rand(B, K, generator=gen) < 0.3
    return torch.where(cont, torch.randn(B, K, generator=gen) * 3.0, z)


CASES = {
    # name: (B, K, labels kind)
    "random-K10-B33": (33, 10, "random"),
    "random-K2-B33": (33, 2, "random"),
    "random-K10-B7": (7, 10, "random"),
    "one-class-K10-B9": (9, 10, "one-class"),
    "one-class-K2-B5": (5, 2, "one-class"),
    "single-K10": (1, 10, "random"),
    "single-K2": (1, 2, "random"),
}


def _case(case, delta, seed=0):
    B, K, kind = CASES[case]
    gen = torch.Generator().manual_seed(seed + 17 * B + K)
    z = _tied_logits(B, K, delta, gen)
    if kind == "one-class":
        y = torch.full((B,), K - 1, dtype=torch.int64)
    else:
        y = torch.randint(K, (B,), generator=gen, dtype=torch.int64)
    return z, y


def _make(name, delta, bound):
    return create_loss(LossSpec(name, delta=delta, bound=bound))


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("name,bound,delta", LOSS_BOUND_DELTAS)
def test_matches_reference_loop(name, bound, delta):
    loss = _make(name, delta, bound)
    for case in sorted(CASES):
        z, y = _case(case, delta)
        ref = reference_losses(name, z, y, delta, bound)
        _check_against_reference(loss, z, y, ref)


def _check_against_reference(loss, z, y, ref):
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        per = loss(z.to(dtype), y, reduction="none")
        assert per.shape == (z.shape[0],) and per.dtype == dtype
        torch.testing.assert_close(per.double(), ref, rtol=tol, atol=tol)
        mean = loss(z.to(dtype), y)
        assert mean.shape == ()
        torch.testing.assert_close(mean.double(), ref.mean(), rtol=tol, atol=tol)
        mean2 = loss(z.to(dtype), y, reduction="mean")
        assert torch.equal(mean, mean2)


@pytest.mark.parametrize("name,bound,delta", LOSS_BOUND_DELTAS)
def test_gradcheck_float64(name, bound, delta):
    gen = torch.Generator().manual_seed(3)
    B, K = 8, 4
    z = torch.randn(B, K, generator=gen, dtype=torch.float64) * 2.0 * delta
    # keep clear of the kinks at ±δ and 0 (and of δ ± δ for the shifted bound)
    for kink in (-delta, 0.0, delta):
        near = (z - kink).abs() < 0.05
        z = torch.where(near, z + 0.1, z)
    y = torch.tensor([0, 1, 1, 2, 3, 0, 0, 2])  # several classes, repeated
    loss = _make(name, delta, bound)
    z.requires_grad_(True)
    # the per-sample Jacobian covers the mean, which is linear in it
    assert torch.autograd.gradcheck(lambda t: loss(t, y, reduction="none"), (z,))
    # one class only: 1toN is identically 0, the rest are ordinary functions
    y1 = torch.full((B,), 2)
    assert torch.autograd.gradcheck(lambda t: loss(t, y1), (z,))


@pytest.mark.parametrize("name,bound", LOSS_BOUNDS)
def test_extreme_logits_are_finite(name, bound):
    gen = torch.Generator().manual_seed(5)
    B, K = 16, 10
    signs = torch.randint(0, 3, (B, K), generator=gen).float() - 1.0  # −1, 0, +1
    z = (signs * 1e4).requires_grad_(True)
    loss = _make(name, 1.0, bound)
    for y in (torch.randint(K, (B,), generator=gen), torch.zeros(B, dtype=torch.int64)):
        z.grad = None
        value = loss(z, y)
        value.backward()
        assert torch.isfinite(value)
        assert torch.isfinite(z.grad).all()
        assert torch.isfinite(loss(z, y, reduction="none")).all()


@pytest.mark.parametrize("bound", BOUNDS)
def test_one_class_batch_one_to_n_is_exactly_zero(bound):
    z = torch.randn(8, 4).mul(5.0).requires_grad_(True)
    y = torch.full((8,), 3)
    loss = OneToNLoss(1.0, bound)
    per = loss(z, y, reduction="none")
    assert torch.equal(per, torch.zeros(8))
    loss(z, y).backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


@pytest.mark.parametrize("bound", BOUNDS)
@pytest.mark.parametrize("delta", DELTAS)
def test_one_class_batch_one_to_n_ce_is_ce_with_bounded_positive(bound, delta):
    z = torch.randn(8, 4, dtype=torch.float64) * 3.0
    y = torch.full((8,), 1)
    per = OneToNCELoss(delta, bound)(z, y, reduction="none")
    expected = torch.logsumexp(z, 1) - torch.clamp(z[:, 1], max=delta)
    torch.testing.assert_close(per, expected)
    # where the true logit is within the margin, it is exactly cross entropy
    inside = z[:, 1] <= delta
    torch.testing.assert_close(per[inside], F.cross_entropy(z, y, reduction="none")[inside])


def test_single_sample_batch():
    z = torch.tensor([[0.5, 2.0, -1.0]])
    y = torch.tensor([1])
    assert OneToNLoss(1.0)(z, y).item() == 0.0
    # 1toN+ce: logsumexp(z) − min(2, 1)
    expected = torch.logsumexp(z[0], 0) - 1.0
    torch.testing.assert_close(OneToNCELoss(1.0)(z, y), expected)


@pytest.mark.parametrize(
    "bound,expected",
    [
        # sample 0: pos = min(2, 1) = 1; its negative is z[1, 0] = −3.
        # sample 1: pos = min(0.2, 1) = 0.2; its negative is z[0, 1] = 0.5.
        ("sym", (math.log1p(math.exp(-1.0 - 1.0)), math.log1p(math.exp(0.5 - 0.2)))),
        ("zero", (math.log1p(math.exp(0.0 - 1.0)), math.log1p(math.exp(0.5 - 0.2)))),
        ("shifted", (math.log1p(math.exp(0.0 - 1.0)), math.log1p(math.exp(1.5 - 0.2)))),
    ],
)
def test_one_to_n_known_values_two_samples(bound, expected):
    z = torch.tensor([[2.0, 0.5], [-3.0, 0.2]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    per = OneToNLoss(1.0, bound)(z, y, reduction="none")
    torch.testing.assert_close(per, torch.tensor(expected, dtype=torch.float64))
    # Eq. 14 adds sample i's own K logits to the denominator
    per_ce = OneToNCELoss(1.0, bound)(z, y, reduction="none")
    neg = (math.exp(expected[0]) - 1.0) * math.exp(1.0)  # e^{neg_0}
    ref0 = math.log(neg + math.exp(2.0) + math.exp(0.5)) - 1.0
    torch.testing.assert_close(per_ce[0].item(), ref0)


def test_one_to_n_negatives_are_other_samples_logits_for_own_class():
    # the look-up table: sample 0 (class 0) is compared with z[j, 0] of samples j of
    # another class, never with its own other-class logits
    z = torch.tensor([[0.0, 100.0, 100.0], [0.3, -1.0, 0.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 0])
    per = OneToNLoss(4.0)(z, y, reduction="none")
    # sample 0: pos = 0, negatives {z[1, 0] = 0.3} (sample 2 shares class 0)
    torch.testing.assert_close(per[0], torch.tensor(math.log(1.0 + math.exp(0.3))))
    # sample 1: pos = −1, negatives {z[0, 1] = 100, z[2, 1] = 0}
    ref1 = math.log(math.exp(-1.0) + math.exp(100.0) + 1.0) + 1.0
    torch.testing.assert_close(per[1], torch.tensor(ref1))


@pytest.mark.parametrize("delta", DELTAS)
def test_hinge_on_the_margin_is_zero(delta):
    K = 4
    y = torch.tensor([0, 3, 2])
    z = torch.full((3, K), -delta)
    z[torch.arange(3), y] = delta
    assert torch.equal(HingeLoss(delta)(z, y, reduction="none"), torch.zeros(3))
    # beyond the margin too
    assert HingeLoss(delta)(z * 2.0, y).item() == 0.0


def test_hinge_known_value():
    z = torch.tensor([[0.0, 0.5, -2.0]])
    y = torch.tensor([1])
    # [1 − 0.5]² + [1 + 0]² + [1 − 2]₊² = 0.25 + 1 + 0
    assert HingeLoss(1.0)(z, y).item() == pytest.approx(1.25)


def test_ce_matches_torch():
    z = torch.randn(6, 5)
    y = torch.randint(5, (6,))
    torch.testing.assert_close(CrossEntropyLoss()(z, y), F.cross_entropy(z, y))


@pytest.mark.parametrize("name,bound", LOSS_BOUNDS)
def test_runs_on_meta_device_without_host_sync(name, bound):
    # meta tensors have no data: any .item(), data-dependent shape or host read fails
    z = torch.empty(33, 10, device="meta", requires_grad=True)
    y = torch.empty(33, dtype=torch.int64, device="meta")
    loss = _make(name, 1.0, bound)
    value = loss(z, y)
    value.backward()
    assert value.shape == () and z.grad.shape == z.shape
    assert loss(z, y, reduction="none").shape == (33,)


def test_registry_and_factory():
    assert LOSSES.names() == ["1toN", "1toN+ce", "ce", "hinge"]
    assert isinstance(create_loss(LossSpec("ce")), CrossEntropyLoss)
    h = create_loss(LossSpec("hinge", delta=2.0))
    assert isinstance(h, HingeLoss) and h.delta == 2.0
    o = create_loss(LossSpec("1toN", delta=0.5, bound="zero"))
    assert isinstance(o, OneToNLoss) and (o.delta, o.bound) == (0.5, "zero")
    oc = create_loss(LossSpec("1toN+ce"))
    assert isinstance(oc, OneToNCELoss) and (oc.delta, oc.bound) == (1.0, "sym")
    with pytest.raises(UserError):
        LOSSES.create("nope")


def test_bad_reduction_and_bound():
    z, y = torch.zeros(2, 3), torch.tensor([0, 1])
    for loss in (CrossEntropyLoss(), HingeLoss(), OneToNLoss(), OneToNCELoss()):
        with pytest.raises(ValueError):
            loss(z, y, reduction="sum")
    with pytest.raises(ValueError):
        OneToNLoss(1.0, "bogus")


def test_docstrings_cite_equations():
    assert "Eq. 1" in CrossEntropyLoss.__doc__
    assert "Eq. 10" in HingeLoss.__doc__
    assert "Eq. 8" in OneToNLoss.__doc__ and "Eq. 9" in OneToNLoss.__doc__
    assert "Eq. 14" in OneToNCELoss.__doc__
    import robench.losses.one_to_n as mod

    assert "Figure 1" in mod.__doc__ and "shifted" in mod.__doc__


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.filterwarnings("ignore:Synchronization debug mode")
@pytest.mark.parametrize("name,bound", LOSS_BOUNDS)
def test_cuda_graph_capture_forward_backward(name, bound):
    dev = torch.device("cuda")
    loss = _make(name, 1.0, bound)
    B, K = 33, 10
    z_static = torch.zeros(B, K, device=dev, requires_grad=True)
    y_static = torch.zeros(B, dtype=torch.int64, device=dev)
    torch.cuda.set_sync_debug_mode("error")  # any host sync raises
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):  # warm-up outside the graph
            for _ in range(2):
                z_static.grad = None
                loss(z_static, y_static).backward()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        z_static.grad = None
        with torch.cuda.graph(graph):
            out = loss(z_static, y_static)
            out.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    gen = torch.Generator().manual_seed(11)
    for labels in ("random", "one-class"):
        z, y = _case("random-K10-B33" if labels == "random" else "one-class-K10-B9", 1.0)
        if z.shape[0] != B:
            z = _tied_logits(B, K, 1.0, gen)
            y = torch.full((B,), 4, dtype=torch.int64)
        with torch.no_grad():
            z_static.copy_(z)
        y_static.copy_(y)
        graph.replay()
        torch.cuda.synchronize()
        z_ref = z.double().requires_grad_(True)
        ref = loss(z_ref, y)
        ref.backward()
        torch.testing.assert_close(out.double().cpu(), ref.detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            z_static.grad.double().cpu(), z_ref.grad, rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("z_y, sign", [(3.0, 1), (0.5, -1)])
def test_one_to_n_ce_pulls_a_true_logit_above_delta_down(z_y, sign):
    """Eq. 14 as written: above δ the positive term is the constant δ, so dL/dz_y is the
    softmax weight of z_y in the denominator (> 0: gradient descent lowers a correct logit
    towards δ); below δ it is that weight − 1 (< 0), as in cross entropy."""
    logits = torch.tensor([[z_y, 0.0, 0.0]], requires_grad=True)  # one sample: no batch negatives
    create_loss(LossSpec("1toN+ce", 1.0, "sym"))(logits, torch.tensor([0])).backward()
    weight = math.exp(z_y) / (math.exp(z_y) + 2)
    assert logits.grad[0, 0].item() == pytest.approx(weight if sign > 0 else weight - 1, rel=1e-6)
    assert math.copysign(1, logits.grad[0, 0].item()) == sign
