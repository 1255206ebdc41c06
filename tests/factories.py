"""Attack and experiment records for tests, every field filled with a plausible value."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from robench.attacks import create_attack
from robench.determinism import determinism_settings, settings_text
from robench.store import AttackRecord, ExperimentRecord, Record, ResultStore, RunRecord

DETERMINISM = settings_text(determinism_settings())


def attack_record(attacker: str = "a", defender: str = "a", attack: str = "fgsm", eps: float = 0.1,
                  correct: int = 50, clean: int = 90, n: int = 100, mode: str | None = None,
                  **fields: Any) -> AttackRecord:
    """A native CE attack record of ``defender`` under ``attacker``'s ``attack`` at ``eps``
    (white-box when they are the same member), on its attack's own schedule."""
    budget = create_attack(attack.partition("@")[0]).budget(eps)  # an ensemble's stage: the ensemble's
    steps, step_size = budget.steps, budget.step_size
    values = dict(
        run_id="r0", dataset="digits", mode=mode or ("whitebox" if attacker == defender else "blackbox"),
        attacker=attacker, attacker_sha256=f"{attacker}-sha", attacker_loss="ce", attacker_seed=1,
        defender=defender, defender_sha256=f"{defender}-sha", defender_loss="ce", defender_bound="sym",
        defender_delta=1.0, defender_head="linear", defender_seed=0, split_hash="s" * 64, num_classes=10,
        attack=attack, attack_loss="ce", backend="native", eps=eps, steps=steps, step_size=step_size,
        schedule="default", n=n, precision="fp32", correct=correct, clean_correct=clean,
        threads=2, determinism=DETERMINISM, robench_version="0.1.0", torch_version="2.x", timestamp="2026-01-01T00:00:00Z")
    return AttackRecord(**{**values, **fields})


def experiment_record(member: str = "ce-s0", setting: float = 0.1, repeat: int = 0, accuracy: float = 0.9,
                      experiment: str = "generalization", **fields: Any) -> ExperimentRecord:
    """An experiment record of ``member`` (loss ce unless given) at ``setting`` and ``repeat``."""
    values = dict(
        run_id="r1", dataset="digits", experiment=experiment,
        setting_name="fraction" if experiment == "generalization" else "rate", setting=setting, repeat=repeat,
        member=member, model=f"{member}-x-r{repeat}", loss="ce", bound="", delta=None, head="linear",
        num_train=100, num_flipped=None, num_test=360, test_accuracy=accuracy, stop_reason="epochs", epochs=3,
        steps=9, weights_sha256="w" * 64, split_hash="s" * 64, seed=0, train_seed=repeat, preset="quick",
        spec_hash="h" * 16, threads=2, determinism=DETERMINISM, robench_version="0.1.0", torch_version="2.x", timestamp="2026-01-01T00:00:00Z")
    return ExperimentRecord(**{**values, **fields})


def _run_key(record: Record) -> tuple:
    """What one stored run's records share (robench.store.integrity checks them)."""
    if isinstance(record, AttackRecord):
        return ("attack", record.run_id, record.dataset, record.mode, record.n, record.precision,
                record.attack_loss, record.backend)
    if isinstance(record, ExperimentRecord):
        return ("experiment", record.run_id, record.dataset, record.experiment)
    return ("attack", record.run_id)


def _run(key: tuple, records: list[Record]) -> RunRecord:
    if isinstance(records[0], AttackRecord):
        kind, label, dataset, mode, n, precision, attack_loss, backend = key
        config = dict(label=label, dataset=dataset, mode=mode, num_samples=n, precision=precision,
                      attack_loss=attack_loss, backend=backend, eps=sorted({r.eps for r in records}),
                      attacks=sorted({r.attack.partition("@")[0] for r in records}))
    elif isinstance(records[0], ExperimentRecord):
        kind, label, dataset, experiment = key
        config = dict(label=label, dataset=dataset, experiment=experiment)
    else:
        kind, label = key
        config = dict(label=label)
    return RunRecord.of(kind, config, "0.1.0")


def in_runs(records: Sequence[Record]) -> tuple[list[RunRecord], list[Record]]:
    """``records`` moved into stored runs whose configurations they fit: the attack
    records that share a run id, dataset, mode, image count, precision, attack loss and
    backend in one run (its grid their ε and attacks), the experiment records of one run
    id, dataset and experiment in another; returns the runs and the records with their ids."""
    groups: dict[tuple, list[Record]] = {}
    for record in records:
        groups.setdefault(_run_key(record), []).append(record)
    runs = {key: _run(key, group) for key, group in groups.items()}
    return list(runs.values()), [dataclasses.replace(r, run_id=runs[_run_key(r)].run_id) for r in records]


def store_in_runs(store: ResultStore, records: Sequence[Record], replace: bool = False) -> list[Record]:
    """Store ``records`` with runs they fit (:func:`in_runs`); returns them as stored."""
    runs, moved = in_runs(records)
    for run in runs:
        store.save_run(run)
    store.append(moved, replace=replace)
    return moved


# the default digits zoo's configurations: name -> (loss, bound, delta, head)
DIGITS_CONFIGURATIONS = {
    "ce": ("ce", "sym", 1.0, "linear"), "ce-unit": ("ce", "sym", 1.0, "unit"), "hinge-d1": ("hinge", "sym", 1.0, "linear"),
    "1toN-sym-d1": ("1toN", "sym", 1.0, "unit"), "1toN-zero-d1": ("1toN", "zero", 1.0, "unit"),
    "1toN-sym-d4": ("1toN", "sym", 4.0, "unit"), "1toN-zero-d4": ("1toN", "zero", 4.0, "unit"),
    "1toN+ce-sym-d1": ("1toN+ce", "sym", 1.0, "unit"),
}
