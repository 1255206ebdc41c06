"""``robench run``: the whole pipeline for one dataset — train the zoo, white-box and
black-box attacks, the white-box worst case with its convergence check, both
experiments, the report, and CSV exports of the result store beside it. Every stage skips what is already on disk, so a killed run resumes where it
stopped when the same command is run again."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

# Black-box: the zoo's attackers (CE members with seeds of their own) against its defenders;
# white-box: every member against itself. `robench attack --blackbox --attacker all` adds the full matrix.
# Worst case: the `worst` ensemble on every defender (the claims' members); its convergence check runs it
# again with twice the steps at the dataset's checked ε, and its gradient-free check with Square at
# AutoAttack's 5,000 queries over the whole ε grid, each on the first seed of every defender configuration.
STAGES = ("train zoo", "black-box attacks", "white-box attacks", "worst-case attacks", "convergence check",
          "gradient-free check", "generalization", "noise", "report", "export")


def run_pipeline(
    dataset: str = "digits",
    preset: str = "quick",
    zoo_dir: Path = Path("zoo"),
    data_root: Path = Path("data"),
    reports_dir: Path = Path("reports"),
    device: str = "auto",
    num_samples: int = 0,
) -> Path:
    """Run every stage for ``dataset``; returns the report's ``index.html``.
    ``num_samples`` > 0 attacks the first that many test images only (the report says so)."""
    from robench.attacks.ensemble import FULL_SQUARE_QUERIES, QUICK_STEPS
    from robench.device import resolve_device, resolve_precision
    from robench.evaluate.attack_runner import CHECKED_EPS, AttackPlan, run_attacks
    from robench.evaluate.evaluation import Evaluation
    from robench.experiments import run_generalization, run_noise
    from robench.report import write_report
    from robench.store import ResultStore
    from robench.train.members import train_zoo

    out = Path(reports_dir) / dataset
    results = out / "results"
    ResultStore(results)  # a folder of CSVs from before the store stops the run here, not after training
    if num_samples:
        _check_num_samples(dataset, data_root, num_samples)  # before training, not after
    evaluation = Evaluation(precision=resolve_precision("auto", resolve_device(device)),  # the attacks' own
                            num_samples=num_samples or None)
    stages: dict[str, Callable[[], object]] = {
        "train zoo": lambda: train_zoo(dataset, preset, zoo_dir=zoo_dir, device=device, data_root=data_root),
        "black-box attacks": lambda: run_attacks(dataset, AttackPlan("blackbox", num_samples=num_samples), zoo_dir,
                                                 results, device, data_root),
        "white-box attacks": lambda: run_attacks(dataset, AttackPlan("whitebox", num_samples=num_samples), zoo_dir,
                                                 results, device, data_root),
        "worst-case attacks": lambda: _whitebox_on_every_core(
            dataset, AttackPlan("whitebox", attacks=("worst",), num_samples=num_samples),
            _defenders(dataset, zoo_dir, preset), zoo_dir, results, device, data_root),
        "convergence check": lambda: _whitebox_on_every_core(
            dataset, AttackPlan("whitebox", attacks=("worst",), eps=(CHECKED_EPS[dataset],), steps=2 * QUICK_STEPS,
                                num_samples=num_samples),
            _defenders(dataset, zoo_dir, preset, first_seed_only=True), zoo_dir, results, device, data_root),
        "gradient-free check": lambda: _whitebox_on_every_core(
            dataset, AttackPlan("whitebox", attacks=("worst",), queries=FULL_SQUARE_QUERIES, num_samples=num_samples),
            _defenders(dataset, zoo_dir, preset, first_seed_only=True), zoo_dir, results, device, data_root),
        "generalization": lambda: run_generalization(dataset, preset, None, zoo_dir, results, device, data_root),
        "noise": lambda: run_noise(dataset, preset, None, zoo_dir, results, device, data_root),
        "report": lambda: write_report(dataset, results, zoo_dir, out, None, data_root, evaluation=evaluation),
        "export": lambda: _export_csv(results),
    }
    index = None
    with tqdm(total=len(STAGES), desc=f"robench run {dataset}", unit="stage", disable=None) as bar:
        for name in STAGES:
            bar.set_postfix_str(name)
            start = time.perf_counter()
            done = stages[name]()
            index = done if name == "report" else index
            log.info("%s done in %.1f s", name, time.perf_counter() - start)
            bar.update(1)
    return Path(index)


def _check_num_samples(dataset: str, data_root: Path, num_samples: int) -> None:
    """A UserError when ``num_samples`` is more than the dataset's test images."""
    from robench.data import load_dataset
    from robench.errors import UserError

    test = len(load_dataset(dataset, data_root).test)
    if num_samples > test:
        raise UserError(f"--num-samples {num_samples} is more than the {test} test images of {dataset}; "
                        f"give at most {test}")


def _defenders(dataset: str, zoo_dir: Path, preset: str, first_seed_only: bool = False) -> list[str]:
    """The zoo's defenders (or the first seed's member of each defender configuration)."""
    from robench.zoo import load_definition

    chosen: dict[tuple, str] = {}
    for member in load_definition(dataset, zoo_dir, preset):
        if member.role == "defender":
            chosen.setdefault((member.loss, member.head) if first_seed_only else member.name, member.name)
    return list(chosen.values())


def _whitebox_on_every_core(dataset: str, plan, members: list[str], zoo_dir: Path, results: Path, device: str,
                            data_root: Path):
    """White-box ``plan`` on ``members``. On a CPU with several cores the members are dealt
    to one single-threaded process per core (the small models of the quick zoos use one
    core each better than two threads do), all writing the one result store; the flags
    are then computed once over every record."""
    from robench.device import default_precision, resolve_device
    from robench.evaluate.attack_runner import run_attacks

    workers = min(len(os.sched_getaffinity(0)), len(members))
    plans = [dataclasses.replace(plan, defenders=tuple(members[i::workers])) for i in range(workers)]
    if workers > 1 and resolve_device(device).type == "cpu":
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_start_worker,
                                                       initargs=(os.getpid(), default_precision())) as pool:
            pool.starmap(run_attacks, [(dataset, p, zoo_dir, results, device, data_root) for p in plans])
    return run_attacks(dataset, dataclasses.replace(plan, defenders=tuple(members)), zoo_dir, results, device,
                       data_root)


def _start_worker(run_pid: int, precision: str) -> None:
    """A worker's start: death with the run (see :func:`_die_with_parent`), one thread, and
    the numeric settings the command line gave the run's own process."""
    import torch

    from robench.device import set_default_precision, use_ieee_fp32

    _die_with_parent(run_pid)
    torch.set_num_threads(1)
    use_ieee_fp32()
    set_default_precision(precision)


def _die_with_parent(run_pid: int) -> None:
    """On Linux, ask the kernel to SIGKILL this worker when the process that started it
    dies: a ``robench run`` killed with SIGKILL (or by the OOM killer) must not leave
    workers attacking and writing the store while the same command is run again. A run
    that died before the request (while this worker was starting) is seen as a parent
    other than ``run_pid``, and the worker exits at once."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != run_pid:
        os._exit(1)


def _export_csv(results_dir: Path) -> list[Path]:
    """The store's tables as CSV beside it (what a committed report keeps readable in a diff)."""
    from robench.store import ResultStore
    from robench.store.export import export_results

    with ResultStore(results_dir) as store:
        return export_results(store, results_dir)
