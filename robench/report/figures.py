"""Seaborn figures mirroring the paper (Figs. 4–8), a transfer-matrix heatmap and the
distribution of clean logit margins. Colours and curves are per member configuration
(loss, bound, δ, head: ``1toN-sym-d4``); a configuration trained with several seeds is
drawn as its mean over the seeds with the 95 % t-band, each seed's curve faint behind it.

Figures are drawn on :class:`matplotlib.figure.Figure` objects directly, never through
pyplot: saving renders with the Agg canvas whatever backend the caller uses, no window
opens and no global figure state is left behind. Each is saved as PNG and SVG, each file atomically. Curves show the mean; bands
are 95 % Student-t intervals over repeats (:func:`robench.stats.mean_ci`) and appear
only where there are repeats.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from robench.io import atomic_write
from robench.report.content import FigureFile
from robench.report.tables import fmt_eps
from robench.stats import mean_ci

LOSS_ORDER = ("ce", "hinge", "1toN", "1toN+ce")
STYLE = "whitegrid"
DPI = 110


# ---------------------------------------------------------------- helpers

def configuration_order(configurations: Iterable[str], losses: dict[str, str]) -> list[str]:
    """Configurations sorted by loss (ce, hinge, 1toN, 1toN+ce, others), then by name."""
    rank = {loss: i for i, loss in enumerate(LOSS_ORDER)}
    return sorted(set(configurations), key=lambda c: (rank.get(losses.get(c, ""), len(rank)), c))


def make_palette(configurations: list[str]) -> dict[str, tuple]:
    """One fixed colour per configuration, shared by every figure of a report."""
    colours = sns.color_palette("tab10" if len(configurations) <= 10 else "husl", max(len(configurations), 1))
    return dict(zip(configurations, colours))


def save_figure(fig: Figure, figures_dir: Path, name: str, caption: str) -> FigureFile:
    """Write ``<name>.png`` and ``<name>.svg`` atomically; return their description."""
    paths = {}
    for fmt in ("png", "svg"):
        path = Path(figures_dir) / f"{name}.{fmt}"
        atomic_write(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight"))
        paths[fmt] = path
    return FigureFile(name, caption, paths["png"], paths["svg"])


def with_intervals(rows: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean and 95 % t-interval of ``value`` over the repeats of each ``keys`` group."""
    out = []
    for key, group in rows.groupby(keys, sort=True):
        mean, low, high = mean_ci(group[value].astype(float).tolist())
        out.append({**dict(zip(keys, key)), "mean": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(out)


def _lines(ax, frame: pd.DataFrame, x: str, palette: dict, losses: dict[str, str],
           seeds: pd.DataFrame | None = None) -> None:
    """Mean curves per configuration (colour: configuration, dashes: loss) and their
    bands, if any; ``seeds`` (configuration, seed, ``x``, accuracy): each seed's curve,
    faint, behind them."""
    frame = frame.assign(loss=frame["configuration"].map(losses).fillna("?"))
    order = [c for c in palette if c in set(frame["configuration"])]
    if seeds is not None:
        for (configuration, _), curve in seeds.groupby(["configuration", "seed"]):
            curve = curve.sort_values(x)
            ax.plot(curve[x], curve["accuracy"], color=palette[configuration], alpha=0.25, linewidth=0.7, zorder=1)
    sns.lineplot(data=frame, x=x, y="mean", hue="configuration", hue_order=order, style="loss",
                 style_order=[l for l in LOSS_ORDER if l in set(frame["loss"])] or None,
                 markers=True, palette=palette, errorbar=None, ax=ax)
    for configuration, group in frame.groupby("configuration"):
        group = group.sort_values(x)
        if group["ci_low"].notna().any():
            low, high = group["ci_low"].clip(0, 1), group["ci_high"].clip(0, 1)  # accuracies live in [0, 1]
            ax.fill_between(group[x], low, high, color=palette[configuration], alpha=0.15, linewidth=0)


def _legend_outside(fig: Figure, axes: list, palette: dict) -> None:
    """One legend right of the panels with every entry of every panel (a configuration
    drawn in one panel only is listed too): the configurations in ``palette`` order, then
    the losses in :data:`LOSS_ORDER`, each under its heading; the panels' own legends removed."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    order = ["configuration", *palette, "loss", *LOSS_ORDER]
    labels = [label for label in order if label in entries] + [label for label in entries if label not in order]
    fig.legend([entries[label] for label in labels], labels, loc="outside right center", frameon=False,
               fontsize="small")


def _percent(value: float, _pos=None) -> str:
    return f"{100 * value:g}%"


# ---------------------------------------------------------------- experiments (Figs. 4–5)

def experiment_figure(summary: pd.DataFrame, experiment: str, palette: dict, losses: dict[str, str]) -> Figure:
    """Test accuracy vs training-subset fraction (log x, Fig. 4) or vs noise rate (Fig. 5)."""
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(7.5, 4.2), layout="constrained")
        ax = fig.subplots()
    _lines(ax, summary, "setting", palette, losses)
    settings = sorted(summary["setting"].unique())
    if experiment == "generalization":
        ax.set_xscale("log")
        ax.set_xlabel("training subset (% of the training split, log scale)")
    else:
        ax.set_xlabel("label noise rate")
    ax.set_xticks(settings)
    ax.xaxis.set_major_formatter(FuncFormatter(_percent))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{experiment}: mean over repeats, 95 % CI band (clipped to [0, 1])")
    _legend_outside(fig, [ax], palette)
    return fig


# ---------------------------------------------------------------- attacks (Figs. 6–8)

def attack_figure(rows: pd.DataFrame, title: str, palette: dict, losses: dict[str, str]) -> Figure:
    """Accuracy vs ε, one panel per attack: per configuration the mean over its seeds
    (each seed first averaged over the attackers of ``rows``) with the 95 % t-band, and
    each seed's curve faint behind it. ``rows``: attack records of one mode with a
    ``configuration`` column."""
    seeds = (rows.groupby(["attack", "configuration", "defender_seed", "eps"])["accuracy"].mean().reset_index()
             .rename(columns={"defender_seed": "seed"}))
    curves = with_intervals(seeds, ["attack", "configuration", "eps"], "accuracy")
    attacks = sorted(curves["attack"].unique())
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(4.2 * len(attacks) + 1.5, 4.0), layout="constrained")
        axes = list(fig.subplots(1, len(attacks), sharey=True, squeeze=False)[0])
    for ax, attack in zip(axes, attacks):
        _lines(ax, curves[curves["attack"] == attack], "eps", palette, losses, seeds[seeds["attack"] == attack])
        ax.set_title("worst case" if attack == "worst" else attack.upper())
        norms = set(rows.loc[rows["attack"] == attack, "norm"]) if "norm" in rows else {"linf"}
        ax.set_xlabel("ε (L∞, pixels in [0, 1])" if norms == {"linf"} else f"ε ({'/'.join(sorted(norms))})")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
    fig.suptitle(title)
    _legend_outside(fig, axes, palette)
    return fig


def matrix_figure(long: pd.DataFrame, eps: float, attackers: list[str], configurations: list[str]) -> Figure:
    """Heatmap of attacker (rows) × defender configuration (columns) accuracy at one ε,
    one panel per attack, each cell the mean over the configuration's seeds; ``long``:
    black-box records (attack, eps, attacker, configuration, accuracy)."""
    attacks = sorted(long["attack"].unique())
    at_eps = long[long["eps"] == eps]
    attackers = [a for a in attackers if a in set(at_eps["attacker"])]  # every panel: the same rows and
    columns = [c for c in configurations if c in set(at_eps["configuration"])]  # columns, so labels fit all
    width = max(4.0, 0.75 * len(columns) + 1.0)
    height = max(3.0, 0.5 * len(attackers) + 2.0)
    fig = Figure(figsize=(width * len(attacks), height), layout="constrained")
    axes = fig.subplots(1, len(attacks), squeeze=False)[0]
    for ax, attack in zip(axes, attacks):
        cell = at_eps[at_eps["attack"] == attack]
        wide = cell.pivot_table(index="attacker", columns="configuration", values="accuracy", aggfunc="mean")
        wide = wide.reindex(index=attackers, columns=columns)  # blank: not computed
        sns.heatmap(wide, vmin=0, vmax=1, cmap="viridis", annot=True, fmt=".2f", ax=ax,
                    cbar=ax is axes[-1], annot_kws={"fontsize": 8}, square=False)
        ax.set_title(f"{attack.upper()}, ε = {fmt_eps(eps)}")
        ax.set_xlabel("defender configuration (mean over seeds)")
        ax.set_ylabel("attacker" if ax is axes[0] else "")
        if ax is not axes[0]:
            ax.set_yticklabels([])
        ax.tick_params(axis="x", labelrotation=45)
    return fig


# ---------------------------------------------------------------- margins

def margin_figure(margins: pd.DataFrame, order: list[str], palette: dict[str, tuple]) -> Figure:
    """Violin per configuration (its seeds pooled) of the clean logit margin
    z_y − max_{k≠y} z_k, in the configuration's colour of every other figure."""
    order = [c for c in order if c in set(margins["configuration"])]
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(8.0, 0.55 * len(order) + 1.6), layout="constrained")
        ax = fig.subplots()
    sns.violinplot(data=margins, y="configuration", x="margin", hue="configuration", order=order, hue_order=order,
                   palette={m: palette[m] for m in order}, cut=0, inner="quartile", density_norm="width",
                   linewidth=0.8, ax=ax, dodge=False, legend=False)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("clean logit margin  z_y − max_{k≠y} z_k  (< 0: misclassified)")
    ax.set_ylabel("")
    low, high = margins["margin"].quantile([0.005, 0.995])
    if math.isfinite(low) and math.isfinite(high) and high > low:
        pad = 0.05 * (high - low)
        ax.set_xlim(min(low, 0) - pad, high + pad)
    return fig
