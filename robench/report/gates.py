"""Which members' failed validity flags hold back the claims that use their records.

Two flags say a member's numbers cannot be read at all (docs/flags.md):
``eps0_is_clean`` (the attack moved an input at ε = 0: a bug) and
``large_eps_to_chance`` (an unbounded attack leaves accuracy above chance: the gradient
carries no signal, masking or a bug). A claim that uses the records of such a member,
as a defender or as an attacker, is withheld (:mod:`robench.report.verdicts`) until the
failure is explained in ``<results_dir>/explained_flags.toml``::

    [[explained]]
    flag = "large_eps_to_chance"
    scope = "ifgsm/ce/native ce-s0 eps 1"
    reason = "why this failure does not invalidate the member's numbers"

The other flags judge single cells (a rise in ε, IFGSM above FGSM, a transfer attack
stronger than the white-box one); they are listed with the results and do not gate.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Iterable

from robench.errors import UserError
from robench.evaluate.validity import compute_flags
from robench.store import AttackRecord

EXPLAINED = "explained_flags.toml"
GATING_FLAGS = ("eps0_is_clean", "large_eps_to_chance")
ENTRY_KEYS = {"flag", "scope", "reason"}


def explained_flags(results_dir: Path) -> dict[tuple[str, str], str]:
    """(flag, scope) → reason of every entry of ``explained_flags.toml`` (none without the file)."""
    path = Path(results_dir) / EXPLAINED
    if not path.exists():
        return {}
    try:
        entries = tomllib.loads(path.read_text(encoding="utf-8")).get("explained", [])
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    explained = {}
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS or not all(isinstance(v, str) and v.strip()
                                                                              for v in entry.values()):
            raise UserError(f"{path}: each [[explained]] entry needs exactly {', '.join(sorted(ENTRY_KEYS))}, "
                            f"each a non-empty string; got {entry!r}")
        explained[(entry["flag"], entry["scope"])] = entry["reason"]
    return explained


def gates(records: Iterable[AttackRecord], explained: dict[tuple[str, str], str]) -> dict[str, list[str]]:
    """Member → its failed, unexplained gating flags (``flag (scope)``) among ``records``."""
    held: dict[str, list[str]] = {}
    for flag in compute_flags(records):
        if flag["passed"] or flag["flag"] not in GATING_FLAGS or (flag["flag"], flag["scope"]) in explained:
            continue
        for member in sorted(flag["members"]):
            held.setdefault(member, []).append(f"{flag['flag']} ({flag['scope']})")
    return held
