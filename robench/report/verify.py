"""``robench results verify``: a published report checked against the records and cards
it says it came from.

Three checks, each a one-line UserError when it fails: every stored record holds its
invariants (:mod:`robench.store.integrity`, run on every read); the digest of the store's
records equals the one the report printed (its ``provenance.json``), so no record was
added, removed or changed since; and the report computed again from those records and the
zoo's cards, with the options it was made with, gives the same tables, byte for byte, as
the published ``tables/*.csv`` (every number on the page comes from one of them).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from robench.errors import UserError
from robench.report.provenance import read_provenance
from robench.store import ResultStore


def _differing_tables(published: Path, recomputed: Path) -> list[str]:
    """Names of the CSV tables that differ between two report folders, or that only one has."""
    names = {p.name for p in published.glob("tables/*.csv")} | {p.name for p in recomputed.glob("tables/*.csv")}
    differing = []
    for name in sorted(names):
        a, b = published / "tables" / name, recomputed / "tables" / name
        if not (a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()):
            differing.append(name)
    return differing


def verify_report(dataset: str, report_dir: Path, results_dir: Path, zoo_dir: Path, data_root: Path) -> list[str]:
    """Check the report of ``dataset`` in ``report_dir`` against the store of
    ``results_dir`` and the zoo of ``zoo_dir``; returns what was verified, in lines."""
    from robench.report import write_report

    report_dir = Path(report_dir)
    provenance = read_provenance(report_dir)
    if provenance.dataset != dataset:
        raise UserError(f"{report_dir} is a report of {provenance.dataset!r}, not {dataset!r}")
    with ResultStore(results_dir) as store:
        if not store.exists:
            raise UserError(f"no result store in {results_dir}; give the results folder the report was made from")
        digest = store.digest()
    if digest != provenance.records_digest:
        raise UserError(f"{report_dir} was not computed from the records in {results_dir}: it states records digest "
                        f"{provenance.records_digest[:16]}…, the store's is {digest[:16]}…")
    with tempfile.TemporaryDirectory(prefix="robench-verify-") as scratch:
        write_report(provenance.dataset, results_dir, zoo_dir, Path(scratch), provenance.matrix_eps, data_root,
                     provenance.margins, provenance.evaluation)
        differing = _differing_tables(report_dir, Path(scratch))
        count = len(list(Path(scratch).glob("tables/*.csv")))
    if differing:
        raise UserError(f"{report_dir}: {len(differing)} of its tables differ from the same report computed again "
                        f"from {results_dir} and {zoo_dir}: {', '.join(differing)}")
    return [f"records: every stored record holds its checks; digest {digest}",
            f"{report_dir}: all {count} tables equal the report computed again from these records and cards"]
