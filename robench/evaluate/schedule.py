"""Which step schedule an attack record was computed with, as a label.

A record stores the schedule it resolved to at its ε (``steps``, ``step_size``): IFGSM's
default is Kurakin's ⌊min(255ε + 4, 1.25·255ε)⌋ steps of 1/255, so the step count varies
with ε, and ``--steps`` / ``--step-size`` override either. So the step counts cannot name
the schedule; each record also stores its run's label (:func:`override_label`:
``default``, or which part was overridden), and flags and reports keep two schedules of
a cell apart by it.
"""

from __future__ import annotations

DEFAULT_SCHEDULE = "default"


def override_label(steps: int | None, step_size: float | None) -> str:
    """A run's schedule label from its overrides (None: the attack's own rule)."""
    if steps is None and step_size is None:
        return DEFAULT_SCHEDULE
    steps_text = "default" if steps is None else str(int(steps))
    size_text = "default" if step_size is None else f"{float(step_size):.6g}"
    return f"steps {steps_text}, step {size_text}"
