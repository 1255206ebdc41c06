"""Train zoo members: build the model, train it, evaluate it, store weights and card.

A member whose card and weights exist is skipped (``force`` retrains it); an unfinished
one resumes from its per-epoch checkpoint in ``<member>/.partial``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from robench.config import TrainSpec, to_dict
from robench.data.base import Dataset, Split
from robench.device import resolve_precision
from robench.determinism import thread_count
from robench.errors import UserError
from robench.losses import create_loss
from robench.metrics import accuracy
from robench.models import create_model
from robench.train.trainer import clear_checkpoint, train_model
from robench.zoo import MemberDef, git_commit, is_trained, read_card, save_member, versions

PARTIAL = ".partial"


def fixed_subset(train: Split, count: int, seed: int = 0) -> Split:
    """A fixed random subset of ``count`` training samples (the quick presets)."""
    if count <= 0 or count >= len(train):
        return train
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train.subset(order[:count].to(train.x.device))


def _fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _existing_card(folder: Path, description: dict[str, Any]) -> dict[str, Any]:
    """The card of an already trained member, if it was trained as ``description`` says."""
    card = read_card(folder)
    differing = sorted(k for k, v in description.items() if card.get(k) != v)
    if differing:
        raise UserError(
            f"{folder} was trained with a different {', '.join(differing)}; "
            "pass --force to retrain it or use another --zoo-dir"
        )
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
    if is_trained(folder) and not force:
        return _existing_card(folder, description)
    partial = folder / PARTIAL
    if force:
        clear_checkpoint(partial)
    torch.manual_seed(member.seed)
    model = create_model(member.arch, data.num_classes, member.head, data.mean, data.std)
    model = model.to(data.train.x.device)
    precision = resolve_precision("auto", train.x.device)
    # never resume across precisions or thread counts: the weights would be those of neither
    fingerprint = _fingerprint({**description, "precision": precision, "threads": thread_count()})
    result = train_model(model, create_loss(member.loss), train, data.to_float, spec,
                         member.seed, partial, fingerprint, desc=name, precision=precision)
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
    if partial.exists() and not any(partial.iterdir()):
        partial.rmdir()
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
