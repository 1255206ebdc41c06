"""The L∞ gradient-sign loop shared by FGSM and IFGSM, its checks and the ε-sweep.

One update (PROTOCOL.md, "Attacks"), from the clean input x₀ with budget ε:

    x ← clip₀¹( Π_ε( x + α · sign(∇ₓ L(x, y)) ) ),   Π_ε = clip to [x₀ − ε, x₀ + ε]

computed as one clamp to the precomputed bounds ``max(x₀ − ε, 0)`` and ``min(x₀ + ε, 1)``
(the same numbers torchattacks' BIM gets from its four min/max steps). A subclass only
says how many steps of which size one ε takes (:meth:`GradientSignAttack.schedule`).

The base class owns the rest: inputs must be floats in [0, 1] (normalisation lives inside
the model) and ε in [0, 1]; the model runs in eval mode and every module's own mode is
restored afterwards, also on error; gradients are taken with respect to the input only
(``torch.autograd.grad``, so parameters' ``.grad`` is never touched); the input tensor is
never modified. ε may be a float or a per-sample tensor ``(B,)``.

:meth:`GradientSignAttack.sweep` crafts one batch per ε. A single-step attack (FGSM)
computes the input gradient once and reuses its sign for every ε; an iterative one stacks
the ε values into one batch (x repeated, a per-sample ε, step size and step count; a sample
stops moving after its own number of steps: samples are ordered longest schedule first and
step t updates only the prefix still moving), in chunks of at most ``batch_size`` samples.
Nothing syncs to the host inside the step loop. A chunk is a whole number of ε blocks, so
each sample sees the same arithmetic as in a per-ε call and the sweep equals per-ε calls
(bit for bit where the kernels' per-row results do not depend on the batch size, as on
the CPU and GPU runs checked in tests; otherwise up to rare sign flips of gradients at
rounding level).
"""

from __future__ import annotations

import bisect
import math
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from robench.attacks.losses import AttackLoss, create_attack_loss
from robench.errors import UserError
from robench.registry import Registry

KURAKIN_STEP_SIZE = 1.0 / 255.0
DEFAULT_BATCH_SIZE = 4096

Eps = float | torch.Tensor


def kurakin_steps(eps: float) -> int:
    """Kurakin et al. (2016) step count ⌊min(255ε + 4, 1.25 · 255ε)⌋ for ε in [0, 1].

    A 1e-6 slack absorbs float error, so ε = 4/255 gives 5, not 4 (1.25·4 is 4.999…).
    """
    p = 255.0 * check_eps(eps)
    return math.floor(min(p + 4.0, 1.25 * p) + 1e-6)


def check_eps(eps: object) -> float:
    """ε as a float in [0, 1] (pixels are in [0, 1]); a UserError otherwise."""
    try:
        value = float(eps)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"eps must be a number in [0, 1], got {eps!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise UserError(f"eps must be in [0, 1] (pixels lie in [0, 1]), got {eps!r}")
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


def eps_per_sample(eps: Eps, n: int) -> list[float]:
    """ε as ``n`` checked floats: a number, a 0-dim tensor or a tensor (n,) (one sync)."""
    if isinstance(eps, torch.Tensor):
        if eps.ndim == 0:
            return [check_eps(eps.item())] * n
        if tuple(eps.shape) != (n,):
            raise UserError(f"per-sample eps must have shape ({n},), got {tuple(eps.shape)}")
        values = eps.detach().double().cpu().tolist()
        for v in set(values):
            check_eps(v)
        return values
    return [check_eps(eps)] * n


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


class GradientSignAttack:
    """An L∞ attack of gradient-sign steps; subclasses implement :meth:`schedule`."""

    name = "gradient-sign"
    #: The attack is one step from x₀, so an ε-sweep can share one gradient.
    single_step = False

    def __init__(
        self,
        loss: str = "ce",
        steps: int | None = None,
        step_size: float | None = None,
        model_loss: Callable | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
            raise UserError(f"steps must be an integer >= 0, got {steps!r}")
        if step_size is not None:
            try:
                step_size = float(step_size)
            except (TypeError, ValueError):
                raise UserError(f"step size must be a positive number, got {step_size!r}") from None
            if not (math.isfinite(step_size) and step_size > 0):
                raise UserError(f"step size must be a positive number, got {step_size!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"attack batch size must be an integer >= 1, got {batch_size!r}")
        self.loss: AttackLoss = create_attack_loss(loss, model_loss=model_loss)
        self.steps = steps
        self.step_size = step_size
        self.batch_size = batch_size

    def schedule(self, eps: float) -> tuple[int, float]:
        """(number of steps, step size α) for budget ``eps``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(loss={self.loss.name!r}, steps={self.steps}, "
            f"step_size={self.step_size}, batch_size={self.batch_size})"
        )

    # ---- public API -------------------------------------------------------------------
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Eps) -> torch.Tensor:
        """Adversarial ``x`` (B, ...) for labels ``y`` (B,) and ε (a float or a tensor (B,)).

        Batches larger than ``batch_size`` are attacked in chunks; a batch-coupling loss
        (``model``) then couples the samples of each chunk (and, for a per-sample ε, those
        still moving at each step).
        """
        x, y = check_inputs(x, y)
        eps_list = eps_per_sample(eps, x.shape[0])
        with self._attacking(model):
            return self._chunked(model, x, y, eps_list)

    def sweep(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values: Sequence[float]
    ) -> list[torch.Tensor]:
        """One adversarial batch per ε of ``eps_values``, in order; equal to per-ε calls."""
        x, y = check_inputs(x, y)
        values = [check_eps(e) for e in eps_values]
        if not values:
            return []
        if self.loss.couples_batch:  # stacking would couple samples across ε values
            return [self(model, x, y, e) for e in values]
        with self._attacking(model):
            if self.single_step:
                return self._sweep_shared_gradient(model, x, y, values)
            return self._sweep_stacked(model, x, y, values)

    # ---- internals ----------------------------------------------------------------------
    @contextmanager
    def _attacking(self, model: nn.Module) -> Iterator[None]:
        with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
            yield

    def _chunked(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> torch.Tensor:
        bs = self.batch_size
        parts = [self._run(model, x[i : i + bs], y[i : i + bs], eps[i : i + bs]) for i in range(0, len(x), bs)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _sweep_shared_gradient(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, values: list[float]
    ) -> list[torch.Tensor]:
        bs, n = self.batch_size, len(x)
        parts: list[list[torch.Tensor]] = [[] for _ in values]
        for i in range(0, n, bs):
            xc, yc = x[i : i + bs], y[i : i + bs]
            sign = self._grad_sign(model, xc, yc)  # once for every ε
            for part, e in zip(parts, values):
                part.append(self._run(model, xc, yc, [e] * len(xc), first_sign=sign))
        return [p[0] if len(p) == 1 else torch.cat(p) for p in parts]

    def _sweep_stacked(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, values: list[float]
    ) -> list[torch.Tensor]:
        n = len(x)
        if n >= self.batch_size:  # one ε already fills a chunk: nothing to stack
            return [self._chunked(model, x, y, [e] * n) for e in values]
        # longest schedules first, so chunks hold similar step counts and each chunk's
        # still-moving samples are a prefix (see _run)
        order = sorted(range(len(values)), key=lambda i: -self.schedule(values[i])[0])
        per_chunk = self.batch_size // n  # whole ε blocks per chunk
        out: list[torch.Tensor | None] = [None] * len(values)
        for i in range(0, len(order), per_chunk):
            block = order[i : i + per_chunk]
            reps = (len(block),) + (1,) * (x.ndim - 1)
            xs, ys = x.repeat(reps), y.repeat(len(block))  # (k·B, ...), (k·B,)
            eps = [values[j] for j in block for _ in range(n)]
            for j, adv in zip(block, self._run(model, xs, ys, eps).split(n)):
                out[j] = adv
        return out  # type: ignore[return-value]

    def _input_grad(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """∇ₓ Σᵢ L(xᵢ, yᵢ) in fp32, with respect to the input only."""
        xg = x.detach().requires_grad_(True)
        total = self.loss(model(xg), y).float().sum()
        (grad,) = torch.autograd.grad(total, xg, allow_unused=True)
        return torch.zeros_like(x) if grad is None else grad

    def _grad_sign(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """sign(∇ₓ L) with NaN gradients read as 0 (as ART does)."""
        return self._input_grad(model, x, y).sign().nan_to_num(0.0)

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: list[float],
        first_sign: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loop on one chunk ``x`` (N, ...) with per-sample ``eps`` (N floats).

        Samples are ordered by their step count, longest first, so at step t the samples
        still moving are the prefix ``[:active[t]]`` (counts known on the host): finished
        samples cost nothing and nothing syncs inside the loop.
        """
        by_eps = {e: self.schedule(e) for e in set(eps)}
        steps = [by_eps[e][0] for e in eps]
        total = max(steps)
        if total == 0:
            return x.clone()
        order = sorted(range(len(x)), key=lambda i: -steps[i])  # stable
        perm = None if order == list(range(len(x))) else torch.tensor(order, device=x.device)
        if perm is not None:
            x, y = x.index_select(0, perm), y.index_select(0, perm)
            eps = [eps[i] for i in order]
            first_sign = None if first_sign is None else first_sign.index_select(0, perm)
            steps = [steps[i] for i in order]
        neg_steps = [-s for s in steps]  # ascending
        active = [bisect.bisect_left(neg_steps, -t) for t in range(total)]  # #{s > t}
        shape = (len(x),) + (1,) * (x.ndim - 1)
        eps_t = torch.tensor(eps, dtype=x.dtype, device=x.device).view(shape)  # (N, 1, ...)
        alpha = torch.tensor([by_eps[e][1] for e in eps], dtype=x.dtype, device=x.device).view(shape)
        lo = (x - eps_t).clamp_min(0)  # bounds of clip₀¹ ∘ Π_ε, around the ORIGINAL x
        hi = (x + eps_t).clamp_max(1)
        x_adv = x.clone()  # our buffer: updated in place, the input never is
        for t, k in enumerate(active):  # host-known counts: no sync inside the loop
            moving = x_adv[:k]
            if t == 0 and first_sign is not None:
                sign = first_sign[:k]
            else:
                sign = self._grad_sign(model, moving, y[:k])
            x_adv[:k] = torch.clamp(moving + alpha[:k] * sign, lo[:k], hi[:k])
        if perm is not None:
            x_adv = torch.empty_like(x_adv).index_copy_(0, perm, x_adv)
        return x_adv


ATTACKS: Registry[GradientSignAttack] = Registry("attack")


def create_attack(
    name: str,
    loss: str = "ce",
    steps: int | None = None,
    step_size: float | None = None,
    model_loss: Callable | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> GradientSignAttack:
    """The attack registered as ``name`` ("fgsm", "ifgsm") with its loss and overrides."""
    return ATTACKS.create(
        name, loss=loss, steps=steps, step_size=step_size, model_loss=model_loss, batch_size=batch_size
    )


def list_attacks(pattern: str = "*") -> list[str]:
    """Registered attack names matching ``pattern``."""
    return ATTACKS.names(pattern)
