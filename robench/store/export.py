"""Exports of a result store as long-format tables for pandas: CSV or Parquet.

One file per table (``attacks``, ``experiments``, ``flags``, ``runs``), the record's
columns in order (``cell``, the store's index, left out), each written atomically.
Exports are snapshots: the store stays the one source, and an export is never read
back. ``robench run`` writes the CSV exports beside the store, so a committed report's
results stay readable in a diff. Parquet needs pyarrow (``pip install 'robench[parquet]'``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from robench.errors import UserError
from robench.io import atomic_write, atomic_write_text
from robench.store.records import AttackRecord, ExperimentRecord, FlagRecord, RunRecord
from robench.store.sqlite import ResultStore

FORMATS = ("csv", "parquet")
TABLES = {"attacks": AttackRecord, "experiments": ExperimentRecord, "flags": FlagRecord, "runs": RunRecord}


def export_results(store: ResultStore, out_dir: Path, fmt: str = "csv") -> list[Path]:
    """Write every table of ``store`` to ``out_dir/<table>.<fmt>``; returns the paths."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise UserError("the parquet export needs pyarrow: pip install 'robench[parquet]' (or export --format csv)")
    paths = []
    for name, cls in TABLES.items():
        frame = store.frame(cls).drop(columns="cell", errors="ignore")
        path = Path(out_dir) / f"{name}.{fmt}"
        if fmt == "csv":
            atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))
        else:
            atomic_write(path, lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
        paths.append(path)
    return paths
