"""How an ε-sweep is computed: the cheapest strategy the attack's declared properties allow.

Every strategy returns what per-ε calls return (tests check it bit for bit on CPU):

* **shared gradient** — a single-step deterministic attack (FGSM, FGM) computes the input
  gradient once and reuses its direction for every ε;
* **prefix sharing** (:mod:`robench.attacks.prefix_sweep`) — a deterministic L∞ sign-step
  attack with one restart and the same step size α at every ε (IFGSM; PGD without random
  start and with a fixed α) follows one trunk and branches per ε: on the MNIST grid 100
  instead of 288 image-steps per sample;
* **stacked** — another deterministic attack with one restart (PGD without random start
  and α = 2.5ε/steps) stacks the ε blocks into one batch from x₀ (a per-sample ε);
* **nested** — an attack that declares ``nested_eps`` (the worst-case ensembles,
  :mod:`robench.attacks.ensemble`) attacks the ε values in increasing order, each only on
  the points no smaller ε has broken; a broken point keeps its adversarial for every
  larger ε (it lies in the larger ball). This is the per-sample worst case over ε, so it
  returns at most the per-ε calls' accuracy rather than equal outputs;
* **per ε** — anything else (random starts, restarts, gradient-free or batch-coupling
  attacks) attacks each ε on its own.
"""

from __future__ import annotations

import torch
from torch import nn

from robench.attacks.attack import Attack
from robench.attacks.descent import GradientDescent
from robench.attacks.prefix_sweep import prefix_sweep


def sweep_with_strategy(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        values: list[float]) -> list[torch.Tensor]:
    """One adversarial batch per ε of ``values`` by the strategy ``attack`` qualifies for."""
    if not values:
        return []
    if attack.nested_eps:
        return _nested(attack, model, x, y, values)
    shareable = (isinstance(attack, GradientDescent) and attack.deterministic and not attack.random_start
                 and attack.restarts == 1 and not attack.loss.couples_batch)
    if not shareable:
        return [attack._chunked(model, x, y, [e] * len(x)) for e in values]
    if attack.single_step:
        return _shared_gradient(attack, model, x, y, values)
    alpha = _common_alpha(attack, values)
    if attack.sign_step and alpha is not None:
        return prefix_sweep(attack, model, x, y, values, alpha)
    return _stacked(attack, model, x, y, values)


def _common_alpha(attack: GradientDescent, values: list[float]) -> float | None:
    """The step size α shared by every ε that moves (0.0 if none moves), else None."""
    alphas = {attack.schedule(e)[1] for e in values if attack.moving_steps(e) > 0}
    if len(alphas) > 1:
        return None
    return alphas.pop() if alphas else 0.0


def _run(attack: GradientDescent, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float],
         first_direction: torch.Tensor | None = None) -> torch.Tensor:
    """The attack's loop on one chunk from x₀ = ``x`` with per-sample ``eps``."""
    by_eps = {e: attack.schedule(e) for e in set(eps)}
    return attack.iterate(model, x, y, eps, [by_eps[e][1] for e in eps], [by_eps[e][0] for e in eps],
                          first_direction=first_direction)


def _shared_gradient(attack: GradientDescent, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     values: list[float]) -> list[torch.Tensor]:
    bs, n = attack.batch_size, len(x)
    parts: list[list[torch.Tensor]] = [[] for _ in values]
    for i in range(0, n, bs):
        xc, yc = x[i: i + bs], y[i: i + bs]
        direction = attack.direction(model, xc, yc)  # once for every ε
        for part, e in zip(parts, values):
            part.append(_run(attack, model, xc, yc, [e] * len(xc), first_direction=direction))
    return [p[0] if len(p) == 1 else torch.cat(p) for p in parts]


def _stacked(attack: GradientDescent, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             values: list[float]) -> list[torch.Tensor]:
    """Every ε from x₀ with its full schedule, ε blocks stacked."""
    n = len(x)
    if n >= attack.batch_size:  # one ε already fills a chunk: nothing to stack
        return [attack._chunked(model, x, y, [e] * n) for e in values]
    # longest schedules first, so chunks hold similar step counts and each chunk's
    # still-moving samples are a prefix (GradientDescent.iterate)
    order = sorted(range(len(values)), key=lambda i: -attack.schedule(values[i])[0])
    per_chunk = attack.batch_size // n  # whole ε blocks per chunk
    out: list[torch.Tensor | None] = [None] * len(values)
    for i in range(0, len(order), per_chunk):
        block = order[i: i + per_chunk]
        reps = (len(block),) + (1,) * (x.ndim - 1)
        xs, ys = x.repeat(reps), y.repeat(len(block))  # (k·B, ...), (k·B,)
        eps = [values[j] for j in block for _ in range(n)]
        for j, adv in zip(block, _run(attack, model, xs, ys, eps).split(n)):
            out[j] = adv
    return out  # type: ignore[return-value]


def _nested(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            values: list[float]) -> list[torch.Tensor]:
    """ε in increasing order, each on the survivors of the smaller ones."""
    out: list[torch.Tensor | None] = [None] * len(values)
    current = x.clone()  # (N, ...): each sample's latest point
    alive = torch.arange(len(x), device=x.device)  # not broken at any smaller ε
    for i in sorted(range(len(values)), key=lambda i: values[i]):
        if len(alive):
            found = attack._chunked(model, x[alive], y[alive], [values[i]] * len(alive))
            current.index_copy_(0, alive, found)
            alive = alive[attack.predict(model, found) == y[alive]]
        out[i] = current.clone()
    return out  # type: ignore[return-value]
