"""Loading the zoo members an evaluation needs, and choosing the black-box attacker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robench.errors import UserError
from robench.zoo import list_members, load


@dataclass
class LoadedMember:
    """A verified member: its model (eval mode, on the run's device) and its card."""

    name: str
    model: nn.Module
    card: dict[str, Any]

    @property
    def sha256(self) -> str:
        return self.card["weights_sha256"]


def load_members(zoo_dir: Path, dataset: str, names: list[str] | None, device: torch.device) -> list[LoadedMember]:
    """Load the trained members of ``dataset`` (all, or ``names`` in that order)."""
    cards = {c["name"]: c for c in list_members(zoo_dir, dataset)}
    if not cards:
        raise UserError(
            f"the {dataset} zoo in {zoo_dir} is empty; train it with `robench train zoo --dataset {dataset}`"
        )
    chosen = names or sorted(cards)
    unknown = [n for n in chosen if n not in cards]
    if unknown:
        raise UserError(f"unknown member {unknown[0]!r}; valid: {', '.join(sorted(cards))}")
    members = []
    for name in chosen:
        model, card = load(Path(cards[name]["path"]), device)
        if device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        members.append(LoadedMember(name, model, card))
    return members


def default_attackers(members: list[LoadedMember]) -> list[LoadedMember]:
    """The black-box attackers of the zoo: its members trained as attackers (CE with
    seeds of their own, ``[[attackers]]`` of ``zoo/<dataset>.toml``)."""
    attackers = [m for m in members if m.card.get("role") == "attacker"]
    if not attackers:
        raise UserError(
            "no black-box attacker in the zoo: add an [[attackers]] entry (CE members with seeds no member has) "
            "to zoo/<dataset>.toml and train it, or name one with --attacker"
        )
    return attackers
