"""Summaries of experiment rows: mean and 95 % t-interval per (setting, member) over the
repeats, and the difference to the ce member paired by repeat (PROTOCOL.md,
"Experiments": every figure reports the mean and a 95 % CI; comparisons with ce are
paired by repeat, i.e. on the same subset or noisy set).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from robench.stats import mean_ci, paired_difference

SUMMARY_COLUMNS = (
    "experiment", "dataset", "setting_name", "setting", "member", "loss", "n", "mean",
    "ci_low", "ci_high", "diff_vs_ce", "diff_ci_low", "diff_ci_high", "n_pairs",
)


def _f(value: Any) -> float:
    return math.nan if value is None or value == "" else float(value)


def summarize(rows: Iterable[dict[str, Any]], level: float = 0.95) -> list[dict[str, Any]]:
    """One row per (experiment, setting, member): ``n`` repeats, ``mean`` test accuracy
    and its t-interval (``ci_low``, ``ci_high``), and ``diff_vs_ce`` = mean over the
    repeats both have of (member − ce) with its paired t-interval (``diff_ci_low``,
    ``diff_ci_high``, ``n_pairs``). The ce member is the setting's member whose loss is
    ``ce`` (the first by name if several); without one the diff columns are NaN.

    Rows may be typed or as read from the CSV (strings). Output order: experiment,
    setting ascending, the ce member first, then members in order of first appearance.
    """
    rows = list(rows)
    order: dict[str, int] = {}
    groups: dict[tuple, dict[int, float]] = {}
    info: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        order.setdefault(row["member"], len(order))
        key = (row["experiment"], _f(row["setting"]), row["member"])
        groups.setdefault(key, {})[int(row["repeat"])] = _f(row["test_accuracy"])
        info.setdefault(key, row)
    ce = {}
    for (experiment, setting, member), _ in sorted(groups.items()):
        if info[(experiment, setting, member)]["loss"] == "ce":
            ce.setdefault((experiment, setting), member)
    out = []
    def position(k: tuple) -> tuple:
        return (k[0], k[1], k[2] != ce.get((k[0], k[1])), order[k[2]])

    for key in sorted(groups, key=position):
        experiment, setting, member = key
        by_repeat = groups[key]
        mean, low, high = mean_ci([by_repeat[r] for r in sorted(by_repeat)], level)
        diff = (math.nan, math.nan, math.nan)
        pairs: list[int] = []
        ce_member = ce.get((experiment, setting))
        if ce_member is not None:
            ce_by_repeat = groups[(experiment, setting, ce_member)]
            pairs = sorted(set(by_repeat) & set(ce_by_repeat))
            if pairs:
                diff = paired_difference([by_repeat[r] for r in pairs],
                                         [ce_by_repeat[r] for r in pairs], level)
        first = info[key]
        out.append({
            "experiment": experiment, "dataset": first.get("dataset", ""),
            "setting_name": first.get("setting_name", ""), "setting": setting,
            "member": member, "loss": first["loss"], "n": len(by_repeat),
            "mean": mean, "ci_low": low, "ci_high": high,
            "diff_vs_ce": diff[0], "diff_ci_low": diff[1], "diff_ci_high": diff[2],
            "n_pairs": len(pairs),
        })
    return out


def _num(value: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def format_summary(summary_rows: Iterable[dict[str, Any]]) -> str:
    """A plain text table of :func:`summarize` rows, columns aligned, one line per row:
    setting, member, n, mean [95 % CI], and the paired difference to ce [95 % CI]."""
    summary_rows = list(summary_rows)
    if not summary_rows:
        return "(no results)"
    setting_name = summary_rows[0].get("setting_name") or "setting"
    header = ["experiment", setting_name, "member", "n", "mean", "ci_low", "ci_high",
              "diff_vs_ce", "diff_ci_low", "diff_ci_high"]
    lines = [header]
    for r in summary_rows:
        lines.append([
            r["experiment"], f"{r['setting']:g}", r["member"], str(r["n"]),
            _num(r["mean"]), _num(r["ci_low"]), _num(r["ci_high"]),
            _num(r["diff_vs_ce"], True), _num(r["diff_ci_low"], True), _num(r["diff_ci_high"], True),
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    left = {0, 2}  # text columns left-aligned, numbers right-aligned
    return "\n".join(
        "  ".join(cell.ljust(w) if i in left else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines
    )


__all__ = ["SUMMARY_COLUMNS", "format_summary", "summarize"]
