"""Which step schedule an attack row was computed with, as a label.

A row stores the schedule it resolved to at its ε (``steps``, ``step_size``): IFGSM's
default is Kurakin's ⌊min(255ε + 4, 1.25·255ε)⌋ steps of 1/255, so the step count varies
with ε, and ``--steps`` / ``--step-size`` override either. So the step counts cannot name
the schedule; each row also stores its run's label (:func:`override_label`: ``default``,
or which part was overridden), and flags and reports keep two schedules of a cell apart
by it (:func:`row_schedule`). Rows written before that column get a label inferred from
their numbers (:func:`schedule_label`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from robench.attacks import create_attack, list_attacks

DEFAULT_SCHEDULE = "default"


def override_label(steps: int | None, step_size: float | None) -> str:
    """A run's schedule label from its overrides (None: the attack's own rule)."""
    if steps is None and step_size is None:
        return DEFAULT_SCHEDULE
    steps_text = "default" if steps is None else str(int(steps))
    size_text = "default" if step_size is None else f"{float(step_size):.6g}"
    return f"steps {steps_text}, step {size_text}"


def row_schedule(row: Mapping[str, Any]) -> str:
    """The schedule label a row stores, else one inferred from its numbers."""
    stored = row.get("schedule")
    if isinstance(stored, str) and stored:
        return stored
    return schedule_label(row["attack"], as_number(row.get("eps")), as_number(row.get("steps")),
                          as_number(row.get("step_size")))


def as_number(value: Any) -> float:
    """A stored cell as a float; NaN when blank or missing (older files)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def schedule_label(attack: str, eps: float, steps: float, step_size: float) -> str:
    """``default`` when the row's (steps, step size) is its attack's own schedule at ε
    (FGSM: one step of ε; IFGSM: Kurakin's), else which part was overridden, e.g.
    ``steps 20, step default`` or ``steps default, step 0.01``. Rows that lack the
    numbers (files from before those columns) read as ``default``. A run with ``--steps``
    equal to Kurakin's count at some ε reads as ``default`` there: the stored label
    (:func:`row_schedule`) is what tells them apart."""
    values = (eps, steps, step_size)
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values) or attack not in list_attacks():
        return DEFAULT_SCHEDULE
    want_steps, want_size = create_attack(attack).schedule(float(eps))
    same_steps = int(float(steps)) == want_steps
    same_size = math.isclose(float(step_size), want_size, rel_tol=1e-9, abs_tol=1e-12)
    if same_steps and same_size:
        return DEFAULT_SCHEDULE
    return override_label(None if same_steps else int(float(steps)), None if same_size else float(step_size))
