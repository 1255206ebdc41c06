"""Upgrading a result store written under an older schema, once, in place.

Schema 2 added ``threads`` and ``determinism`` to the attack and experiment records
(:mod:`robench.determinism`). A store of schema 1 gets the two columns, empty (NULL):
its rows never recorded them, and the upgrade does not guess. The columns are added and
the schema version raised in one transaction, so a kill leaves schema 1 or schema 2,
never a store in between.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from robench.errors import UserError
from robench.store.records import RECORD_TYPES, SCHEMA_VERSION, sql_type
from robench.store.sqlite import BUSY_TIMEOUT_S, UNREADABLE, store_error

ADDED_IN_2 = ("threads", "determinism")  # nullable fields of schema 2, empty in upgraded rows


def upgrade_store(path: Path) -> str | None:
    """Bring the store at ``path`` to :data:`SCHEMA_VERSION`; returns what was done, or
    None when there was nothing to do (no store, or already current)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            return _upgrade(connection, path)
        finally:
            connection.close()
    except UNREADABLE as exc:
        raise store_error(path, exc) from None


def _upgrade(connection: sqlite3.Connection, path: Path) -> str | None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            connection.execute("ROLLBACK")
            return None
        if version == 0:
            raise UserError(f"{path} is not a robench result store (it has no schema version); move it away")
        if version != 1:
            raise UserError(f"{path} has result schema {version}; this robench upgrades schema 1 to "
                            f"{SCHEMA_VERSION} only")
        added = _add_columns(connection)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:  # SQLite may have rolled back already (a damaged file)
            connection.execute("ROLLBACK")
        raise
    return f"{path}: result schema 1 -> {SCHEMA_VERSION} ({added} columns added, empty in the stored rows)"


def _add_columns(connection: sqlite3.Connection) -> int:
    """Add the fields of schema 2 that a table lacks, as nullable columns."""
    added = 0
    for cls in RECORD_TYPES:
        present = {row[1] for row in connection.execute(f"PRAGMA table_info({cls.TABLE})")}
        for name in ADDED_IN_2:
            if name in cls.columns() and name not in present:
                kind, _ = sql_type(cls, name)
                connection.execute(f"ALTER TABLE {cls.TABLE} ADD COLUMN {name} {kind}")
                added += 1
    return added
