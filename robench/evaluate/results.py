"""Long-format result rows in CSV, appended atomically and keyed for resuming.

Each file under ``reports/<dataset>/results/`` holds one kind of result (attacks,
generalization, noise). A row's key is a tuple of its key columns; a re-run skips the
cells whose key is already present. Appending rewrites the file through a temporary
file and a rename, so a crash never leaves a torn CSV.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from robench.errors import UserError
from robench.io import atomic_write_text


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class ResultStore:
    """One CSV of result rows with a fixed column order and key columns."""

    def __init__(self, path: Path, key_columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.key_columns = tuple(key_columns)

    def rows(self) -> list[dict[str, str]]:
        """All stored rows as strings (empty when the file does not exist)."""
        if not self.path.exists():
            return []
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UserError(f"{self.path} is not a readable CSV ({exc}); move it away and re-run") from None

    def key_of(self, row: dict[str, Any]) -> tuple[str, ...]:
        return tuple(_text(row.get(c)) for c in self.key_columns)

    def done_keys(self) -> set[tuple[str, ...]]:
        """Keys of the rows already stored."""
        return {self.key_of(r) for r in self.rows()}

    def append(self, new_rows: Iterable[dict[str, Any]], replace: bool = False) -> None:
        """Add rows (a stored row with the same key is replaced when ``replace``)."""
        new_rows = [{**r, "timestamp": r.get("timestamp") or _now()} for r in new_rows]
        if not new_rows:
            return
        new_keys = {self.key_of(r) for r in new_rows}
        old = [r for r in self.rows() if not (replace and self.key_of(r) in new_keys)]
        columns = list(old[0].keys()) if old else []
        for row in new_rows:
            columns += [c for c in row if c not in columns]
        write_csv(self.path, columns, [{c: _text(row.get(c)) for c in columns} for row in old + new_rows])


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` under a header of ``columns`` to ``path`` atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(path), buffer.getvalue())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
