"""Which members' failed validity flags hold back the claims that use their records.

These flags say a member's numbers cannot be read as they are (docs/flags.md):
``eps0_is_clean`` (the attack moved an input at ε = 0: a bug), ``large_eps_to_chance``
(an unbounded attack leaves accuracy above chance: the gradient carries no signal,
masking or a bug) and the gradient-masking flags (:mod:`robench.evaluate.masking`:
Square beating the gradient attacks, an attack that has not converged, a large CE/DLR
gap, and saturated gradients of the evaluation's attack loss). A claim that uses the records of such a member,
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

import pandas as pd

from robench.errors import UserError
from robench.evaluate.masking import MASKING_FLAGS, converged, ensemble_flags, saturation_member
from robench.evaluate.validity import compute_flags
from robench.io import read_bounded
from robench.jsonfile import one_line, shown
from robench.store import AttackRecord

EXPLAINED = "explained_flags.toml"
GATING_FLAGS = ("eps0_is_clean", "large_eps_to_chance") + MASKING_FLAGS
ENTRY_KEYS = {"flag", "scope", "reason"}
MAX_EXPLAINED_BYTES = 2**20  # thousands of entries: far more than a zoo's flags


def explained_flags(results_dir: Path) -> dict[tuple[str, str], str]:
    """(flag, scope) → reason of every entry of ``explained_flags.toml`` (none without the file)."""
    path = Path(results_dir) / EXPLAINED
    if not path.exists() and not path.is_symlink():  # a link loop or a dangling link is read, and refused
        return {}
    text = read_bounded(path, MAX_EXPLAINED_BYTES, "give a TOML file of [[explained]] entries (docs/flags.md)")
    try:
        entries = tomllib.loads(text.decode("utf-8")).get("explained", [])
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError, or an integer too long to convert
        raise UserError(f"{path}: not valid TOML ({one_line(exc)})") from None
    except RecursionError:
        raise UserError(f"{path}: not valid TOML (nested too deep)") from None
    if not isinstance(entries, list):
        raise UserError(f"{path}: explained must be [[explained]] tables, got {shown(entries)}")
    explained = {}
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS or not all(isinstance(v, str) and v.strip()
                                                                              for v in entry.values()):
            raise UserError(f"{path}: each [[explained]] entry needs exactly {', '.join(sorted(ENTRY_KEYS))}, "
                            f"each a non-empty string; got {shown(entry)}")
        explained[(entry["flag"], entry["scope"])] = entry["reason"]
    return explained


def failed_flags(records: Iterable[AttackRecord], stored: pd.DataFrame,
                 other_budgets: Iterable[AttackRecord] = ()) -> list[tuple[str, str, str]]:
    """(member, flag, scope) of every failed flag over ``records``; the ``converged``
    flags of their white-box runs against ``other_budgets`` (the same runs with other
    steps, restarts or queries), and the ensemble flags of those runs (``robench run``'s
    gradient-free check at AutoAttack's Square budget is one); and the stored
    ``gradient_saturation`` flags of the records' attack losses (those are measured on the
    models, not computed from records)."""
    records = list(records)
    others = [r.as_dict() for r in other_budgets if r.mode == "whitebox"]
    whitebox = [r.as_dict() for r in records if r.mode == "whitebox"] + others
    computed = compute_flags(records)
    seen = {(f["flag"], f["scope"]) for f in computed}
    computed += [f for f in converged(whitebox) + ensemble_flags(others) if (f["flag"], f["scope"]) not in seen]
    failed = [(member, f["flag"], f["scope"]) for f in computed if not f["passed"]
              for member in sorted(f["members"])]
    losses = {r.attack_loss for r in records}
    for flag in stored.itertuples() if not stored.empty else ():
        loss, member = saturation_member(flag.scope)
        if flag.flag == "gradient_saturation" and not flag.passed and loss in losses:
            failed.append((member, flag.flag, flag.scope))
    return failed


def gates(records: Iterable[AttackRecord], explained: dict[tuple[str, str], str],
          stored: pd.DataFrame | None = None, other_budgets: Iterable[AttackRecord] = ()) -> dict[str, list[str]]:
    """Member → its failed, unexplained gating flags (``flag (scope)``) among ``records``,
    their runs under ``other_budgets`` and the ``stored`` saturation flags of their attack
    losses."""
    held: dict[str, list[str]] = {}
    for member, flag, scope in failed_flags(records, pd.DataFrame() if stored is None else stored, other_budgets):
        if flag in GATING_FLAGS and (flag, scope) not in explained:
            held.setdefault(member, []).append(f"{flag} ({scope})")
    return held
