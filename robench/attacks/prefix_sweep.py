"""Prefix sharing: an ε-sweep of an iterative L∞ sign-step attack with one step size α
for every ε (IFGSM with Kurakin's α = 1/255, PGD without random start and a fixed α).

Until a trajectory has moved ε away from x₀ the ε-clamp equals the [0, 1] clip, since

    clamp(v, max(x₀ − ε, 0), min(x₀ + ε, 1)) = clamp(v, 0, 1)   whenever x₀ − ε ≤ v ≤ x₀ + ε

(v ∈ [0, 1] is left alone by both; v < 0 ≤ x₀ gives lower bound 0 and result 0 in both;
v > 1 ≥ x₀ gives upper bound 1 and result 1; with x₀ ∓ ε the rounded float bounds). So
every ε follows one "trunk" (the attack at ε = 1, whose bounds are exactly 0 and 1, on the
B samples) for its first k_ε steps (:func:`branch_step`: the last step at which its
projection provably cannot act yet, float rounding included), and then its own branch of
steps(ε) − k_ε steps with its own bounds around the ORIGINAL x₀. The branches are stacked
into one batch (x₀ repeated, a per-sample ε, start state and remaining step count), in
chunks of whole ε blocks of at most ``batch_size`` samples; ε = 0 takes no step. Each
sample sees the same arithmetic as in a per-ε call, and the trunk the same batch, so the
sweep equals per-ε calls (bit for bit where the kernels' per-row results do not depend on
the batch size, as on the CPU and GPU runs checked in tests).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robench.attacks.descent import GradientDescent
from robench.attacks.norms import column


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
    largest such k. Branching at exactly ε/α is wrong: for α = 1/255 and ε = 3/255, three
    fp32 steps of one sign from a random x₀ overshoot fl(x₀ ± ε) for about 0.2 % of pixels.
    """
    if eps <= 0 or steps <= 0 or alpha <= 0:
        return 0
    u = torch.finfo(dtype).eps
    per_step = alpha + u * (1.0 + alpha)
    k = math.floor((eps - u) / per_step)
    while k > 0 and k * per_step + u > eps:  # the host division may round up to an integer
        k -= 1
    return max(0, min(k, steps))


def prefix_sweep(attack: GradientDescent, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 values: list[float], alpha: float) -> list[torch.Tensor]:
    """Per chunk of ``batch_size`` samples (the rows a per-ε call takes together), one
    trunk and its ε branches; one adversarial batch per ε."""
    bs = attack.batch_size
    parts: list[list[torch.Tensor]] = [[] for _ in values]
    for i in range(0, len(x), bs):
        advs = _prefix_chunk(attack, model, x[i: i + bs], y[i: i + bs], values, alpha)
        for part, adv in zip(parts, advs):
            part.append(adv)
    return [p[0] if len(p) == 1 else torch.cat(p) for p in parts]


def _prefix_chunk(attack: GradientDescent, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  values: list[float], alpha: float) -> list[torch.Tensor]:
    """Each ε follows the trunk for k_ε steps, then its branch of steps(ε) − k_ε steps:
    (k_max + Σ_ε (steps(ε) − k_ε)) · B image-steps in all."""
    steps = [attack.moving_steps(e) for e in values]
    ks = [branch_step(e, s, alpha, x.dtype) for e, s in zip(values, steps)]
    states = _trunk(attack, model, x, y, alpha, ks)
    remaining = [s - k for s, k in zip(steps, ks)]
    return _branches(attack, model, x, y, values, alpha, remaining, [states[k] for k in ks])


def _trunk(attack: GradientDescent, model: nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float,
           points: list[int]) -> dict[int, torch.Tensor]:
    """The attack at ε = 1 (bounds exactly 0 and 1) on ``x`` (B, ...); its state after
    each step count of ``points``: {k: x_k (B, ...)}, x_0 = x. Step t is the same update,
    on the same rows, as step t of a per-ε call."""
    n = len(x)
    ball = attack.norm.ball(x, [1.0] * n)  # bounds: zeros, ones
    alpha_t = column([alpha] * n, x)  # (B, 1, ...)
    x_adv = x.clone()  # (B, ...), updated in place
    states, done = {}, 0
    for k in sorted(set(points)):
        attack.steps_in_place(model, x_adv, y, alpha_t, ball, [n] * (k - done))
        states[k] = x_adv.clone()
        done = k
    return states


def _branches(attack: GradientDescent, model: nn.Module, x: torch.Tensor, y: torch.Tensor, values: list[float],
              alpha: float, remaining: list[int], starts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each ε's ``remaining`` steps from its trunk state ``starts`` (B, ...), bounds around
    x₀ = ``x``; whole ε blocks stacked, longest first, ≤ ``batch_size`` a chunk."""
    n = len(x)
    order = sorted(range(len(values)), key=lambda i: -remaining[i])  # stable
    per_chunk = max(1, attack.batch_size // n)  # whole ε blocks per chunk
    out: list[torch.Tensor | None] = [None] * len(values)
    for i in range(0, len(order), per_chunk):
        block = order[i: i + per_chunk]
        m = len(block)
        xs = x if m == 1 else x.repeat((m,) + (1,) * (x.ndim - 1))  # (m·B, ...)
        ys = y if m == 1 else y.repeat(m)  # (m·B,)
        start = torch.cat([starts[j] for j in block]) if m > 1 else starts[block[0]]  # (m·B, ...)
        eps = [values[j] for j in block for _ in range(n)]
        steps = [remaining[j] for j in block for _ in range(n)]
        adv = attack.iterate(model, xs, ys, eps, [alpha] * len(eps), steps, start=start)
        for j, a in zip(block, adv.split(n)):
            out[j] = a
    return out  # type: ignore[return-value]
