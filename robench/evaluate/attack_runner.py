"""White-box runs and attacker × defender (black-box, transfer) matrices over ε sweeps.

Each (attacker, attack, ε) adversarial batch is crafted once and every defender is
evaluated on it; the FGSM sweep reuses one gradient sign for every ε and the IFGSM
sweep stacks the ε values into one batch (:meth:`GradientSignAttack.sweep`). The test
set is processed in chunks, so memory stays bounded, and correct counts stay on the
device until a cell is finished.

Rows (long format) go to ``<results_dir>/attacks.csv``, keyed by the member hashes and
the attack parameters: a re-run skips finished cells, ``force`` recomputes them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from robench.attacks import create_attack
from robench.attacks.backends import backend_names, craft
from robench.attacks.base import ATTACKS, GradientSignAttack, check_eps
from robench.device import resolve_precision
from robench.errors import UserError
from robench.evaluate.current import current_attack_rows
from robench.evaluate.members import LoadedMember, default_attacker, load_members
from robench.evaluate.results import ResultStore
from robench.evaluate.schedule import override_label
from robench.evaluate.validity import SANITY, compute_flags, write_flags
from robench.losses import create_loss
from robench.models.fast import with_fast_kernels
from robench.zoo import loss_spec_of, versions

log = logging.getLogger(__name__)

ATTACK_RESULTS = "attacks.csv"
FLAG_RESULTS = "flags.csv"
SANITY_SAMPLES = 256
FLUSH_SECONDS = 30.0  # finished rows are written at least this often (see _PendingRows)
KEY_COLUMNS = ("experiment", "attacker", "attacker_sha256", "defender", "defender_sha256", "attack", "attack_loss",
               "backend", "eps", "steps", "step_size", "n", "precision", "coupled_batch", "split_hash")
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
    """What one ``robench attack`` invocation computes."""

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
    extra: dict[str, Any] = field(default_factory=dict)


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
    """(attacker, defenders) pairs of the plan."""
    by_name = {m.name: m for m in members}
    unknown = [n for n in plan.defenders or () if n not in by_name]
    if unknown:
        raise UserError(f"unknown defender {unknown[0]!r}; valid: {', '.join(by_name)}")
    defenders = [by_name[n] for n in plan.defenders] if plan.defenders else members
    if plan.mode == "whitebox":
        return [(m, [m]) for m in defenders]
    if plan.attacker == "all":
        return [(a, defenders) for a in members]
    if plan.attacker:
        if plan.attacker not in by_name:
            raise UserError(f"unknown attacker {plan.attacker!r}; valid: all, {', '.join(by_name)}")
        attacker = by_name[plan.attacker]
    else:
        attacker = default_attacker(members)
    return [(attacker, [d for d in defenders if d is not attacker] or defenders)]


def _row(plan, dataset, attacker, defender, attack, eps, n, correct, clean) -> dict[str, Any]:
    steps, step_size = attack.schedule(eps)
    d_loss = defender.card["loss"]
    return {
        "experiment": "whitebox" if attacker is defender else "blackbox",
        "dataset": dataset.name,
        "attacker": attacker.name,
        "defender": defender.name,
        "attack": attack.name,
        "attack_loss": plan.attack_loss,
        "backend": plan.backend,
        "eps": eps,
        "steps": steps,
        "step_size": step_size,
        "n": n,
        "precision": _precision(plan, attacker),
        "schedule": override_label(attack.steps, attack.step_size),
        # how many samples an attack loss that couples them (``model``) couples at once; blank otherwise
        "coupled_batch": min(plan.chunk_size, n) if attack.loss.couples_batch else "",
        "correct": correct,
        "accuracy": correct / n,
        "clean_correct": clean,
        "clean_accuracy": clean / n,
        "repeat": 0,
        "num_classes": dataset.num_classes,
        "defender_loss": d_loss["name"],
        "defender_bound": d_loss["bound"],
        "defender_delta": d_loss["delta"],
        "defender_head": defender.card["head"],
        "attacker_loss": attacker.card["loss"]["name"],
        "attacker_seed": attacker.card["seed"],
        "defender_seed": defender.card["seed"],
        "attacker_sha256": attacker.sha256,
        "defender_sha256": defender.sha256,
        "split_hash": dataset.split_hash,
        "robench_version": versions()["robench"],
        "torch_version": versions()["torch"],
        **plan.extra,
    }


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


def _attack_cell_block(plan, dataset, attacker, defenders, attack, eps_values, x_all, y_all, bar, clean_cache):
    """Accuracy of every defender under one attacker's attack at every ε: result rows.

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
        _row(plan, dataset, attacker, d, attack, e, n, correct[i][j], clean[j])
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


def run_attack_plan(plan: AttackPlan, dataset, members: list[LoadedMember], store: ResultStore) -> list[dict]:
    """Compute every missing cell of ``plan`` and append its rows to ``store``."""
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
    done = set() if plan.force else store.done_keys()
    todo = []
    for attacker, defenders in pairs:
        for name in plan.attacks:
            attack = _attack_for(plan, name, attacker)
            probe = [_row(plan, dataset, attacker, d, attack, e, n, 0, 0) for e in eps_values for d in defenders]
            if any(store.key_of(r) not in done for r in probe):
                todo.append((attacker, defenders, name))
    chunks = -(-n // plan.chunk_size)
    rows: list[dict] = []
    clean_cache: dict[tuple[str, int], torch.Tensor] = {}
    with tqdm(total=len(todo) * chunks, desc=f"{plan.mode} {dataset.name}", unit="batch", disable=None) as bar, \
            _PendingRows(store) as pending:
        for attacker, defenders, name in todo:
            attack = _attack_for(plan, name, attacker)
            bar.set_postfix(attacker=attacker.name, attack=name)
            try:
                block = _attack_cell_block(plan, dataset, attacker, defenders, attack, eps_values, x_all, y_all,
                                           bar, clean_cache)
            except torch.cuda.OutOfMemoryError:
                raise UserError(f"out of GPU memory attacking {plan.chunk_size} samples at once; "
                                "pass a smaller --batch-size") from None
            pending.add(block)
            rows.extend(block)
    return rows


class _PendingRows:
    """Finished rows on their way to ``store``: written when FLUSH_SECONDS have passed
    since the last write, when the plan ends, and when it stops on an error or an
    interrupt, so at most FLUSH_SECONDS of finished work are lost to a hard kill.

    Each write rewrites the growing CSV atomically. Writing after every (attacker,
    attack) block cost 0.8 s for the 16 blocks of an 8-member matrix on the 2-core box,
    where a GPU crafts and evaluates one such block of 2048 MNIST images in 0.07 s
    (FGSM) to 0.35 s (IFGSM).
    """

    def __init__(self, store: ResultStore) -> None:
        self.store = store
        self.rows: list[dict] = []
        self.last_write = time.monotonic()

    def __enter__(self) -> "_PendingRows":
        return self

    def add(self, block: list[dict]) -> None:
        self.rows.extend(block)
        if time.monotonic() - self.last_write >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.store.append(self.rows, replace=True)
            self.rows = []
        self.last_write = time.monotonic()

    def __exit__(self, *exc_info) -> None:
        self.flush()


def run_attacks(
    dataset_name: str,
    plan: AttackPlan,
    zoo_dir: Path = Path("zoo"),
    results_dir: Path | None = None,
    device: str = "auto",
    data_root: Path = Path("data"),
) -> tuple[list[dict], list[dict]]:
    """Load data and members, run ``plan`` (plus the ε = 1 sanity cells of a native
    white-box run), recompute the validity flags of the stored rows that describe the
    zoo now (:func:`current_attack_rows`) and write them to ``flags.csv``; returns the
    new rows and all flags."""
    from robench.data import DATASETS, load_dataset
    from robench.device import resolve_device

    DATASETS.get(dataset_name)
    if plan.mode not in MODES:
        raise UserError(f"unknown mode {plan.mode!r}; valid: {', '.join(MODES)}")
    target = resolve_device(device)
    members = load_members(zoo_dir, dataset_name, None, target)
    dataset = load_dataset(dataset_name, data_root).to(target)
    results_dir = Path(results_dir) if results_dir else Path("reports") / dataset_name / "results"
    store = ResultStore(results_dir / ATTACK_RESULTS, KEY_COLUMNS)
    rows = run_attack_plan(plan, dataset, members, store)
    if plan.mode == "whitebox" and plan.backend == "native":
        rows += run_attack_plan(sanity_plan(plan, plan.num_samples or len(dataset.test)), dataset, members, store)
    stored = pd.DataFrame(store.rows(), dtype=str).fillna("")  # columns added later: blank in older rows
    current, _ = current_attack_rows(stored, KEY_COLUMNS, {m.name: m.sha256 for m in members})
    flags = compute_flags(current.to_dict("records"))
    write_flags(results_dir / FLAG_RESULTS, flags)
    return rows, flags


def sanity_plan(plan: AttackPlan, num_samples: int) -> AttackPlan:
    """White-box IFGSM at ε = 1 on the first min(256, ``num_samples``) test samples:
    the ``large_eps_to_chance`` check."""
    return AttackPlan("whitebox", ("ifgsm",), (1.0,), defenders=plan.defenders,
                      attack_loss=plan.attack_loss, num_samples=min(SANITY_SAMPLES, num_samples),
                      chunk_size=plan.chunk_size, precision=plan.precision, force=plan.force,
                      extra={"experiment": SANITY})
