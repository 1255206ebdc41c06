"""Per-epoch training checkpoints: safetensors for tensors, JSON for the rest.

Nothing is unpickled: model and optimizer state and RNG states are tensors in a
``.safetensors`` file; epoch, step and history are JSON. Each checkpoint's tensors go to
a new file named by their SHA-256, then the JSON that names that file replaces the
previous one, and only then are older tensor files removed. Both writes are atomic, so
a run killed at any point leaves a JSON whose tensor file is complete and matches it:
the last checkpoint's, or the one before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from robench.errors import UserError
from robench.io import atomic_write, atomic_write_json, sha256_file

META = "checkpoint.json"
TENSORS_GLOB = "checkpoint*.safetensors"
LEGACY_TENSORS = "checkpoint.safetensors"  # the tensor file of checkpoints written before content-named files


@dataclass
class TrainState:
    """Where a training run stands after ``epoch`` epochs and ``step`` optimizer steps."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = ""


Generators = dict[str, torch.Generator]


def _pack(model: torch.nn.Module, optimizer: torch.optim.Optimizer, rngs: Generators) -> dict:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
    for name, rng in rngs.items():
        tensors[f"rng.{name}"] = rng.get_state()
    return tensors


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rngs: Generators,
    state: TrainState,
    fingerprint: str,
) -> None:
    """Write the checkpoint of a run identified by ``fingerprint`` into ``folder``."""
    data = save(_pack(model, optimizer, rngs))
    digest = hashlib.sha256(data).hexdigest()
    name = f"checkpoint.{digest[:16]}.safetensors"
    atomic_write(folder / name, lambda tmp: tmp.write_bytes(data))
    meta = {
        "fingerprint": fingerprint,
        "tensors": name,
        "sha256": digest,
        "epoch": state.epoch,
        "step": state.step,
        "history": state.history,
        "stop_reason": state.stop_reason,
    }
    atomic_write_json(folder / META, meta)
    _remove_tensor_files(folder, keep=name)


def _remove_tensor_files(folder: Path, keep: str | None = None) -> None:
    for path in folder.glob(TENSORS_GLOB):
        if path.name != keep:
            path.unlink(missing_ok=True)


def load_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rngs: Generators,
    fingerprint: str,
) -> TrainState | None:
    """Restore a checkpoint into ``model``/``optimizer``/``rngs``; None when there is none.

    A checkpoint of another configuration (different ``fingerprint``) is a UserError:
    resuming it would silently mix two runs.
    """
    meta_path = folder / META
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    tensors_path = folder / meta.get("tensors", LEGACY_TENSORS)
    if not tensors_path.exists():
        return None
    if meta.get("fingerprint") != fingerprint:
        raise UserError(
            f"{folder} holds a checkpoint of a different training configuration; "
            "delete that folder to start over"
        )
    if sha256_file(tensors_path) != meta["sha256"]:
        raise UserError(f"{tensors_path} does not match its SHA-256; delete {folder} to start over")
    tensors = load_file(str(tensors_path))
    device = next(model.parameters()).device
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            opt_state["state"].setdefault(int(index), {})[name] = value.to(device)
    optimizer.load_state_dict(opt_state)
    for name, rng in rngs.items():
        rng.set_state(tensors[f"rng.{name}"])
    return TrainState(meta["epoch"], meta["step"], meta["history"], meta["stop_reason"])


def clear_checkpoint(folder: Path) -> None:
    """Remove a finished run's checkpoint files."""
    (folder / META).unlink(missing_ok=True)
    _remove_tensor_files(folder)
