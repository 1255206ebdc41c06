"""PGD, projected gradient descent with a random start and restarts (L∞ and L2).

Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018, §2 and Appendix: from a point drawn uniformly in the
ε-ball,

    xᵗ⁺¹ = Proj_{B(x, ε) ∩ [0, 1]}( xᵗ + α · d(∇ₓ L(xᵗ, y)) ),   d = sign (L∞) or g/‖g‖₂ (L2)

for ``steps`` steps (default 100) of α = 2.5 ε / steps (their rule: the iterate can reach
the ball's boundary from any start), repeated ``restarts`` times on the samples not yet
fooled; a sample keeps the first adversarial point found. Without a random start and
with IFGSM's steps and step size it is IFGSM, bit for bit.
"""

from __future__ import annotations

from typing import Callable

from robench.attacks.attack import ATTACKS, DEFAULT_BATCH_SIZE
from robench.attacks.descent import GradientDescent

PGD_STEPS = 100
PGD_STEP_FACTOR = 2.5  # α = 2.5 ε / steps (Madry et al. 2018)


class _PGD(GradientDescent):
    OPTIONS = ("steps", "step_size", "restarts", "random_start")

    def __init__(
        self,
        loss: str | None = None,
        steps: int | None = None,
        step_size: float | None = None,
        restarts: int = 1,
        random_start: bool = True,
        model_loss: Callable | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        precision: str = "auto",
        seed: int | None = None,
    ) -> None:
        self.random_start = bool(random_start)
        self.deterministic = not self.random_start
        super().__init__(loss=loss, steps=steps, step_size=step_size, restarts=restarts, model_loss=model_loss,
                         batch_size=batch_size, precision=precision, seed=seed)

    def schedule(self, eps: float) -> tuple[int, float]:
        """(steps, α): the overrides, else 100 steps of 2.5 ε / steps."""
        steps = PGD_STEPS if self.steps is None else self.steps
        step_size = PGD_STEP_FACTOR * eps / max(steps, 1) if self.step_size is None else self.step_size
        return steps, step_size


@ATTACKS.register("pgd")
class PGD(_PGD):
    """L∞ PGD: sign steps, clamp to the ε-box."""

    name = "pgd"
    sign_step = True


@ATTACKS.register("pgd-l2")
class PGDL2(_PGD):
    """L2 PGD: normalised-gradient steps, projection onto the ε-sphere's inside."""

    name = "pgd-l2"
    norm_name = "l2"
