"""Attack runs: robench's engine against torchattacks and ART loops, in two modes.

Measured: wall time of FGSM and IFGSM (Kurakin: α = 1/255, ⌊min(255ε + 4, 1.25·255ε)⌋
steps) over robench's mnist ε grid, on ``--models`` mnist-cnn members (default 8, one
seed each, each trained ``--train-steps`` Adam steps on synthetic learnable data) and
``--samples`` synthetic test images whose labels are the argmax of the members' mean
logits, as

* ``blackbox`` (the ``attacks`` benchmark): the full attacker × defender matrix, every
  model attacks and every model defends (the diagonal is the white-box cell);
* ``whitebox`` (the ``whitebox`` benchmark): every model attacks itself only, the
  matrix's diagonal, so the crafting weighs more than the evaluation.

Three implementations on the same models and data:

* ``robench``: ``run_attack_plan(AttackPlan(mode, attacker="all" for black-box), ...)``, the path of
  ``robench attack --blackbox --attacker all`` or ``robench attack --whitebox``, with
  in-memory members and a result store in a temporary folder; one plan per attack, so
  each is timed on its own. ``robench attack --whitebox`` also runs the ε = 1 sanity
  cells (IFGSM, 259 steps on at most 256 images per member), a validity check no peer
  makes; they are not part of the comparison.
* ``torchattacks``: per attacker and ε one ``FGSM`` / ``BIM`` object, adversarials made
  once per chunk, every defender (white-box: the attacker) evaluated on them (ε = 0:
  the clean images).
* ``art``: the same loop with one ``PyTorchClassifier`` per attacker and a
  ``FastGradientMethod`` / ``BasicIterativeMethod`` per ε.

All use the same chunks of ``--chunk-size`` test images (default: robench's default
chunk for the device) and the same models (channels_last on CUDA, as robench loads
them). robench runs them as its attack engine does, with the bit-exact max-pool kernels
of ``robench.models.fast``; the peers run the members as given, with the parameters
frozen (as robench's own peer backend does) so they compute no weight gradients. Every
implementation is warmed up on a small slice first. With ``--rounds R`` every
implementation is timed R times in interleaved rounds (round r starts with the r-th
implementation), and the median round is reported beside every round. Agreement: the correct counts per
(attacker, defender, attack, ε) of each peer are compared with robench's
(``agreement``). robench's attacks run bf16 on CUDA (precision ``auto``); there robench
is also timed in fp32 (``robench_fp32``, compared in ``agreement_fp32``) and in bf16
with its single-input-channel convolutions as GEMMs (``robench_im2col``,
``robench.models.im2col``, compared with robench's default bf16 counts in
``agreement_im2col``); the peers always run fp32. Every implementation counts a
defender's clean images once per run. The IFGSM image-steps robench executed come from
the attacks' ``last_sweep_image_steps``.

Run: ``python3 -m benchmarks attacks --out attacks.json [--quick] [--device cuda]``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import statistics
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from benchmarks.common import MNIST_MEAN, MNIST_SHAPE, MNIST_STD, NUM_CLASSES, ratio, synthetic_uint8, timed
from robench.attacks.ifgsm import KURAKIN_STEP_SIZE, kurakin_steps
from robench.data.base import Split, make_dataset
from robench.evaluate import attack_runner
from robench.evaluate.attack_runner import EPS_GRIDS, AttackPlan, run_attack_plan
from robench.evaluate.members import LoadedMember
from robench.store import ResultStore
from robench.models import create_model

ATTACKS = ("fgsm", "ifgsm")
MODES = ("blackbox", "whitebox")
Counts = dict[tuple[str, str, str, float], int]  # (attacker, defender, attack, ε) -> correct


# ---- set-up ------------------------------------------------------------------------------
def _sha256(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def build_members(count: int, train_steps: int, device: torch.device, batch: int = 64) -> list[LoadedMember]:
    """``count`` mnist-cnn members (seeds 0..count-1) briefly trained on synthetic data."""
    x_train, y_train = synthetic_uint8(max(batch * 8, 512), MNIST_SHAPE, seed=10_000)
    x_train, y_train = x_train.to(device), y_train.to(device)
    members = []
    for seed in range(count):
        torch.manual_seed(seed)
        model = create_model("mnist-cnn", NUM_CLASSES, "linear", MNIST_MEAN, MNIST_STD).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(train_steps):
            index = torch.randint(0, len(y_train), (batch,), generator=gen).to(device)
            loss = nn.functional.cross_entropy(model(x_train[index].float() / 255), y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        if device.type == "cuda":  # as robench.evaluate.members.load_members does
            model.to(memory_format=torch.channels_last)
        card = {"loss": {"name": "ce", "bound": "sym", "delta": 1.0}, "head": "linear",
                "seed": seed, "weights_sha256": _sha256(model)}
        members.append(LoadedMember(f"ce-s{seed}", model, card))
    return members


def build_dataset(samples: int, members: list[LoadedMember], device: torch.device, chunk: int):
    """A robench ``Dataset`` named mnist whose test split is ``samples`` synthetic uint8
    images labelled by the argmax of the members' mean logits."""
    x, _ = synthetic_uint8(samples, MNIST_SHAPE, seed=20_000)
    x = x.to(device)
    with torch.no_grad():
        logits = [sum(m.model(x[i : i + chunk].float() / 255) for m in members) for i in range(0, samples, chunk)]
    y = torch.cat(logits).argmax(dim=1)
    tiny = Split(x[:2], y[:2])  # train/val are never read by the attack engine
    dataset = make_dataset("mnist", tiny, tiny, Split(x, y), num_classes=NUM_CLASSES, pixel_max=255.0,
                           mean=MNIST_MEAN, std=MNIST_STD, augment=False)
    return dataset


def _narrow(dataset, samples: int):
    return dataclasses.replace(dataset, test=Split(dataset.test.x[:samples], dataset.test.y[:samples]))


# ---- robench -----------------------------------------------------------------------------
@contextmanager
def _counted_image_steps() -> Iterator[dict[str, int]]:
    """Wrap the runner's ``create_attack`` to sum ``last_sweep_image_steps`` over every
    sweep of the attacks it creates; one Python call per chunk of overhead."""
    original = attack_runner.create_attack
    record = {"steps": 0}

    def create_attack(*args, **kwargs):
        attack = original(*args, **kwargs)
        sweep = attack.sweep

        def counted(*a, **k):
            out = sweep(*a, **k)
            record["steps"] += attack.last_sweep_image_steps
            return out

        attack.sweep = counted
        return attack

    attack_runner.create_attack = create_attack
    try:
        yield record
    finally:
        attack_runner.create_attack = original


@contextmanager
def _im2col_convs() -> Iterator[None]:
    """The attack engine's members with ``with_fast_kernels(..., im2col_convs=True)``."""
    original = attack_runner.with_fast_kernels
    attack_runner.with_fast_kernels = functools.partial(original, im2col_convs=True)
    try:
        yield
    finally:
        attack_runner.with_fast_kernels = original


def run_robench(dataset, members, eps, chunk, device, precision: str = "auto",
                mode: str = "blackbox") -> dict[str, Any]:
    """Time robench's ``mode`` plan (black-box: every attacker) per attack; its correct
    counts, IFGSM image-steps and the precision its rows record."""
    seconds, counts, image_steps, precisions = {}, {}, None, set()
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp))
        for name in ATTACKS:
            plan = AttackPlan(mode, attacks=(name,), eps=list(eps), attacker="all" if mode == "blackbox" else None,
                              chunk_size=chunk, precision=precision)
            with _counted_image_steps() as record:
                seconds[name], (rows, _) = timed(lambda: run_attack_plan(plan, dataset, members, store), device)
            if name == "ifgsm":
                image_steps = record["steps"]
            for r in rows:
                counts[(r.attacker, r.defender, r.attack, r.eps)] = r.correct
                precisions.add(r.precision)
        store.close()
    clean = {r.defender: r.clean_accuracy for r in rows}
    return {"seconds": seconds, "counts": counts, "image_steps": image_steps, "clean": clean,
            "precision": "/".join(sorted(precisions))}


# ---- peers -------------------------------------------------------------------------------
@contextmanager
def _frozen(members: list[LoadedMember]) -> Iterator[None]:
    saved = [(p, p.requires_grad) for m in members for p in m.model.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def _torchattacks_maker(attacker: LoadedMember, name: str, device: torch.device, chunk: int):
    """ε -> a craft(x, y) function backed by one torchattacks object."""
    import torchattacks

    def crafter(eps: float):
        if name == "fgsm":
            return torchattacks.FGSM(attacker.model, eps=eps)
        return torchattacks.BIM(attacker.model, eps=eps, alpha=KURAKIN_STEP_SIZE, steps=kurakin_steps(eps))

    return crafter


def _art_maker(attacker: LoadedMember, name: str, device: torch.device, chunk: int):
    """ε -> a craft(x, y) function backed by one ART attack on one classifier per attacker."""
    from art.attacks.evasion import BasicIterativeMethod, FastGradientMethod
    from art.estimators.classification import PyTorchClassifier

    on_cuda = device.type == "cuda"
    with torch.cuda.device(device) if on_cuda else nullcontext():  # ART uses the current GPU
        classifier = PyTorchClassifier(model=attacker.model, loss=nn.CrossEntropyLoss(),
                                       input_shape=MNIST_SHAPE, nb_classes=NUM_CLASSES, clip_values=(0.0, 1.0),
                                       preprocessing=None, device_type="gpu" if on_cuda else "cpu")

    def make(eps: float):
        if name == "fgsm":
            return FastGradientMethod(classifier, norm=np.inf, eps=eps, batch_size=chunk)
        return BasicIterativeMethod(classifier, eps=eps, eps_step=KURAKIN_STEP_SIZE, max_iter=kurakin_steps(eps),
                                    batch_size=chunk, verbose=False)

    def crafter(eps: float):
        attack = make(eps)

        def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with torch.cuda.device(device) if on_cuda else nullcontext():
                adv = attack.generate(x=x.cpu().numpy(), y=y.cpu().numpy())
            return torch.from_numpy(np.asarray(adv, dtype=np.float32)).to(device)

        return run

    return crafter


PEERS = {"torchattacks": _torchattacks_maker, "art": _art_maker}


def _defenders(mode: str, attacker: LoadedMember, members: list[LoadedMember]) -> list[LoadedMember]:
    """Who is evaluated on ``attacker``'s adversarials: everyone, or (white-box) itself."""
    return list(members) if mode == "blackbox" else [attacker]


def _peer_matrix(peer: str, name: str, dataset, members, eps, chunk, device, mode: str) -> torch.Tensor:
    """Correct counts (attacker, ε, defender of :func:`_defenders`) of one peer's loop for
    attack ``name``."""
    x_all, y_all = dataset.test.x, dataset.test.y
    chunks = [(dataset.to_float(x_all[i : i + chunk]), y_all[i : i + chunk]) for i in range(0, len(y_all), chunk)]
    width = len(_defenders(mode, members[0], members))
    correct = torch.zeros(len(members), len(eps), width, dtype=torch.long, device=device)
    clean: dict[tuple[str, int], torch.Tensor] = {}  # (defender, chunk) -> count, once per run as robench does
    with _frozen(members):
        for a, attacker in enumerate(members):
            crafter = PEERS[peer](attacker, name, device, chunk)
            defenders = _defenders(mode, attacker, members)
            for e, value in enumerate(eps):
                craft = crafter(value) if value > 0 else None  # ε = 0: the clean images
                for c, (x, y) in enumerate(chunks):
                    if craft is None:
                        for d in defenders:
                            if (d.name, c) not in clean:
                                clean[(d.name, c)] = attack_runner._count_correct(d.model, x, y)
                        counts = [clean[(d.name, c)] for d in defenders]
                    else:
                        adv = craft(x, y)
                        counts = [attack_runner._count_correct(d.model, adv, y) for d in defenders]
                    correct[a, e] += torch.stack(counts)
    return correct


def run_peer(peer: str, dataset, members, eps, chunk, device, mode: str = "blackbox") -> dict[str, Any]:
    """Time one peer's loop per attack: for each attacker and ε, one attack object,
    adversarials per chunk, every defender of ``mode`` evaluated; its correct counts."""
    seconds, counts = {}, {}
    for name in ATTACKS:
        seconds[name], correct = timed(
            lambda name=name: _peer_matrix(peer, name, dataset, members, eps, chunk, device, mode), device)
        table = correct.tolist()
        for a, attacker in enumerate(members):
            for e, value in enumerate(eps):
                for d, defender in enumerate(_defenders(mode, attacker, members)):
                    counts[(attacker.name, defender.name, name, float(value))] = table[a][e][d]
    return {"seconds": seconds, "counts": counts}


# ---- the benchmark -----------------------------------------------------------------------
def agreement(reference: Counts, other: Counts) -> dict[str, Any]:
    """Cells, how many correct counts differ from ``reference`` and by how much at most."""
    keys = sorted(set(reference) | set(other))
    diffs = [abs(reference.get(k, -1) - other.get(k, -1)) for k in keys]
    differing = sum(d > 0 for d in diffs)
    return {"cells": len(keys), "differing": differing, "max_abs_count_diff": max(diffs, default=0),
            "identical": differing == 0 and len(keys) > 0}


def _summary(result: dict[str, Any], per_eps_steps: int) -> dict[str, Any]:
    """Wall times (the median round, and every round); IFGSM image-steps/s as executed
    and as the per-ε loops' work / wall, from the median IFGSM seconds."""
    ifgsm_s = result["seconds"]["ifgsm"]
    executed = result.get("image_steps")
    return {"wall_s": statistics.median(result["round_walls"]), "wall_s_rounds": result["round_walls"],
            "per_attack_s": result["seconds"], "repeatable": result["repeatable"],
            "precision": result.get("precision", "fp32"),
            "ifgsm_image_steps": executed if executed is not None else per_eps_steps,
            "ifgsm_image_steps_per_s": ratio(executed if executed is not None else per_eps_steps, ifgsm_s),
            "ifgsm_per_eps_equivalent_image_steps_per_s": ratio(per_eps_steps, ifgsm_s)}


def _mean_accuracy(counts: Counts, samples: int, eps) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name in ATTACKS:
        for value in eps:
            cells = [c for (_, _, a, e), c in counts.items() if a == name and e == float(value)]
            out.setdefault(name, {})[f"{value:g}"] = sum(cells) / (len(cells) * samples) if cells else None
    return out


def _interleaved(runners: dict[str, Callable[[], dict[str, Any]]], rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Each runner's results over ``rounds`` rounds. Every round runs every runner once,
    round r starting at the r-th runner (a rotation), so slow drift of the machine, such
    as heat or another process, falls on every implementation alike."""
    labels = list(runners)
    out: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[: r % len(labels)]:
            out[label].append(runners[label]())
    return out


def _over_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One implementation's rounds as one result: the first round's counts, the median
    seconds per attack, every round's wall time, and whether every round counted alike."""
    first = results[0]
    seconds = {name: statistics.median(r["seconds"][name] for r in results) for name in first["seconds"]}
    return {**first, "seconds": seconds, "round_walls": [sum(r["seconds"].values()) for r in results],
            "repeatable": all(r["counts"] == first["counts"] for r in results)}


def _runners(dataset, members, eps, chunk, device, mode: str) -> dict[str, Callable[[], dict[str, Any]]]:
    """label -> a call that times one implementation on ``dataset`` (robench: per variant
    of the device)."""
    variants = {"robench": ("auto", False)}  # label: (precision, im2col convolutions)
    if device.type == "cuda":
        variants.update(robench_fp32=("fp32", False), robench_im2col=("auto", True))

    def robench(precision: str, im2col: bool) -> dict[str, Any]:
        with _im2col_convs() if im2col else nullcontext():
            return run_robench(dataset, members, eps, chunk, device, precision, mode)

    runners = {label: functools.partial(robench, *variant) for label, variant in variants.items()}
    runners.update({peer: functools.partial(run_peer, peer, dataset, members, eps, chunk, device, mode)
                    for peer in PEERS})
    return runners


def run(device: torch.device, models: int = 8, samples: int = 256, eps=None, train_steps: int = 50,
        chunk: int = 0, member_batch: int = 64, warmup_samples: int = 4, mode: str = "blackbox",
        rounds: int = 1) -> dict[str, Any]:
    """The whole benchmark of ``mode`` (blackbox: the matrix; whitebox: its diagonal) over
    ``rounds`` interleaved rounds; a JSON-ready dict. ``chunk`` 0: robench's default chunk
    for the device (what ``robench attack`` uses without --batch-size)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    eps = sorted({float(e) for e in (eps if eps is not None else EPS_GRIDS["mnist"])})
    chunk = chunk or attack_runner.DEFAULT_CHUNK.get(device.type, 1024)
    members = build_members(models, train_steps, device, member_batch)
    dataset = build_dataset(samples, members, device, chunk)
    warm = _narrow(dataset, min(samples, warmup_samples))
    warm_eps = [e for e in eps if e > 0][:1] or eps[:1]  # one attacked ε: every kernel runs
    for warm_up in _runners(warm, members, warm_eps, chunk, device, mode).values():
        warm_up()
    timed_rounds = _interleaved(_runners(dataset, members, eps, chunk, device, mode), rounds)
    results = {label: _over_rounds(runs) for label, runs in timed_rounds.items()}

    expected_steps = models * samples * sum(kurakin_steps(e) for e in eps)
    defenders = models if mode == "blackbox" else 1
    out: dict[str, Any] = {
        "mode": mode, "models": models, "samples": samples, "eps": eps, "chunk_size": chunk,
        "train_steps": train_steps, "member_batch": member_batch, "rounds": rounds,
        "cells": models * defenders * len(ATTACKS) * len(eps),
        "robench_precision": results["robench"]["precision"],
        "clean_accuracy": results["robench"]["clean"],
        "mean_accuracy": _mean_accuracy(results["robench"]["counts"], samples, eps),
        "ifgsm_image_steps": {"per_eps_loops": expected_steps, "robench": results["robench"]["image_steps"]},
    }
    for label, result in results.items():
        out[label] = _summary(result, expected_steps)
    robench_labels = [label for label in results if label.startswith("robench")]
    out["ratios"] = {f"{peer}/{label}": ratio(out[peer]["wall_s"], out[label]["wall_s"])
                     for label in robench_labels for peer in PEERS}
    out["ratios_per_round"] = {f"{peer}/{label}": [ratio(p, r) for p, r in zip(out[peer]["wall_s_rounds"],
                                                                              out[label]["wall_s_rounds"])]
                               for label in robench_labels for peer in PEERS}
    out["agreement"] = {peer: agreement(results["robench"]["counts"], results[peer]["counts"]) for peer in PEERS}
    if "robench_fp32" in results:
        out["agreement_fp32"] = {peer: agreement(results["robench_fp32"]["counts"], results[peer]["counts"])
                                 for peer in PEERS}
    if "robench_im2col" in results:
        out["agreement_im2col"] = {"robench": agreement(results["robench"]["counts"],
                                                        results["robench_im2col"]["counts"])}
    return out


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A few human-readable lines of :func:`run`'s result."""
    m = result["models"]
    shape = f"{m}x{m} matrix" if result["mode"] == "blackbox" else f"{m} white-box runs"
    lines = [f"{result['mode']}: {shape}, N={result['samples']}, {len(result['eps'])} eps, "
             f"robench precision {result['robench_precision']}, median of {result['rounds']} round(s)"]
    for label in ("robench", "robench_fp32", "robench_im2col", "torchattacks", "art"):
        if label in result:
            r = result[label]
            rate, equiv = r["ifgsm_image_steps_per_s"] or 0, r["ifgsm_per_eps_equivalent_image_steps_per_s"] or 0
            rounds = ", ".join(f"{s:.2f}" for s in r["wall_s_rounds"])
            lines.append(f"  {label:13s} {r['wall_s']:9.2f} s  (rounds {rounds}; fgsm {r['per_attack_s']['fgsm']:.2f} s, "
                         f"ifgsm {r['per_attack_s']['ifgsm']:.2f} s; IFGSM {r['ifgsm_image_steps']:,} image-steps, "
                         f"{rate:,.0f}/s executed, {equiv:,.0f}/s per-eps equivalent)"
                         + ("" if r["repeatable"] else "; counts differ between rounds"))
    for key, value in result["ratios"].items():
        per_round = ", ".join(f"{v:.2f}" if v else "n/a" for v in result["ratios_per_round"][key])
        lines.append(f"  {key}: {value:.2f}x (per round {per_round})" if value else f"  {key}: n/a")
    for key in ("agreement", "agreement_fp32", "agreement_im2col"):
        for peer, a in result.get(key, {}).items():
            lines.append(f"  {key} {peer}: identical={a['identical']} ({a['differing']}/{a['cells']} cells differ)")
    return lines
