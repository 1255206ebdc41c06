"""What every attack checks before it runs: pixels, labels, budgets; and eval mode.

Inputs must be floats in [0, 1] (normalisation lives inside the model) with integer
labels; a budget ε is checked against the attack's norm (:mod:`robench.attacks.norms`).
The model runs in eval mode during an attack and every module's own mode is restored
afterwards, also on error.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from robench.errors import UserError


def check_eps(eps: object, upper: float = 1.0, why: str = "pixels lie in [0, 1]") -> float:
    """ε as a finite float in [0, ``upper``]; a UserError otherwise. For L∞ the upper end
    is 1 (pixels lie in [0, 1]); for L2 it is √d (:mod:`robench.attacks.norms`)."""
    valid = f"in [0, {upper:g}] ({why})" if math.isfinite(upper) else "a finite number >= 0"
    try:
        value = float(eps)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"eps must be a number {valid}, got {eps!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= upper):
        raise UserError(f"eps must be {valid}, got {eps!r}")
    return value


def check_inputs(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Detached ``x`` (B, ...) floats in [0, 1] and integer labels ``y`` (B,) on x's device."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise UserError("attack inputs must be a floating-point tensor of pixels in [0, 1]")
    if x.ndim < 2 or x.shape[0] == 0:
        raise UserError(f"attack inputs must be a non-empty batch (B, ...), got {tuple(x.shape)}")
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex():
        raise UserError("attack labels must be an integer tensor of class indices")
    if tuple(y.shape) != (x.shape[0],):
        raise UserError(f"attack labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    x, y = x.detach(), y.detach().to(x.device)
    outside = ~((x >= 0) & (x <= 1))  # NaN counts as outside
    bad_x, bad_y = torch.stack([outside.any(), (y < 0).any()]).tolist()  # one sync
    if bad_x:
        raise UserError(
            "attack inputs must be pixels in [0, 1] (normalisation belongs inside the model); "
            f"got values in [{x.min().item():.4g}, {x.max().item():.4g}]"
        )
    if bad_y:
        raise UserError("attack labels must be class indices >= 0")
    return x, y


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode; restore each module's own training flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
