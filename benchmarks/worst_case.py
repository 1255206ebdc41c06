"""Worst-case ensemble evaluation: robench's ``aa`` ensemble against a torchattacks loop.

Measured: the white-box worst case (every member attacks itself) of ``--models``
mnist-cnn members over robench's mnist ε grid (0, 0.05, …, 0.3), with the members, data
and chunks of :mod:`benchmarks.attack_matrix` (members trained ``--train-steps`` Adam
steps on synthetic learnable data, ``--samples`` synthetic test images labelled by the
argmax of the members' mean logits). Two implementations, the same attacks and budgets
at every ε:

* ``robench``: ``run_attack_plan(AttackPlan("whitebox", attacks=("aa",), eps=grid,
  steps=S, targets=T, queries=Q, attack_seed=seed))`` — the path of ``robench attack
  --whitebox --attacks aa --steps S --targets T --queries Q`` — with in-memory members and
  a result store in a temporary folder. The ensemble is APGD-CE (S steps), APGD-T (T
  target classes, S steps each) and Square (Q queries, p_init 0.8), each on the points
  still robust, and across the grid a point broken at ε stays broken at larger ε (the ε
  values are attacked in increasing order, each on the survivors of the smaller ones).
* ``torchattacks`` (3.5.1): per member and ε > 0 one
  ``MultiAttack([APGD(loss='ce', steps=S), APGDT(steps=S, n_classes=T + 1),
  Square(n_queries=Q − 2, p_init=0.8, loss='margin')])`` (robench's numbers mapped as
  :mod:`robench.attacks.backends` maps them: APGDT attacks n_classes − 1 targets,
  Square's n_queries counts the iterations after the clean query and the stripes start),
  seed ``seed`` each, ``n_restarts=1``, adversarials per chunk, the member evaluated on
  them (ε = 0: the clean images). MultiAttack, not torchattacks' ``AutoAttack``: that
  fixes its own budgets (APGD's default 10 steps, Square's 5,000 queries, n_classes shared
  by APGD-T and FAB) and adds FAB-T, so it cannot run these budgets. The peer attacks every
  ε on all points (no nesting), with the members' parameters frozen as in attack_matrix.

Both sides run the same chunks (``--chunk-size``, default robench's chunk for the device)
and are warmed up on a few images first; with ``--rounds R`` they are timed in R
interleaved rounds (round r starts with the r-th implementation) and the median round is
reported beside every round.

Reported: per implementation the wall time, seconds per ε and per ensemble stage, and the
work done (robench: the attacks' ``last_sweep_image_steps`` / ``last_sweep_queries`` and
each member attack's own counters; torchattacks: rows of the member's forward passes with
and without an input gradient, from a forward hook); the ratio torchattacks/robench; the
robust accuracy per (member, ε) of both, per stage (robench's ``aa@apgd-ce`` and
``aa@apgd-t`` records; the peer's survivors between its attacks) and the agreement: by how
much robench's accuracy exceeds the peer's at most (in points), and the cells where it
exceeds it by more than :data:`ACCURACY_BAR_POINTS`. The acceptance bar: robench at least
:data:`SPEEDUP_BAR` times faster and never more than :data:`ACCURACY_BAR_POINTS` points
above the peer in any cell.

Run: ``python3 -m benchmarks worst-case --out worst_case.json [--quick] [--rounds 3]
[--attack-steps S --targets T --queries Q]``.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from benchmarks.attack_matrix import _frozen, _interleaved, _narrow, build_dataset, build_members
from benchmarks.common import ratio, sync, timed
from robench.attacks.square import SQUARE_P_INIT
from robench.evaluate import attack_runner
from robench.evaluate.attack_runner import EPS_GRIDS, AttackPlan, run_attack_plan
from robench.store import ResultStore

ENSEMBLE = "aa"
STAGES = ("apgd-ce", "apgd-t", "square")  # the ensemble's members, in order
PEER_STAGES = ("APGD", "APGDT", "Square")  # torchattacks' classes running them
SPEEDUP_BAR = 2.0  # torchattacks/robench wall time at least this
ACCURACY_BAR_POINTS = 0.5  # robench's robust accuracy at most this many points above the peer's, per cell
Cell = tuple[str, float]  # (member, ε)


def _eps_key(value: float) -> str:
    return f"{value:g}"


def _new_work() -> dict[str, Any]:
    return {"s": 0.0, "image_steps": 0, "queries": 0}


# ---- robench -----------------------------------------------------------------------------
def _instrument(attack, record: dict[str, Any], device: torch.device) -> None:
    """Count and time one ensemble instance: its sweeps (``last_sweep_image_steps`` /
    ``last_sweep_queries``), its per-ε calls of the nested sweep and each member's calls,
    keyed by ε. One Python wrapper call per ε, chunk and member of overhead."""
    sweep, chunked = attack.sweep, attack._chunked
    current: dict[str, str | None] = {"eps": None}

    def counted_sweep(*args, **kwargs):
        out = sweep(*args, **kwargs)
        record["image_steps"] += attack.last_sweep_image_steps
        record["queries"] += attack.last_sweep_queries
        return out

    def timed_call(fn, owner, cell_of):
        def call(model, x, y, eps):
            cell = cell_of(eps)
            grads, queries = owner._grad_rows, owner._query_rows
            sync(device)
            start = time.perf_counter()
            out = fn(model, x, y, eps)
            sync(device)
            cell["s"] += time.perf_counter() - start
            cell["image_steps"] += owner._grad_rows - grads
            cell["queries"] += owner._query_rows - queries
            cell["points"] = cell.get("points", 0) + len(x)
            return out
        return call

    def eps_cell(eps):
        current["eps"] = _eps_key(eps[0]) if eps else None
        return record["per_eps"].setdefault(current["eps"], {**_new_work(), "stages": {}})

    attack.sweep = counted_sweep
    attack._chunked = timed_call(chunked, attack, eps_cell)
    for member in attack.members:
        def stage_cell(eps, name=member.name):
            return record["per_eps"][current["eps"]]["stages"].setdefault(name, _new_work())
        member._chunked = timed_call(member._chunked, member, stage_cell)


@contextmanager
def _counted(device: torch.device) -> Iterator[dict[str, Any]]:
    """Instrument every ensemble the runner creates (see :func:`_instrument`)."""
    original = attack_runner.create_attack
    record: dict[str, Any] = {"image_steps": 0, "queries": 0, "per_eps": {}}

    def create_attack(*args, **kwargs):
        attack = original(*args, **kwargs)
        if getattr(attack, "nested_eps", False):
            _instrument(attack, record, device)
        return attack

    attack_runner.create_attack = create_attack
    try:
        yield record
    finally:
        attack_runner.create_attack = original



def run_robench(dataset, members, eps, chunk, device, steps: int, targets: int, queries: int, seed: int,
                precision: str = "auto") -> dict[str, Any]:
    """Time robench's white-box ``aa`` plan; its correct counts per (member, ε), per stage,
    its counters and the precision its rows record."""
    plan = AttackPlan("whitebox", attacks=(ENSEMBLE,), eps=list(eps), steps=steps, targets=targets,
                      queries=queries, attack_seed=seed, chunk_size=chunk, precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp))
        with _counted(device) as record:
            seconds, (rows, _) = timed(lambda: run_attack_plan(plan, dataset, members, store), device)
        store.close()
    counts, stages = {}, {}
    for r in rows:
        if r.attack == ENSEMBLE:
            counts[(r.attacker, r.eps)] = r.correct
        elif r.attack.startswith(ENSEMBLE + "@"):
            stages[(r.attacker, r.eps, r.attack.split("@", 1)[1])] = r.correct
    for (member, value), correct in counts.items():
        stages[(member, value, STAGES[-1])] = correct  # the ensemble's own count is the last stage's
    return {"seconds": seconds, "counts": counts, "stages": stages, "clean": {r.defender: r.clean_accuracy
                                                                              for r in rows},
            "image_steps": record["image_steps"], "queries": record["queries"], "per_eps": record["per_eps"],
            "precision": "/".join(sorted({r.precision for r in rows}))}


# ---- torchattacks ------------------------------------------------------------------------
def peer_budgets(steps: int, targets: int, queries: int, seed: int) -> dict[str, dict[str, Any]]:
    """The torchattacks constructor arguments for robench's S, T, Q (besides model and ε)."""
    return {
        "APGD": {"norm": "Linf", "loss": "ce", "steps": steps, "n_restarts": 1, "seed": seed, "rho": 0.75,
                 "eot_iter": 1},
        "APGDT": {"norm": "Linf", "steps": steps, "n_classes": targets + 1, "n_restarts": 1, "seed": seed,
                  "rho": 0.75, "eot_iter": 1},
        "Square": {"norm": "Linf", "n_queries": queries - 2, "p_init": SQUARE_P_INIT, "loss": "margin",
                   "n_restarts": 1, "resc_schedule": True, "seed": seed},
    }


def _multiattack(model, eps: float, budgets: dict[str, dict[str, Any]], cell: dict[str, Any],
                 device: torch.device, state: dict[str, Any]):
    """A MultiAttack of APGD, APGDT, Square at ``eps``; each stage's ``forward`` timed into
    ``cell["stages"]`` with the points it was given (the survivors of the stages before);
    while it runs, ``state["stage"]`` is its record (for the forward hook's counts)."""
    import torchattacks

    attacks = [getattr(torchattacks, name)(model, eps=eps, verbose=False, **budgets[name]) for name in PEER_STAGES]
    for stage, atk in zip(STAGES, attacks):
        forward = atk.forward

        def timed_forward(images, labels, *args, forward=forward, stage=stage, **kwargs):
            work = cell["stages"].setdefault(stage, {**_new_work(), "points": 0})
            state["stage"] = work
            sync(device)
            start = time.perf_counter()
            try:
                out = forward(images, labels, *args, **kwargs)
                sync(device)
            finally:
                state["stage"] = None
            work["s"] += time.perf_counter() - start
            work["points"] += len(images)
            return out

        atk.forward = timed_forward
    return torchattacks.MultiAttack(attacks)


def run_peer(dataset, members, eps, chunk, device, steps: int, targets: int, queries: int,
             seed: int) -> dict[str, Any]:
    """Time the torchattacks loop: per member and ε > 0 one MultiAttack, adversarials per
    chunk, the member evaluated on them; its correct counts per (member, ε) and stage."""
    budgets = peer_budgets(steps, targets, queries, seed)
    record: dict[str, Any] = {"image_steps": 0, "queries": 0, "per_eps": {}}
    state: dict[str, Any] = {"cell": None, "stage": None}

    def hook(module, inputs, output):  # rows of every forward pass of the member
        x = inputs[0]
        key = "image_steps" if torch.is_grad_enabled() and x.requires_grad else "queries"
        record[key] += len(x)
        for work in (state["cell"], state["stage"]):
            if work is not None:
                work[key] += len(x)

    cuda = [device.index or 0] if device.type == "cuda" else []
    seconds, (counts, stages) = timed(
        lambda: _peer_loop(dataset, members, eps, chunk, device, budgets, record, state, hook, cuda), device)
    return {"seconds": seconds, "counts": counts, "stages": stages, "image_steps": record["image_steps"],
            "queries": record["queries"], "per_eps": record["per_eps"], "precision": "fp32"}


def _peer_loop(dataset, members, eps, chunk, device, budgets, record, state, hook, cuda):
    x_all, y_all = dataset.test.x, dataset.test.y
    chunks = [(dataset.to_float(x_all[i: i + chunk]), y_all[i: i + chunk]) for i in range(0, len(y_all), chunk)]
    correct = torch.zeros(len(members), len(eps), dtype=torch.long, device=device)
    counts: dict[Cell, int] = {}
    stages: dict[tuple[str, float, str], int] = {}
    with _frozen(members), torch.random.fork_rng(devices=cuda):  # the peers reseed the global RNG
        for a, member in enumerate(members):
            handle = member.model.register_forward_hook(hook)
            try:
                for e, value in enumerate(eps):
                    if value == 0:  # the clean images
                        for x, y in chunks:
                            correct[a, e] += attack_runner._count_correct(member.model, x, y)
                        continue
                    cell = record["per_eps"].setdefault(_eps_key(value), {**_new_work(), "points": 0, "stages": {}})
                    multi = _multiattack(member.model, value, budgets, cell, device, state)
                    before = {s: w["points"] for s, w in cell["stages"].items()}
                    for x, y in chunks:
                        state["cell"] = cell  # the attack's forward rows, not the evaluation's
                        sync(device)
                        start = time.perf_counter()
                        adv = multi(x, y)
                        sync(device)
                        cell["s"] += time.perf_counter() - start
                        cell["points"] += len(x)
                        state["cell"] = None
                        correct[a, e] += attack_runner._count_correct(member.model, adv, y)
                    given = {s: cell["stages"].get(s, {"points": 0})["points"] - before.get(s, 0) for s in STAGES}
                    for k, stage in enumerate(STAGES[:-1]):  # robust after a stage: given to the next one
                        stages[(member.name, float(value), stage)] = given[STAGES[k + 1]]
            finally:
                handle.remove()
    table = correct.tolist()
    for a, member in enumerate(members):
        for e, value in enumerate(eps):
            counts[(member.name, float(value))] = table[a][e]
            stages[(member.name, float(value), STAGES[-1])] = table[a][e]
            if value == 0:
                for stage in STAGES[:-1]:
                    stages[(member.name, float(value), stage)] = table[a][e]
    return counts, stages


# ---- agreement -----------------------------------------------------------------------------
def agreement(robench: dict[Cell, int], peer: dict[Cell, int], samples: int,
              bar_points: float = ACCURACY_BAR_POINTS) -> dict[str, Any]:
    """Robust accuracy of robench against the peer's, cell by cell, in points (percent of
    ``samples``): how much robench's exceeds the peer's at most (negative: robench is
    lower in every cell), the cells where it exceeds it by more than ``bar_points``, and
    whether every cell of either side has a counterpart."""
    keys = sorted(set(robench) | set(peer))
    both = [k for k in keys if k in robench and k in peer]
    excess = {k: 100.0 * (robench[k] - peer[k]) / samples for k in both}

    def cell(k: Cell) -> dict[str, Any]:
        return {"member": k[0], "eps": k[1], "robench_pct": 100.0 * robench[k] / samples,
                "peer_pct": 100.0 * peer[k] / samples, "excess_points": excess[k]}

    worst = max(both, key=lambda k: excess[k]) if both else None
    over = [cell(k) for k in both if excess[k] > bar_points + 1e-9]
    missing = [{"member": k[0], "eps": k[1], "robench": k in robench, "peer": k in peer}
               for k in keys if k not in excess]
    return {
        "cells": len(keys), "compared": len(both), "identical_cells": sum(robench[k] == peer[k] for k in both),
        "max_excess_points": excess[worst] if worst else None, "max_excess_cell": cell(worst) if worst else None,
        "max_deficit_points": 0.0 - min(excess.values()) if both else None,  # 0.0 - 0.0 is 0.0, not -0.0
        "mean_diff_points": statistics.fmean(excess.values()) if both else None,
        "bar_points": bar_points, "cells_over_bar": over, "missing": missing,
        "within_bar": bool(both) and not over and not missing,
    }


def _accuracy_table(counts: dict[Cell, int], samples: int) -> dict[str, dict[str, float]]:
    """member → ε → robust accuracy in percent."""
    out: dict[str, dict[str, float]] = {}
    for (member, value), c in sorted(counts.items()):
        out.setdefault(member, {})[_eps_key(value)] = 100.0 * c / samples
    return out


def _stage_accuracy(stages: dict[tuple[str, float, str], int], samples: int, models: int,
                    eps) -> dict[str, dict[str, float | None]]:
    """stage → ε → robust accuracy after that stage (percent), averaged over the members."""
    out: dict[str, dict[str, float | None]] = {}
    for stage in STAGES:
        for value in eps:
            cells = [c for (_, e, s), c in stages.items() if s == stage and e == float(value)]
            out.setdefault(stage, {})[_eps_key(value)] = (100.0 * sum(cells) / (len(cells) * samples)
                                                         if len(cells) == models else None)
    return out


# ---- the benchmark -----------------------------------------------------------------------
def _over_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One implementation's rounds: the first round's counts and counters, the median
    seconds per ε and per stage, every round's wall time, whether every round counted alike."""
    first = results[0]
    per_eps = {}
    for key, cell in first["per_eps"].items():
        merged = dict(cell, s=statistics.median(r["per_eps"][key]["s"] for r in results))
        merged["stages"] = {stage: dict(work, s=statistics.median(r["per_eps"][key]["stages"][stage]["s"]
                                                                 for r in results))
                            for stage, work in cell["stages"].items()}
        per_eps[key] = merged
    return {**first, "per_eps": per_eps, "round_walls": [r["seconds"] for r in results],
            "repeatable": all(r["counts"] == first["counts"] and r["stages"] == first["stages"] for r in results)}


def _rounded(work: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in work.items()}


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """Wall times (the median round and every round), the counters, and per attacked ε the
    attack's seconds (median round), work and the points it was given, per stage too."""
    wall = statistics.median(result["round_walls"])
    per_eps = {key: {**_rounded({k: v for k, v in cell.items() if k != "stages"}),
                     "stages": {s: _rounded(w) for s, w in cell["stages"].items()}}
               for key, cell in sorted(result["per_eps"].items(), key=lambda kv: float(kv[0]))}
    return {"wall_s": wall, "wall_s_rounds": result["round_walls"], "repeatable": result["repeatable"],
            "precision": result["precision"], "image_steps": result["image_steps"], "queries": result["queries"],
            "image_steps_per_s": ratio(result["image_steps"], wall),
            "seconds_outside_attacks": wall - sum(c["s"] for c in result["per_eps"].values()),
            "per_eps": per_eps}


def _runners(dataset, members, eps, chunk, device, budget: dict[str, int]) -> dict[str, Callable[[], dict]]:
    return {"robench": functools.partial(run_robench, dataset, members, eps, chunk, device, **budget),
            "torchattacks": functools.partial(run_peer, dataset, members, eps, chunk, device, **budget)}


def run(device: torch.device, models: int = 8, samples: int = 512, eps=None, train_steps: int = 50,
        chunk: int = 0, member_batch: int = 64, steps: int = 25, targets: int = 3, queries: int = 300,
        seed: int = 0, rounds: int = 1, warmup_samples: int = 4) -> dict[str, Any]:
    """The whole benchmark over ``rounds`` interleaved rounds; a JSON-ready dict. ``chunk``
    0: robench's default chunk for the device."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if queries < 3:
        raise ValueError(f"queries must be at least 3 (torchattacks' Square needs an iteration), got {queries}")
    eps = sorted({float(e) for e in (eps if eps is not None else EPS_GRIDS["mnist"])})
    chunk = chunk or attack_runner.DEFAULT_CHUNK.get(device.type, 1024)
    budget = {"steps": steps, "targets": targets, "queries": queries, "seed": seed}
    members = build_members(models, train_steps, device, member_batch)
    dataset = build_dataset(samples, members, device, chunk)
    warm = _narrow(dataset, min(samples, warmup_samples))
    warm_eps = [e for e in eps if e > 0][:1] or eps[:1]  # one attacked ε: every kernel runs
    for warm_up in _runners(warm, members[:1], warm_eps, chunk, device, budget).values():
        warm_up()
    timed_rounds = _interleaved(_runners(dataset, members, eps, chunk, device, budget), rounds)
    results = {label: _over_rounds(runs) for label, runs in timed_rounds.items()}
    rb, ta = results["robench"], results["torchattacks"]

    out: dict[str, Any] = {
        "ensemble": ENSEMBLE, "stages": list(STAGES), "mode": "whitebox", "models": models, "samples": samples,
        "eps": eps, "chunk_size": chunk, "train_steps": train_steps, "member_batch": member_batch, "rounds": rounds,
        "cells": models * len(eps),
        "budgets": {"steps": steps, "targets": targets, "queries": queries, "p_init": SQUARE_P_INIT, "restarts": 1,
                    "seed": seed, "torchattacks": peer_budgets(steps, targets, queries, seed)},
        "peer": "torchattacks.MultiAttack([APGD(loss='ce'), APGDT, Square(loss='margin')]) per member and eps > 0",
        "why_not_autoattack": ("torchattacks' AutoAttack fixes its members' budgets (APGD's default 10 steps, "
                               "Square's 5000 queries, one n_classes for APGD-T and FAB) and adds FAB-T, so it "
                               "cannot run robench's steps/targets/queries; MultiAttack runs the same members on "
                               "the points still robust, as AutoAttack does"),
        "robench_precision": rb["precision"],
        "clean_accuracy": rb["clean"],
    }
    for label, result in results.items():
        out[label] = _summary(result)
    out["ratios"] = {"torchattacks/robench": ratio(out["torchattacks"]["wall_s"], out["robench"]["wall_s"])}
    out["ratios_per_round"] = {"torchattacks/robench": [ratio(p, r) for p, r in zip(ta["round_walls"],
                                                                                     rb["round_walls"])]}
    out["accuracy"] = {label: _accuracy_table(result["counts"], samples) for label, result in results.items()}
    out["mean_accuracy"] = {label: {_eps_key(e): statistics.fmean(t[m][_eps_key(e)] for m in t) for e in eps}
                            for label, t in out["accuracy"].items()}
    out["stage_accuracy"] = {label: _stage_accuracy(result["stages"], samples, models, eps)
                             for label, result in results.items()}
    out["agreement"] = agreement(rb["counts"], ta["counts"], samples)
    zero = out["robench"]["per_eps"].get(_eps_key(0.0))
    if zero is not None:  # robench attacks ε = 0 in full (the ball is {x}); the peer loop counts the clean images
        rest = out["robench"]["wall_s"] - zero["s"]
        out["robench_eps0"] = {"s": zero["s"], "image_steps": zero["image_steps"], "queries": zero["queries"],
                               "derived_wall_s_without": rest,
                               "derived_ratio_without": ratio(out["torchattacks"]["wall_s"], rest)}
    speedup = out["ratios"]["torchattacks/robench"]
    out["acceptance"] = {"speedup_bar": SPEEDUP_BAR, "speedup": speedup,
                         "speedup_met": speedup is not None and speedup >= SPEEDUP_BAR,
                         "accuracy_bar_points": ACCURACY_BAR_POINTS,
                         "max_excess_points": out["agreement"]["max_excess_points"],
                         "accuracy_met": out["agreement"]["within_bar"]}
    out["acceptance"]["met"] = out["acceptance"]["speedup_met"] and out["acceptance"]["accuracy_met"]
    return out


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A few human-readable lines of :func:`run`'s result."""
    b = result["budgets"]
    lines = [f"worst-case: {result['models']} white-box '{result['ensemble']}' runs, N={result['samples']}, "
             f"{len(result['eps'])} eps, S={b['steps']} T={b['targets']} Q={b['queries']}, robench precision "
             f"{result['robench_precision']}, median of {result['rounds']} round(s)"]
    for label in ("robench", "torchattacks"):
        r = result[label]
        rounds = ", ".join(f"{s:.2f}" for s in r["wall_s_rounds"])
        per_eps = ", ".join(f"{k}: {c['s']:.1f}" for k, c in r["per_eps"].items())
        lines.append(f"  {label:13s} {r['wall_s']:9.2f} s  (rounds {rounds}; per eps {per_eps}; "
                     f"{r['image_steps']:,} image-steps, {r['queries']:,} queries)"
                     + ("" if r["repeatable"] else "; counts differ between rounds"))
    for key, value in result["ratios"].items():
        per_round = ", ".join(f"{v:.2f}" if v else "n/a" for v in result["ratios_per_round"][key])
        lines.append(f"  {key}: {value:.2f}x (per round {per_round})" if value else f"  {key}: n/a")
    if "robench_eps0" in result:
        z = result["robench_eps0"]
        lines.append(f"  robench at eps 0: {z['s']:.1f} s, {z['image_steps']:,} image-steps "
                     f"(without it: {z['derived_wall_s_without']:.1f} s, "
                     f"{z['derived_ratio_without'] or 0:.2f}x, derived)")
    a = result["agreement"]
    lines.append(f"  agreement: max excess of robench over torchattacks {a['max_excess_points']:+.2f} points "
                 f"(bar {a['bar_points']}), {len(a['cells_over_bar'])} of {a['cells']} cells over the bar, "
                 f"{a['identical_cells']} identical")
    acc = result["acceptance"]
    lines.append(f"  acceptance: speedup {'met' if acc['speedup_met'] else 'NOT met'}, "
                 f"accuracy {'met' if acc['accuracy_met'] else 'NOT met'}")
    return lines
