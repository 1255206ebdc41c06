"""FGSM, the Fast Gradient Sign Method.

Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
ICLR 2015 (https://arxiv.org/abs/1412.6572), Eq. (3), with pixels kept in [0, 1]:

    x' = clip₀¹( x + ε · sign(∇ₓ L(x, y)) )

It is the shared gradient-sign loop with one step of size ε (the ε-ball projection is then
a no-op), so an ε-sweep computes the input gradient once and reuses its sign for every ε.
"""

from __future__ import annotations

from typing import Callable

from robench.attacks.base import ATTACKS, DEFAULT_BATCH_SIZE, GradientSignAttack
from robench.errors import UserError


@ATTACKS.register("fgsm")
class FGSM(GradientSignAttack):
    """One gradient-sign step of size ε; takes no ``steps`` / ``step_size``."""

    name = "fgsm"
    single_step = True

    def __init__(
        self,
        loss: str = "ce",
        steps: int | None = None,
        step_size: float | None = None,
        model_loss: Callable | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        precision: str = "auto",
    ) -> None:
        if steps is not None or step_size is not None:
            raise UserError(
                "fgsm is one step of size eps and takes no steps/step_size; "
                "use attack 'ifgsm' to set them"
            )
        super().__init__(loss=loss, model_loss=model_loss, batch_size=batch_size, precision=precision)

    def schedule(self, eps: float) -> tuple[int, float]:
        """One step of size ε."""
        return 1, eps
