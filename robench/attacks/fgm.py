"""FGM, the Fast Gradient Method under the L2 norm.

Goodfellow et al. (ICLR 2015) with the L2-normalised gradient of Miyato et al. (2016) and
Kurakin et al. (2017), pixels kept in [0, 1]:

    x' = clip₀¹( x + ε · ∇ₓ L(x, y) / ‖∇ₓ L(x, y)‖₂ )

One L2 step of size ε of the gradient loop; an ε-sweep shares its one gradient.
"""

from __future__ import annotations

from robench.attacks.attack import ATTACKS
from robench.attacks.descent import GradientDescent


@ATTACKS.register("fgm")
class FGM(GradientDescent):
    """One normalised-gradient step of size ε (L2); takes no ``steps`` / ``step_size``."""

    name = "fgm"
    norm_name = "l2"
    OPTIONS = ()
    single_step = True

    def schedule(self, eps: float) -> tuple[int, float]:
        """One step of size ε."""
        return 1, eps
