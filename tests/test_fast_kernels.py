"""The bit-exact max-pool stand-ins of robench.models.fast against PyTorch's own kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench.models import create_model
from robench.models.fast import MaxPool2x2, max_pool2x2, with_fast_kernels
from robench.models.im2col import Im2colConv2d, conv2d_im2col, is_single_channel_conv
from robench.models.small_cnn import SmallCNN

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _pool_and_grad(pool, x: torch.Tensor, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xg = x.detach().clone().requires_grad_(True)
    out = pool(xg)
    (grad,) = torch.autograd.grad(out, xg, grad_out)
    return out.detach(), grad


def _tied(shape, generator) -> torch.Tensor:
    """Values from {-1, -0.5, 0, 0.5, 1}: most windows hold ties, some are all ≤ 0."""
    return (torch.randint(-2, 3, shape, generator=generator) / 2).float()


@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 3, 7, 9), (1, 2, 2, 2), (2, 5, 28, 28)])
@pytest.mark.parametrize("values", ["normal", "tied"])
def test_max_pool2x2_equals_stock_forward_and_backward(shape, values):
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=gen) if values == "normal" else _tied(shape, gen)
    grad_out = torch.randn(shape[:2] + (shape[2] // 2, shape[3] // 2), generator=gen)
    out, grad = _pool_and_grad(max_pool2x2, x, grad_out)
    ref_out, ref_grad = _pool_and_grad(lambda t: F.max_pool2d(t, 2), x, grad_out)
    assert torch.equal(out, ref_out)
    assert torch.equal(grad, ref_grad)
    if values == "tied":  # the first maximum takes the gradient: exactly one per window
        assert int((grad != 0).sum()) <= grad_out.numel()


def test_max_pool2x2_routes_ties_to_the_first_element_in_row_major_order():
    x = torch.tensor([[[[1.0, 5.0], [5.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]], [[0.0, 1.0], [3.0, 3.0]]]])  # (1, 3, 2, 2)
    _, grad = _pool_and_grad(max_pool2x2, x, torch.ones(1, 3, 1, 1))
    expected = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]]]])
    assert torch.equal(grad, expected)


def test_max_pool2x2_keeps_dtype_and_channels_last_layout():
    gen = torch.Generator().manual_seed(1)
    x = _tied((2, 6, 10, 10), gen).double().contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn(2, 6, 5, 5, generator=gen, dtype=torch.float64)
    out, grad = _pool_and_grad(max_pool2x2, x, grad_out)
    ref_out, ref_grad = _pool_and_grad(lambda t: F.max_pool2d(t, 2), x, grad_out)
    assert out.dtype == torch.float64 and torch.equal(out, ref_out) and torch.equal(grad, ref_grad)


def test_relu_moved_after_the_pool_gives_the_stock_gradients():
    """ReLU → pool against pool → ReLU on pre-activations with ties at, below and above 0."""
    gen = torch.Generator().manual_seed(2)
    z = _tied((4, 3, 12, 12), gen)
    z[0, 0, :4, :4] = -0.5  # windows that are all negative
    grad_out = torch.randn(4, 3, 6, 6, generator=gen)
    out, grad = _pool_and_grad(lambda t: max_pool2x2(t).relu(), z, grad_out)
    ref_out, ref_grad = _pool_and_grad(lambda t: F.max_pool2d(t.relu(), 2), z, grad_out)
    assert torch.equal(out, ref_out)
    assert torch.equal(grad, ref_grad)


@pytest.mark.parametrize("image_size", [8, 28])
def test_fast_mnist_cnn_has_the_stock_outputs_and_input_gradients(image_size):
    torch.manual_seed(0)
    model = SmallCNN(10, image_size, mean=(0.13,), std=(0.31,)).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
    fast = with_fast_kernels(model)
    x = torch.rand(16, 1, image_size, image_size)
    x[:, :, : image_size // 3] = 0  # a flat region: many tied windows
    y = torch.randint(0, 10, (16,))

    def input_grad(m):
        xg = x.clone().requires_grad_(True)
        return torch.autograd.grad(F.cross_entropy(m(xg), y, reduction="sum"), xg)[0]

    with torch.no_grad():
        assert torch.equal(fast(x), model(x))
    assert torch.equal(input_grad(fast), input_grad(model))
    assert [type(m) for m in fast.features[:3]] == [nn.Conv2d, MaxPool2x2, nn.ReLU]
    assert [type(m) for m in model.features[:3]] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d]  # the original is untouched
    assert all(a is b for a, b in zip(fast.parameters(), model.parameters()))
    assert all(a is b for a, b in zip(fast.buffers(), model.buffers()))


def test_only_plain_2x2_pools_are_replaced():
    others = [nn.MaxPool2d(3), nn.MaxPool2d(2, stride=1), nn.MaxPool2d(2, padding=1), nn.MaxPool2d(2, ceil_mode=True),
              nn.MaxPool2d(2, return_indices=True), nn.MaxPool2d(2, dilation=2)]
    for pool in others:
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), pool)
        assert with_fast_kernels(model) is model
    model = nn.Sequential(nn.ReLU(), nn.MaxPool2d(3), nn.MaxPool2d((2, 2), stride=(2, 2)))
    fast = with_fast_kernels(model)
    assert [type(m) for m in fast] == [nn.ReLU, nn.MaxPool2d, MaxPool2x2]  # the ReLU stays before the 3×3 pool


@CUDA
def test_fast_kernels_on_cuda_equal_stock():
    torch.manual_seed(0)
    model = create_model("mnist-cnn", 10, "linear", (0.13,), (0.31,)).cuda().eval()
    model.to(memory_format=torch.channels_last)
    fast = with_fast_kernels(model)
    x = torch.rand(64, 1, 28, 28, device="cuda")
    x[:, :, :8] = 0
    y = torch.randint(0, 10, (64,), device="cuda")
    with torch.no_grad():
        assert torch.equal(fast(x), model(x))
    for precision in (torch.float32, torch.bfloat16):
        grads = []
        for m in (model, fast):
            xg = x.clone().requires_grad_(True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == torch.bfloat16):
                logits = m(xg)
            grads.append(torch.autograd.grad(F.cross_entropy(logits.float(), y, reduction="sum"), xg)[0])
        assert torch.equal(grads[0], grads[1])


_INTERPRETED_CHECK = """
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch, torch.nn.functional as F
from robench.models import triton_pool
gen = torch.Generator().manual_seed(0)
for shape, channels_last, dtype in [((2, 3, 8, 8), False, torch.float32), ((2, 5, 7, 9), True, torch.float32),
                                    ((3, 4, 6, 10), True, torch.float64), ((1, 2, 2, 2), False, torch.float32)]:
    x = (torch.randint(-2, 3, shape, generator=gen) / 2).to(dtype)  # mostly tied windows
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xg = x.clone().requires_grad_(True)
    ref = F.max_pool2d(xg, 2)
    g = torch.randn(ref.shape, generator=gen).to(dtype)
    g.view(-1)[0] = -0.0
    (ref_grad,) = torch.autograd.grad(ref, xg, g)
    out, code = triton_pool.pool_forward(x, with_code=True)
    grad = triton_pool.pool_backward(g, code, x)
    assert torch.equal(out, ref.detach()), shape
    assert torch.equal(grad, ref_grad) and torch.equal(grad.signbit(), ref_grad.signbit()), shape
    assert grad.stride() == x.stride(), shape
print("ok")
"""


def test_triton_pool_kernels_equal_stock_under_the_interpreter():
    """The CUDA kernels' logic, run by Triton's CPU interpreter (fp32/fp64; the
    interpreter misreads bf16, which the CUDA test below covers)."""
    import subprocess
    import sys

    from robench.models import triton_pool

    if not triton_pool.available():
        pytest.skip("Triton is not installed")
    done = subprocess.run([sys.executable, "-c", _INTERPRETED_CHECK], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_pool_equals_stock_on_tied_channels_last_tensors(dtype):
    gen = torch.Generator().manual_seed(3)
    x = _tied((64, 32, 28, 28), gen).to("cuda", dtype).contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn(64, 32, 14, 14, generator=gen).to("cuda", dtype)
    grad_out.view(-1)[:5] = -0.0
    out, grad = _pool_and_grad(max_pool2x2, x, grad_out)
    ref_out, ref_grad = _pool_and_grad(lambda t: F.max_pool2d(t, 2), x, grad_out)
    # equal values; a −0.0 gradient may come back as +0.0 (see robench.models.triton_pool)
    assert torch.equal(out, ref_out) and torch.equal(grad, ref_grad)


# ---- single-input-channel convolutions as a GEMM (robench.models.im2col) ------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("in_channels, kernel, padding, bias", [(1, 5, 2, False), (1, 3, 0, True), (3, 3, 1, True)])
def test_conv2d_im2col_equals_conv2d_forward_and_input_gradient(dtype, in_channels, kernel, padding, bias):
    gen = torch.Generator().manual_seed(in_channels * 10 + kernel)
    x = torch.rand(3, in_channels, 9, 7, generator=gen, dtype=dtype)
    weight = torch.randn(6, in_channels, kernel, kernel, generator=gen, dtype=dtype)
    b = torch.randn(6, generator=gen, dtype=dtype) if bias else None
    out, grad = _conv_and_grad(lambda t: conv2d_im2col(t, weight, b, (padding, padding)), x)
    ref_out, ref_grad = _conv_and_grad(lambda t: F.conv2d(t, weight, b, padding=padding), x)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert out.shape == ref_out.shape and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref_out, rtol=tol, atol=tol)
    torch.testing.assert_close(grad, ref_grad, rtol=tol, atol=tol)


def _conv_and_grad(conv, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xg = x.clone().requires_grad_(True)
    out = conv(xg)
    grad_out = torch.linspace(-1, 1, out.numel(), dtype=x.dtype).view(out.shape)
    (grad,) = torch.autograd.grad(out, xg, grad_out)
    return out.detach(), grad


def test_only_plain_single_channel_convs_are_computed_as_a_gemm():
    assert is_single_channel_conv(nn.Conv2d(1, 4, 5, padding=2))
    others = [nn.Conv2d(3, 4, 3), nn.Conv2d(1, 4, 3, stride=2), nn.Conv2d(1, 4, 3, dilation=2),
              nn.Conv2d(1, 4, 3, padding="same"), nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect")]
    assert not any(is_single_channel_conv(conv) for conv in others)


def test_im2col_convs_are_opt_in_and_keep_the_stock_numbers_outside_cuda_autocast():
    torch.manual_seed(0)
    model = SmallCNN(10, 28, mean=(0.13,), std=(0.31,)).eval()
    assert type(with_fast_kernels(model).features[0]) is nn.Conv2d
    fast = with_fast_kernels(model, im2col_convs=True)
    first = fast.features[0]
    assert type(first) is Im2colConv2d and first.conv.weight is model.features[0].weight
    assert all(a is b for a, b in zip(fast.parameters(), model.parameters()))
    again = with_fast_kernels(fast, im2col_convs=True).features[0]
    assert type(again) is Im2colConv2d and type(again.conv) is nn.Conv2d  # not wrapped twice
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # not CUDA: the stock convolution
        assert torch.equal(first(x), model.features[0](x))
    with torch.no_grad():
        assert torch.equal(fast(x), model(x))


@CUDA
def test_im2col_first_conv_on_cuda_matches_cudnn():
    """fp32: the stock convolution, bit for bit. bf16: logits within bf16 rounding of the
    stock model's, and the input-gradient signs an attack steps by nearly all the same."""
    torch.manual_seed(0)
    model = create_model("mnist-cnn", 10, "linear", (0.13,), (0.31,)).cuda().eval()
    model.to(memory_format=torch.channels_last)
    pools_only, fast = with_fast_kernels(model), with_fast_kernels(model, im2col_convs=True)
    x = torch.rand(256, 1, 28, 28, device="cuda")
    y = torch.randint(0, 10, (256,), device="cuda")
    for precision in ("fp32", "bf16"):
        logits, grads = [], []
        for m in (pools_only, fast):
            xg = x.clone().requires_grad_(True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = m(xg).float()
            grads.append(torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), xg)[0])
            logits.append(out.detach())
        if precision == "fp32":
            assert torch.equal(logits[0], logits[1]) and torch.equal(grads[0], grads[1])
            continue
        scale = logits[0].abs().max()
        assert (logits[0] - logits[1]).abs().max() <= 0.05 * scale
        moving = grads[0].abs() > 1e-3 * grads[0].abs().max()
        agree = (grads[0].sign() == grads[1].sign())[moving].float().mean()
        assert agree >= 0.99, f"gradient signs agree on {agree:.4f} of the moving pixels"
