"""Plain-text tables of attack results printed at the end of ``robench attack``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def format_accuracy_table(rows: list[dict[str, Any]]) -> str:
    """Accuracy per (attack, attacker → defender) row and ε column."""
    grid: dict[tuple, dict[float, float]] = defaultdict(dict)
    eps_values: set[float] = set()
    for r in rows:
        key = (r["experiment"], r["attack"], r["attacker"], r["defender"])
        grid[key][float(r["eps"])] = float(r["accuracy"])
        eps_values.add(float(r["eps"]))
    columns = sorted(eps_values)
    header = ["experiment", "attack", "attacker -> defender"] + [f"{e:.4g}" for e in columns]
    lines = [header]
    for (experiment, attack, attacker, defender), cells in sorted(grid.items()):
        pair = attacker if attacker == defender else f"{attacker} -> {defender}"
        lines.append([experiment, attack, pair] + [f"{cells[e]:.4f}" if e in cells else "" for e in columns])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)
