"""Gradient-masking checks: validity flags that tell real robustness from a gradient
that carries no signal (docs/flags.md, "Gradient-masking flags").

Each check follows the guidance of Athalye et al., "Obfuscated Gradients Give a False
Sense of Security" (ICML 2018, "identifying obfuscated and masked gradients"), Carlini et
al., "On Evaluating Adversarial Robustness" (2019, its evaluation checklist) and Croce & Hein,
"Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse
Parameter-free Attacks" (ICML 2020, §4):

- ``gradient_free_not_stronger``: on a white-box cell, the gradient-free attack (Square)
  does not reach lower accuracy than the best gradient attack by more than
  :data:`GRADIENT_FREE_TOLERANCE` points.
- ``converged``: doubling an iterative attack's steps or restarts does not lower the
  accuracy by more than :data:`CONVERGENCE_TOLERANCE` points.
- ``ce_dlr_gap``: white-box APGD-CE and APGD-DLR accuracies of a cell differ by at most
  :data:`CE_DLR_GAP` points.
- ``gradient_saturation``: at most :data:`SATURATION_THRESHOLD` of the test points have
  an input gradient of the attack loss that is exactly zero (computed on a model by
  :func:`zero_gradient_fraction`, made a flag by :func:`saturation_flag`).

A worst-case ensemble's run answers two of them from its per-member records
(:func:`ensemble_flags`): Square, run last, breaks at most 1 point of what the gradient
attacks left robust; APGD-DLR, run after APGD-CE, at most 5 points of what CE left.

The record-based checks compare correct counts on the same first ``n`` test samples, so
they need no sampling slack; their tolerances absorb the randomness of the attacks'
searches (random starts, Square's random squares) on samples near the boundary. ε = 0
cells are skipped (every attack leaves the input there). Backends, precisions, norms and
sample counts are judged apart, as by :mod:`robench.evaluate.validity`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable

import torch
from torch import nn

from robench.attacks import ENSEMBLES, AttackLoss, create_attack_loss, eval_mode

MASKING_FLAGS = ("gradient_free_not_stronger", "converged", "ce_dlr_gap", "gradient_saturation")

GRADIENT_ATTACKS = ("fgsm", "ifgsm", "pgd", "fgm", "pgd-l2")  # and every ``apgd-*``
GRADIENT_FREE_PREFIX = "square"
GRADIENT_FREE_TOLERANCE = 1.0  # accuracy points
CONVERGENCE_TOLERANCE = 1.0  # accuracy points
CE_DLR_GAP = 5.0  # accuracy points
SATURATION_THRESHOLD = 0.01  # fraction of test points
GRADIENT_CHUNK = 256


def masking_flag_names() -> tuple[str, ...]:
    """The gradient-masking flags, so reports and claim gates can tell them apart."""
    return MASKING_FLAGS


def _flag(name: str, passed: bool, scope: str, detail: str, *members: str) -> dict[str, Any]:
    """A checked flag in the shape of :mod:`robench.evaluate.validity`'s flags."""
    return {"flag": name, "passed": passed, "scope": scope, "detail": detail, "members": frozenset(members)}


def _points_lower(lower: int, higher: int, n: int) -> float:
    """How many accuracy points ``lower`` correct samples lie below ``higher`` of ``n``."""
    return 100.0 * (higher - lower) / n


def _within(lower: int, higher: int, n: int, tolerance: float) -> bool:
    """``lower`` is at most ``tolerance`` points below ``higher``; exact in integers
    (100 · difference ≤ tolerance · n), so the boundary itself passes."""
    return 100 * (higher - lower) <= tolerance * n


def _tag(precision: str, batch: int | None = None) -> str:
    """`` bf16`` and `` (batch 256)`` in a scope, as validity's flags write them."""
    return ("" if precision == "fp32" else f" {precision}") + ("" if batch is None else f" (batch {batch})")


def _norm_tag(norm: str) -> str:
    return "" if norm == "linf" else f"/{norm}"


def is_gradient_attack(attack: str) -> bool:
    """FGSM, IFGSM, PGD, FGM, PGD-L2 and every APGD variant; not the ensembles."""
    return attack in GRADIENT_ATTACKS or attack.startswith("apgd")


def is_gradient_free(attack: str) -> bool:
    """Square (L∞ or L2): a random search that uses the model's scores only."""
    return attack.startswith(GRADIENT_FREE_PREFIX)


def _attack_cell(r: dict[str, Any]) -> tuple:
    """A white-box cell over attacks: defender, backend, norm, ε, n, precision."""
    return (r["defender"], r["backend"], r["norm"], r["eps"], r["n"], r["precision"])


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row with the fewest correct samples (the strongest attack); first on ties."""
    return min(rows, key=lambda r: r["correct"])


def _label(r: dict[str, Any]) -> str:
    return f"{r['attack']}/{r['attack_loss']} {r['accuracy']:.4f}"


def gradient_free_not_stronger(whitebox: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Square against the best gradient attack of each white-box cell (any attack loss
    and schedule): a random search that beats the gradient by more than
    :data:`GRADIENT_FREE_TOLERANCE` points says the gradient is masked (Carlini et al.
    2019, "try gradient-free attacks"; Athalye et al. 2018: random search succeeding where
    the gradient fails is a sign of masking)."""
    free, grad = defaultdict(list), defaultdict(list)
    for r in whitebox:
        if r["eps"] != 0 and (is_gradient_free(r["attack"]) or is_gradient_attack(r["attack"])):
            (free if is_gradient_free(r["attack"]) else grad)[_attack_cell(r)].append(r)
    flags = []
    for key in sorted(free.keys() & grad.keys()):
        dfd, backend, norm, eps, n, precision = key
        sq, gr = _best(free[key]), _best(grad[key])
        flags.append(_flag(
            "gradient_free_not_stronger", _within(sq["correct"], gr["correct"], n, GRADIENT_FREE_TOLERANCE),
            f"{backend}{_norm_tag(norm)}{_tag(precision)} {dfd} eps {eps:.4g}",
            f"gradient-free {_label(sq)}, best gradient {_label(gr)}: gradient-free "
            f"{_points_lower(sq['correct'], gr['correct'], n):.2f} points lower "
            f"(tolerance {GRADIENT_FREE_TOLERANCE:g})", dfd))
    return flags


def _run_key(r: dict[str, Any]) -> tuple:
    """Everything of a white-box run but its budget (steps, step size, restarts,
    schedule label): the runs a doubled budget is compared within."""
    return (r["defender"], r["attack"], r["attack_loss"], r["backend"], r["norm"], r["eps"], r["n"],
            r["precision"], r["coupled_batch"], r["queries"], r["attack_seed"])


def _doubled(base: dict[str, Any], other: dict[str, Any]) -> str | None:
    """``"steps"`` or ``"restarts"`` if ``other`` doubles that part of ``base``'s budget
    and keeps the other part; None otherwise."""
    if other["steps"] == 2 * base["steps"] and other["restarts"] == base["restarts"]:
        return "steps"
    if other["restarts"] == 2 * base["restarts"] and other["steps"] == base["steps"]:
        return "restarts"
    return None


def _budget_text(part: str, base: dict[str, Any], more: dict[str, Any]) -> str:
    kept = "restarts" if part == "steps" else "steps"
    text = f"{part} {base[part]} -> {more[part]} ({kept} {base[kept]})"
    labels = (base["schedule"], more["schedule"])
    return text if labels == ("default", "default") else text + f" [{labels[0]} -> {labels[1]}]"


def _converged_flag(part: str, base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    seed = "" if base["attack_seed"] is None else f" seed {base['attack_seed']}"
    queries = "" if base["queries"] is None else f" queries {base['queries']}"
    return _flag(
        "converged", _within(more["correct"], base["correct"], base["n"], CONVERGENCE_TOLERANCE),
        f"{base['attack']}/{base['attack_loss']}/{base['backend']}{_norm_tag(base['norm'])}"
        f"{_tag(base['precision'], base['coupled_batch'])}{queries}{seed} {base['defender']} "
        f"eps {base['eps']:.4g} {_budget_text(part, base, more)}",
        f"accuracy {base['accuracy']:.4f} -> {more['accuracy']:.4f} with twice the {part}: "
        f"{_points_lower(more['correct'], base['correct'], base['n']):.2f} points lower "
        f"(tolerance {CONVERGENCE_TOLERANCE:g})", base["defender"])


def converged(whitebox: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each white-box run against the same run with twice the steps (same restarts) or
    twice the restarts (same steps): an attack whose number still drops by more than
    :data:`CONVERGENCE_TOLERANCE` points has not converged, so its number is an upper
    bound only (Carlini et al. 2019, "verify iterative attacks converge"; Athalye et al.
    2018: stochastic or shattered gradients need more iterations)."""
    runs = defaultdict(list)
    for r in whitebox:
        if r["eps"] != 0 and "@" not in r["attack"]:  # an ensemble's stages: its own record judges it
            runs[_run_key(r)].append(r)
    flags = []
    for group in runs.values():
        for base in group:
            for more in group:
                part = _doubled(base, more)
                if part is not None:
                    flags.append(_converged_flag(part, base, more))
    return sorted(flags, key=lambda f: f["scope"])


def _apgd_loss(r: dict[str, Any]) -> str | None:
    """``"ce"`` for APGD-CE, ``"dlr"`` for APGD-DLR (L∞ or L2), None for other attacks."""
    base = r["attack"].removesuffix("-l2")
    return {"apgd-ce": "ce", "apgd-dlr": "dlr"}.get(base)


def _lower_side(ce: dict[str, Any], dlr: dict[str, Any]) -> str:
    if ce["correct"] == dlr["correct"]:
        return "neither"
    return "APGD-CE" if ce["correct"] < dlr["correct"] else "APGD-DLR"


def _gap_flag(key: tuple, ce: dict[str, Any], dlr: dict[str, Any]) -> dict[str, Any]:
    dfd, backend, norm, eps, n, precision, steps, restarts = key
    lower = _lower_side(ce, dlr)
    gap = abs(_points_lower(ce["correct"], dlr["correct"], n))
    return _flag(
        "ce_dlr_gap", 100 * abs(ce["correct"] - dlr["correct"]) <= CE_DLR_GAP * n,
        f"{backend}{_norm_tag(norm)}{_tag(precision)} {dfd} eps {eps:.4g} (steps {steps}, restarts {restarts})",
        f"APGD-CE {ce['accuracy']:.4f}, APGD-DLR {dlr['accuracy']:.4f}: {gap:.2f} points apart, {lower} lower "
        f"(threshold {CE_DLR_GAP:g})", dfd)


def ce_dlr_gap(whitebox: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """White-box APGD-CE against APGD-DLR of the same norm, cell and budget (steps,
    restarts; the strongest record of each side): a gap above :data:`CE_DLR_GAP` points
    says one loss's gradient is masked or badly scaled. CE depends on the logits' scale
    and saturates on confident models; DLR is invariant to shifts and scaling of the
    logits (Croce & Hein 2020, §4)."""
    sides: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in whitebox:
        loss = _apgd_loss(r)
        if loss is not None and r["eps"] != 0:
            sides[(*_attack_cell(r), r["steps"], r["restarts"])][loss].append(r)
    return [_gap_flag(key, _best(pair["ce"]), _best(pair["dlr"]))
            for key, pair in sorted(sides.items()) if pair["ce"] and pair["dlr"]]


def _stage_runs(whitebox: Iterable[dict[str, Any]]) -> dict[tuple, dict[str, dict[str, Any]]]:
    """White-box runs of a worst-case ensemble: (ensemble, run key) → member → the record
    of the robust accuracy after that member (``<ensemble>@<member>``; the last member's is
    the ensemble's own record)."""
    runs: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in whitebox:
        ensemble, _, member = r["attack"].partition("@")
        if ensemble in ENSEMBLES and r["eps"] != 0:
            last = ENSEMBLES[ensemble][-1][0]
            runs[(ensemble, _run_key({**r, "attack": ensemble}), r["steps"], r["restarts"])][member or last] = r
    return runs


def _increment_flag(name: str, ensemble: str, before: dict[str, Any], after: dict[str, Any],
                    tolerance: float, what: str) -> dict[str, Any]:
    n = after["n"]
    return _flag(
        name, _within(after["correct"], before["correct"], n, tolerance),
        f"{ensemble}/{after['attack_loss']}/{after['backend']}{_norm_tag(after['norm'])}{_tag(after['precision'])} "
        f"{after['defender']} eps {after['eps']:.4g} (steps {after['steps']}"
        + ("" if after["queries"] is None else f", queries {after['queries']}") + ")",
        f"{what}: accuracy {before['accuracy']:.4f} -> {after['accuracy']:.4f}, "
        f"{_points_lower(after['correct'], before['correct'], n):.2f} points lower (tolerance {tolerance:g})",
        after["defender"])


def ensemble_flags(whitebox: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The masking flags a worst-case ensemble's own run answers, from its per-member
    records: ``gradient_free_not_stronger`` — Square, run last on the points every
    gradient attack of the ensemble left robust, breaks at most
    :data:`GRADIENT_FREE_TOLERANCE` points of them (the check of Croce & Hein 2020, §5:
    a gradient-free attack improving on APGD signals masking); ``ce_dlr_gap`` — APGD-DLR,
    run after APGD-CE, breaks at most :data:`CE_DLR_GAP` points that CE left robust."""
    flags = []
    for (ensemble, *_), stages in sorted(_stage_runs(whitebox).items(), key=lambda kv: str(kv[0])):
        names = [m for m, _, _ in ENSEMBLES[ensemble]]
        last = names[-1]
        if is_gradient_free(last) and last in stages and names[-2] in stages:
            flags.append(_increment_flag("gradient_free_not_stronger", ensemble, stages[names[-2]], stages[last],
                                         GRADIENT_FREE_TOLERANCE, f"{last} after every gradient attack"))
        ce, dlr = (next((m for m in names if _apgd_loss({"attack": m}) == loss), None) for loss in ("ce", "dlr"))
        if ce in stages and dlr in stages:
            flags.append(_increment_flag("ce_dlr_gap", ensemble, stages[ce], stages[dlr], CE_DLR_GAP,
                                         f"{dlr} after {ce}"))
    return flags


def masking_flags(whitebox: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every record-based masking flag of white-box rows (``AttackRecord.as_dict()``)."""
    return gradient_free_not_stronger(whitebox) + converged(whitebox) + ce_dlr_gap(whitebox) + ensemble_flags(whitebox)


def _resolve_loss(attack_loss: str | AttackLoss, model_loss: Callable | None) -> AttackLoss:
    if isinstance(attack_loss, AttackLoss):
        return attack_loss
    return create_attack_loss(attack_loss, model_loss=model_loss)


def _zero_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: AttackLoss) -> int:
    """How many samples of one chunk have an input gradient that is zero everywhere."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = loss(model(x).float(), y).sum()
    if not value.requires_grad:  # no differentiable path from the input (a hard threshold)
        return x.shape[0]
    (grad,) = torch.autograd.grad(value, x, allow_unused=True)
    if grad is None:  # the loss does not depend on the input at all
        return x.shape[0]
    return int((grad.flatten(1) == 0).all(dim=1).sum().item())


def zero_gradient_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack_loss: str | AttackLoss,
                           model_loss: Callable | None = None, batch_size: int = GRADIENT_CHUNK) -> float:
    """Fraction of samples whose input gradient of the attack loss is exactly zero in
    every element: points where a gradient attack has no direction to step (Athalye et
    al. 2018 and Carlini et al. 2019 on vanishing and masked gradients).

    ``attack_loss``: a name of :func:`robench.attacks.create_attack_loss` (``ce``,
    ``cw``, ``model`` with the member's ``model_loss``) or an :class:`AttackLoss`. The
    per-sample losses of a chunk of ``batch_size`` samples are summed in fp32 and
    differentiated with respect to the input only, as the attacks do, so a sample's row
    is its own gradient (for a loss that couples the samples, the gradient the attack
    gets). The model runs in eval mode; each module's training flag is restored.
    """
    loss = _resolve_loss(attack_loss, model_loss)
    if x.shape[0] == 0:
        return 0.0
    zero = 0
    with eval_mode(model):
        for start in range(0, x.shape[0], batch_size):
            zero += _zero_rows(model, x[start:start + batch_size], y[start:start + batch_size], loss)
    return zero / x.shape[0]


def saturation_flag(member: str, attack_loss: str, fraction: float, n: int) -> dict[str, Any]:
    """The ``gradient_saturation`` flag of ``member`` under ``attack_loss``: passed when at
    most :data:`SATURATION_THRESHOLD` of its ``n`` test points have an exactly zero input
    gradient (:func:`zero_gradient_fraction`). Each such point can inflate a gradient
    attack's accuracy, so the threshold keeps that inflation within the 1-point
    tolerance of the other masking flags (Carlini et al. 2019)."""
    return _flag("gradient_saturation", fraction <= SATURATION_THRESHOLD, saturation_scope(attack_loss, member),
                 f"{fraction:.2%} of {n} test points have an exactly zero input gradient of the "
                 f"{attack_loss} loss (threshold {SATURATION_THRESHOLD:.0%})", member)


def saturation_scope(attack_loss: str, member: str) -> str:
    """The scope of a ``gradient_saturation`` flag: ``<attack loss> <member>``."""
    return f"{attack_loss} {member}"


def saturation_member(scope: str) -> tuple[str, str]:
    """(attack loss, member) of a ``gradient_saturation`` flag's scope."""
    attack_loss, _, member = scope.partition(" ")
    return attack_loss, member


#: The attack losses whose input gradient the saturation flag measures.
SATURATION_LOSSES = ("ce", "cw", "dlr", "model")
