"""The paper's generalization (§IV-C) and noisy-label (§IV-D) experiments.

``run_generalization`` / ``run_noise`` train one model per (setting, repeat, loss),
store them like zoo members under ``zoo/<dataset>/experiments/`` and store one
experiment record per cell in ``reports/<dataset>/results/``; ``summarize`` and
``format_summary`` turn rows into means, 95 % t-intervals and paired differences to ce.
"""

from robench.experiments.common import PLANS, ExperimentPlan, experiment_members, plan_for
from robench.experiments.generalization import run_generalization
from robench.experiments.noise import run_noise
from robench.experiments.summary import format_summary, summarize

__all__ = [
    "PLANS",
    "ExperimentPlan",
    "experiment_members",
    "format_summary",
    "plan_for",
    "run_generalization",
    "run_noise",
    "summarize",
]
