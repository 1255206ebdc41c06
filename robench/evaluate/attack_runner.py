"""White-box runs and attacker × defender (black-box, transfer) matrices over ε sweeps.

Each (attacker, attack, ε) adversarial batch is crafted once and every defender is
evaluated on it; an attack's ε-sweep takes the cheapest strategy its properties allow
(:mod:`robench.attacks.sweeps`: FGSM shares one gradient, IFGSM shares prefixes, the
worst-case ensembles attack each ε only on the survivors of the smaller ones). The test
set is processed in chunks, so memory stays bounded, and correct counts stay on the
device until a cell is finished.

Each finished (attacker, attack) block of cells is one transaction of attack records
in the results folder's store (:class:`robench.store.ResultStore`), under the run id of
the plan's configuration; a re-run skips the cells stored already, ``force``
recomputes them.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from robench.attacks import ATTACK_LOSSES, ATTACKS, Attack, create_attack
from robench.attacks.backends import backend_names, peer_attack
from robench.attacks.checks import check_eps
from robench.attacks.norms import get_norm
from robench.bounds import MAX_BATCH_SIZE, MAX_EPS_VALUES, MAX_SAMPLES, above_bound, shown_count
from robench.config import LossSpec
from robench.determinism import determinism_settings, settings_text, thread_count
from robench.device import resolve_precision
from robench.errors import UserError, quoted
from robench.evaluate.current import current_attack_records
from robench.evaluate.members import LoadedMember, default_attackers, load_members
from robench.evaluate.schedule import options_label
from robench.evaluate.masking import SATURATION_LOSSES, saturation_flag, zero_gradient_fraction
from robench.evaluate.validity import compute_flags
from robench.losses import create_loss
from robench.models.fast import with_fast_kernels
from robench.store import SANITY, AttackRecord, FlagRecord, ResultStore, RunRecord
from robench.store.progress import RunMarker
from robench.zoo import loss_spec_of, versions

log = logging.getLogger(__name__)

SANITY_SAMPLES = 256
EPS_GRIDS = {
    "digits": tuple(round(0.05 * i, 2) for i in range(7)),
    "mnist": tuple(round(0.05 * i, 2) for i in range(7)),
    "fashion-mnist": tuple(round(0.05 * i, 2) for i in range(7)),
    "cifar10": tuple(2 * i / 255 for i in range(9)),
    "imagenet32": tuple(2 * i / 255 for i in range(9)),
}
# The ε at which the pipeline's convergence check doubles the worst case's steps: on the
# quick zoos, where the paper's attacks leave accuracy in the middle of its range.
CHECKED_EPS = {"digits": 0.1, "mnist": 0.15, "fashion-mnist": 0.1, "cifar10": 4 / 255, "imagenet32": 4 / 255}
# L2 budgets: 0 to 3 on the 28×28 grey images (Madry et al.'s MNIST L2 range), 0 to 1.5 on
# the 8×8 digits (an image of 64 pixels has √(64/784) ≈ 0.29 of MNIST's diameter), 0 to 1
# on 32×32 colour images (RobustBench's CIFAR-10 L2 ε = 0.5 in the middle).
EPS_GRIDS_L2 = {
    "digits": tuple(round(0.25 * i, 2) for i in range(7)),
    "mnist": tuple(round(0.5 * i, 2) for i in range(7)),
    "fashion-mnist": tuple(round(0.5 * i, 2) for i in range(7)),
    "cifar10": tuple(round(0.125 * i, 3) for i in range(9)),
    "imagenet32": tuple(round(0.125 * i, 3) for i in range(9)),
}
MODES = ("whitebox", "blackbox")
# Test samples attacked together. On a CPU, input gradients of mnist-cnn cost least per
# image at 128-256 rows (0.59 ms; 0.96 ms at 1024, where activations outgrow the caches);
# the CUDA figure keeps a WRN-28-2 chunk's bf16 activations for the input gradient within
# a few GiB. --batch-size overrides both.
DEFAULT_CHUNK = {"cpu": 256, "cuda": 4096}


@dataclass
class AttackPlan:
    """What one ``robench attack`` invocation computes (``mode`` ``sanity``: the ε = 1
    white-box cells of :func:`sanity_plan`)."""

    mode: str
    attacks: Sequence[str] = ("fgsm", "ifgsm")
    eps: Sequence[float] | None = None
    attacker: str | None = None  # None: the default; "all": the full matrix
    defenders: Sequence[str] | None = None
    attack_loss: str = "ce"
    backend: str = "native"
    steps: int | None = None
    step_size: float | None = None
    restarts: int | None = None
    queries: int | None = None
    targets: int | None = None
    attack_seed: int | None = None  # seed of the random attacks (None: 0)
    num_samples: int = 0  # 0: the whole test set
    chunk_size: int = 0  # test samples per chunk; 0: DEFAULT_CHUNK of the device
    precision: str = "auto"  # of the native attacks' model passes (robench.device.resolve_precision)
    force: bool = False


def parse_eps(text: str) -> list[float]:
    """``"0,0.05,8/255"`` → floats, each a finite number >= 0 (each attack checks its own
    norm's range: [0, 1] for L∞), at most :data:`~robench.bounds.MAX_EPS_VALUES` of them
    (counted before any is parsed)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) > MAX_EPS_VALUES:
        raise UserError(above_bound("--eps", f"{len(parts):,}", MAX_EPS_VALUES, "values"))
    values = []
    for part in parts:
        try:
            num, _, den = part.partition("/")
            value = float(num) / float(den) if den else float(num)
        except (ValueError, ZeroDivisionError):
            raise UserError(f"epsilon {quoted(part)} is not a number; give values in [0, 1] like 0,0.1 "
                            "or 8/255") from None
        values.append(check_eps(value, upper=float("inf")))
    if not values:
        raise UserError("no epsilon given; give values in [0, 1] like 0,0.1,0.2")
    return sorted(set(values))


def _pairs(plan: AttackPlan, members: list[LoadedMember]) -> list[tuple[LoadedMember, list[LoadedMember]]]:
    """(attacker, defenders) pairs of the plan. White-box: every member (or each of
    ``defenders``) attacks itself. Black-box: the zoo's attackers (or ``attacker``; every
    member with ``all``) attack its defenders (or ``defenders``; every member with ``all``)."""
    by_name = {m.name: m for m in members}
    unknown = [n for n in plan.defenders or () if n not in by_name]
    if unknown:
        raise UserError(f"unknown defender {unknown[0]!r}; valid: {', '.join(by_name)}")
    if plan.mode in ("whitebox", SANITY):
        return [(m, [m]) for m in ([by_name[n] for n in plan.defenders] if plan.defenders else members)]
    if plan.attacker == "all":
        attackers = members
    elif plan.attacker:
        if plan.attacker not in by_name:
            raise UserError(f"unknown attacker {plan.attacker!r}; valid: all, {', '.join(by_name)}")
        attackers = [by_name[plan.attacker]]
    else:
        attackers = default_attackers(members)
    if plan.defenders:
        defenders = [by_name[n] for n in plan.defenders]
    elif plan.attacker == "all":
        defenders = members
    else:
        defenders = [m for m in members if m.card.get("role") != "attacker" and m not in attackers]
    return [(a, defenders) for a in attackers]


def _record(plan, run_id, dataset, attacker, defender, attack, eps, n, correct, clean) -> AttackRecord:
    budget = attack.budget(eps)
    d_loss = defender.card["loss"]
    return AttackRecord(
        run_id=run_id,
        dataset=dataset.name,
        mode=SANITY if plan.mode == SANITY else "whitebox" if attacker is defender else "blackbox",
        attacker=attacker.name,
        attacker_sha256=attacker.sha256,
        attacker_loss=attacker.card["loss"]["name"],
        attacker_seed=attacker.card["seed"],
        defender=defender.name,
        defender_sha256=defender.sha256,
        defender_loss=d_loss["name"],
        defender_bound=d_loss["bound"],
        defender_delta=d_loss["delta"],
        defender_head=defender.card["head"],
        defender_seed=defender.card["seed"],
        split_hash=dataset.split_hash,
        num_classes=dataset.num_classes,
        attack=attack.name,
        attack_loss=attack.loss.name,
        backend=plan.backend,
        norm=attack.norm.name,
        eps=eps,
        steps=budget.steps,
        step_size=budget.step_size,
        schedule=options_label(_options_for(plan, attack.name)),
        restarts=budget.restarts,
        queries=budget.queries,
        attack_seed=budget.seed,
        n=n,
        precision=_precision(plan, attacker),
        # how many samples an attack loss that couples them (``model``) couples at once
        coupled_batch=min(plan.chunk_size, n) if attack.loss.couples_batch else None,
        correct=correct,
        clean_correct=clean,
        threads=thread_count(),
        determinism=settings_text(determinism_settings()),
        robench_version=versions()["robench"],
        torch_version=versions()["torch"],
    )


def _precision(plan: AttackPlan, attacker: LoadedMember) -> str:
    """The precision the attacker's gradients are taken in (peers always run fp32)."""
    if plan.backend != "native":
        return "fp32"
    return resolve_precision(plan.precision, next(attacker.model.parameters()).device)


@torch.no_grad()
def _count_correct(model, x, y) -> torch.Tensor:
    return (model(x).argmax(dim=1) == y).sum()


def _attack_cell_block(plan, run_id, dataset, attacker, defenders, attack, eps_values, x_all, y_all, bar,
                       clean_cache) -> list[AttackRecord]:
    """Accuracy of every defender under one attacker's attack at every ε: attack records.

    A defender's clean count on a chunk does not depend on the attacker: it comes from
    ``clean_cache`` {(defender sha256, chunk start): count} after its first evaluation.
    An adversarial batch bit-identical to the clean one (ε = 0) reuses that count.
    A worst-case ensemble (white-box) adds one record per member but the last, attack
    ``<ensemble>@<member>``: the robust accuracy after the members up to that one.
    """
    n = len(y_all)
    correct = torch.zeros(len(eps_values), len(defenders), dtype=torch.long, device=y_all.device)
    clean = torch.zeros(len(defenders), dtype=torch.long, device=y_all.device)
    stages = attack.stage_names() if attack.nested_eps else []
    robust_after: dict[tuple[float, int], int] = {}
    for start in range(0, n, plan.chunk_size):
        x = dataset.to_float(x_all[start : start + plan.chunk_size])  # (b, C, H, W) in [0, 1]
        y = y_all[start : start + plan.chunk_size]  # (b,)
        if stages:
            attack.robust_after = {}
        adversarials = attack.sweep(attacker.model, x, y, eps_values)
        for key, count in (attack.robust_after.items() if stages else ()):
            robust_after[key] = robust_after.get(key, 0) + count
        unchanged = [e == 0 and torch.equal(adv, x) for e, adv in zip(eps_values, adversarials)]
        for j, defender in enumerate(defenders):
            key = (defender.sha256, start)
            if key not in clean_cache:
                clean_cache[key] = _count_correct(defender.model, x, y)
            clean[j] += clean_cache[key]
            for i, x_adv in enumerate(adversarials):
                correct[i, j] += clean_cache[key] if unchanged[i] else _count_correct(defender.model, x_adv, y)
        bar.update(1)
    correct, clean = correct.tolist(), clean.tolist()
    records = [
        _record(plan, run_id, dataset, attacker, d, attack, e, n, correct[i][j], clean[j])
        for i, e in enumerate(eps_values)
        for j, d in enumerate(defenders)
    ]
    for k, stage in enumerate(stages):  # white-box: the one defender is the attacker
        records += [dataclasses.replace(_record(plan, run_id, dataset, attacker, attacker, attack, e, n,
                                                robust_after.get((e, k), 0), clean[0]), attack=stage)
                    for e in eps_values]
    return records


def _model_loss(plan: AttackPlan, attacker: LoadedMember | None):
    """The attacker's training loss for attack loss ``model`` (CE stands in without an
    attacker: :func:`check_plan` builds the attacks before any member is loaded)."""
    if plan.attack_loss != "model":
        return None
    return create_loss(loss_spec_of(attacker.card) if attacker is not None else LossSpec("ce"))


#: Plan options → the attack option they set.
PLAN_OPTIONS = ("steps", "step_size", "restarts", "queries", "targets")


def _options_for(plan: AttackPlan, name: str) -> dict:
    """The plan's budget options that attack ``name`` takes (``--steps`` sets IFGSM's and
    PGD's steps, ``--queries`` Square's budget, ...)."""
    taken = getattr(ATTACKS.get(name), "OPTIONS", ())
    return {k: getattr(plan, k) for k in PLAN_OPTIONS if getattr(plan, k) is not None and k in taken}


def _check_plan(plan: AttackPlan) -> None:
    """Every budget option is taken by some attack of the plan, the attacks share a norm,
    and the worst-case ensembles (white-box evaluations) run white-box."""
    for option in PLAN_OPTIONS:
        if getattr(plan, option) is not None and not any(option in getattr(ATTACKS.get(a), "OPTIONS", ())
                                                         for a in plan.attacks):
            takers = [a for a in ATTACKS.names() if option in getattr(ATTACKS.get(a), "OPTIONS", ())]
            flag = "--" + option.replace("_", "-")
            raise UserError(f"no attack of --attacks {','.join(plan.attacks)} takes {flag}; "
                            f"attacks that take it: {', '.join(takers)}")
    norms = {ATTACKS.get(a).norm_name for a in plan.attacks}
    if len(norms) > 1:
        raise UserError(f"--attacks {','.join(plan.attacks)} mixes the norms {', '.join(sorted(norms))}; "
                        "one run attacks under one norm (its ε grid)")
    nested = [a for a in plan.attacks if ATTACKS.get(a).nested_eps]
    if nested and plan.mode == "blackbox":
        raise UserError(f"{nested[0]!r} is a white-box worst case over attacks on the defender itself; "
                        "run it with --whitebox")


def check_plan(plan: AttackPlan) -> None:
    """What needs neither data nor members, before anything is loaded or written: the
    mode, backend, attacks and attack loss are known, ``attacker`` comes with a black-box
    run, the budget options fit the attacks (:func:`_check_plan`), and every attack can be
    built with the plan's loss, options and backend."""
    if plan.mode not in (*MODES, SANITY):
        raise UserError(f"unknown mode {plan.mode!r}; valid: {', '.join(MODES)}")
    if plan.backend not in backend_names():
        raise UserError(f"unknown attack backend {plan.backend!r}; valid: {', '.join(backend_names())}")
    if not plan.attacks:
        raise UserError(f"no attack given; valid: {', '.join(ATTACKS.names())}")
    if plan.attacker is not None and plan.mode != "blackbox":
        raise UserError(f"--attacker {plan.attacker!r} applies to --blackbox runs only (in a white-box run each "
                        "member attacks itself); drop it or use --blackbox")
    _check_plan(plan)
    _check_bounds(plan)
    ATTACK_LOSSES.get(plan.attack_loss)
    for name in plan.attacks:
        _attack_for(plan, name, None)


def _check_bounds(plan: AttackPlan) -> None:
    """The plan's counts within their bounds (:mod:`robench.bounds`; the attacks check their
    own options): ε values, attacked test images and the chunk size."""
    counts = (("--eps", len(plan.eps or ()), MAX_EPS_VALUES, "values"), ("--num-samples", plan.num_samples,
              MAX_SAMPLES, ""), ("--batch-size", plan.chunk_size, MAX_BATCH_SIZE, ""))
    for option, count, bound, unit in counts:
        if count > bound:
            raise UserError(above_bound(option, shown_count(count), bound, unit))


def check_plan_data(plan: AttackPlan, dataset) -> list[float]:
    """The plan's ε values (the dataset's grid of the plan's norm by default), each
    checked against the norm's range on the dataset's images; ``targets`` and
    ``num_samples`` checked against its classes and test images."""
    grids = EPS_GRIDS_L2 if plan_norm(plan) == "l2" else EPS_GRIDS
    eps_values = sorted(set(plan.eps if plan.eps is not None else grids[dataset.name]))
    norm = get_norm(plan_norm(plan))
    for eps in eps_values:
        norm.check_eps(eps, dataset.to_float(dataset.test.x[:1]))
    others = dataset.num_classes - 1
    if plan.targets is not None and plan.targets > others:
        raise UserError(f"--targets {plan.targets} is more than the {others} classes besides the true one "
                        f"that {dataset.name} has; give at most {others}")
    if plan.num_samples > len(dataset.test):
        raise UserError(f"--num-samples {plan.num_samples} is more than the {len(dataset.test)} test images of "
                        f"{dataset.name}; give at most {len(dataset.test)}, or 0 for all")
    return eps_values


def plan_norm(plan: AttackPlan) -> str:
    """The norm every attack of ``plan`` attacks under."""
    return ATTACKS.get(plan.attacks[0]).norm_name


def _attack_for(plan: AttackPlan, name: str, attacker: LoadedMember | None) -> Attack:
    """The plan's attack ``name`` against ``attacker`` (its training loss for attack loss
    ``model``), with the plan's budget options it takes, run by the plan's backend. An
    attack with a loss of its own (APGD-DLR, Square) ignores the plan's default ``ce``."""
    own_loss = ATTACKS.get(name).fixed_loss
    if own_loss is not None and plan.attack_loss != "ce":
        raise UserError(f"attack {name!r} ascends its own {own_loss} loss; --attack-loss {plan.attack_loss} "
                        "applies to fgsm, ifgsm, fgm, pgd and the ensembles")
    attack = create_attack(name, loss=None if own_loss else plan.attack_loss, model_loss=_model_loss(plan, attacker),
                           batch_size=max(plan.chunk_size, 1), precision=plan.precision, seed=plan.attack_seed,
                           **_options_for(plan, name))
    return peer_attack(plan.backend, attack)


def _fast_members(members: list[LoadedMember]) -> list[LoadedMember]:
    """``members`` whose models compute max-pools with the bit-exact faster kernels of
    :mod:`robench.models.fast`: same parameters, same outputs and input gradients."""
    return [dataclasses.replace(m, model=with_fast_kernels(m.model)) for m in members]


def _run(plan: AttackPlan, dataset, eps_values: list[float], n: int, attacker: LoadedMember) -> RunRecord:
    """The stored configuration of ``plan`` on ``dataset``, everything resolved."""
    config = {
        "dataset": dataset.name, "mode": plan.mode, "attacks": list(plan.attacks), "eps": eps_values,
        "attacker": plan.attacker, "defenders": list(plan.defenders) if plan.defenders else None,
        "attack_loss": plan.attack_loss, "backend": plan.backend, "steps": plan.steps,
        "step_size": plan.step_size, "restarts": plan.restarts, "queries": plan.queries, "targets": plan.targets,
        "attack_seed": plan.attack_seed, "num_samples": n, "batch_size": plan.chunk_size,
        "precision": _precision(plan, attacker),
    }
    return RunRecord.of("attack", config, versions()["robench"])


def run_attack_plan(plan: AttackPlan, dataset, members: list[LoadedMember], store: ResultStore) -> tuple[
        list[AttackRecord], str]:
    """Compute every missing cell of ``plan`` and store its records; returns the new
    records and the run id they are stored under."""
    check_plan(plan)
    eps_values = check_plan_data(plan, dataset)
    x_all, y_all = dataset.test.x, dataset.test.y
    if plan.num_samples:
        x_all, y_all = x_all[: plan.num_samples], y_all[: plan.num_samples]
    n = len(y_all)
    if not plan.chunk_size:
        plan = dataclasses.replace(plan, chunk_size=DEFAULT_CHUNK.get(y_all.device.type, 1024))
    pairs = _pairs(plan, _fast_members(members))
    run_id = store.save_run(_run(plan, dataset, eps_values, n, pairs[0][0]))
    done = set() if plan.force else store.cells(AttackRecord)
    todo, planned = [], {}
    for attacker, defenders in pairs:
        for name in plan.attacks:
            attack = _attack_for(plan, name, attacker)
            probe = [_record(plan, run_id, dataset, attacker, d, attack, e, n, 0, 0)
                     for e in eps_values for d in defenders]
            planned.update({r.cell: f"{r.attack} {r.attacker} -> {r.defender} at eps {r.eps:g}" for r in probe})
            if any(r.cell not in done for r in probe):
                todo.append((attacker, defenders, name))
    chunks = -(-n // plan.chunk_size)
    records: list[AttackRecord] = []
    clean_cache: dict[tuple[str, int], torch.Tensor] = {}
    with RunMarker(store.results_dir, run_id, planned), tqdm(
            total=len(todo) * chunks, desc=f"{plan.mode} {dataset.name}", unit="batch", disable=None) as bar:
        for attacker, defenders, name in todo:
            attack = _attack_for(plan, name, attacker)
            bar.set_postfix(attacker=attacker.name, attack=name)
            try:
                block = _attack_cell_block(plan, run_id, dataset, attacker, defenders, attack, eps_values, x_all,
                                           y_all, bar, clean_cache)
            except torch.cuda.OutOfMemoryError:
                raise UserError(f"out of GPU memory attacking {plan.chunk_size} samples at once; "
                                "pass a smaller --batch-size") from None
            store.append(block, replace=plan.force)
            records.extend(block)
    return records, run_id


def run_attacks(
    dataset_name: str,
    plan: AttackPlan,
    zoo_dir: Path = Path("zoo"),
    results_dir: Path | None = None,
    device: str = "auto",
    data_root: Path = Path("data"),
) -> tuple[list[AttackRecord], list[FlagRecord]]:
    """Load data and members, run ``plan`` (plus the ε = 1 sanity cells of a native
    white-box run), recompute the validity flags of the stored cells that describe the
    zoo now (:func:`current_attack_records`) and store them; returns the new records
    and all flags."""
    from robench.data import DATASETS, load_dataset
    from robench.device import resolve_device

    DATASETS.get(dataset_name)
    if plan.mode not in MODES:
        raise UserError(f"unknown mode {plan.mode!r}; valid: {', '.join(MODES)}")
    check_plan(plan)  # every check before anything is loaded or written
    results_dir = Path(results_dir) if results_dir else Path("reports") / dataset_name / "results"
    with ResultStore(results_dir) as store:
        target = resolve_device(device)
        dataset = load_dataset(dataset_name, data_root).to(target)
        check_plan_data(plan, dataset)
        members = load_members(zoo_dir, dataset_name, None, target)
        records, run_id = run_attack_plan(plan, dataset, members, store)
        if plan.mode == "whitebox" and plan.backend == "native":
            records += run_attack_plan(sanity_plan(plan, plan.num_samples or len(dataset.test)), dataset, members,
                                       store)[0]
        current, _ = current_attack_records(store.records(AttackRecord), {m.name: m.sha256 for m in members})
        computed = compute_flags(current) + saturation_flags(current, members, dataset, plan.num_samples)
        flags = [FlagRecord(run_id=run_id, flag=f["flag"], passed=f["passed"], scope=f["scope"], detail=f["detail"])
                 for f in computed]
        store.replace_all(FlagRecord, flags)
    return records, flags


def saturation_flags(current: list[AttackRecord], members: list[LoadedMember], dataset,
                     num_samples: int) -> list[dict]:
    """``gradient_saturation`` of every member with white-box records, under each attack
    loss of those records that has an input gradient (:data:`SATURATION_LOSSES`), on the
    test images the records used (the first ``num_samples``, or all)."""
    by_name = {m.name: m for m in members}
    losses = sorted({(r.defender, r.attack_loss, r.n) for r in current
                     if r.mode == "whitebox" and r.attack_loss in SATURATION_LOSSES and r.defender in by_name})
    flags = []
    for name, loss, n in losses:
        member = by_name[name]
        x = dataset.to_float(dataset.test.x[:n])  # (n, C, H, W)
        model_loss = create_loss(loss_spec_of(member.card)) if loss == "model" else None
        fraction = zero_gradient_fraction(member.model, x, dataset.test.y[:n], loss, model_loss)
        flags.append(saturation_flag(name, loss, fraction, n))
    return flags


def sanity_plan(plan: AttackPlan, num_samples: int) -> AttackPlan:
    """White-box IFGSM at ε = 1 on the first min(256, ``num_samples``) test samples:
    the ``large_eps_to_chance`` check."""
    return AttackPlan(SANITY, ("ifgsm",), (1.0,), defenders=plan.defenders,
                      attack_loss=plan.attack_loss, num_samples=min(SANITY_SAMPLES, num_samples),
                      chunk_size=plan.chunk_size, precision=plan.precision, force=plan.force)
