"""The noisy-label experiment (paper §IV-D; PROTOCOL.md, "Experiments").

Every loss trains on the same noisy training sets (a fraction of the labels replaced by
a uniformly drawn different class; the paper: 0–80 %, 5 noisy sets per rate), without
augmentation, and stops at the first epoch whose accuracy on the noisy training set
reaches 80 % or at the epoch cap; the row's ``stop_reason`` says which
(``train_accuracy`` / ``epoch_cap``). Each cell is an experiment record in the store of
``<results_dir>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robench.data.base import Dataset, Split
from robench.data.noise import noisy_labels
from robench.data.subsets import fixed_pool
from robench.experiments.common import DATA_SEED, BuildTrain, ExperimentPlan, run_cells, tensor_hash


def _noisy_builder(data: Dataset, plan: ExperimentPlan) -> BuildTrain:
    pool = data.train.subset(fixed_pool(len(data.train), plan.train_pool, DATA_SEED))

    def build(rate: float, repeat: int) -> tuple[Split, dict[str, Any]]:
        labels = noisy_labels(pool.y, data.num_classes, rate, repeat, DATA_SEED)  # (N,)
        flipped = int((labels != pool.y).sum())
        extra = {"num_train": len(pool), "num_flipped": flipped, "noise_hash": tensor_hash(labels)}
        return Split(pool.x, labels), extra

    return build


def run_noise(
    dataset: str,
    preset: str = "quick",
    names: list[str] | None = None,
    zoo_dir: Path = Path("zoo"),
    results_dir: Path | None = None,
    device: str = "auto",
    data_root: Path = Path("data"),
    force: bool = False,
) -> list[dict[str, Any]]:
    """Run (or resume) the noisy-label experiment of ``dataset`` under ``preset``.

    Members: one per distinct loss of ``zoo/<dataset>.toml``, narrowed by ``names``.
    Models land in ``<zoo_dir>/<dataset>/experiments/<member>-noise<rate>-r<repeat>``;
    records in the store of ``<results_dir>`` (default ``reports/<dataset>/results``).
    Returns the rows of every cell of the plan, finished earlier or now.
    """
    return run_cells("noise", dataset, preset, names, Path(zoo_dir), results_dir,
                     device, Path(data_root), force, _noisy_builder)
