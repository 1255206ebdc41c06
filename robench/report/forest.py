"""The claims at a glance: a forest plot, one row per claim, drawn first on the page.

Each row shows the claim's estimate (treatment − reference accuracy), its simultaneous
95 % interval (Bonferroni within its family, :mod:`robench.report.verdicts`) as a thick
bar and its marginal 95 % interval as a thin one; a line and a label separate the primary
family from the secondary one. Every claim is stated as "treatment beats reference", so
the side right of the zero line is shaded as the direction the claim states. A withheld
claim is drawn hollow, a claim with no data says "not run", and a claim that left out
failed trainings carries a dagger.
"""

from __future__ import annotations

import math

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from robench.report.verdicts import CONTRADICTED, NOT_RUN, SUPPORTED, WITHHELD

COLOURS = {SUPPORTED: "#2d6a4f", CONTRADICTED: "#c1121f"}
OTHER = "#52606d"


def forest_figure(claims: pd.DataFrame) -> Figure:
    """The forest plot of ``claims`` (the frame of :func:`robench.report.verdicts.evaluate_claims`)."""
    rows = claims.reset_index(drop=True)
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(8.5, 0.42 * len(rows) + 1.3), layout="constrained")
        ax = fig.subplots()
    spans = [abs(v) for v in (*rows["simultaneous_low"], *rows["simultaneous_high"], *rows["difference"])
             if math.isfinite(v)]
    reach = max(spans, default=0.05) * 1.15 or 0.05
    ax.axvspan(0, reach, color="#d8f3dc", alpha=0.45, linewidth=0, label="the stated direction (treatment better)")
    ax.axvline(0, color="#1f2933", linewidth=1)
    for y, row in enumerate(rows.itertuples()):
        _draw_claim(ax, len(rows) - 1 - y, row)
    for first, family in rows.groupby("family", sort=False).head(1)["family"].items():
        y = len(rows) - 1 - first + 0.5
        ax.axhline(y, color="#9aa5b1", linewidth=0.8, linestyle="--")
        ax.text(-reach, y - 0.05, f" {family} family (m = {rows.loc[first, 'family_size']})", va="top", ha="left",
                fontsize="x-small", color=OTHER)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_label(r) for r in reversed(list(rows.itertuples()))], fontsize="small")
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("treatment − reference accuracy: difference of means over units, simultaneous 95 % (thick) "
                  "and marginal 95 % (thin) Welch intervals")
    ax.legend(loc="lower right", fontsize="x-small", frameon=True)
    return fig


def _draw_claim(ax, y: int, row) -> None:
    if row.verdict == NOT_RUN or not math.isfinite(row.difference):
        ax.text(0, y, " not run" if row.verdict == NOT_RUN else " no estimate", va="center", ha="left",
                fontsize="x-small", color=OTHER, style="italic")
        return
    colour = COLOURS.get(row.verdict, OTHER)
    if math.isfinite(row.ci_low):
        ax.plot([row.ci_low, row.ci_high], [y, y], color=colour, linewidth=1, solid_capstyle="butt")
    if math.isfinite(row.simultaneous_low):
        ax.plot([row.simultaneous_low, row.simultaneous_high], [y, y], color=colour, linewidth=4, alpha=0.55,
                solid_capstyle="butt")
    hollow = row.verdict == WITHHELD
    ax.plot([row.difference], [y], marker="o", markersize=6, color=colour,
            markerfacecolor="white" if hollow else colour, zorder=3)


def _label(row) -> str:
    dagger = " †" if isinstance(row.left_out, str) and row.left_out else ""
    return f"{row.claim}: {row.statement} [{row.verdict}]{dagger}"


CAPTION = ("Every claim, primary family (the paper's statements) above secondary (exploratory): the difference of "
           "the two sides' means with its simultaneous 95 % interval (thick, Bonferroni over the family's m claims "
           "tested) and marginal 95 % interval (thin); green: supported, red: contradicted, grey: inconclusive; "
           "hollow: withheld by a validity flag; † left out failed trainings (listed at the top). Right of 0 is "
           "the direction each claim states.")
