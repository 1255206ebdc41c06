"""Models: shapes, heads, normalisation inside the model, registry errors."""

from __future__ import annotations

import pytest
import torch

from robench.errors import UserError
from robench.models import MODELS, UnitLinear, create_model

CASES = {
    "digits-cnn": ((1, 8, 8), 10),
    "mnist-cnn": ((1, 28, 28), 10),
    "wrn-28-2": ((3, 32, 32), 10),
}


@pytest.mark.parametrize("arch", MODELS.names())
@pytest.mark.parametrize("head", ["linear", "unit"])
def test_forward_shape(arch, head):
    shape, k = CASES[arch]
    model = create_model(arch, k, head, (0.5,) * shape[0], (0.25,) * shape[0]).eval()
    logits = model(torch.rand(3, *shape))
    assert logits.shape == (3, k)
    assert torch.isfinite(logits).all()


def test_wrn_1000_classes_and_depth():
    model = create_model("wrn-28-2", 1000, "linear", (0.5,) * 3, (0.25,) * 3)
    assert model.head.out_features == 1000
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 3 * 4 * 2  # stem + 3 groups × 4 blocks × 2 convs = 25 (+ 3 projections)
    widths = sorted({m.out_channels for m in convs})
    assert widths == [16, 32, 64, 128]
    projections = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(projections) == 3


def test_unit_head_rows_are_unit_distances():
    head = UnitLinear(5, 3)
    with torch.no_grad():
        head.weight.mul_(7.0)
        head.bias.zero_()
    h = torch.randn(4, 5)
    w = head.weight / head.weight.norm(dim=1, keepdim=True)
    torch.testing.assert_close(head(h), h @ w.T)
    # a logit is the signed distance to the hyperplane: scaling W leaves it unchanged
    with torch.no_grad():
        head.weight.mul_(3.0)
    torch.testing.assert_close(head(h), h @ w.T)


def test_normalisation_is_inside_the_model():
    model = create_model("digits-cnn", 10, "linear", (0.3,), (0.5,)).eval()
    x = torch.rand(2, 1, 8, 8)
    expected = model.head(model.hidden(model.features((x - 0.3) / 0.5)))
    torch.testing.assert_close(model(x), expected)


def test_unknown_arch_and_head():
    with pytest.raises(UserError, match="valid: digits-cnn, mnist-cnn, wrn-28-2"):
        create_model("resnet", 10, "linear", (0.0,), (1.0,))
    with pytest.raises(UserError, match="valid: linear, unit"):
        create_model("digits-cnn", 10, "cosine", (0.0,), (1.0,))
