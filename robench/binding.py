"""A zoo member's card bound to its weights: the card's account of how the weights were
made travels inside the weights file, where the card's SHA-256 of that file covers it.

When a member is saved (:func:`robench.zoo.save_member`), the card — every key but
:data:`UNBOUND` — goes into the safetensors header's ``__metadata__`` as one string of
canonical JSON under :data:`METADATA_KEY`. The card then names the SHA-256 of a file
that holds its own configuration: name, dataset, architecture, class count, head,
normalisation, loss and its parameters, seed, role, training spec, precision, thread
count, the measured accuracies and epochs, and an experiment model's setting. Every
command that lists or loads a member compares the card with that copy
(:func:`binding_problem`) and refuses a card that says anything else: a card edited
after training (``loss`` changed to ``hinge`` on CE weights), or a card and weights of
two members put together.

The bytes are deterministic (no time in them: :data:`UNBOUND` leaves out the keys that
say when and for how long a member trained), so the same training gives the same file.

This is tamper-evidence, not a signature: someone who rewrites the weights, their
metadata and the card's SHA-256 together is not detected (docs/reliability.md).
Weights saved before the binding carry no metadata and are refused until
``robench zoo migrate`` has bound them (:mod:`robench.zoo_migrate`).
"""

from __future__ import annotations

import json
from typing import Any

METADATA_KEY = "robench.card"
# keys of the card that the weights do not carry: the SHA-256 of the weights themselves,
# and when / how long / from which commit the member was trained (not deterministic),
# and the folder list_members adds
UNBOUND = ("weights_sha256", "created", "wall_time_s", "git_commit", "path")
MIGRATE = "bind them once with `robench zoo migrate --zoo-dir ZOO` (it keeps the tensors)"
EDITED = ("the card was edited or belongs to other weights: restore it, or retrain the member with "
          "`robench train zoo --force`")


def canonical(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no spaces, ASCII (NaN as ``NaN``, as the
    cards hold an experiment model's validation accuracy)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def bound_part(card: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``card`` that its weights carry (all but :data:`UNBOUND`)."""
    return {k: v for k, v in card.items() if k not in UNBOUND}


def metadata_of(card: dict[str, Any]) -> dict[str, str]:
    """The safetensors ``__metadata__`` that binds weights to ``card``."""
    return {METADATA_KEY: canonical(bound_part(card))}


def is_bound(metadata: dict[str, str] | None) -> bool:
    """True when safetensors ``metadata`` holds a card's configuration."""
    return bool(metadata) and METADATA_KEY in metadata


def binding_problem(card: dict[str, Any], metadata: dict[str, str] | None, card_path: Any,
                    weights_path: Any) -> str | None:
    """Where ``card`` (read from ``card_path``) differs from the configuration its
    weights (``weights_path``) carry in ``metadata``, as one sentence naming the file and
    the field; None when they agree."""
    if not is_bound(metadata):
        return (f"{weights_path} carries no training configuration (saved before cards were bound to their "
                f"weights); {MIGRATE}")
    try:
        trained = json.loads(metadata[METADATA_KEY])
    except (ValueError, RecursionError):
        trained = None
    if not isinstance(trained, dict):
        return f"{weights_path} carries a training configuration that is not a JSON object; {EDITED}"
    said = bound_part(card)
    for key in sorted(set(said) | set(trained)):
        name = _shown(key, 40)  # a key of a hostile card may hold a line break
        if key not in trained:
            return f"{card_path} says {name} {_shown(said[key])} but its weights were trained with no {name}; {EDITED}"
        if key not in said:
            return f"{card_path} has no {name} but its weights were trained with {name} {_shown(trained[key])}; {EDITED}"
        if canonical(said[key]) != canonical(trained[key]):
            field, was, is_ = _difference(name, said[key], trained[key])
            return f"{card_path} says {field} {_shown(was)} but its weights were trained with {_shown(is_)}; {EDITED}"
    return None


def _difference(key: str, said: Any, trained: Any) -> tuple[str, Any, Any]:
    """(field, card's value, weights' value) of the first difference: a nested object's
    differing entry (``loss delta``; its ``name`` is the key's own: ``loss``)."""
    if isinstance(said, dict) and isinstance(trained, dict):
        for sub in sorted(set(said) | set(trained)):
            if canonical(said.get(sub)) != canonical(trained.get(sub)):
                return (key if sub == "name" else f"{key} {_shown(sub, 40)}"), said.get(sub), trained.get(sub)
    return key, said, trained


def _shown(value: Any, limit: int = 60) -> str:
    """``value`` for a one-line message: a plain string as it is, else canonical JSON;
    cut to ``limit`` characters."""
    text = value if isinstance(value, str) and value.isprintable() and value else canonical(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
