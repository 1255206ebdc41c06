"""``robench zoo migrate --zoo-dir ZOO [--results-dir DIR ...]``: bind the cards of members
saved before cards were bound to their weights (:mod:`robench.binding`), once.

Each such member's weights are written again with its card's configuration in their
metadata — the same tensors, byte for byte (checked: the tensor entries of the header
and the data after it are compared with the old file's before anything is written) —
and its card gets the new file's SHA-256. Attack and experiment records name the weights
they were computed on by that hash, so the records of the stores given with
``--results-dir`` are rewritten to the new hashes, each record's ``cell`` recomputed
(hashes are key fields, :func:`robench.store.records.cell_of`). Records of a store not
given keep the old hashes; the report leaves them out as records on weights the member
no longer has (:mod:`robench.evaluate.current`).

The migration binds a card as it is: it cannot tell an edit made before it. So it first
checks what it can — the card is valid, lies in its member's folder and dataset, its
name is the one its loss, head and seed give, and the weights fit its architecture and
match its SHA-256 — and refuses the whole migration, nothing written, if any member
fails.

Order, so that a kill at any moment leaves something a re-run finishes:

1. every member is checked and its new hash computed; nothing is written;
2. each store is rewritten in one transaction (a record already on the new hash of its
   cell, stored after a partial migration, is kept and the old one dropped);
3. each member's card is written with the new hash, then its weights (each atomically).
   A member killed between the two has a card naming bytes not yet written; a re-run
   recognises it (rebinding its weights gives exactly that hash) and writes them.

A re-run finds bound members and records already rewritten and changes nothing. A
bound member still maps the hash of its tensors saved without metadata to its own, so
a store given only to a later run is rewritten too, where that hash is a record's.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import save

from robench.binding import binding_problem, is_bound, metadata_of
from robench.errors import UserError
from robench.experiments.common import SEED_STRIDE
from robench.io import atomic_write, atomic_write_json, sha256_file
from robench.store.records import SCHEMA_VERSION, AttackRecord, ExperimentRecord, cell_of
from robench.store.sqlite import BUSY_TIMEOUT_S, DATABASE, UNREADABLE, legacy_files, store_error
from robench.tensorfile import read_tensors
from robench.zoo import (CARD, RETRAIN, WEIGHTS, check_folder, check_weights_fit, is_trained, loss_spec_of, member_name,
                         read_card)

EXPERIMENTS = "experiments"  # zoo/<dataset>/experiments/<model>: the experiments' models
# (record type, its (member name, weights hash) column pairs)
HASHED = ((AttackRecord, (("attacker", "attacker_sha256"), ("defender", "defender_sha256"))),
          (ExperimentRecord, (("model", "weights_sha256"),)))


@dataclass(frozen=True)
class Plan:
    """One member: its folder and dataset, its card as read, whether it is bound already,
    whether its card already names the bound weights (a migration killed between card
    and weights), and its hash map (old hash → hash of the bound weights)."""

    folder: Path
    dataset: str
    card: dict[str, Any]
    bound: bool
    card_written: bool
    old: tuple[str, ...]
    new: str

    @property
    def name(self) -> str:
        return self.card["name"]


# ------------------------------------------------------------ members


def member_folders(zoo_dir: Path) -> list[tuple[str, Path]]:
    """(dataset, folder) of every trained member and experiment model under ``zoo_dir``."""
    found = []
    for dataset in sorted(p for p in Path(zoo_dir).iterdir() if p.is_dir()):
        folders = sorted(dataset.iterdir()) + sorted((dataset / EXPERIMENTS).glob("*"))
        found += [(dataset.name, f) for f in folders if f.is_dir() and is_trained(f)]
    return found


def bound_bytes(weights: Path, card: dict[str, Any]) -> bytes:
    """The bytes of ``weights`` saved again with ``card``'s metadata, as
    :func:`robench.zoo.save_member` would save them; a UserError unless the tensors are
    byte for byte those of the file (header entries and data)."""
    data = save(read_tensors(weights, RETRAIN), metadata=metadata_of(card))
    if _tensor_part(data) != _tensor_part(weights.read_bytes()):
        raise UserError(f"{weights}: its tensors would not be kept byte for byte when saved again with the card's "
                        f"configuration; not migrated ({RETRAIN})")
    return data


def _tensor_part(data: bytes) -> tuple[str, bytes]:
    """(the header's tensor entries as canonical JSON, the data after the header) of
    safetensors bytes: what binding must leave as it was."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    header.pop("__metadata__", None)
    return json.dumps(header, sort_keys=True), data[8 + length:]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _name_problem(card: dict[str, Any], experiment: bool) -> str | None:
    """Where a card's name is not the one its loss, head and seed give (an experiment
    model's: its base member's name, that of its seed over :data:`SEED_STRIDE`, then a suffix)."""
    loss, head, seed = loss_spec_of(card), card["head"], card["seed"]
    if not experiment:
        expected = member_name(loss, head, seed)
        return None if card["name"] == expected else f"its loss, head and seed name the member {expected!r}"
    base = member_name(loss, head, seed // SEED_STRIDE)
    if card.get("base_member") != base or not card["name"].startswith(base + "-"):
        return f"its loss, head and seed name an experiment model of {base!r}"
    return None


def plan_member(dataset: str, folder: Path, hash_unbound: bool) -> Plan:
    """Check one member and plan its migration (nothing written); ``hash_unbound``: for
    a bound member, also map the hash of its tensors saved without metadata (for stores)."""
    card = read_card(folder)
    path, weights = folder / CARD, folder / WEIGHTS
    check_folder(folder, card)
    if card.get("dataset", dataset) != dataset:
        raise UserError(f"{path} says dataset {card['dataset']!r} but lies in the {dataset} zoo; not migrated")
    metadata = check_weights_fit(weights, card)
    on_disk = sha256_file(weights)
    if is_bound(metadata):
        problem = binding_problem(card, metadata, path, weights)
        if problem or on_disk != card["weights_sha256"]:
            raise UserError(problem or f"{weights} does not match the SHA-256 in its card; not migrated ({RETRAIN})")
        unbound = (_sha256(save(read_tensors(weights, RETRAIN))),) if hash_unbound else ()
        return Plan(folder, dataset, card, True, True, unbound, on_disk)
    problem = _name_problem(card, folder.parent.name == EXPERIMENTS)
    if problem:
        raise UserError(f"{path} says name {card['name']!r} but {problem}; the card was edited: restore it, or "
                        f"{RETRAIN}; not migrated")
    new = _sha256(bound_bytes(weights, card))
    if on_disk == card["weights_sha256"]:
        return Plan(folder, dataset, card, False, False, (on_disk,), new)
    if new == card["weights_sha256"]:  # a migration killed after the card, before the weights
        return Plan(folder, dataset, card, False, True, (on_disk,), new)
    raise UserError(f"{weights} does not match the SHA-256 in its card; the file was changed or corrupted; "
                    f"not migrated ({RETRAIN})")


def write_member(plan: Plan) -> None:
    """The card with the new hash, then the bound weights, each atomically."""
    weights = plan.folder / WEIGHTS
    data = bound_bytes(weights, plan.card)
    if _sha256(data) != plan.new:
        raise UserError(f"{weights} changed during the migration; re-run it")
    if not plan.card_written:
        atomic_write_json(plan.folder / CARD, {**plan.card, "weights_sha256": plan.new})
    atomic_write(weights, lambda tmp: tmp.write_bytes(data))


# ------------------------------------------------------------ stores

HashMap = dict[tuple[str, str, str], str]  # (dataset, member or model name, old hash) -> new hash


def hash_map(plans: list[Plan]) -> HashMap:
    return {(p.dataset, p.name, old): p.new for p in plans for old in p.old if old != p.new}


def check_store(results_dir: Path) -> Path:
    """The store of ``results_dir``; a UserError when there is none or it is not current."""
    path = Path(results_dir) / DATABASE
    if not path.is_file():
        raise UserError(f"no result store in {results_dir} (no {DATABASE}); give a results folder such as "
                        "reports/digits/results")
    if legacy_files(results_dir):
        raise UserError(f"{results_dir} holds result CSVs from before the store; run "
                        f"`robench results migrate {results_dir}` first")
    return path


def rewrite_store(path: Path, hashes: HashMap) -> tuple[int, int, int]:
    """Rewrite the hashes of ``hashes`` in the records of the store at ``path``, each
    record's cell recomputed, in one transaction; (attack records, experiment records)
    rewritten, and records dropped because their cell was stored on the new hash already."""
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                counts = _rewrite(connection, path, hashes)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        finally:
            connection.close()
    except UNREADABLE as exc:
        raise store_error(path, exc) from None
    return counts


def _rewrite(connection: sqlite3.Connection, path: Path, hashes: HashMap) -> tuple[int, int, int]:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        raise UserError(f"{path} has result schema {version}, not {SCHEMA_VERSION}; run "
                        f"`robench results migrate {path.parent}` first")
    rewritten, dropped = [], 0
    for cls, pairs in HASHED:
        columns = cls.columns()
        count = 0
        for rowid, *values in connection.execute(f"SELECT rowid, {', '.join(columns)} FROM {cls.TABLE}").fetchall():
            row = dict(zip(columns, values))
            changed = {sha: hashes[key] for name, sha in pairs
                       if (key := (row["dataset"], row[name], row[sha])) in hashes}
            if not changed:
                continue
            cell = cell_of({**row, **changed}, cls.KEY)
            if connection.execute(f"SELECT 1 FROM {cls.TABLE} WHERE cell = ? AND rowid != ?", (cell, rowid)).fetchone():
                connection.execute(f"DELETE FROM {cls.TABLE} WHERE rowid = ?", (rowid,))
                dropped += 1
                continue
            assignments = ", ".join(f"{column} = ?" for column in changed)
            connection.execute(f"UPDATE {cls.TABLE} SET {assignments}, cell = ? WHERE rowid = ?",
                               (*changed.values(), cell, rowid))
            count += 1
        rewritten.append(count)
    return rewritten[0], rewritten[1], dropped


# ------------------------------------------------------------ the command


def migrate_zoo(zoo_dir: Path, results_dirs: list[Path] | None = None) -> list[str]:
    """Bind every member of ``zoo_dir`` saved before the binding and rewrite the hashes
    of the stores of ``results_dirs``; returns what was done, line by line."""
    zoo_dir, results_dirs = Path(zoo_dir), [Path(d) for d in results_dirs or ()]
    if not zoo_dir.is_dir():
        raise UserError(f"{zoo_dir} is not a folder; give the zoo folder, e.g. --zoo-dir zoo")
    stores = [check_store(d) for d in results_dirs]
    plans = [plan_member(dataset, folder, bool(stores)) for dataset, folder in member_folders(zoo_dir)]
    hashes = hash_map(plans)
    lines = []
    for store in stores:
        attacks, experiments, dropped = rewrite_store(store, hashes)
        merged = f" ({dropped} already stored on the new weights dropped)" if dropped else ""
        lines.append(f"{store}: {attacks} attack records and {experiments} experiment records rewritten "
                     f"to the new weight hashes{merged}")
    pending = [p for p in plans if not p.bound]
    for plan in pending:
        write_member(plan)
    lines.insert(0, f"{zoo_dir}: {len(pending)} members bound to their weights (tensors unchanged, cards updated), "
                    f"{len(plans) - len(pending)} bound already")
    return lines
