"""Which step schedule an attack record was computed with, as a label.

A record stores the schedule it resolved to at its ε (``steps``, ``step_size``): IFGSM's
default is Kurakin's ⌊min(255ε + 4, 1.25·255ε)⌋ steps of 1/255, so the step count varies
with ε, and ``--steps`` / ``--step-size`` override either. So the step counts cannot name
the schedule; each record also stores its run's label (:func:`options_label`:
``default``, or which budget options were set), and flags and reports keep two schedules of
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


def options_label(options: dict) -> str:
    """A run's schedule label from the budget options it set for one attack (``steps``,
    ``step_size``, ``restarts``, ``queries``, ``targets``; none set: ``default``). Steps
    and step size read as :func:`override_label` writes them."""
    if not options:
        return DEFAULT_SCHEDULE
    parts = []
    if "steps" in options or "step_size" in options:
        parts.append(override_label(options.get("steps"), options.get("step_size")))
    parts += [f"{k} {options[k]}" for k in ("restarts", "queries", "targets") if k in options]
    return ", ".join(parts)
