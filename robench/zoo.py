"""The model zoo: member definitions, naming, cards, safetensors weights, verified loading.

On disk (DESIGN.md): ``<zoo_dir>/<dataset>/<member>/weights.safetensors`` and
``card.json``. The card records everything needed to rebuild and trust the member,
including the SHA-256 of the weights file; :func:`load` refuses weights whose hash does
not match. The weights carry the card's configuration in their metadata, so a card edited
since, or lying in another member's folder, is refused wherever a member is listed or
loaded (:mod:`robench.binding`). Nothing is unpickled.

The default membership of a dataset's zoo is the committed file
``zoo/<dataset>.toml`` (found in ``--zoo-dir`` first, then in the source tree): an
``architecture``, the training ``seeds`` every member configuration is replicated over
(a list, or one list per preset), the ``[[members]]`` (the defenders: one entry per
loss configuration) and the ``[[attackers]]`` (CE members trained with seeds of their
own, which no defender has, so a transfer attack never comes from a sibling of its
defender). The training seed is the unit of a claim (docs/protocol.md, "Claims").
"""

from __future__ import annotations

import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

import robench
from robench.binding import binding_problem, metadata_of
from robench.cards import card_problem
from robench.config import LossSpec, from_dict
from robench.errors import UserError
from robench.io import atomic_write, atomic_write_json, read_bounded, sha256_file
from robench.jsonfile import one_line, read_json_object, shown
from robench.models import HEADS, MODELS, create_model
from robench.tensorfile import check_fit, read_tensors, spec_of

WEIGHTS = "weights.safetensors"
CARD = "card.json"
SOURCE_ZOO = Path(__file__).resolve().parent.parent / "zoo"
DEFAULT_HEAD = {"ce": "linear", "hinge": "linear", "1toN": "unit", "1toN+ce": "unit"}
MEMBER_KEYS = {"loss", "delta", "bound", "head", "seeds"}
DEFINITION_KEYS = {"architecture", "seeds", "members", "attackers"}
RETRAIN = "retrain the member with `robench train zoo --force`"
MAX_DEFINITION_SEED = 2**32 - 1  # a definition's seeds; an experiment's training seeds are 1000 times larger
MAX_DEFINITION_BYTES = 2**20  # a zoo definition: the shipped ones are under 2 kB


@dataclass(frozen=True)
class MemberDef:
    """One member of a zoo: its loss, head, seed, architecture and role (a defender, or
    a black-box attacker)."""

    loss: LossSpec
    head: str
    seed: int
    arch: str
    role: str = "defender"

    @property
    def name(self) -> str:
        return member_name(self.loss, self.head, self.seed)

    @property
    def configuration(self) -> str:
        return configuration_name(self.loss, self.head)


def member_name(loss: LossSpec, head: str, seed: int, suffix: str = "") -> str:
    """Stable readable name: ``ce-s0``, ``hinge-d1-s0``, ``1toN-sym-d4-s0``,
    ``1toN+ce-sym-d4-s0``; a non-default head is added (``ce-unit-s0``); experiments
    add a ``suffix`` such as ``-gen0.5-r2``."""
    parts = [loss.name]
    if loss.is_one_to_n:
        parts.append(loss.bound)
    if loss.name != "ce":
        parts.append(f"d{loss.delta:g}")
    if head != DEFAULT_HEAD[loss.name]:
        parts.append(head)
    parts.append(f"s{seed}")
    return "-".join(parts) + suffix


def configuration_name(loss: LossSpec, head: str) -> str:
    """A member configuration (its name without the seed): ``ce``, ``ce-unit``, ``1toN-sym-d4``."""
    return member_name(loss, head, 0)[: -len("-s0")]


def definition_path(dataset: str, zoo_dir: Path) -> Path:
    """The zoo definition file of ``dataset``: in ``zoo_dir`` or the source tree."""
    for folder in (Path(zoo_dir), SOURCE_ZOO):
        path = folder / f"{dataset}.toml"
        if path.exists():
            return path
    raise UserError(
        f"no zoo definition for {dataset!r}: expected {Path(zoo_dir) / (dataset + '.toml')}"
    )


def load_definition(dataset: str, zoo_dir: Path, preset: str = "quick") -> list[MemberDef]:
    """Parse ``zoo/<dataset>.toml`` into member definitions, defenders then attackers,
    each configuration over the seeds of ``preset`` (unknown keys are errors)."""
    path = definition_path(dataset, zoo_dir)
    text = read_bounded(path, MAX_DEFINITION_BYTES, "give a zoo definition like zoo/digits.toml")
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError, or an integer too long to convert
        raise UserError(f"{path}: not valid TOML ({one_line(exc)})") from None
    except RecursionError:
        raise UserError(f"{path}: not valid TOML (nested too deep)") from None
    unknown = set(data) - DEFINITION_KEYS
    if unknown:
        raise UserError(f"{path}: unknown keys {sorted(unknown)}; valid: {sorted(DEFINITION_KEYS)}")
    arch = data.get("architecture")
    if arch is not None and not (isinstance(arch, str) and arch in MODELS):
        raise UserError(f"{path}: architecture is {shown(arch)}; valid: {', '.join(MODELS.names())}")
    seeds = _preset_seeds(path, data.get("seeds", [0]), preset)
    members: list[MemberDef] = []
    for role, key in (("defender", "members"), ("attacker", "attackers")):
        entries = data.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise UserError(f"{path}: {key} must be [[{key}]] tables, got {shown(entries)}")
        for entry in entries:
            members.extend(_entry_members(path, entry, arch, seeds, role, preset))
    if not arch or not any(m.role == "defender" for m in members):
        raise UserError(f"{path}: needs 'architecture' and at least one [[members]] entry")
    _check_unique(path, members)
    return members


def _preset_seeds(path: Path, seeds: Any, preset: str) -> list[int]:
    """The seeds of ``preset``: ``seeds`` itself when a list, else its entry for ``preset``."""
    if isinstance(seeds, dict):
        if preset not in seeds:
            raise UserError(f"{path}: seeds has no entry for preset {preset!r}; it has {', '.join(sorted(seeds))}")
        seeds = seeds[preset]
    in_range = isinstance(seeds, list) and all(type(s) is int and 0 <= s <= MAX_DEFINITION_SEED for s in seeds)
    if not seeds or not in_range:
        raise UserError(f"{path}: seeds must be a non-empty list of integers from 0 to {MAX_DEFINITION_SEED}, "
                        f"got {shown(seeds)}")
    return seeds


def _entry_members(path: Path, entry: dict[str, Any], arch: str, seeds: list[int], role: str,
                   preset: str) -> list[MemberDef]:
    """An entry's members: one per seed (the entry's own seeds, a list or one list per
    preset, else the definition's)."""
    unknown = set(entry) - MEMBER_KEYS
    if unknown:
        raise UserError(f"{path}: unknown member keys {sorted(unknown)}; valid: {sorted(MEMBER_KEYS)}")
    if role == "attacker" and "seeds" not in entry:
        raise UserError(f"{path}: an [[attackers]] entry needs its own seeds, which no member has")
    delta = entry.get("delta", 1.0)
    if "loss" not in entry or type(delta) not in (int, float):
        raise UserError(f"{path}: a member entry needs a loss ({', '.join(DEFAULT_HEAD)}) and a number as delta, "
                        f"got {shown(entry)}")
    try:
        loss = LossSpec(entry["loss"], float(delta), entry.get("bound", "sym"))
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    head = entry.get("head", DEFAULT_HEAD[loss.name])
    if not (isinstance(head, str) and head in HEADS):
        raise UserError(f"{path}: head is {shown(head)}; valid: {', '.join(HEADS)}")
    own = _preset_seeds(path, entry["seeds"], preset) if "seeds" in entry else seeds
    return [MemberDef(loss, head, seed, arch, role) for seed in own]


def _check_unique(path: Path, members: list[MemberDef]) -> None:
    """Member names are unique, and no attacker shares a seed with a defender."""
    names = [m.name for m in members]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"{path}: member {twice[0]!r} is defined twice")
    shared = sorted({m.seed for m in members if m.role == "attacker"} & {m.seed for m in members if m.role == "defender"})
    if shared:
        raise UserError(f"{path}: attacker seed {shared[0]} is also a defender's seed; give attackers seeds of their own")


def select_members(members: list[MemberDef], names: list[str] | None, seeds: list[int] | None) -> list[MemberDef]:
    """Narrow a definition to ``names`` (member names or loss names) and ``seeds``."""
    chosen = members
    if seeds:
        chosen = [m for m in chosen if m.seed in seeds]
    if names:
        known = {m.name for m in members} | {m.loss.name for m in members}
        bad = [n for n in names if n not in known]
        if bad:
            raise UserError(f"unknown member {bad[0]!r}; valid: {', '.join(m.name for m in members)}")
        chosen = [m for m in chosen if m.name in names or m.loss.name in names]
    return chosen


def member_dir(zoo_dir: Path, dataset: str, name: str) -> Path:
    return Path(zoo_dir) / dataset / name


def git_commit() -> str | None:
    """The source tree's commit when robench runs from a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=SOURCE_ZOO.parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    return {"robench": robench.__version__, "torch": torch.__version__}


def save_member(folder: Path, model: nn.Module, card: dict[str, Any]) -> dict[str, Any]:
    """Write weights then the card (with the weights' SHA-256), each atomically; the
    weights carry the card's configuration in their metadata (:mod:`robench.binding`)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save(state, metadata=metadata_of(card))  # bytes: a full disk raises OSError (ENOSPC), not SafetensorError
    atomic_write(folder / WEIGHTS, lambda tmp: tmp.write_bytes(data))
    card = {**card, "weights_sha256": sha256_file(folder / WEIGHTS)}
    atomic_write_json(folder / CARD, card)
    return card


CARD_KEYS = ("name", "architecture", "num_classes", "head", "mean", "std", "loss", "seed", "role", "weights_sha256")


def read_card(folder: Path) -> dict[str, Any]:
    """A member's card; missing, corrupt or incomplete cards, and cards with a value of
    the wrong type or range (:func:`robench.cards.card_problem`), are UserErrors naming the file."""
    path = Path(folder) / CARD
    if not path.exists():
        raise UserError(f"no zoo member at {folder} ({CARD} missing); train it with `robench train zoo`")
    card = read_json_object(path, RETRAIN)
    absent = [k for k in CARD_KEYS if k not in card]
    if absent:
        raise UserError(f"{path} is incomplete (no {', '.join(absent)}); {RETRAIN}")
    problem = card_problem(card)
    if problem:
        raise UserError(f"{path} is invalid: {problem}; {RETRAIN}")
    return card


def check_folder(folder: Path, card: dict[str, Any]) -> None:
    """A UserError unless ``folder`` is named after the member of ``card``, its card."""
    folder = Path(folder)
    if folder.name != card["name"]:
        raise UserError(f"{folder / CARD} says name {shown(card['name'])} but it lies in folder {shown(folder.name)} "
                        "(a member's folder is named after it): move the member's files back to their own "
                        f"folder, or retrain {shown(folder.name)} with `robench train zoo --force`")


def check_bound(folder: Path, card: dict[str, Any], metadata: dict[str, str] | None) -> None:
    """A UserError unless ``card`` (read from ``folder``) is the card of ``folder``'s
    member (:func:`check_folder`) and says what its weights' ``metadata`` says
    (:func:`robench.binding.binding_problem`)."""
    check_folder(folder, card)
    problem = binding_problem(card, metadata, Path(folder) / CARD, Path(folder) / WEIGHTS)
    if problem:
        raise UserError(problem)


def read_bound_card(folder: Path) -> dict[str, Any]:
    """A trained member's card (:func:`read_card`) once the weights beside it hold the
    tensors it describes (:func:`check_weights_fit`) and carry its configuration
    (:func:`check_bound`); the weights' header is read, not their tensors or hash
    (:func:`load` checks those)."""
    card = read_card(folder)
    check_bound(folder, card, check_weights_fit(Path(folder) / WEIGHTS, card))
    return card


def is_trained(folder: Path) -> bool:
    """True when the folder holds a complete member (card and weights)."""
    return (Path(folder) / CARD).exists() and (Path(folder) / WEIGHTS).exists()


def load(folder: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a member from its card and verified weights; eval mode on ``device``.

    Raises UserError when the card lies in another member's folder, the weights are
    missing, their SHA-256 differs from the card's, they are not a safetensors file
    holding exactly the tensors of the card's architecture, class count and head, or the
    configuration they carry is not the card's (:func:`check_bound`); all checked on the
    file's header before any tensor is read or the model is built (:mod:`robench.tensorfile`).
    Weights holding NaN or ±inf (a member saved before training checked for divergence)
    are refused too.
    """
    folder = Path(folder)
    card = read_card(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise UserError(f"{weights} is missing; retrain the member")
    if sha256_file(weights) != card["weights_sha256"]:
        raise UserError(f"{weights} does not match the SHA-256 in its card; the file was changed or corrupted")
    metadata = check_weights_fit(weights, card)
    check_bound(folder, card, metadata)
    state = read_tensors(weights, RETRAIN)
    nonfinite = next((name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()),
                     None)
    if nonfinite is not None:
        raise UserError(f"{weights} holds NaN or infinite values (tensor {nonfinite!r}): its training diverged; "
                        "retrain the member with `robench train zoo --force`")
    model = create_model(card["architecture"], card["num_classes"], card["head"],
                         tuple(card["mean"]), tuple(card["std"]))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{weights} does not fit architecture {card['architecture']!r}: {first}") from None
    return model.to(device).eval(), card


def check_weights_fit(weights: Path, card: dict[str, Any]) -> dict[str, str] | None:
    """The metadata of ``weights`` once their header holds exactly the tensors of the
    card's architecture, class count and head (:func:`robench.tensorfile.check_fit`)."""
    expected = _expected_tensors(card)
    what = f"architecture {card['architecture']!r} ({card['num_classes']} classes, {card['head']} head)"
    return check_fit(weights, expected.get, set(expected), what, RETRAIN)


def _expected_tensors(card: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name → (dtype, shape) of the card's model, built on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = create_model(card["architecture"], card["num_classes"], card["head"],
                             tuple(card["mean"]), tuple(card["std"]))
    return {name: spec_of(tensor) for name, tensor in model.state_dict().items()}


def loss_spec_of(card: dict[str, Any]) -> LossSpec:
    """The member's training loss as recorded in its card."""
    return from_dict(LossSpec, card["loss"])


def list_members(zoo_dir: Path, dataset: str | None = None) -> list[dict[str, Any]]:
    """Cards of every trained member under ``zoo_dir`` (one dataset or all), sorted;
    each bound to its weights (:func:`read_bound_card`)."""
    root = Path(zoo_dir)
    datasets = [dataset] if dataset else sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
    cards = []
    for name in datasets:
        for folder in sorted((root / name).glob("*")):
            if is_trained(folder):
                cards.append({**read_bound_card(folder), "path": str(folder)})
    return cards
