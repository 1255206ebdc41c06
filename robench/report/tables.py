"""Report tables: tidy long-format frames, pivoted only for display.

Each table is saved twice under ``tables/``: the long frame as CSV (for analysis) and
its display form as Markdown (for reading). Numbers in display frames are formatted
strings; NaN shows as ``–``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from robench.experiments.summary import SUMMARY_COLUMNS, summarize
from robench.io import atomic_write_text
from robench.evaluate.validity import FLAGS
from robench.stats import clopper_pearson

DASH = "–"
ATTACK_COLUMNS = ("attacker", "defender", "defender_loss", "attack", "attack_loss", "backend", "schedule",
                  "coupled_batch", "n", "precision", "eps", "steps", "step_size", "accuracy", "ci_low", "ci_high",
                  "clean_accuracy")
CARD_COLUMNS = ("member", "loss", "bound", "delta", "head", "seed", "clean_test_accuracy",
                "val_accuracy", "epochs", "steps", "stop_reason", "num_train", "weights_sha256")


# ---------------------------------------------------------------- formatting

def fmt_number(value: Any, digits: int = 4, signed: bool = False) -> str:
    """``0.1234`` / ``+0.0120``; NaN and None as a dash; ints and text unchanged."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, float):
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return str(value)


def fmt_eps(eps: float) -> str:
    """ε as a column label: ``0.15`` or, for /255 grids, ``8/255``."""
    scaled = eps * 255
    if abs(scaled - round(scaled)) < 1e-6 and abs(eps - round(eps, 3)) > 1e-9:
        return f"{round(scaled)}/255"
    return f"{eps:g}"


def display(frame: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Every cell as a display string."""
    out = frame.copy()
    for column in out.columns:
        out[column] = [fmt_number(v, digits) for v in out[column].astype(object)]
    return out.astype(str)


def interval(mean: float, low: float, high: float, signed: bool = False) -> str:
    """``0.8123 [0.7900, 0.8346]`` (the interval omitted when it is NaN)."""
    text = fmt_number(mean, signed=signed)
    if isinstance(low, float) and not (math.isnan(low) or math.isnan(high)):
        text += f" [{fmt_number(low, signed=signed)}, {fmt_number(high, signed=signed)}]"
    return text


def fmt_p(p: float) -> str:
    """A p-value for display: ``0.0123``, ``<0.0001``; a dash when there is none."""
    if p is None or not math.isfinite(p):
        return DASH
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub pipe table of a display frame (``|`` in cells escaped)."""
    if frame.empty:
        return "(no rows)\n"
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")
    header = [cell(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_table(tables_dir: Path, name: str, long: pd.DataFrame, shown: pd.DataFrame | str) -> None:
    """``tables/<name>.csv`` (the long frame) and ``tables/<name>.md`` (the display form)."""
    atomic_write_text(Path(tables_dir) / f"{name}.csv", long.to_csv(index=False, lineterminator="\n"))
    text = shown if isinstance(shown, str) else to_markdown(shown)
    atomic_write_text(Path(tables_dir) / f"{name}.md", text)


# ---------------------------------------------------------------- clean accuracy

def _card_row(card: dict[str, Any]) -> dict[str, Any]:
    loss = card.get("loss", {})
    one_to_n = str(loss.get("name", "")).startswith("1toN")
    return {
        "member": card.get("name"),
        "loss": loss.get("name"),
        "bound": loss.get("bound") if one_to_n else "",
        "delta": float(loss["delta"]) if loss.get("name") != "ce" and "delta" in loss else math.nan,
        "head": card.get("head"),
        "seed": card.get("seed"),
        "clean_test_accuracy": float(card.get("clean_test_accuracy", math.nan)),
        "val_accuracy": float(card.get("val_accuracy", math.nan)),
        "epochs": card.get("epochs"),
        "steps": card.get("steps"),
        "stop_reason": card.get("stop_reason"),
        "num_train": card.get("num_train"),
        "weights_sha256": str(card.get("weights_sha256", ""))[:12],
    }


def clean_accuracy_table(cards: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per zoo member: its loss, head, seed and clean test accuracy (from its card)."""
    return pd.DataFrame([_card_row(c) for c in cards], columns=list(CARD_COLUMNS))


def clean_accuracy_display(table: pd.DataFrame) -> pd.DataFrame:
    """Display form of :func:`clean_accuracy_table` (δ as ``4``, not ``4.0000``)."""
    return display(table.assign(delta=[DASH if math.isnan(d) else f"{d:g}" for d in table["delta"]]))


# ---------------------------------------------------------------- attacks

def attack_table(attacks: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Long rows of one mode (``whitebox`` / ``blackbox``): accuracy per member × attack × ε."""
    if attacks.empty:
        return pd.DataFrame(columns=list(ATTACK_COLUMNS))
    rows = attacks[attacks["mode"] == mode]
    low, high = zip(*(clopper_pearson(c, n) for c, n in zip(rows["correct"], rows["n"]))) if len(rows) else ((), ())
    rows = rows.assign(coupled_batch=[_batch_text(b) for b in rows["coupled_batch"]], ci_low=low, ci_high=high)
    columns = [c for c in ATTACK_COLUMNS if c in rows]
    keys = [c for c in ("attacker", "defender", "attack", "attack_loss", "backend", "schedule", "coupled_batch", "n",
                        "precision", "eps") if c in rows]
    return rows[columns].sort_values(keys).reset_index(drop=True)


def _batch_text(batch: Any) -> str:
    """A record's coupled batch as a table cell: blank when the attack loss couples no samples."""
    return "" if batch is None or pd.isna(batch) else str(int(batch))


def _varying(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if c in frame and frame[c].nunique() > 1]


RUN_COLUMNS = ["attack_loss", "backend", "schedule", "coupled_batch", "n", "precision"]  # how a row was run


def shared_run_settings(long: pd.DataFrame) -> str:
    """The run settings every row of ``long`` shares (those that vary are columns of
    :func:`attack_pivot`), e.g. ``attack loss ce, backend native, …, precision bf16``."""
    shared = [c for c in RUN_COLUMNS if c in long and long[c].nunique(dropna=False) == 1]
    return ", ".join(f"{c.replace('_', ' ')} {long[c].iloc[0]}" for c in shared
                     if not (c == "coupled_batch" and long[c].iloc[0] == ""))


def attack_pivot(long: pd.DataFrame, mode: str, order: list[str] | None = None) -> pd.DataFrame:
    """Display form: one row per (attacker,) defender and attack, one column per ε, each
    cell the accuracy and its exact 95 % interval over the test images; members in
    ``order`` (then by name)."""
    if long.empty:
        return pd.DataFrame()
    index = (["attacker"] if mode == "blackbox" else []) + ["defender", "attack"]
    index += _varying(long, RUN_COLUMNS)
    cells = long.assign(cell=[interval(a, lo, hi) for a, lo, hi in zip(long["accuracy"], long["ci_low"],
                                                                         long["ci_high"])])
    wide = cells.pivot_table(index=index, columns="eps", values="cell", aggfunc="first").reset_index()
    rank = {m: i for i, m in enumerate(order or [])}
    keys = [c for c in ("attacker", "defender") if c in wide]
    wide = wide.sort_values(keys, key=lambda col: col.map(lambda m: (rank.get(m, len(rank)), m)), kind="stable")
    wide.columns = [f"ε={fmt_eps(e)}" if isinstance(e, float) else e for e in wide.columns]
    return display(wide.reset_index(drop=True))


def configuration_pivot(rows: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Display form of an evaluation's rows (with a ``configuration`` column): one row per
    configuration and attack, one column per ε, each cell the mean accuracy over the
    configuration's members (and attackers), with how many members; configurations in
    ``order``."""
    if rows.empty:
        return pd.DataFrame()
    means = rows.groupby(["configuration", "attack", "eps"], sort=False)["accuracy"].mean()
    wide = means.map(fmt_number).unstack("eps").reset_index()
    members = rows.groupby(["configuration", "attack"], sort=False)["defender"].nunique()
    wide.insert(2, "members", [str(members[(c, a)]) for c, a in zip(wide["configuration"], wide["attack"])])
    rank = {c: i for i, c in enumerate(order)}
    wide = wide.sort_values(["configuration", "attack"], key=lambda col: col.map(
        lambda v: (rank.get(v, len(rank)), v)) if col.name == "configuration" else col, kind="stable")
    wide.columns = [f"ε={fmt_eps(e)}" if isinstance(e, float) else e for e in wide.columns]
    return display(wide.reset_index(drop=True))


def matrix_attackers(attacks: pd.DataFrame) -> list[str]:
    """The attackers of the black-box rows, when there are several (a matrix); else []."""
    if attacks.empty:
        return []
    attackers = sorted(attacks.loc[attacks["mode"] == "blackbox", "attacker"].unique())
    return attackers if len(attackers) > 1 else []


def matrix_table(attacks: pd.DataFrame) -> pd.DataFrame:
    """Long attacker × defender accuracies per attack and ε (black-box cells plus the
    white-box diagonal of attackers that are also defenders); empty without a matrix."""
    attackers = matrix_attackers(attacks)
    if not attackers:
        return pd.DataFrame(columns=["attack", "eps", "attacker", "defender", "accuracy"])
    blackbox = attacks[(attacks["mode"] == "blackbox") & attacks["attacker"].isin(attackers)]
    defenders = set(blackbox["defender"]) | set(attackers)
    diagonal = attacks[(attacks["mode"] == "whitebox") & attacks["attacker"].isin(attackers)
                       & attacks["defender"].isin(defenders)]
    rows = pd.concat([blackbox, diagonal])[["attack", "eps", "attacker", "defender", "accuracy"]]
    return rows.sort_values(["attack", "eps", "attacker", "defender"]).reset_index(drop=True)


def matrix_pivot(long: pd.DataFrame, attack: str, eps: float, members: list[str] | None = None) -> pd.DataFrame:
    """Attacker (rows) × defender (columns) accuracy of one attack at one ε (numbers),
    rows and columns in the order of ``members`` when given."""
    cell = long[(long["attack"] == attack) & (long["eps"] == eps)]
    wide = cell.pivot_table(index="attacker", columns="defender", values="accuracy", aggfunc="first")
    if members is None:
        return wide
    return wide.reindex(index=[m for m in members if m in wide.index],
                        columns=[m for m in members if m in wide.columns])


def matrix_markdown(long: pd.DataFrame, members: list[str] | None = None) -> str:
    """Every (attack, ε) matrix as a titled Markdown table (members in that order)."""
    blocks = []
    for (attack, eps), _ in long.groupby(["attack", "eps"], sort=True):
        wide = matrix_pivot(long, attack, eps, members)
        blocks.append(f"### {attack}, ε = {fmt_eps(eps)}\n\n"
                      + to_markdown(display(wide.reset_index().rename(columns={"attacker": "attacker \\ defender"}))))
    return "\n".join(blocks) or "(no matrix)\n"


def middle_eps(long: pd.DataFrame) -> float:
    """The middle value of the ε grid of ``long`` (upper middle for an even count)."""
    grid = sorted(long["eps"].unique())
    return float(grid[len(grid) // 2])


def nearest_eps(long: pd.DataFrame, wanted: float) -> float:
    """The ε of the grid closest to ``wanted``."""
    grid = sorted(long["eps"].unique())
    return float(min(grid, key=lambda e: (abs(e - wanted), e)))


# ---------------------------------------------------------------- experiments

def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """:func:`robench.experiments.summary.summarize` of experiment rows, as a frame."""
    if rows.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    return pd.DataFrame(summarize(rows.to_dict("records")), columns=list(SUMMARY_COLUMNS))


def summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    """Display form: setting, member, repeats, mean [95 % CI], paired difference to ce [95 % CI]."""
    if summary.empty:
        return pd.DataFrame()
    setting = str(summary["setting_name"].iloc[0] or "setting")
    ce = summary[summary["loss"] == "ce"].groupby("setting")["member"].first()  # summarize's reference
    reference = [ce.get(s) == m for s, m in zip(summary["setting"], summary["member"])]
    return pd.DataFrame({
        setting: [f"{s:g}" for s in summary["setting"]],
        "member": summary["member"],
        "loss": summary["loss"],
        "repeats": summary["n"].astype(str),
        "accuracy mean [95% CI]": [interval(m, lo, hi) for m, lo, hi in
                                   zip(summary["mean"], summary["ci_low"], summary["ci_high"])],
        "member − ce [95% CI], paired": [
            "(reference)" if ref else interval(m, lo, hi, signed=True) if n else DASH
            for m, lo, hi, n, ref in zip(summary["diff_vs_ce"], summary["diff_ci_low"], summary["diff_ci_high"],
                                         summary["n_pairs"], reference)],
    })


# ---------------------------------------------------------------- flags

def flag_counts(flags: pd.DataFrame) -> pd.DataFrame:
    """Per flag kind: checked, passed, failed (failing kinds first), then every flag kind
    with no check at all, its counts 0 (its status "not run", never "passed")."""
    counts = flags.groupby("flag", sort=False)["passed"].agg(checked="size", passed="sum").reset_index()
    counts["failed"] = counts["checked"] - counts["passed"]
    counts = counts.sort_values("failed", ascending=False, kind="stable")
    absent = pd.DataFrame({"flag": not_run_flags(flags), "checked": 0, "passed": 0, "failed": 0})
    counts = pd.concat([counts, absent], ignore_index=True).astype({"checked": int, "passed": int, "failed": int})
    counts["status"] = ["not run" if c == 0 else "failed" if f else "passed"
                        for c, f in zip(counts["checked"], counts["failed"])]
    return counts


def not_run_flags(flags: pd.DataFrame) -> list[str]:
    """The flag kinds (:data:`robench.evaluate.validity.FLAGS`) with no check among ``flags``."""
    checked = set(flags["flag"]) if not flags.empty else set()
    return [name for name in FLAGS if name not in checked]


def flags_line(flags: pd.DataFrame) -> str:
    """``F of N checks failed; not run: …`` for a summary."""
    failed = int((~flags["passed"].astype(bool)).sum()) if not flags.empty else 0
    absent = not_run_flags(flags)
    return (f"{failed} of {len(flags)} checks failed" +
            (f"; not run (no records they check): {', '.join(absent)}" if absent else ""))


# ---------------------------------------------------------------- claims per ε

def claims_by_eps_display(by_eps: pd.DataFrame) -> pd.DataFrame:
    """Display form: one row per claim and attack, one column per ε, each cell the mean
    difference and its 95 % interval."""
    if by_eps.empty:
        return pd.DataFrame()
    cells = by_eps.assign(text=[interval(m, lo, hi, signed=True) for m, lo, hi in
                                zip(by_eps["difference"], by_eps["ci_low"], by_eps["ci_high"])])
    wide = cells.pivot_table(index=["claim", "attack"], columns="eps", values="text", aggfunc="first").reset_index()
    wide.columns = [f"ε={fmt_eps(e)}" if isinstance(e, float) else e for e in wide.columns]
    return wide.fillna(DASH).astype(str)
