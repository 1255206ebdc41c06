"""Which attack records a report's figures and claims read: one named evaluation.

A results folder may hold several evaluations of the same members: other attack losses,
peer backends, ``--steps`` / ``--step-size`` schedules, bf16 beside fp32, runs on fewer
test images. Tables list every record; figures and claims read exactly one evaluation,
chosen by the run that made it (``run_id``) or by its parameters. With no choice it is
the protocol's default evaluation: the CE attack loss, robench's native attacks and each
attack's own schedule (PROTOCOL.md, "Attacks"), in the one precision and, per mode and
attack, on the one number of test images the stored records have. Where the records
hold two precisions or two sample counts, the report stops and asks which one
(``--precision``, ``--num-samples``): it never picks one for the user.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from robench.errors import UserError
from robench.evaluate.schedule import DEFAULT_SCHEDULE

PROTOCOL_DEFAULT = {"attack_loss": "ce", "backend": "native", "schedule": DEFAULT_SCHEDULE}
CHOICE_OPTIONS = {"run_id": "--run-id", "attack_loss": "--attack-loss", "backend": "--backend",
                  "schedule": "--schedule", "precision": "--precision", "num_samples": "--num-samples"}


@dataclass(frozen=True)
class Evaluation:
    """The parameters an evaluation is chosen by; None: not chosen."""

    run_id: str | None = None
    attack_loss: str | None = None
    backend: str | None = None
    schedule: str | None = None
    precision: str | None = None
    num_samples: int | None = None

    def resolved(self) -> "Evaluation":
        """Without a run id, the protocol's attack loss, backend and schedule where
        none was chosen."""
        if self.run_id is not None:
            return self
        return replace(self, **{k: v for k, v in PROTOCOL_DEFAULT.items() if getattr(self, k) is None})

    def select(self, attacks: pd.DataFrame) -> tuple[pd.DataFrame, str]:
        """The records of ``attacks`` (sweep records, one per cell) in this evaluation,
        and a sentence saying which evaluation that is. A UserError when a chosen run id
        has no records, or when the records hold two precisions, or two sample counts
        for one mode and attack, and this evaluation does not choose one."""
        wanted = self.resolved()
        if attacks.empty:
            return attacks, ""
        if wanted.run_id is not None and not (attacks["run_id"] == wanted.run_id).any():
            runs = ", ".join(sorted(set(attacks["run_id"])))
            raise UserError(f"no attack records of run {wanted.run_id!r} here; runs with attack records: {runs}")
        rows = attacks
        for name, column in (("run_id", "run_id"), ("attack_loss", "attack_loss"), ("backend", "backend"),
                             ("schedule", "schedule"), ("precision", "precision"), ("num_samples", "n")):
            value = getattr(wanted, name)
            if value is not None:
                rows = rows[rows[column] == value]
        _one_value(rows, [], "precision", "precisions")
        _one_value(rows, ["mode", "attack"], "n", "test image counts per mode and attack")
        return rows.reset_index(drop=True), self._describe(wanted, rows)

    def _describe(self, wanted: "Evaluation", rows: pd.DataFrame) -> str:
        parts = [f"run {wanted.run_id}"] if wanted.run_id else []
        parts += [f"{label} {getattr(wanted, name)}" for name, label in
                  (("attack_loss", "attack loss"), ("backend", "backend"), ("schedule", "schedule"))
                  if getattr(wanted, name) is not None]
        if not rows.empty:
            parts.append(f"precision {'/'.join(sorted(set(rows['precision'])))}")
            parts.append(f"{'/'.join(f'{n:,}' for n in sorted(set(rows['n'])))} test images")
        text = f"Figures and claims read one evaluation: {', '.join(parts)} ({len(rows)} records)"
        if all(getattr(self, name) is None for name in ("run_id", *PROTOCOL_DEFAULT)):
            text += ("; the protocol's attack loss, backend and schedule (robench report's --run-id, --attack-loss, "
                     "--backend, --schedule, --precision and --num-samples choose another evaluation)")
        return text + ". The tables list every record."


def _one_value(rows: pd.DataFrame, by: list[str], column: str, plural: str) -> None:
    """A UserError naming the option to choose with when ``rows`` (in each ``by`` group)
    hold several values of ``column``."""
    if rows.empty:
        return
    counts = rows.groupby(by, sort=True)[column].nunique() if by else pd.Series([rows[column].nunique()])
    if counts.max() <= 1:
        return
    option = CHOICE_OPTIONS["num_samples" if column == "n" else column]
    values = ", ".join(str(v) for v in sorted(set(rows[column])))
    raise UserError(f"the evaluation's attack records hold several {plural} ({values}); choose one with {option}")
