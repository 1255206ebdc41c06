"""Which step schedule an attack row was computed with, as a label.

A row stores the schedule it resolved to at its ε (``steps``, ``step_size``): IFGSM's
default is Kurakin's ⌊min(255ε + 4, 1.25·255ε)⌋ steps of 1/255, so the step count varies
with ε, and ``--steps`` / ``--step-size`` override either. Rows of one run share a label
(:func:`schedule_label`), so flags and reports can keep two schedules of a cell apart
without reading the step counts as the schedule.
"""

from __future__ import annotations

import math

from robench.attacks import create_attack, list_attacks

DEFAULT_SCHEDULE = "default"


def schedule_label(attack: str, eps: float, steps: float, step_size: float) -> str:
    """``default`` when the row's (steps, step size) is its attack's own schedule at ε
    (FGSM: one step of ε; IFGSM: Kurakin's), else which part was overridden, e.g.
    ``steps 20, step default`` or ``steps default, step 0.01``. Rows that lack the
    numbers (files from before those columns) read as ``default``."""
    values = (eps, steps, step_size)
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values) or attack not in list_attacks():
        return DEFAULT_SCHEDULE
    want_steps, want_size = create_attack(attack).schedule(float(eps))
    same_steps = int(float(steps)) == want_steps
    same_size = math.isclose(float(step_size), want_size, rel_tol=1e-9, abs_tol=1e-12)
    if same_steps and same_size:
        return DEFAULT_SCHEDULE
    steps_text = "default" if same_steps else str(int(float(steps)))
    size_text = "default" if same_size else f"{float(step_size):.6g}"
    return f"steps {steps_text}, step {size_text}"
