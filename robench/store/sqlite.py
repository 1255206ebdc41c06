"""The result store: one SQLite database per results folder (``results.sqlite``).

SQLite (the standard library's :mod:`sqlite3`) because it gives what the CSV files
could not: appends that cost the rows appended, several writers on one folder without
losing a row, and a file that a kill -9 at any moment leaves consistent. The database
runs in WAL mode (readers never block the writer) with a busy timeout, so a second
``robench`` process writing the same folder waits for the first one's transaction
instead of failing; each :meth:`ResultStore.append` is one ``BEGIN IMMEDIATE`` …
``COMMIT`` transaction, so a batch is stored whole or not at all. ``synchronous =
NORMAL`` makes a commit durable against a crash of the process (not of the machine's
power, where the last commits may be lost but the file stays consistent).

Tables: one per record type (:mod:`robench.store.records`), ``STRICT`` so a value of
the wrong type is refused, each with a unique index on the record's ``cell``; and
``runs``, one row per stored run configuration. ``PRAGMA user_version`` holds the
schema version. Reads go through :meth:`ResultStore.frame`, a pandas frame with the
record's columns in order.

A folder that still holds the CSV files of robench before the store is refused until
``robench results migrate`` has turned them into records.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from robench.errors import UserError
from robench.store.records import RECORD_TYPES, SCHEMA_VERSION, Record, RunRecord, bool_fields, sql_type

DATABASE = "results.sqlite"
LEGACY_FILES = ("attacks.csv", "generalization.csv", "noise.csv", "flags.csv")
BUSY_TIMEOUT_S = 600.0  # a writer waits this long for another process's transaction


def _table_sql(cls: type) -> list[str]:
    columns = []
    for name in cls.columns():
        if name == "cell":
            columns.append("cell TEXT NOT NULL")
            continue
        kind, nullable = sql_type(cls, name)
        columns.append(f"{name} {kind}{'' if nullable else ' NOT NULL'}")
    if cls is RunRecord:
        columns[0] += " PRIMARY KEY"
    sql = [f"CREATE TABLE IF NOT EXISTS {cls.TABLE} ({', '.join(columns)}) STRICT"]
    if cls is not RunRecord:
        sql.append(f"CREATE UNIQUE INDEX IF NOT EXISTS {cls.TABLE}_cell ON {cls.TABLE} (cell)")
    return sql


def legacy_files(results_dir: Path) -> list[Path]:
    """Result CSVs of robench before the store (no ``schema_version`` column) in ``results_dir``."""
    found = []
    for name in LEGACY_FILES:
        path = Path(results_dir) / name
        if path.is_file():
            with open(path, encoding="utf-8", errors="replace") as f:
                header = f.readline().rstrip("\r\n")
            if "schema_version" not in header.split(","):
                found.append(path)
    return found


class ResultStore:
    """The records of one results folder. Opening creates nothing; the first write
    creates the folder and the database. ``legacy_ok`` (the migration only) opens a
    folder that still holds result CSVs from before the store."""

    def __init__(self, results_dir: Path, legacy_ok: bool = False) -> None:
        self.results_dir = Path(results_dir)
        self.path = self.results_dir / DATABASE
        self._connection: sqlite3.Connection | None = None
        legacy = [] if legacy_ok else legacy_files(self.results_dir)
        if legacy:
            raise UserError(
                f"{self.results_dir} holds result CSVs written before the result store "
                f"({', '.join(p.name for p in legacy)}); turn them into records once with "
                f"`robench results migrate {self.results_dir}`")

    # ------------------------------------------------------------ connection

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._connection is not None:
            return self._connection
        if not self.exists:
            if not create:
                return None
            self._create()
        try:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            connection.execute("PRAGMA synchronous = NORMAL")
            self._check_schema(connection)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path} is not a readable robench result store ({exc}); "
                            "move it away and re-run") from None
        self._connection = connection
        return connection

    def _create(self) -> None:
        """Build an empty store (WAL mode, every table, the schema version) in a private
        file and link it into place, so no process ever opens a half-made database; of
        two processes creating one folder's store at once, the first link wins and the
        other's file is dropped."""
        self.results_dir.mkdir(parents=True, exist_ok=True)
        draft = self.results_dir / f".{DATABASE}.{os.getpid()}.{uuid.uuid4().hex}.new"
        try:
            connection = sqlite3.connect(draft, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("BEGIN IMMEDIATE")
                for cls in (*RECORD_TYPES, RunRecord):
                    for statement in _table_sql(cls):
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                connection.execute("COMMIT")
            finally:
                connection.close()
            try:
                os.link(draft, self.path)
            except FileExistsError:
                pass
        finally:
            draft.unlink(missing_ok=True)

    def _check_schema(self, connection: sqlite3.Connection) -> None:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            raise sqlite3.DatabaseError("a database without a robench schema version")
        if version > SCHEMA_VERSION:
            raise UserError(f"{self.path} has result schema {version}, newer than this robench's "
                            f"{SCHEMA_VERSION}; upgrade robench")
        raise UserError(f"{self.path} has result schema {version}, not {SCHEMA_VERSION}; "
                        f"run `robench results migrate {self.results_dir}`")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------ writes

    def _write(self, statements: Iterable[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        """Run ``(sql, rows)`` pairs in one transaction: all stored, or none."""
        connection = self._connect(create=True)
        connection.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                connection.executemany(sql, rows)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def save_run(self, run: RunRecord) -> str:
        """Store ``run`` once (a run with its id already stored is kept); returns its id."""
        columns = RunRecord.columns()
        row = [getattr(run, c) for c in columns]
        self._write([(f"INSERT OR IGNORE INTO runs ({', '.join(columns)}) "
                      f"VALUES ({', '.join('?' * len(columns))})", [row])])
        return run.run_id

    def append(self, records: Sequence[Record], replace: bool = False) -> None:
        """Store ``records`` in one transaction. A record whose cell is stored already is
        skipped (another process computed it), or replaces the stored one when ``replace``."""
        self._write(self._inserts(records, "REPLACE" if replace else "IGNORE"))

    def replace_all(self, cls: type[Record], records: Sequence[Record]) -> None:
        """Make ``records`` the whole content of ``cls``'s table, in one transaction
        (the validity flags, recomputed from every stored attack cell)."""
        self._write([(f"DELETE FROM {cls.TABLE}", [()]), *self._inserts(records, "REPLACE")])

    @staticmethod
    def _inserts(records: Sequence[Record], conflict: str) -> list[tuple[str, list[list[Any]]]]:
        by_type: dict[type, list[Record]] = {}
        for record in records:
            by_type.setdefault(type(record), []).append(record)
        statements = []
        for cls, group in by_type.items():
            columns = cls.columns()
            rows = [[*(getattr(r, c) for c in columns[:-1]), r.cell] for r in group]
            statements.append((f"INSERT OR {conflict} INTO {cls.TABLE} ({', '.join(columns)}) "
                               f"VALUES ({', '.join('?' * len(columns))})", rows))
        return statements

    # ------------------------------------------------------------ reads

    def cells(self, cls: type[Record]) -> set[str]:
        """The cells of ``cls`` stored so far."""
        connection = self._connect(create=False)
        if connection is None:
            return set()
        return {row[0] for row in connection.execute(f"SELECT cell FROM {cls.TABLE}")}

    def frame(self, cls: type[Record] | type[RunRecord]) -> pd.DataFrame:
        """Every stored row of ``cls`` in the order stored (a replaced row counts as
        stored when it was replaced), with the record's columns; empty when none."""
        columns = list(cls.columns())
        connection = self._connect(create=False)
        if connection is None:
            return pd.DataFrame(columns=columns)
        frame = pd.read_sql_query(f"SELECT {', '.join(columns)} FROM {cls.TABLE} ORDER BY rowid", connection)
        for name in bool_fields(cls):
            frame[name] = frame[name].astype(bool)
        return frame

    def records(self, cls: type[Record]) -> list[Record]:
        """Every stored row of ``cls`` as a record, in the order stored."""
        connection = self._connect(create=False)
        if connection is None:
            return []
        columns = cls.columns()
        booleans = bool_fields(cls)
        cursor = connection.execute(f"SELECT {', '.join(columns)} FROM {cls.TABLE} ORDER BY rowid")
        rows = (dict(zip(columns, values)) for values in cursor)
        return [cls.from_row({k: bool(v) if k in booleans else v for k, v in row.items()}) for row in rows]
