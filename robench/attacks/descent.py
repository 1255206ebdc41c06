"""The one gradient loop of robench's gradient attacks (FGSM, IFGSM, FGM, PGD; L∞ and L2),
shaped like foolbox's ``gradient_descent_base.py``. From a start point x⁰ in the ball:

    xᵗ⁺¹ = Proj_{B(x₀, ε) ∩ [0, 1]}( xᵗ + α · d(∇ₓ L(xᵗ, y)) )

with small hooks a subclass sets: the start (x₀, or a uniform random point of the ball
with ``random_start``), the step direction d and projection (the norm's: sign and the
L∞ clamp, or g/‖g‖₂ and the L2 rescaling; :mod:`robench.attacks.norms`) and the schedule
(:meth:`GradientDescent.schedule`: steps and α at ε). With R ``restarts`` each restart
attacks only the samples no earlier restart has fooled, and a sample keeps the first
adversarial point found (per-sample worst case over restarts, as in Madry et al. 2018
and AutoAttack).

Samples of one chunk may take different step counts (a per-sample ε); they are ordered
longest first, so at step t the samples still moving are a prefix whose size is known on
the host: finished samples cost nothing and nothing syncs inside the loop.
"""

from __future__ import annotations

import bisect
from typing import Callable

import torch
from torch import nn

from robench.attacks.attack import DEFAULT_BATCH_SIZE, Attack, Budget, SampleStreams, check_count, check_positive
from robench.attacks.norms import Ball, column
from robench.bounds import MAX_RESTARTS, MAX_STEPS


class GradientDescent(Attack):
    """Projected gradient ascent of the attack loss; subclasses implement :meth:`schedule`."""

    OPTIONS: tuple[str, ...] = ("steps", "step_size")
    #: A uniform random start in the ball (else x₀).
    random_start = False

    def __init__(
        self,
        loss: str | None = None,
        steps: int | None = None,
        step_size: float | None = None,
        restarts: int = 1,
        model_loss: Callable | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        precision: str = "auto",
        seed: int | None = None,
    ) -> None:
        self.steps = None if steps is None else check_count(steps, "steps", 0, MAX_STEPS)
        self.step_size = None if step_size is None else check_positive(step_size, "step size")
        self.restarts = check_count(restarts, "restarts", 1, MAX_RESTARTS)
        super().__init__(loss=loss, model_loss=model_loss, batch_size=batch_size, precision=precision, seed=seed)

    def schedule(self, eps: float) -> tuple[int, float]:
        """(number of steps, step size α) for budget ``eps``."""
        raise NotImplementedError

    def budget(self, eps: float) -> Budget:
        steps, alpha = self.schedule(eps)
        return Budget(steps, alpha, self.restarts, None, self.seed)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(loss={self.loss.name!r}, norm={self.norm.name!r}, steps={self.steps}, "
                f"step_size={self.step_size}, restarts={self.restarts}, batch_size={self.batch_size}, "
                f"precision={self.precision!r}, seed={self.seed})")

    # ---- hooks ---------------------------------------------------------------------------
    def start(self, ball: Ball, restart: int) -> torch.Tensor:
        """The start point (N, ...) of ``restart``: x₀, or uniform in the ball with
        ``random_start`` (per-sample random streams, :meth:`Attack.sample_noise`)."""
        if not self.random_start:
            return ball.x0.clone()
        return self.norm.random_start(ball, SampleStreams(self, ball.x0, restart))

    def direction(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The unit ascent step d(∇ₓ L) (N, ...) at ``x``."""
        return self.norm.direction(self.input_grad(model, x, y))

    # ---- the loop ------------------------------------------------------------------------
    def moving_steps(self, eps: float) -> int:
        """Steps ε takes in a sweep: its schedule's, but none for ε = 0 (the ball is x₀)."""
        return self.schedule(eps)[0] if eps > 0 else 0

    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> torch.Tensor:
        """Every restart on the samples not fooled yet; a sample keeps its first adversarial."""
        by_eps = {e: self.schedule(e) for e in set(eps)}
        steps = [by_eps[e][0] for e in eps]
        alpha = [by_eps[e][1] for e in eps]
        if self.restarts == 1 and not self.random_start:
            return self.iterate(model, x, y, eps, alpha, steps)
        best = x.clone()  # (N, ...)
        alive = torch.arange(len(x), device=x.device)  # samples no restart has fooled
        for restart in range(self.restarts):
            keep = alive.tolist()
            xs, ys = x.index_select(0, alive), y.index_select(0, alive)
            sub = [eps[i] for i in keep]
            start = self.start(self.norm.ball(xs, sub), restart)
            adv = self.iterate(model, xs, ys, sub, [alpha[i] for i in keep], [steps[i] for i in keep], start=start)
            best.index_copy_(0, alive, adv)
            fooled = self.predict(model, adv) != ys  # (n_alive,)
            alive = alive[~fooled]
            if len(alive) == 0:
                break
        return best

    def iterate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: list[float],
        alpha: list[float],
        steps: list[int],
        start: torch.Tensor | None = None,
        first_direction: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``steps[i]`` updates of size ``alpha[i]`` of sample i from ``start`` (N, ...)
        (default x₀ = ``x``), projected on the ``eps[i]``-ball around x₀ = ``x`` (N, ...)."""
        x_adv = x if start is None else start  # (N, ...)
        total = max(steps)
        if total == 0:
            return x_adv.clone()
        order = sorted(range(len(x)), key=lambda i: -steps[i])  # stable
        if order == list(range(len(x))):
            x_adv = x_adv.clone()  # our buffer: updated in place, the inputs never are
            perm = None
        else:
            perm = torch.tensor(order, device=x.device)
            x, y, x_adv = x.index_select(0, perm), y.index_select(0, perm), x_adv.index_select(0, perm)
            first_direction = None if first_direction is None else first_direction.index_select(0, perm)
            eps, alpha, steps = ([v[i] for i in order] for v in (eps, alpha, steps))
        neg_steps = [-s for s in steps]  # ascending
        active = [bisect.bisect_left(neg_steps, -t) for t in range(total)]  # #{s > t}
        self.steps_in_place(model, x_adv, y, column(alpha, x), self.norm.ball(x, eps), active, first_direction)
        if perm is not None:
            x_adv = torch.empty_like(x_adv).index_copy_(0, perm, x_adv)
        return x_adv

    def steps_in_place(
        self,
        model: nn.Module,
        x_adv: torch.Tensor,
        y: torch.Tensor,
        alpha: torch.Tensor,
        ball: Ball,
        active: list[int],
        first_direction: torch.Tensor | None = None,
    ) -> None:
        """In place, for each step t with k = ``active[t]`` rows still moving:
        x_adv[:k] ← Proj( x_adv[:k] + α · d(∇ₓ L(x_adv[:k], y[:k])) ).

        ``x_adv`` (N, ...), ``alpha`` (N, 1, ...); ``first_direction`` (N, ...) replaces
        the first step's direction.
        """
        for t, k in enumerate(active):  # host-known counts: no sync inside the loop
            moving = x_adv[:k]
            if t == 0 and first_direction is not None:
                step = first_direction[:k]
            else:
                step = self.direction(model, moving, y[:k])
            x_adv[:k] = ball.project(moving + alpha[:k] * step, k)
