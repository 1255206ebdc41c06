"""Appending attack records in batches: the SQLite result store against a CSV rewrite.

The baseline is how robench stored rows before the store (``ResultStore.append`` of the
CSV era): read the whole file, add the batch, write everything to a temporary file and
rename it over the old one, so each append costs the size of the file and a run of many
batches costs the square of its length. The store (:class:`robench.store.ResultStore`)
inserts each batch in one transaction. Both get the same records, built before the
clock starts (``--rows`` distinct cells in batches of ``--batch-rows``), each in a fresh
temporary folder; the figures are the total wall time, the time of the first and the
last tenth of the batches, and the rows each holds at the end (both must hold all).
"""

from __future__ import annotations

import csv
import io
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import ratio
from robench.io import atomic_write_text
from robench.store import AttackRecord, ResultStore


def records(rows: int) -> list[AttackRecord]:
    """``rows`` distinct attack cells: 8 × 8 members, 2 attacks, ε on a fine grid."""
    out = []
    for i in range(rows):
        attacker, defender, attack, step = i % 8, (i // 8) % 8, ("fgsm", "ifgsm")[(i // 64) % 2], i // 128
        eps = round(step * 1e-4, 6)
        out.append(AttackRecord(
            run_id="bench", dataset="mnist", mode="whitebox" if attacker == defender else "blackbox",
            attacker=f"m{attacker}", attacker_sha256=f"{attacker:064d}", attacker_loss="ce", attacker_seed=attacker,
            defender=f"m{defender}", defender_sha256=f"{defender:064d}", defender_loss="ce", defender_bound="sym",
            defender_delta=1.0, defender_head="linear", defender_seed=defender, split_hash="s" * 64,
            num_classes=10, attack=attack, attack_loss="ce", backend="native", eps=eps,
            steps=1 if attack == "fgsm" else 80, step_size=eps if attack == "fgsm" else 1 / 255,
            schedule="default", n=10000, precision="fp32", correct=9000 - i % 9000, clean_correct=9900,
            threads=1, determinism=None, robench_version="0.1.0", torch_version="2.x"))
    return out


def _csv_text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else str(value)


def csv_rewrite_append(path: Path, batch: list[dict[str, Any]]) -> None:
    """The CSV-era append: read every stored row, add ``batch``, rewrite the file atomically."""
    old: list[dict[str, str]] = []
    if path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            old = list(csv.DictReader(f))
    columns = list(old[0]) if old else list(batch[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(old)
    writer.writerows({c: _csv_text(row[c]) for c in columns} for row in batch)
    atomic_write_text(path, buffer.getvalue())


def _timed_batches(append: Callable[[list], None], batches: list[list]) -> list[float]:
    seconds = []
    for batch in batches:
        start = time.perf_counter()
        append(batch)
        seconds.append(time.perf_counter() - start)
    return seconds


def _figures(seconds: list[float], stored: int) -> dict[str, Any]:
    tenth = max(1, len(seconds) // 10)
    return {"total_s": sum(seconds), "first_tenth_s": sum(seconds[:tenth]), "last_tenth_s": sum(seconds[-tenth:]),
            "rows_stored": stored}


def run(rows: int, batch_rows: int) -> dict[str, Any]:
    """Time both appends of ``rows`` records in batches of ``batch_rows``."""
    cells = records(rows)
    batches = [cells[i:i + batch_rows] for i in range(0, rows, batch_rows)]
    with tempfile.TemporaryDirectory() as tmp:
        with ResultStore(Path(tmp)) as store:
            store_seconds = _timed_batches(store.append, batches)
            store_rows = len(store.cells(AttackRecord))
    dict_batches = [[r.as_dict() for r in batch] for batch in batches]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "attacks.csv"
        csv_seconds = _timed_batches(lambda batch: csv_rewrite_append(path, batch), dict_batches)
        with open(path, newline="", encoding="utf-8") as f:
            csv_rows = sum(1 for _ in csv.DictReader(f))
    store_figures, csv_figures = _figures(store_seconds, store_rows), _figures(csv_seconds, csv_rows)
    return {"rows": rows, "batch_rows": batch_rows, "batches": len(batches), "store": store_figures,
            "csv_rewrite": csv_figures,
            "ratios": {"csv_rewrite/store": ratio(csv_figures["total_s"], store_figures["total_s"])}}


def summary_lines(result: dict[str, Any]) -> list[str]:
    store, baseline = result["store"], result["csv_rewrite"]
    return [
        f"store append: {result['rows']:,} attack rows in batches of {result['batch_rows']}",
        f"  SQLite store {store['total_s']:.2f} s (first tenth {store['first_tenth_s']:.3f} s, last tenth "
        f"{store['last_tenth_s']:.3f} s), {store['rows_stored']:,} rows stored",
        f"  CSV rewrite  {baseline['total_s']:.2f} s (first tenth {baseline['first_tenth_s']:.3f} s, last tenth "
        f"{baseline['last_tenth_s']:.3f} s), {baseline['rows_stored']:,} rows stored",
        f"  ratio csv_rewrite/store {result['ratios']['csv_rewrite/store']:.1f}x",
    ]
