"""Which datasets are present under a root: ``robench data list | check`` (PROTOCOL.md)."""

from __future__ import annotations

from pathlib import Path

from robench.data.base import DATASETS, DatasetSource


def data_status(root: str | Path = "data") -> list[dict]:
    """One dict per registered dataset, sorted by name.

    Keys: ``name``; ``present`` (every required file exists; digits always);
    ``files`` (required paths, the found copy where there are alternatives);
    ``missing`` (the paths that do not exist, as strings; idx files may also be ``.gz``);
    ``hint`` (how to get the missing files).
    """
    rows = []
    for name in DATASETS.names():
        source: DatasetSource = DATASETS.get(name)  # type: ignore[assignment]
        files = source.files(Path(root))
        missing = [p for p in files if not p.is_file()]
        rows.append(
            {
                "name": name,
                "present": not missing,
                "files": [str(p) for p in files],
                "missing": [str(p) for p in missing],
                "hint": source.hint if missing else "",
            }
        )
    return rows
