"""Robustness reports: pandas tables, seaborn figures, one HTML page and its Markdown twin.

:func:`write_report` reads a dataset's records from the results folder's store (attack
cells, experiment cells, validity flags; any may be missing) and its zoo cards, and
writes into ``out_dir`` (``reports/<dataset>/`` by default in the CLI)::

    index.html          one self-contained page (inline CSS, figures as data URIs)
    report.md           the same content, figures linked as figures/<name>.png
    tables/<name>.csv   tidy long-format tables; tables/<name>.md their display form
    figures/<name>.png  and .svg: Figs. 4–8 of the paper, the transfer matrix, margins

Missing inputs become notes naming the command that produces them; every file is
written atomically. The claims and their statistics are defined in
:mod:`robench.report.claims`.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib
import pandas as pd
import seaborn as sns
import torch

import robench
from robench.attacks import ATTACK_LOSSES
from robench.attacks.backends import check_backend
from robench.errors import UserError
from robench.io import atomic_write_text
from robench.report import build, verdicts
from robench.report.content import Page
from robench.report.claims import FAMILIES
from robench.report.figures import configuration_order, make_palette
from robench.report.html import render_html, render_markdown
from robench.evaluate.evaluation import Evaluation
from robench.report.load import Results, load_results
from robench.report.provenance import Provenance
from robench.report.tables import flags_line
from robench.report.training_failures import failed_trainings

__all__ = ["write_report"]


def _generator() -> dict[str, str]:
    return {"robench": robench.__version__, "torch": torch.__version__, "pandas": pd.__version__,
            "seaborn": sns.__version__, "matplotlib": matplotlib.__version__}


def _context(results: Results, out_dir: Path, data_root: Path, matrix_eps: float | None,
             margins: bool, evaluation: Evaluation) -> build.Context:
    evaluated, note = evaluation.select(results.attacks)
    configurations, losses = build.member_configurations(results)
    palette = make_palette(configuration_order(losses, losses))
    failed = failed_trainings(results.cards, results.dataset)
    return build.Context(results, out_dir, Path(data_root), matrix_eps, evaluated, note, configurations, losses,
                         palette, failed, margins)


def _summary(results: Results, claims: pd.DataFrame, run: dict[str, str], failed: dict[str, str]) -> list[str]:
    """The lines at the top of the page: failed trainings, what was found, what is
    missing, the verdicts."""
    lines = list(results.unfinished)
    lines += [f"Failed training, left out of every claim: {member} ({why})." for member, why in failed.items()]
    if not results.cards:
        lines.append("Failed-training check: not run (no zoo cards to read clean accuracies from).")
    lines.append(f"Results from `{results.results_dir}`, zoo from `{results.zoo_dir}`.")
    if results.digest:
        lines.append(f"Records digest (SHA-256 of every stored record, times left out): `{results.digest}`; "
                     f"`robench results verify` recomputes this report from them and compares.")
    if not results.ran_anything:
        lines.append(f"Nothing has been run for {results.dataset} yet (no results in `{results.results_dir}`): "
                     f"start with `{run['run']}`, or `{run['zoo']}` followed by the attack and experiment commands.")
    found = {"white-box attacks": (results.attacks["mode"] == "whitebox").sum() if len(results.attacks) else 0,
             "black-box attacks": (results.attacks["mode"] == "blackbox").sum() if len(results.attacks) else 0,
             **{f"{k} experiment": len(v) for k, v in results.experiments.items()}}
    present = [f"{k} ({n} rows)" for k, n in found.items() if n]
    absent = [k for k, n in found.items() if not n]
    lines.append(f"{len(results.cards)} zoo members; present: {', '.join(present) or 'none'}; "
                 f"missing: {', '.join(absent) or 'nothing'}.")
    lines += [claims_line(claims[claims["family"] == family], family) for family in FAMILIES
              if (claims["family"] == family).any()]
    if len(results.flags):
        lines.append(f"Validity flags: {flags_line(results.flags)}.")
    lines += [f"Unreadable input: {p}" for p in results.problems]
    lines += results.notes
    return lines


def claims_line(family: pd.DataFrame, name: str) -> str:
    """One family's verdicts, and which way the estimates of the claims with data point
    (every claim states that its treatment beats its reference)."""
    counts = family["verdict"].value_counts()
    estimated = family.loc[family["verdict"] != verdicts.NOT_RUN, "difference"].dropna()
    return (f"{name.capitalize()} claims ({len(family)}): "
            + ", ".join(f"{counts.get(v, 0)} {v}" for v in verdicts.VERDICTS)
            + f"; of the {len(estimated)} with an estimate, {int((estimated > 0).sum())} point the paper's way and "
              f"{int((estimated < 0).sum())} against it (estimates, not verdicts).")


#: The choices of an evaluation: (its field, the report option, the attack-record column).
CHOICES = (("attack_loss", "--attack-loss", "attack_loss"), ("backend", "--backend", "backend"),
           ("schedule", "--schedule", "schedule"), ("precision", "--precision", "precision"),
           ("num_samples", "--num-samples", "n"))


def check_evaluation(evaluation: Evaluation, attacks: pd.DataFrame) -> None:
    """A UserError, before anything is written, when ``evaluation`` names an unknown attack
    loss or backend, a run without attack records, or (with attack records stored) a value
    no stored record has, alone or with the other choices."""
    if evaluation.attack_loss is not None:
        ATTACK_LOSSES.get(evaluation.attack_loss)
    if evaluation.backend is not None:
        check_backend(evaluation.backend)
    runs = sorted(set(attacks["run_id"])) if len(attacks) else []
    if evaluation.run_id is not None and evaluation.run_id not in runs:
        raise UserError(f"no attack records of run {evaluation.run_id!r} here; runs with attack records: "
                        f"{', '.join(runs) or 'none'}")
    if attacks.empty:
        return
    chosen = [(option, column, getattr(evaluation, field)) for field, option, column in CHOICES
              if getattr(evaluation, field) is not None]
    rows = attacks if evaluation.run_id is None else attacks[attacks["run_id"] == evaluation.run_id]
    for option, column, value in chosen:
        stored = sorted(set(rows[column]))
        if value not in stored:
            raise UserError(f"{option} {value!r} matches no stored attack record; stored: "
                            f"{', '.join(map(str, stored))}")
    for _, column, value in chosen:
        rows = rows[rows[column] == value]
    if rows.empty:
        together = " with ".join(f"{option} {value!r}" for option, _, value in chosen)
        raise UserError(f"no stored attack record has {together}; robench results runs lists the stored runs")


def write_report(
    dataset: str,
    results_dir: Path,
    zoo_dir: Path,
    out_dir: Path,
    matrix_eps: float | None = None,
    data_root: Path = Path("data"),
    margins: bool = True,
    evaluation: Evaluation = Evaluation(),
) -> Path:
    """Write the report of ``dataset`` into ``out_dir`` and return the path of ``index.html``.

    ``matrix_eps``: the ε of the attacker × defender heatmap (default: the middle ε of
    the grid; a value off the grid picks the nearest). ``data_root``: where the test
    split for the clean-margin figure is loaded from; ``margins=False`` skips that
    figure (it loads every member on the CPU). ``evaluation``: the attack records the
    figures and claims read (default: the protocol's default evaluation).
    """
    out_dir = Path(out_dir)
    results = load_results(dataset, Path(results_dir), Path(zoo_dir))
    check_evaluation(evaluation, results.attacks)
    ctx = _context(results, out_dir, data_root, matrix_eps, margins, evaluation)
    claims_section, claims = build.claims_section(ctx)
    sections = [
        build.glance_section(ctx, claims),
        build.departures_section(ctx),
        claims_section,
        build.flags_section(ctx),
        build.clean_section(ctx),
        build.experiment_section(ctx, "generalization"),
        build.experiment_section(ctx, "noise"),
        build.attack_section(ctx, "blackbox"),
        build.attack_section(ctx, "whitebox"),
        build.matrix_section(ctx),
        build.protocol_section(ctx, _generator()),
    ]
    page = Page(f"robench report: {dataset}", _summary(results, claims, ctx.run, ctx.failed), sections)
    Provenance(dataset, results.digest, evaluation, matrix_eps, margins).write(out_dir)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    footer = f"Generated {stamp} by robench {robench.__version__} (torch {torch.__version__})."
    atomic_write_text(out_dir / "report.md", render_markdown(page, out_dir, footer))
    atomic_write_text(out_dir / "index.html", render_html(page, footer))
    return out_dir / "index.html"
