"""IFGSM, the Basic Iterative Method.

Kurakin, Goodfellow & Bengio, "Adversarial Examples in the Physical World", ICLR 2017
workshop (arXiv:1607.02533, 2016), §2.2, Eq. (2)–(3):

    x₀' = x,   x_{N+1}' = Clip_{x,ε}{ x_N' + α · sign(∇ₓ J(x_N', y_true)) }

where Clip_{x,ε} keeps each pixel in [x − ε, x + ε] ∩ [0, 1]. The paper's choice, used
when not overridden: α = 1 (of 255) per step, i.e. α = 1/255 for pixels in [0, 1], and
⌊min(ε + 4, 1.25 ε)⌋ steps with ε on the 0–255 scale (:func:`kurakin_steps`).
"""

from __future__ import annotations

import math

from robench.attacks.attack import ATTACKS
from robench.attacks.checks import check_eps
from robench.attacks.descent import GradientDescent

KURAKIN_STEP_SIZE = 1.0 / 255.0


def kurakin_steps(eps: float) -> int:
    """Kurakin et al. (2016) step count ⌊min(255ε + 4, 1.25 · 255ε)⌋ for ε in [0, 1].

    A 1e-6 slack absorbs float error, so ε = 4/255 gives 5, not 4 (1.25·4 is 4.999…).
    """
    p = 255.0 * check_eps(eps)
    return math.floor(min(p + 4.0, 1.25 * p) + 1e-6)


@ATTACKS.register("ifgsm")
class IFGSM(GradientDescent):
    """Iterated gradient-sign steps, projected on the ε-ball around the clean x and on [0, 1].

    ``steps`` / ``step_size`` override Kurakin's rule (None: the rule).
    """

    name = "ifgsm"
    sign_step = True

    def schedule(self, eps: float) -> tuple[int, float]:
        """(steps, α): the overrides, else ⌊min(255ε + 4, 1.25·255ε)⌋ steps of 1/255."""
        steps = kurakin_steps(eps) if self.steps is None else self.steps
        step_size = KURAKIN_STEP_SIZE if self.step_size is None else self.step_size
        return steps, step_size
