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

Precision: ``precision="auto"`` runs the model's forward under bf16 autocast on CUDA and
in fp32 elsewhere (:func:`robench.device.resolve_precision`); ``"fp32"``/``"bf16"`` force
it. Only the model's matrix work is bf16: the loss is computed on ``logits.float()`` and
summed in fp32, and pixels, steps and clamps stay in the input's dtype, so fp32 on the CPU
is bit for bit the fp32-only attack.

:meth:`GradientSignAttack.sweep` crafts one batch per ε. A single-step attack (FGSM)
computes the input gradient once and reuses its sign for every ε. An iterative one (IFGSM)
shares prefixes when every ε takes the same step α (Kurakin's α = 1/255): until a
trajectory has moved ε away from x₀ the ε-clamp equals the [0, 1] clip, since

    clamp(v, max(x₀ − ε, 0), min(x₀ + ε, 1)) = clamp(v, 0, 1)   whenever x₀ − ε ≤ v ≤ x₀ + ε

(v ∈ [0, 1] is left alone by both; v < 0 ≤ x₀ gives lower bound 0 and result 0 in both;
v > 1 ≥ x₀ gives upper bound 1 and result 1; with x₀ ∓ ε the rounded float bounds). So
every ε follows one "trunk" (the attack at ε = 1, whose bounds are exactly 0 and 1, on the
B samples) for its first k_ε steps (:func:`branch_step`: the last step at which its
projection provably cannot act yet, float rounding included), and then its own branch of
steps(ε) − k_ε steps with its own bounds around the ORIGINAL x₀. The branches are stacked
into one batch (x₀ repeated, a per-sample ε, start state and remaining step count; a
sample stops moving after its own number of steps: samples are ordered longest first and
step t updates only the prefix still moving), in chunks of whole ε blocks of at most
``batch_size`` samples; ε = 0 takes no step (Π₀ pins every pixel to x₀). On the MNIST grid
(ε = 0, 0.05, …, 0.3) this executes 100 instead of 288 image-steps per sample
(``last_sweep_image_steps`` counts them). Without a common α the ε values are stacked
from x₀ with their full schedules; a batch-coupling loss attacks each ε on its own.

Nothing syncs to the host inside the step loop (step counts are known on the host). Each
sample sees the same arithmetic as in a per-ε call, and the trunk the same batch, so the
sweep equals per-ε calls (bit for bit where the kernels' per-row results do not depend on
the batch size, as on the CPU and GPU runs checked in tests; otherwise up to rare sign
flips of gradients at rounding level).
"""

from __future__ import annotations

import bisect
import math
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from robench.attacks.losses import AttackLoss, create_attack_loss
from robench.device import autocast, resolve_precision
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


def branch_step(eps: float, steps: int, alpha: float, dtype: torch.dtype = torch.float32) -> int:
    """k_ε: the last step at which a trajectory of ``steps`` steps of size ``alpha`` in
    ``dtype`` provably still equals the unprojected one (the ε = 1 trunk), in [0, steps].

    Step j computes v_j = x_{j−1} + α·s (s ∈ {−1, 0, 1}) and then clamps; the ε-clamp equals
    the [0, 1] clip while fl(x₀ − ε) ≤ v_j ≤ fl(x₀ + ε) (module docstring). In exact
    arithmetic that holds for jα ≤ ε, but ε/α may be an integer (ε = 4/255, or 0.2 = 51/255
    with α = 1/255) and then rounding decides. With u the unit roundoff ×2 of ``dtype``
    (``finfo.eps``, the spacing of floats in [1, 2)):

    * one step moves |v_j − x₀| by at most α + u(1 + α): fl(α) is within αu/2 of α and the
      sum is rounded by at most half a spacing, ≤ u(1 + α)/2 as |v_j| < 1 + α (the clip
      only moves x closer to x₀ ∈ [0, 1]);
    * the bounds fl(x₀ ∓ fl(ε)) are within u of x₀ ∓ ε (ε ≤ 1, |x₀ ∓ ε| ≤ 2).

    So every step j ≤ k with k·(α + u(1 + α)) + u ≤ ε is provably unprojected; k_ε is the
    largest such k. In units of steps the margin is (k·u(1 + α) + u)/α, ≈ 2.4e-3 for fp32,
    α = 1/255 and k = 76, so ε = 0.3 (76.5 steps) branches at 76 but ε = 0.2 (51 steps up to
    rounding) at 50; a fixed margin like 1e-3 steps would not cover k·u/α at large k.
    Branching at exactly ε/α is wrong: for α = 1/255 and ε = 3/255, three fp32 steps of
    one sign from a random x₀ overshoot fl(x₀ ± ε) for about 0.2 % of pixels (ε = 4/255
    happens to be exact: fl(4/255) = 4·fl(1/255)).
    """
    if eps <= 0 or steps <= 0 or alpha <= 0:
        return 0
    u = torch.finfo(dtype).eps
    per_step = alpha + u * (1.0 + alpha)
    k = math.floor((eps - u) / per_step)
    while k > 0 and k * per_step + u > eps:  # the host division may round up to an integer
        k -= 1
    return max(0, min(k, steps))


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


def _column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-sample ``values`` as a column (N, 1, ...) of ``like``'s dtype and device."""
    shape = (len(values),) + (1,) * (like.ndim - 1)
    return torch.tensor(list(values), dtype=like.dtype, device=like.device).view(shape)


def _bounds(x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of clip₀¹ ∘ Π_ε around the ORIGINAL ``x`` (N, ...) for ``eps`` (N, 1, ...).

    ε = 1 gives exactly 0 and 1 (x − 1 ≤ 0, x + 1 ≥ 1): the [0, 1] clip alone.
    """
    return (x - eps).clamp_min(0), (x + eps).clamp_max(1)


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
        precision: str = "auto",
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
        resolve_precision(precision, torch.device("cpu"))  # the name only; resolved per device at use
        self.loss: AttackLoss = create_attack_loss(loss, model_loss=model_loss)
        self.steps = steps
        self.step_size = step_size
        self.batch_size = batch_size
        self.precision = precision
        #: Input-gradient rows (image-steps) the last :meth:`sweep` computed.
        self.last_sweep_image_steps = 0
        self._grad_rows = 0  # all input-gradient rows so far (host int)

    def schedule(self, eps: float) -> tuple[int, float]:
        """(number of steps, step size α) for budget ``eps``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(loss={self.loss.name!r}, steps={self.steps}, "
            f"step_size={self.step_size}, batch_size={self.batch_size}, precision={self.precision!r})"
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
        """One adversarial batch per ε of ``eps_values``, in order; equal to per-ε calls.

        Sets ``last_sweep_image_steps``: the input-gradient rows it computed.
        """
        x, y = check_inputs(x, y)
        values = [check_eps(e) for e in eps_values]
        start = self._grad_rows
        try:
            return self._sweep(model, x, y, values)
        finally:
            self.last_sweep_image_steps = self._grad_rows - start

    # ---- internals ----------------------------------------------------------------------
    @contextmanager
    def _attacking(self, model: nn.Module) -> Iterator[None]:
        with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
            yield

    def _sweep(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, values: list[float]) -> list[torch.Tensor]:
        if not values:
            return []
        if self.loss.couples_batch:  # stacking would couple samples across ε values
            return [self(model, x, y, e) for e in values]
        with self._attacking(model):
            if self.single_step:
                return self._sweep_shared_gradient(model, x, y, values)
            alpha = self._common_alpha(values)
            if alpha is None:
                return self._sweep_stacked(model, x, y, values)
            return self._sweep_prefix(model, x, y, values, alpha)

    def _moving_steps(self, eps: float) -> int:
        """Steps ε takes in a sweep: its schedule's, but none for ε = 0 (Π₀ pins x to x₀)."""
        return self.schedule(eps)[0] if eps > 0 else 0

    def _common_alpha(self, values: list[float]) -> float | None:
        """The step size α shared by every ε that moves (0.0 if none moves), else None."""
        alphas = {self.schedule(e)[1] for e in values if self._moving_steps(e) > 0}
        if len(alphas) > 1:
            return None
        return alphas.pop() if alphas else 0.0

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
        """Every ε from x₀ with its full schedule, ε blocks stacked (no common α)."""
        n = len(x)
        if n >= self.batch_size:  # one ε already fills a chunk: nothing to stack
            return [self._chunked(model, x, y, [e] * n) for e in values]
        # longest schedules first, so chunks hold similar step counts and each chunk's
        # still-moving samples are a prefix (see _iterate)
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

    def _sweep_prefix(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, values: list[float], alpha: float
    ) -> list[torch.Tensor]:
        """Prefix-shared sweep with common step ``alpha``: per chunk of ``batch_size``
        samples (the rows a per-ε call takes together), one trunk and its ε branches."""
        bs = self.batch_size
        parts: list[list[torch.Tensor]] = [[] for _ in values]
        for i in range(0, len(x), bs):
            advs = self._prefix_chunk(model, x[i : i + bs], y[i : i + bs], values, alpha)
            for part, adv in zip(parts, advs):
                part.append(adv)
        return [p[0] if len(p) == 1 else torch.cat(p) for p in parts]

    def _prefix_chunk(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, values: list[float], alpha: float
    ) -> list[torch.Tensor]:
        """Each ε follows the trunk for k_ε = :func:`branch_step` steps, then its branch of
        steps(ε) − k_ε steps: (k_max + Σ_ε (steps(ε) − k_ε)) · B image-steps in all."""
        steps = [self._moving_steps(e) for e in values]
        ks = [branch_step(e, s, alpha, x.dtype) for e, s in zip(values, steps)]
        states = self._trunk(model, x, y, alpha, ks)
        remaining = [s - k for s, k in zip(steps, ks)]
        return self._branches(model, x, y, values, alpha, remaining, [states[k] for k in ks])

    def _trunk(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float, points: list[int]
    ) -> dict[int, torch.Tensor]:
        """The attack at ε = 1 (bounds exactly 0 and 1) on ``x`` (B, ...); its state after
        each step count of ``points``: {k: x_k (B, ...)}, x_0 = x.

        Step t is the same update, on the same rows, as step t of a per-ε call.
        """
        n = len(x)
        lo, hi = _bounds(x, _column([1.0] * n, x))  # (B, ...) zeros, ones
        alpha_t = _column([alpha] * n, x)  # (B, 1, ...)
        x_adv = x.clone()  # (B, ...), updated in place
        states, done = {}, 0
        for k in sorted(set(points)):
            self._steps(model, x_adv, y, alpha_t, lo, hi, [n] * (k - done))
            states[k] = x_adv.clone()
            done = k
        return states

    def _branches(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        values: list[float],
        alpha: float,
        remaining: list[int],
        starts: list[torch.Tensor],
    ) -> list[torch.Tensor]:
        """Each ε's ``remaining`` steps from its trunk state ``starts`` (B, ...), bounds
        around x₀ = ``x``; whole ε blocks stacked, longest first, ≤ ``batch_size`` a chunk."""
        n = len(x)
        order = sorted(range(len(values)), key=lambda i: -remaining[i])  # stable
        per_chunk = max(1, self.batch_size // n)  # whole ε blocks per chunk
        out: list[torch.Tensor | None] = [None] * len(values)
        for i in range(0, len(order), per_chunk):
            block = order[i : i + per_chunk]
            m = len(block)
            xs = x if m == 1 else x.repeat((m,) + (1,) * (x.ndim - 1))  # (m·B, ...)
            ys = y if m == 1 else y.repeat(m)  # (m·B,)
            start = torch.cat([starts[j] for j in block]) if m > 1 else starts[block[0]]  # (m·B, ...)
            eps = [values[j] for j in block for _ in range(n)]
            steps = [remaining[j] for j in block for _ in range(n)]
            adv = self._iterate(model, xs, ys, eps, [alpha] * len(eps), steps, start=start)
            for j, a in zip(block, adv.split(n)):
                out[j] = a
        return out  # type: ignore[return-value]

    def _input_grad(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """∇ₓ Σᵢ L(xᵢ, yᵢ), with respect to the input only, in x's dtype.

        The forward runs under the resolved precision's autocast (bf16 matrix work on
        CUDA by default); the loss is taken on ``logits.float()`` and summed in fp32.
        """
        precision = resolve_precision(self.precision, x.device)
        xg = x.detach().requires_grad_(True)  # (N, ...)
        with autocast(precision, x.device):
            logits = model(xg)  # (N, K), bf16 under autocast
        total = self.loss(logits.float(), y).float().sum()
        (grad,) = torch.autograd.grad(total, xg, allow_unused=True)
        self._grad_rows += len(x)
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
        """The loop on one chunk ``x`` (N, ...) from x₀ = x with per-sample ``eps`` (N floats)
        and each ε's schedule."""
        by_eps = {e: self.schedule(e) for e in set(eps)}
        steps = [by_eps[e][0] for e in eps]
        alpha = [by_eps[e][1] for e in eps]
        return self._iterate(model, x, y, eps, alpha, steps, first_sign=first_sign)

    def _iterate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: list[float],
        alpha: list[float],
        steps: list[int],
        start: torch.Tensor | None = None,
        first_sign: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``steps[i]`` updates of size ``alpha[i]`` of sample i from ``start`` (N, ...)
        (default x₀ = ``x``), clamped to the ``eps[i]``-bounds around x₀ = ``x`` (N, ...).

        Samples are ordered by their step count, longest first, so at step t the samples
        still moving are the prefix ``[:active[t]]`` (counts known on the host): finished
        samples cost nothing and nothing syncs inside the loop.
        """
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
            first_sign = None if first_sign is None else first_sign.index_select(0, perm)
            eps, alpha, steps = ([v[i] for i in order] for v in (eps, alpha, steps))
        neg_steps = [-s for s in steps]  # ascending
        active = [bisect.bisect_left(neg_steps, -t) for t in range(total)]  # #{s > t}
        lo, hi = _bounds(x, _column(eps, x))  # (N, ...)
        self._steps(model, x_adv, y, _column(alpha, x), lo, hi, active, first_sign)
        if perm is not None:
            x_adv = torch.empty_like(x_adv).index_copy_(0, perm, x_adv)
        return x_adv

    def _steps(
        self,
        model: nn.Module,
        x_adv: torch.Tensor,
        y: torch.Tensor,
        alpha: torch.Tensor,
        lo: torch.Tensor,
        hi: torch.Tensor,
        active: list[int],
        first_sign: torch.Tensor | None = None,
    ) -> None:
        """In place, for each step t with k = ``active[t]`` rows still moving:
        x_adv[:k] ← clamp(x_adv[:k] + α · sign(∇ₓ L(x_adv[:k], y[:k])), lo[:k], hi[:k]).

        ``x_adv``, ``lo``, ``hi`` (N, ...), ``alpha`` (N, 1, ...); ``first_sign`` (N, ...)
        replaces the first step's gradient sign.
        """
        for t, k in enumerate(active):  # host-known counts: no sync inside the loop
            moving = x_adv[:k]
            if t == 0 and first_sign is not None:
                sign = first_sign[:k]
            else:
                sign = self._grad_sign(model, moving, y[:k])
            x_adv[:k] = torch.clamp(moving + alpha[:k] * sign, lo[:k], hi[:k])


ATTACKS: Registry[GradientSignAttack] = Registry("attack")


def create_attack(
    name: str,
    loss: str = "ce",
    steps: int | None = None,
    step_size: float | None = None,
    model_loss: Callable | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: str = "auto",
) -> GradientSignAttack:
    """The attack registered as ``name`` ("fgsm", "ifgsm") with its loss and overrides.

    ``precision``: "auto" (bf16 autocast on CUDA, fp32 elsewhere), "fp32" or "bf16".
    """
    return ATTACKS.create(
        name,
        loss=loss,
        steps=steps,
        step_size=step_size,
        model_loss=model_loss,
        batch_size=batch_size,
        precision=precision,
    )


def list_attacks(pattern: str = "*") -> list[str]:
    """Registered attack names matching ``pattern``."""
    return ATTACKS.names(pattern)
