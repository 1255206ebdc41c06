"""What a stored record must satisfy before any number is read from it, and the digest
that ties a published report to the records it was computed from.

A store is a file a user can open with any SQLite tool, so every read checks each record
(:func:`record_problem`), whatever wrote it:

- its ``cell`` is the SHA-256 of its key fields (:func:`robench.store.records.cell_of`),
  so no key field (member, weights, attack, ε, n, …) was changed after it was stored;
- its ``run_id`` names a stored run, and the record fits that run's configuration:
  dataset, mode (a black-box run's attacker-on-itself cells are white-box), attack (an ensemble's stage ``worst@pgd`` belongs to a run of ``worst``),
  ε on the run's grid, ``n`` equal to the run's test image count, precision, attack loss
  and backend (records turned from old CSV files by a migration have no configuration to
  fit; their other checks still hold);
- counts in range: 1 ≤ n, 0 ≤ correct ≤ n, 0 ≤ clean_correct ≤ n, and the stored
  accuracies equal correct / n and clean_correct / n; an experiment's test accuracy is in
  [0, 1] on at least one test image.

These catch edits that make a record inconsistent (an inserted row, a count past n, a
changed key). A consistent edit of a measured value (``correct`` changed within [0, n]
together with its accuracy) leaves every check true; what catches it is the digest:
:func:`records_digest` over every record's stored values (times left out, so a resumed run
and an uninterrupted one agree), which each report prints and ``robench results verify``
recomputes (docs/reliability.md says what this protects against and what it does not).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

from robench.store.records import AttackRecord, ExperimentRecord, Record, cell_of

MIGRATION = "migration"  # the kind of run that old CSV rows were stored under
UNTIMED = ("timestamp", "created")  # fields left out of the digest: when, not what


def _attack_run_problem(row: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    """Where an attack record does not fit the configuration of the run it names."""
    if config.get("kind") != "attack":
        return f"run {row['run_id']} is a {config.get('kind')} run, not an attack run"
    checks = (
        ("dataset", row["dataset"] == config.get("dataset")),
        ("mode", row["mode"] == config.get("mode") or _diagonal_of_blackbox(row, config)),
        ("attack", row["attack"].split("@", 1)[0] in (config.get("attacks") or ())),
        ("eps", row["eps"] in (config.get("eps") or ())),
        ("n", row["n"] == config.get("num_samples")),
        ("precision", row["precision"] == config.get("precision")),
        ("attack_loss", row["attack_loss"] == config.get("attack_loss")),
        ("backend", row["backend"] == config.get("backend")),
    )
    wrong = next((name for name, holds in checks if not holds), None)
    if wrong is None:
        return None
    return f"its {wrong} {json.dumps(row[wrong])} is not in its run {row['run_id']} (which has {_run_value(config, wrong)})"


def _diagonal_of_blackbox(row: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """A black-box run over every member (``--attacker all``) attacks each member with
    itself too: those cells are white-box."""
    return config.get("mode") == "blackbox" and row["mode"] == "whitebox" and row["attacker"] == row["defender"]


def _run_value(config: Mapping[str, Any], field: str) -> str:
    key = {"attack": "attacks", "eps": "eps", "n": "num_samples"}.get(field, field)
    return f"{key} {json.dumps(config.get(key))}"


def _attack_counts_problem(row: Mapping[str, Any]) -> str | None:
    n, correct, clean = row["n"], row["correct"], row["clean_correct"]
    if n < 1:
        return f"n {n} is below 1"
    if not 0 <= correct <= n:
        return f"correct {correct} is outside 0..n = {n}"
    if not 0 <= clean <= n:
        return f"clean_correct {clean} is outside 0..n = {n}"
    if row.get("accuracy", correct / n) != correct / n:
        return f"accuracy {row['accuracy']!r} is not correct / n = {correct}/{n}"
    if row.get("clean_accuracy", clean / n) != clean / n:
        return f"clean_accuracy {row['clean_accuracy']!r} is not clean_correct / n = {clean}/{n}"
    return None


def _experiment_problem(row: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    if not 0 <= row["test_accuracy"] <= 1 or row["num_test"] < 1:
        return f"test accuracy {row['test_accuracy']!r} on {row['num_test']} images is not a proportion"
    if config.get("kind") == MIGRATION:
        return None
    if config.get("kind") != "experiment":
        return f"run {row['run_id']} is a {config.get('kind')} run, not an experiment run"
    for name in ("dataset", "experiment"):
        if row[name] != config.get(name):
            return f"its {name} {row[name]!r} is not its run's {config.get(name)!r}"
    return None


def record_problem(cls: type[Record], row: Mapping[str, Any], runs: Mapping[str, Mapping[str, Any]]) -> str | None:
    """What is wrong with the stored ``row`` of ``cls`` (its columns by name, ``cell``
    included), given ``runs`` (run id → configuration); None when it holds."""
    if cell_of(row, cls.KEY) != row["cell"]:
        return "its cell is not the hash of its key fields (a key field was changed after it was stored)"
    config = runs.get(row["run_id"])
    if config is None:
        return f"its run {row['run_id']!r} is not in the runs table"
    if cls is AttackRecord:
        return _attack_counts_problem(row) or (None if config.get("kind") == MIGRATION
                                               else _attack_run_problem(row, config))
    if cls is ExperimentRecord:
        return _experiment_problem(row, config)
    return None


def records_digest(tables: Iterable[tuple[str, Iterable[Mapping[str, Any]]]]) -> str:
    """SHA-256 of every stored value of every row of ``tables`` (name, rows), the times
    left out: rows as canonical JSON, sorted within their table, tables in the order
    given."""
    digest = hashlib.sha256()
    for name, rows in tables:
        lines = sorted(json.dumps({k: v for k, v in row.items() if k not in UNTIMED}, sort_keys=True,
                                  separators=(",", ":")) for row in rows)
        digest.update(f"{name}\n{len(lines)}\n".encode())
        for line in lines:
            digest.update(line.encode() + b"\n")
    return digest.hexdigest()


__all__ = ["record_problem", "records_digest"]
