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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save

from robench.errors import UserError
from robench.io import atomic_write, atomic_write_json, remove_stale_temporaries, sha256_file
from robench.jsonfile import one_line, read_json_object, shown
from robench.tensorfile import Spec, load_checked, spec_of

META = "checkpoint.json"
TENSORS_GLOB = "checkpoint*.safetensors"
LEGACY_TENSORS = "checkpoint.safetensors"  # the tensor file of checkpoints written before content-named files
TENSORS_NAME = re.compile(r"checkpoint(\.[0-9a-f]{16})?\.safetensors")  # never a path: no other folder is read
OPTIM_NAME = re.compile(r"optim\.(\d{1,9})\.[A-Za-z_]\w*")


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
    """Restore a checkpoint into ``model``/``optimizer``/``rngs``; None when there is none
    (no JSON, or the tensor file it names is gone: the run starts over and its first
    checkpoint replaces the JSON).

    A checkpoint of another configuration (different ``fingerprint``) is a UserError:
    resuming it would silently mix two runs. So is one that no run wrote: a JSON that is
    not an object of the fields above (:func:`_meta_problem`), a tensor file that does not
    match its SHA-256, is not safetensors or does not hold exactly this run's tensors
    (checked on its header before any tensor is read, :mod:`robench.tensorfile`). Each
    says to delete the folder to start over. Nothing is unpickled.
    """
    meta_path = folder / META
    if not meta_path.exists():
        return None
    start_over = f"delete {folder} to start over"
    meta = read_json_object(meta_path, start_over)
    problem = _meta_problem(meta)
    if problem:
        raise UserError(f"{meta_path} is invalid: {problem}; {start_over}")
    tensors_path = folder / meta.get("tensors", LEGACY_TENSORS)
    if not tensors_path.is_file():
        return None
    if meta.get("fingerprint") != fingerprint:
        raise UserError(
            f"{folder} holds a checkpoint of a different training configuration (spec, data, precision "
            "or thread count); resume with the same settings, or delete that folder to start over"
        )
    if sha256_file(tensors_path) != meta["sha256"]:
        raise UserError(f"{tensors_path} does not match its SHA-256; delete {folder} to start over")
    expected, required = _expected_tensors(model, optimizer, rngs)
    tensors = load_checked(tensors_path, expected, required, "this run's model, optimizer and RNG states", start_over)
    try:
        _restore(tensors, model, optimizer, rngs)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"{tensors_path} does not fit this run ({one_line(exc)}); {start_over}") from None
    return TrainState(meta["epoch"], meta["step"], meta["history"], meta["stop_reason"])


def _meta_problem(meta: dict[str, Any]) -> str | None:
    """What makes ``meta`` other than a checkpoint JSON that :func:`save_checkpoint`
    writes (a missing field, or a value of the wrong type), or None."""
    checks = (
        ("fingerprint", lambda v: isinstance(v, str), "a string"),
        ("tensors", lambda v: isinstance(v, str) and TENSORS_NAME.fullmatch(v) is not None,
         "a tensor file name in the same folder (checkpoint.<16 hex digits>.safetensors)"),
        ("sha256", lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) is not None,
         "64 lowercase hexadecimal digits"),
        ("epoch", lambda v: type(v) is int and v >= 0, "a non-negative integer"),
        ("step", lambda v: type(v) is int and v >= 0, "a non-negative integer"),
        ("history", lambda v: isinstance(v, list) and all(isinstance(h, dict) for h in v), "a list of objects"),
        ("stop_reason", lambda v: isinstance(v, str), "a string"),
    )
    meta = {"tensors": LEGACY_TENSORS, **meta}
    for key, valid, expected in checks:
        if key not in meta:
            return f"it has no {key}"
        if not valid(meta[key]):
            return f"{key} is {shown(meta[key])}, not {expected}"
    return None


def _expected_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      rngs: Generators) -> tuple[Callable[[str], Spec | None], set[str]]:
    """What :func:`_pack` writes for this run: (name → the (dtype, shape) it must have,
    or None for a name it never writes; the names it always writes). An optimizer state
    tensor ``optim.<i>.<key>`` has the shape and dtype of parameter ``i``."""
    model_specs = {f"model.{k}": spec_of(v) for k, v in model.state_dict().items()}
    rng_specs = {f"rng.{name}": spec_of(rng.get_state()) for name, rng in rngs.items()}
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def expected(name: str) -> Spec | None:
        optim = OPTIM_NAME.fullmatch(name)
        if optim:
            index = int(optim.group(1))
            return spec_of(params[index]) if index < len(params) else None
        return model_specs.get(name) or rng_specs.get(name)

    return expected, {*model_specs, *rng_specs}


def _restore(tensors: dict[str, torch.Tensor], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             rngs: Generators) -> None:
    """Put checked checkpoint ``tensors`` into ``model``, ``optimizer`` and ``rngs``."""
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


def clear_checkpoint(folder: Path) -> None:
    """Remove a finished run's checkpoint files, and temporaries a killed write left."""
    (folder / META).unlink(missing_ok=True)
    _remove_tensor_files(folder)
    if folder.is_dir():
        remove_stale_temporaries(folder)
