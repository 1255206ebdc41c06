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

import json
import math
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from robench.errors import DiskFull, UserError
from robench.io import no_space_left, remove_stale_temporaries, temporary_path
from robench.jsonfile import one_line, shown
from robench.store.integrity import record_problem, records_digest
from robench.store.records import (RECORD_TYPES, SCHEMA_VERSION, AttackRecord, ExperimentRecord, FlagRecord, Record,
                                   RunRecord, bool_fields, sql_type)

DATABASE = "results.sqlite"
LEGACY_FILES = ("attacks.csv", "generalization.csv", "noise.csv", "flags.csv")
BUSY_TIMEOUT_S = 600.0  # a writer waits this long for another process's transaction
UNREADABLE = (sqlite3.DatabaseError, UnicodeDecodeError)  # what reading a damaged or foreign file raises


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


def store_error(path: Path, exc: Exception) -> UserError:
    """The one-line UserError of a SQLite error on the store at ``path``: a file that is
    not a store of robench's schema, or is damaged (SQLite's text, even its message, may
    not decode), is to be moved away; a busy, full, read-only or unreachable one is said
    as SQLite says it; a full disk is :class:`DiskFull` (the batch being written rolled
    back, the committed ones stay)."""
    if isinstance(exc, UnicodeDecodeError):
        return UserError(f"{path} is damaged (SQLite gave text that is not UTF-8); move it away and re-run")
    name = getattr(exc, "sqlite_errorname", "")
    full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    if full or (name.startswith("SQLITE_IOERR") and no_space_left(Path(path).parent)):
        return DiskFull(path)  # opening a WAL store on a full device fails as an I/O error
    if any(name == e or name.startswith(e + "_") for e in ENVIRONMENT_ERRORS) or "locked" in str(exc):
        return UserError(f"{path} cannot be used now ({one_line(exc)}); check the disk, the file's "
                         "permissions and other robench processes, then re-run")
    return UserError(f"{path} is not a readable robench result store ({one_line(exc)}); move it away and re-run")


class ResultStore:
    """The records of one results folder. Opening creates nothing; the first write
    creates the folder and the database. ``legacy_ok`` (the migration only) opens a
    folder that still holds result CSVs from before the store."""

    def __init__(self, results_dir: Path, legacy_ok: bool = False) -> None:
        self.results_dir = Path(results_dir)
        self.path = self.results_dir / DATABASE
        self._connection: sqlite3.Connection | None = None
        self._checked: dict[type, tuple[int, list[tuple]]] = {}  # table -> (data_version, its checked rows)
        legacy = [] if legacy_ok else legacy_files(self.results_dir)
        if legacy:
            raise UserError(
                f"{self.results_dir} holds result CSVs written before the result store "
                f"({', '.join(p.name for p in legacy)}); turn them into records once with "
                f"`robench results migrate {self.results_dir}`")

    # ------------------------------------------------------------ connection

    @property
    def exists(self) -> bool:
        """True when the folder holds a store; a ``results.sqlite`` that is not a regular
        file (a FIFO, a device, a folder) is a UserError, never taken for no store."""
        if not os.path.lexists(self.path):
            return False
        if not self.path.is_file():
            raise UserError(f"{self.path} is not a regular file; move it away and re-run")
        return True

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
        except UNREADABLE as exc:
            raise store_error(self.path, exc) from None
        self._connection = connection
        return connection

    def _query(self, sql: str) -> list[tuple] | None:
        """All rows of the read ``sql``; None when there is no store (a damaged store
        is a UserError, :func:`store_error`)."""
        connection = self._connect(create=False)
        if connection is None:
            return None
        try:
            return connection.execute(sql).fetchall()
        except UNREADABLE as exc:
            raise store_error(self.path, exc) from None

    def _create(self) -> None:
        """Build an empty store (WAL mode, every table, the schema version) in a private
        file and link it into place, so no process ever opens a half-made database; of
        two processes creating one folder's store at once, the first link wins and the
        other's file is dropped."""
        self.results_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.results_dir, DATABASE)  # drafts of killed processes
        draft = temporary_path(self.path)
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
        except sqlite3.DatabaseError as exc:
            raise store_error(self.path, exc) from None
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
        self._checked.clear()  # data_version compares only within one connection
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
        self._checked.clear()  # this connection's own commits leave data_version as it is
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    connection.executemany(sql, rows)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:  # SQLite may have rolled back already (a damaged file)
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError:
            raise  # a record of the wrong type: a bug, never the file's fault
        except UNREADABLE as exc:
            raise store_error(self.path, exc) from None

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
        return {row[0] for row in self._query(f"SELECT cell FROM {cls.TABLE}") or []}

    def _rows(self, cls: type[Record] | type[RunRecord]) -> list[tuple] | None:
        """Every stored row of ``cls`` (its columns, in the order stored), each value of
        its column's type (:func:`row_problem`) and each record holding its checks; None
        when there is no store. Rows read and checked once are kept until the database
        changes (SQLite's ``data_version``, which another connection's commit moves, and
        this connection's own writes), so a report reading a table for its frames and again
        for its digest checks it once."""
        version = self._query("PRAGMA data_version")
        if version is None:
            return None
        hit = self._checked.get(cls)
        if hit is not None and hit[0] == version[0][0]:
            return hit[1]
        rows = self._read_checked(cls)
        self._checked[cls] = (version[0][0], rows)
        return rows

    def _read_checked(self, cls: type[Record] | type[RunRecord]) -> list[tuple]:
        """Every stored row of ``cls``, checked (:meth:`_rows`)."""
        columns = cls.columns()
        rows = self._query(f"SELECT {', '.join(columns)} FROM {cls.TABLE} ORDER BY rowid")
        kinds = column_kinds(cls)
        for number, row in enumerate(rows or [], start=1):
            problem = row_problem(kinds, row)
            if problem:
                raise UserError(f"{self.path} is damaged: row {number} of table {cls.TABLE} has {problem}; "
                                "move it away and re-run")
        if rows and cls is not RunRecord:
            self._check_records(cls, rows)
        return rows

    def _run_configs(self) -> dict[str, dict[str, Any]]:
        """Run id → the stored run's configuration (its kind included)."""
        configs = {}
        for run_id, kind, config in self._query("SELECT run_id, kind, config FROM runs") or []:
            try:
                parsed = json.loads(config)
            except ValueError:
                parsed = None
            configs[run_id] = {**parsed, "kind": kind} if isinstance(parsed, dict) else {"kind": kind}
        return configs

    def _check_records(self, cls: type[Record], rows: list[tuple]) -> None:
        """Refuse the store when a stored record of ``cls`` fails its checks
        (:func:`robench.store.integrity.record_problem`), naming the first rows."""
        columns, runs = cls.columns(), self._run_configs()
        problems = [(number, problem) for number, row in enumerate(rows, start=1)
                    if (problem := record_problem(cls, dict(zip(columns, row)), runs))]
        if problems:
            named = "; ".join(f"row {number}: {problem}" for number, problem in problems[:3])
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise UserError(f"{self.path} holds {len(problems)} {cls.TABLE} record(s) that fail their checks — "
                            f"{named}{more}; the store was edited or damaged: restore it, or move it away and re-run")

    def digest(self) -> str:
        """The digest of every stored record (:func:`robench.store.integrity.records_digest`):
        attacks, experiments, runs and flags, each row checked first."""
        tables = []
        for cls in (AttackRecord, ExperimentRecord, RunRecord, FlagRecord):
            columns = cls.columns()
            tables.append((cls.TABLE, [dict(zip(columns, row)) for row in self._rows(cls) or []]))
        return records_digest(tables)

    def frame(self, cls: type[Record] | type[RunRecord]) -> pd.DataFrame:
        """Every stored row of ``cls`` in the order stored (a replaced row counts as
        stored when it was replaced), with the record's columns; empty when none."""
        columns = list(cls.columns())
        rows = self._rows(cls)
        if rows is None:
            return pd.DataFrame(columns=columns)
        frame = pd.DataFrame.from_records(rows, columns=columns, coerce_float=True)
        for name in bool_fields(cls):
            frame[name] = frame[name].astype(bool)
        return frame

    def records(self, cls: type[Record]) -> list[Record]:
        """Every stored row of ``cls`` as a record, in the order stored."""
        columns = cls.columns()
        booleans = bool_fields(cls)
        records = []
        for number, values in enumerate(self._rows(cls) or [], start=1):
            row = {k: bool(v) if k in booleans else v for k, v in zip(columns, values)}
            try:
                records.append(cls.from_row(row))
            except (TypeError, ValueError, ArithmeticError) as exc:  # e.g. n = 0 in a damaged attack row
                raise UserError(f"{self.path} is damaged: row {number} of table {cls.TABLE} is not a record "
                                f"({one_line(exc)}); move it away and re-run") from None
        return records


ENVIRONMENT_ERRORS = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_READONLY", "SQLITE_CANTOPEN",
                      "SQLITE_PERM", "SQLITE_IOERR", "SQLITE_NOMEM"}  # the file may be fine: say what SQLite says
PYTHON_TYPES = {"TEXT": (str,), "INTEGER": (int,), "REAL": (int, float)}


def column_kinds(cls: type) -> list[tuple[str, str, bool]]:
    """(column, SQLite type, nullable) of each stored column of ``cls`` (``cell``: TEXT)."""
    return [(name, *(("TEXT", False) if name == "cell" else sql_type(cls, name))) for name in cls.columns()]


def row_problem(kinds: list[tuple[str, str, bool]], row: Sequence[Any]) -> str | None:
    """What in a stored ``row`` is not of its column's type (an empty value where one is
    needed, text where a number is, a number that is not finite), or None."""
    for (name, kind, nullable), value in zip(kinds, row):
        if value is None:
            if not nullable:
                return f"no {name}"
        elif type(value) not in PYTHON_TYPES[kind] or (kind == "REAL" and not math.isfinite(value)):
            return f"{name} {shown(value, 40)}, not {kind.lower()}"
    return None
