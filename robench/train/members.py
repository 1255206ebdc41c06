"""Train zoo members: build the model, train it, evaluate it, store weights and card.

A member whose card and weights exist is skipped when it was trained as this run would
train it (settings and precision), refused otherwise (``force`` retrains it); an unfinished
one resumes from its per-epoch checkpoint in ``<member>/.partial``. One process trains a
member at a time (:mod:`robench.train.member_lock`). A member whose
training diverges (a non-finite loss or weights, :mod:`robench.train.divergence`) is a
UserError naming it and what to change; its checkpoint and the folders it leaves empty
are removed, so no member of it exists and the next run starts it over.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from robench.config import DELTA_MAX, LossSpec, TrainSpec, to_dict
from robench.data.base import Dataset, Split
from robench.device import resolve_precision
from robench.determinism import thread_count
from robench.errors import UserError
from robench.jsonfile import shown
from robench.losses import create_loss
from robench.metrics import accuracy
from robench.models import create_model
from robench.train.member_lock import member_lock
from robench.train.trainer import TrainingDiverged, clear_checkpoint, train_model
from robench.zoo import MemberDef, git_commit, is_trained, read_bound_card, save_member, versions

PARTIAL = ".partial"


def fixed_subset(train: Split, count: int, seed: int = 0) -> Split:
    """A fixed random subset of ``count`` training samples (the quick presets)."""
    if count <= 0 or count >= len(train):
        return train
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train.subset(order[:count].to(train.x.device))


def _fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def divergence_remedy(loss: LossSpec, spec: TrainSpec) -> str:
    """What to change when a member trained with ``loss`` under ``spec`` diverges."""
    lr = f"the learning rate ({spec.lr:g}) of its preset"
    if loss.name == "ce":
        return f"lower {lr}"
    return (f"lower its margin delta ({loss.delta:g}; valid up to {DELTA_MAX:g}, the shipped zoos use 1 and 4) "
            f"in the zoo definition, or {lr}")


def _remove_if_empty(*folders: Path) -> None:
    """Remove each of ``folders`` that exists and holds nothing (innermost first)."""
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _existing_card(folder: Path, description: dict[str, Any]) -> dict[str, Any]:
    """The card of an already trained member, if it is bound to its weights and was
    trained as ``description`` says."""
    card = read_bound_card(folder)
    differing = sorted(k for k, v in description.items() if card.get(k) != v)
    if differing:
        values = "; ".join(f"{k} {shown(card.get(k), 40)} there, {shown(description[k], 40)} here" for k in differing)
        raise UserError(f"{folder} was trained with a different {', '.join(differing)} ({values}); "
                        "pass --force to retrain it or use another --zoo-dir")
    return card


def train_member(
    data: Dataset,
    member: MemberDef,
    spec: TrainSpec,
    folder: Path,
    name: str | None = None,
    train: Split | None = None,
    extra: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train ``member`` on ``train`` (default: the dataset's training split, narrowed by
    ``spec.train_samples``) and store it in ``folder``; returns its card.

    ``extra`` lands in the card (experiment, subset or noise description) and in the
    resume fingerprint, so a checkpoint of a different setting is never resumed.
    """
    folder = Path(folder)
    name = name or member.name
    train = fixed_subset(train if train is not None else data.train, spec.train_samples)
    description = {
        "name": name,
        "dataset": data.name,
        "architecture": member.arch,
        "head": member.head,
        "loss": to_dict(member.loss),
        "train": to_dict(spec),
        "seed": member.seed,
        "role": member.role,
        "split_hash": data.split_hash,
        "num_train": len(train),
        **(extra or {}),
    }
    precision = resolve_precision("auto", train.x.device)
    with member_lock(folder):  # another process training this member finishes first
        if is_trained(folder) and not force:
            return _existing_card(folder, {**description, "precision": precision})
        return _train_and_save(data, member, spec, folder, train, description, precision, force)


def _train_and_save(data: Dataset, member: MemberDef, spec: TrainSpec, folder: Path, train: Split,
                    description: dict[str, Any], precision: str, force: bool) -> dict[str, Any]:
    """Train ``member`` (resuming its checkpoint) and save it with its card."""
    name = description["name"]
    partial = folder / PARTIAL
    if force:
        clear_checkpoint(partial)
    torch.manual_seed(member.seed)
    model = create_model(member.arch, data.num_classes, member.head, data.mean, data.std)
    model = model.to(data.train.x.device)
    # never resume across precisions or thread counts: the weights would be those of neither
    fingerprint = _fingerprint({**description, "precision": precision, "threads": thread_count()})
    try:
        result = train_model(model, create_loss(member.loss), train, data.to_float, spec, member.seed, partial,
                             fingerprint, desc=name, precision=precision,
                             remedy=divergence_remedy(member.loss, spec))
    except TrainingDiverged:
        _remove_if_empty(partial, folder)  # the trainer removed the checkpoint itself
        raise
    card = {
        **description,
        "num_classes": data.num_classes,
        "mean": list(data.mean),
        "std": list(data.std),
        "clean_test_accuracy": accuracy(model, data.test.x, data.test.y, data.to_float),
        "val_accuracy": accuracy(model, data.val.x, data.val.y, data.to_float),
        "epochs": result.epochs,
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "history": result.history,
        "wall_time_s": round(result.wall_time_s, 3),
        "device": str(data.train.x.device),
        "precision": result.precision,
        "cuda_graph": result.cuda_graph,
        "compiled": result.compiled,
        "threads": result.threads,
        "determinism": result.determinism,
        "versions": versions(),
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    card = save_member(folder, model, card)
    clear_checkpoint(partial)
    _remove_if_empty(partial)
    return card


def train_zoo(
    dataset: str,
    preset: str = "quick",
    names: list[str] | None = None,
    seeds: list[int] | None = None,
    zoo_dir: Path = Path("zoo"),
    device: str = "auto",
    data_root: Path = Path("data"),
    download: bool = False,
    force: bool = False,
) -> list[dict[str, Any]]:
    """Train every member of ``zoo/<dataset>.toml`` under ``preset`` (its seeds; narrowed
    by ``names``/``seeds``), defenders then attackers."""
    from robench.data import DATASETS, load_dataset
    from robench.device import resolve_device
    from robench.presets import train_spec
    from robench.zoo import load_definition, member_dir, select_members

    DATASETS.get(dataset)  # unknown names fail before anything is loaded
    train_spec(dataset, preset, "ce")
    target = resolve_device(device)
    definition = load_definition(dataset, zoo_dir, preset)
    members = select_members(definition, names, seeds)
    known = sorted({m.seed for m in definition})
    unknown = sorted(set(seeds or ()) - set(known))
    if unknown:
        raise UserError(f"no member of the {dataset} zoo has seed {unknown[0]}; its seeds: "
                        f"{', '.join(map(str, known))}")
    if not members:
        raise UserError(f"no member of the {dataset} zoo is one of --members {','.join(names or ())} "
                        f"with one of --seeds {','.join(map(str, seeds or ()))}")
    data = load_dataset(dataset, data_root, download).to(target)
    cards = []
    for member in members:
        spec = train_spec(dataset, preset, member.loss.name)
        folder = member_dir(zoo_dir, dataset, member.name)
        cards.append(train_member(data, member, spec, folder, force=force))
    return cards
