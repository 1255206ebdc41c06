"""Plain-text tables of attack results printed at the end of ``robench attack``."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from robench.store import AttackRecord


def format_accuracy_table(records: Sequence[AttackRecord]) -> str:
    """Accuracy per (mode, attack, attacker → defender) row and ε column."""
    grid: dict[tuple, dict[float, float]] = defaultdict(dict)
    eps_values: set[float] = set()
    for r in records:
        grid[(r.mode, r.attack, r.attacker, r.defender)][r.eps] = r.accuracy
        eps_values.add(r.eps)
    columns = sorted(eps_values)
    header = ["mode", "attack", "attacker -> defender"] + [f"{e:.4g}" for e in columns]
    lines = [header]
    for (mode, attack, attacker, defender), cells in sorted(grid.items()):
        pair = attacker if attacker == defender else f"{attacker} -> {defender}"
        lines.append([mode, attack, pair] + [f"{cells[e]:.4f}" if e in cells else "" for e in columns])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)
