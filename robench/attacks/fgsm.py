"""FGSM, the Fast Gradient Sign Method.

Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
ICLR 2015 (https://arxiv.org/abs/1412.6572), Eq. (3), with pixels kept in [0, 1]:

    x' = clip₀¹( x + ε · sign(∇ₓ L(x, y)) )

It is the gradient loop with one L∞ sign step of size ε (the ε-ball projection is then a
no-op), so an ε-sweep computes the input gradient once and reuses its sign for every ε.
"""

from __future__ import annotations

from robench.attacks.attack import ATTACKS
from robench.attacks.descent import GradientDescent


@ATTACKS.register("fgsm")
class FGSM(GradientDescent):
    """One gradient-sign step of size ε; takes no ``steps`` / ``step_size``."""

    name = "fgsm"
    OPTIONS = ()
    single_step = True
    sign_step = True

    def schedule(self, eps: float) -> tuple[int, float]:
        """One step of size ε."""
        return 1, eps
