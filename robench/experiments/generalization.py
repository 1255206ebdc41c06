"""The generalization experiment (paper §IV-C; PROTOCOL.md, "Experiments").

Every loss trains on the same random subsets of the training split, at several fractions
and a few repeats each (the paper: 0.125 % … 100 %, 5 subsets per fraction), without
augmentation and for at least the plan's ``min_steps`` optimizer steps, and is evaluated
on the test split. Each cell is an experiment record in the store of ``<results_dir>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robench.data.base import Dataset, Split
from robench.data.subsets import generalization_subset
from robench.experiments.common import DATA_SEED, BuildTrain, ExperimentPlan, run_cells, tensor_hash


def _subset_builder(data: Dataset, plan: ExperimentPlan) -> BuildTrain:
    def build(fraction: float, repeat: int) -> tuple[Split, dict[str, Any]]:
        index = generalization_subset(len(data.train), fraction, repeat, DATA_SEED)  # (M,)
        return data.train.subset(index), {"num_train": len(index), "subset_hash": tensor_hash(index)}

    return build


def run_generalization(
    dataset: str,
    preset: str = "quick",
    names: list[str] | None = None,
    zoo_dir: Path = Path("zoo"),
    results_dir: Path | None = None,
    device: str = "auto",
    data_root: Path = Path("data"),
    force: bool = False,
) -> list[dict[str, Any]]:
    """Run (or resume) the generalization experiment of ``dataset`` under ``preset``.

    Members: one per distinct loss of ``zoo/<dataset>.toml``, narrowed by ``names``.
    Models land in ``<zoo_dir>/<dataset>/experiments/<member>-gen<fraction>-r<repeat>``;
    records in the store of ``<results_dir>`` (default ``reports/<dataset>/results``).
    Returns the rows of every cell of the plan, finished earlier or now.
    """
    return run_cells("generalization", dataset, preset, names, Path(zoo_dir), results_dir,
                     device, Path(data_root), force, _subset_builder)
