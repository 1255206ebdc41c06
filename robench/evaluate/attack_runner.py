"""White-box runs and attacker × defender (black-box, transfer) matrices over ε sweeps.

Each (attacker, attack, ε) adversarial batch is crafted once and every defender is
evaluated on it; the FGSM sweep reuses one gradient sign for every ε and the IFGSM
sweep stacks the ε values into one batch (:meth:`GradientSignAttack.sweep`). The test
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

from robench.attacks import create_attack
from robench.attacks.backends import backend_names, craft
from robench.attacks.base import ATTACKS, GradientSignAttack, check_eps
from robench.device import resolve_precision
from robench.errors import UserError
from robench.evaluate.current import current_attack_records
from robench.evaluate.members import LoadedMember, default_attackers, load_members
from robench.evaluate.schedule import override_label
from robench.evaluate.validity import compute_flags
from robench.losses import create_loss
from robench.models.fast import with_fast_kernels
from robench.store import SANITY, AttackRecord, FlagRecord, ResultStore, RunRecord
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
    num_samples: int = 0  # 0: the whole test set
    chunk_size: int = 0  # test samples per chunk; 0: DEFAULT_CHUNK of the device
    precision: str = "auto"  # of the native attacks' model passes (robench.device.resolve_precision)
    force: bool = False


def parse_eps(text: str) -> list[float]:
    """``"0,0.05,8/255"`` → floats; each must be a number in [0, 1]."""
    values = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            num, _, den = part.partition("/")
            value = float(num) / float(den) if den else float(num)
        except (ValueError, ZeroDivisionError):
            raise UserError(f"epsilon {part!r} is not a number; give values in [0, 1] like 0,0.1 or 8/255") from None
        values.append(check_eps(value))
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
    steps, step_size = attack.schedule(eps)
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
        attack_loss=plan.attack_loss,
        backend=plan.backend,
        eps=eps,
        steps=steps,
        step_size=step_size,
        schedule=override_label(attack.steps, attack.step_size),
        n=n,
        precision=_precision(plan, attacker),
        # how many samples an attack loss that couples them (``model``) couples at once
        coupled_batch=min(plan.chunk_size, n) if attack.loss.couples_batch else None,
        correct=correct,
        clean_correct=clean,
        robench_version=versions()["robench"],
        torch_version=versions()["torch"],
    )


def _precision(plan: AttackPlan, attacker: LoadedMember) -> str:
    """The precision the attacker's gradients are taken in (peers always run fp32)."""
    if plan.backend != "native":
        return "fp32"
    return resolve_precision(plan.precision, next(attacker.model.parameters()).device)


def _craft_sweep(plan, attack, attacker, x, y, eps_values) -> list[torch.Tensor]:
    """One adversarial batch per ε, from the native sweep or a peer backend."""
    if plan.backend == "native":
        return attack.sweep(attacker.model, x, y, eps_values)
    return [craft(plan.backend, attack.name, attacker.model, x, y, e, attack.steps, attack.step_size,
                  plan.attack_loss) for e in eps_values]  # the attack's overrides: none for FGSM


@torch.no_grad()
def _count_correct(model, x, y) -> torch.Tensor:
    return (model(x).argmax(dim=1) == y).sum()


def _attack_cell_block(plan, run_id, dataset, attacker, defenders, attack, eps_values, x_all, y_all, bar,
                       clean_cache) -> list[AttackRecord]:
    """Accuracy of every defender under one attacker's attack at every ε: attack records.

    A defender's clean count on a chunk does not depend on the attacker: it comes from
    ``clean_cache`` {(defender sha256, chunk start): count} after its first evaluation.
    An adversarial batch bit-identical to the clean one (ε = 0) reuses that count.
    """
    n = len(y_all)
    correct = torch.zeros(len(eps_values), len(defenders), dtype=torch.long, device=y_all.device)
    clean = torch.zeros(len(defenders), dtype=torch.long, device=y_all.device)
    for start in range(0, n, plan.chunk_size):
        x = dataset.to_float(x_all[start : start + plan.chunk_size])  # (b, C, H, W) in [0, 1]
        y = y_all[start : start + plan.chunk_size]  # (b,)
        adversarials = _craft_sweep(plan, attack, attacker, x, y, eps_values)
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
    return [
        _record(plan, run_id, dataset, attacker, d, attack, e, n, correct[i][j], clean[j])
        for i, e in enumerate(eps_values)
        for j, d in enumerate(defenders)
    ]


def _model_loss(plan: AttackPlan, attacker: LoadedMember):
    return create_loss(loss_spec_of(attacker.card)) if plan.attack_loss == "model" else None


def _iterative(name: str) -> bool:
    return not ATTACKS.get(name).single_step


def _check_schedule_overrides(plan: AttackPlan) -> None:
    """``--steps`` / ``--step-size`` set the iterative attacks' schedule; a plan of
    single-step attacks only (FGSM: one step of ε) has none to set."""
    if (plan.steps is not None or plan.step_size is not None) and not any(_iterative(a) for a in plan.attacks):
        raise UserError("--steps/--step-size set IFGSM's schedule; add ifgsm to --attacks "
                        "(fgsm is one step of size eps)")


def _attack_for(plan: AttackPlan, name: str, attacker: LoadedMember) -> GradientSignAttack:
    """The plan's attack ``name`` against ``attacker`` (its training loss for attack loss
    ``model``); the schedule overrides go to iterative attacks only."""
    steps, step_size = (plan.steps, plan.step_size) if _iterative(name) else (None, None)
    return create_attack(name, plan.attack_loss, steps, step_size, _model_loss(plan, attacker),
                         max(plan.chunk_size, 1), plan.precision)


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
        "step_size": plan.step_size, "num_samples": n, "batch_size": plan.chunk_size,
        "precision": _precision(plan, attacker),
    }
    return RunRecord.of("attack", config, versions()["robench"])


def run_attack_plan(plan: AttackPlan, dataset, members: list[LoadedMember], store: ResultStore) -> tuple[
        list[AttackRecord], str]:
    """Compute every missing cell of ``plan`` and store its records; returns the new
    records and the run id they are stored under."""
    if plan.backend not in backend_names():
        raise UserError(f"unknown attack backend {plan.backend!r}; valid: {', '.join(backend_names())}")
    eps_values = sorted({check_eps(e) for e in (plan.eps or EPS_GRIDS[dataset.name])})
    x_all, y_all = dataset.test.x, dataset.test.y
    if plan.num_samples:
        x_all, y_all = x_all[: plan.num_samples], y_all[: plan.num_samples]
    n = len(y_all)
    if not plan.chunk_size:
        plan = dataclasses.replace(plan, chunk_size=DEFAULT_CHUNK.get(y_all.device.type, 1024))
    _check_schedule_overrides(plan)
    pairs = _pairs(plan, _fast_members(members))
    run_id = store.save_run(_run(plan, dataset, eps_values, n, pairs[0][0]))
    done = set() if plan.force else store.cells(AttackRecord)
    todo = []
    for attacker, defenders in pairs:
        for name in plan.attacks:
            attack = _attack_for(plan, name, attacker)
            probe = [_record(plan, run_id, dataset, attacker, d, attack, e, n, 0, 0)
                     for e in eps_values for d in defenders]
            if any(r.cell not in done for r in probe):
                todo.append((attacker, defenders, name))
    chunks = -(-n // plan.chunk_size)
    records: list[AttackRecord] = []
    clean_cache: dict[tuple[str, int], torch.Tensor] = {}
    with tqdm(total=len(todo) * chunks, desc=f"{plan.mode} {dataset.name}", unit="batch", disable=None) as bar:
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
    results_dir = Path(results_dir) if results_dir else Path("reports") / dataset_name / "results"
    with ResultStore(results_dir) as store:
        target = resolve_device(device)
        members = load_members(zoo_dir, dataset_name, None, target)
        dataset = load_dataset(dataset_name, data_root).to(target)
        records, run_id = run_attack_plan(plan, dataset, members, store)
        if plan.mode == "whitebox" and plan.backend == "native":
            records += run_attack_plan(sanity_plan(plan, plan.num_samples or len(dataset.test)), dataset, members,
                                       store)[0]
        current, _ = current_attack_records(store.records(AttackRecord), {m.name: m.sha256 for m in members})
        flags = [FlagRecord(run_id=run_id, flag=f["flag"], passed=f["passed"], scope=f["scope"], detail=f["detail"])
                 for f in compute_flags(current)]
        store.replace_all(FlagRecord, flags)
    return records, flags


def sanity_plan(plan: AttackPlan, num_samples: int) -> AttackPlan:
    """White-box IFGSM at ε = 1 on the first min(256, ``num_samples``) test samples:
    the ``large_eps_to_chance`` check."""
    return AttackPlan(SANITY, ("ifgsm",), (1.0,), defenders=plan.defenders,
                      attack_loss=plan.attack_loss, num_samples=min(SANITY_SAMPLES, num_samples),
                      chunk_size=plan.chunk_size, precision=plan.precision, force=plan.force)
