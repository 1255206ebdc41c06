"""RMSPropTF against TF 1.15's RMSProp update rule written out in float64 numpy."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from robench.train.rmsprop_tf import RMSPropTF
from robench.train.schedules import step_decay_lr


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add contention on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tf_rmsprop_reference(theta0, grads, lrs, rho=0.9, eps=1e-10, momentum=0.0):
    """θ after each step, from the update rule of tf.train.RMSPropOptimizer (TF 1.15)."""
    theta = np.array(theta0, dtype=np.float64)
    ms = np.ones_like(theta)  # TF's ones initializer
    mom = np.zeros_like(theta)
    out = []
    for g, lr in zip(grads, lrs):
        g = np.asarray(g, dtype=np.float64)
        ms = rho * ms + (1.0 - rho) * g * g
        mom = momentum * mom + lr * g / np.sqrt(ms + eps)
        theta = theta - mom
        out.append(theta.copy())
    return out


def _grads(shapes, steps, seed):
    rng = np.random.default_rng(seed)
    return [[rng.normal(scale=3.0, size=s) for s in shapes] for _ in range(steps)]


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("lr_kind", ["float", "tensor"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_matches_tf_update_rule(momentum, lr_kind, foreach):
    shapes = [(3, 4), (5,), ()]
    steps = 7
    rng = np.random.default_rng(1)
    theta0 = [rng.normal(size=s) for s in shapes]
    grads = _grads(shapes, steps, seed=2)
    # a schedule that changes mid-run, applied in place for the tensor lr
    lrs = [0.1 if t < 3 else 0.05 for t in range(steps)]
    params = [torch.tensor(t, dtype=torch.float64, requires_grad=True) for t in theta0]
    lr0 = torch.tensor(lrs[0], dtype=torch.float64) if lr_kind == "tensor" else lrs[0]
    opt = RMSPropTF(params, lr=lr0, momentum=momentum, foreach=foreach)
    lr_tensor = opt.param_groups[0]["lr"]
    refs = [
        tf_rmsprop_reference(theta0[k], [g[k] for g in grads], lrs, momentum=momentum)
        for k in range(len(shapes))
    ]
    for t in range(steps):
        opt.set_lr(lrs[t])
        if lr_kind == "tensor":
            assert opt.param_groups[0]["lr"] is lr_tensor  # updated in place
        for p, g in zip(params, grads[t]):
            p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        for k, p in enumerate(params):
            np.testing.assert_allclose(p.detach().numpy(), refs[k][t], rtol=1e-12, atol=1e-14)


def test_first_step_uses_mean_square_starting_at_one():
    g = torch.tensor([0.5, -2.0, 10.0, 0.0], dtype=torch.float64)
    p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = RMSPropTF([p], lr=0.1)
    assert len(opt.state) == 0  # state is created lazily
    p.grad = g.clone()
    opt.step()
    expected = -0.1 * g / torch.sqrt(0.9 + 0.1 * g * g + 1e-10)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-14, atol=0.0)
    state = opt.state[p]
    torch.testing.assert_close(state["square_avg"], 0.9 + 0.1 * g * g)
    torch.testing.assert_close(state["momentum_buffer"], -expected)


def test_torch_rmsprop_differs():
    g = torch.tensor([0.5, -2.0, 10.0], dtype=torch.float64)
    p_tf = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    p_pt = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    tf_opt = RMSPropTF([p_tf], lr=0.1)
    pt_opt = torch.optim.RMSprop([p_pt], lr=0.1)
    p_tf.grad, p_pt.grad = g.clone(), g.clone()
    tf_opt.step()
    pt_opt.step()
    # torch: alpha 0.99, accumulator from 0 → first step lr·g/(|g|·sqrt(0.01)) = ±1.0
    torch.testing.assert_close(p_pt.detach(), -torch.sign(g) * 1.0, rtol=1e-6, atol=1e-6)
    assert (p_tf.detach().abs() < p_pt.detach().abs()).all()
    assert not torch.allclose(p_tf, p_pt)


def test_params_without_grad_are_skipped_and_mixed_dtypes():
    a = torch.ones(3, dtype=torch.float32, requires_grad=True)
    b = torch.ones(2, dtype=torch.float64, requires_grad=True)
    c = torch.ones(2, requires_grad=True)  # never gets a gradient
    opt = RMSPropTF([{"params": [a, b]}, {"params": [c], "lr": 1.0}], lr=0.01)
    a.grad = torch.full((3,), 2.0)
    b.grad = torch.full((2,), 2.0, dtype=torch.float64)
    opt.step()
    step = 0.01 * 2.0 / math.sqrt(0.9 + 0.4 + 1e-10)
    torch.testing.assert_close(a.detach(), torch.full((3,), 1.0 - step))
    torch.testing.assert_close(b.detach(), torch.full((2,), 1.0 - step, dtype=torch.float64))
    assert torch.equal(c.detach(), torch.ones(2)) and c not in opt.state


def test_state_dict_round_trip():
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = RMSPropTF([p], lr=0.1, momentum=0.9)
    p.grad = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    opt.step()
    q = p.detach().clone().requires_grad_(True)
    opt2 = RMSPropTF([q], lr=0.1, momentum=0.9)
    # as if saved and loaded: state_dict() shares its tensors with the optimizer
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    p.grad = q.grad = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    opt.step()
    opt2.step()
    assert torch.equal(p, q)


def test_step_on_meta_device_without_host_sync():
    # meta tensors hold no data: a host read of the lr or the state would fail
    p = torch.empty(4, 3, device="meta", requires_grad=True)
    opt = RMSPropTF([p], lr=torch.tensor(0.1, device="meta"), momentum=0.9)
    p.grad = torch.empty(4, 3, device="meta")
    opt.step()
    opt.step()
    assert opt.state[p]["square_avg"].shape == (4, 3)


def test_closure_and_validation():
    p = torch.tensor([1.0], requires_grad=True)
    opt = RMSPropTF([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(1.0)
    for bad in (dict(lr=-1.0), dict(decay=1.5), dict(momentum=-0.1), dict(eps=-1.0)):
        with pytest.raises(ValueError):
            RMSPropTF([torch.zeros(1, requires_grad=True)], **bad)
    with pytest.raises(ValueError):
        RMSPropTF([torch.zeros(1, requires_grad=True)], lr=torch.tensor([0.1, 0.2]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_capture_with_tensor_lr():
    dev = torch.device("cuda")
    p = torch.zeros(5, device=dev, dtype=torch.float64, requires_grad=True)
    lr = torch.tensor(0.1, device=dev, dtype=torch.float64)
    opt = RMSPropTF([p], lr=lr, momentum=0.9)
    g_static = torch.zeros(5, device=dev, dtype=torch.float64)
    p.grad = g_static
    grads = _grads([(5,)], 4, seed=7)
    lrs = [0.1, 0.1, 0.02, 0.02]
    g_static.copy_(torch.tensor(grads[0][0]))
    opt.step()  # eager first step creates the state
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(s), torch.cuda.graph(graph):
        opt.step()
    torch.cuda.current_stream().wait_stream(s)
    for t in range(1, 4):
        g_static.copy_(torch.tensor(grads[t][0]))
        opt.set_lr(lrs[t])
        graph.replay()
    ref = tf_rmsprop_reference(np.zeros(5), [g[0] for g in grads], lrs, momentum=0.9)
    np.testing.assert_allclose(p.detach().cpu().numpy(), ref[-1], rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    "step,expected",
    [(0, 0.1), (5999, 0.1), (6000, 0.05), (11999, 0.05), (12000, 0.025), (18000, 0.0125)],
)
def test_cifar10_schedule(step, expected):
    # 0.1, × 0.5 every 6,000 steps; epochs do not matter
    lr = step_decay_lr(0.1, 0.5, step, epoch=step // 176, decay_steps=6000, decay_epochs=0)
    assert lr == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "epoch,expected", [(0, 0.01), (9, 0.01), (10, 0.002), (19, 0.002), (20, 0.0004), (24, 0.0004)]
)
def test_epoch_counted_decay(epoch, expected):
    # 0.01, × 0.2 every 10 epochs counted in epochs; steps do not matter
    lr = step_decay_lr(0.01, 0.2, epoch * 5005, epoch, decay_steps=0, decay_epochs=10)
    assert lr == pytest.approx(expected, rel=1e-12)


def test_mnist_schedule_is_constant():
    for step, epoch in ((0, 0), (4000, 9), (10**6, 17)):
        assert step_decay_lr(0.01, 1.0, step, epoch, 0, 0) == 0.01
    assert isinstance(step_decay_lr(0.1, 0.5, 6000, 0, 6000, 0), float)
