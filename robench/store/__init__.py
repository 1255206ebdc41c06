"""Result records and the SQLite store that holds them (docs/results.md).

``ResultStore(results_dir)`` is the one way robench reads and writes results: typed
records (:mod:`robench.store.records`) in ``<results_dir>/results.sqlite``; CSV and
Parquet files are exports of it (:mod:`robench.store.export`), and the CSV files of
robench before the store are turned into records once by :mod:`robench.store.migrate`.
"""

from robench.store.records import (SANITY, SCHEMA_VERSION, AttackRecord, ExperimentRecord,
                                   FlagRecord, Record, RunRecord)
from robench.store.sqlite import DATABASE, ResultStore

__all__ = [
    "DATABASE",
    "SANITY",
    "SCHEMA_VERSION",
    "AttackRecord",
    "ExperimentRecord",
    "FlagRecord",
    "Record",
    "ResultStore",
    "RunRecord",
]
