"""Which stored attack rows describe the zoo as it is now: one row per cell.

``attacks.csv`` keeps every row it is given. A row's key holds the attacker's and the
defender's weight hashes, so a member retrained to new weights (``robench train zoo
--force``; on CUDA a rerun rarely gives the same bits) gets new rows beside its old
ones, and the old ones stay. Validity flags and reports must not read both: a table
would show whichever comes first, and a claim would count the member twice. So they
read :func:`current_attack_rows`:

* a row whose attacker or defender is a zoo member that has other weights now (its
  hash differs from the member's card) is superseded and left out. Rows of members that
  are no longer in the zoo are kept, since nothing says their weights changed;
* of rows that are the same cell up to the hashes (the members' weights and the test
  split's ``split_hash``), the last stored (the newest run) is kept, which settles the
  case where no cards are at hand and a test set that changed under the same weights.

A cell stored in two precisions (bf16 and fp32) is two cells: ``precision`` is a key
column, and flags and reports keep the precisions apart. Rows written before a column
existed (absent or blank there) had the value of :data:`LATER_COLUMNS`: fp32, the CE
attack loss, the native backend, no coupled batch.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

HASH_COLUMNS = {"attacker": "attacker_sha256", "defender": "defender_sha256"}
SPLIT_HASH = "split_hash"
LATER_COLUMNS = {"attack_loss": "ce", "backend": "native", "precision": "fp32", "coupled_batch": ""}
"""Columns that attack rows gained after their first version -> the value every row
written before the column had."""


def with_later_columns(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with every column of :data:`LATER_COLUMNS`, blank or missing values
    filled with its value."""
    filled = {}
    for column, value in LATER_COLUMNS.items():
        if column in rows:
            blank = rows[column].isna() | (rows[column] == "")
            filled[column] = rows[column].where(~blank, value)
        else:
            filled[column] = value
    return rows.assign(**filled)


def current_attack_rows(rows: pd.DataFrame, key_columns: Sequence[str],
                        hashes: Mapping[str, str]) -> tuple[pd.DataFrame, str]:
    """``rows`` (one per stored attack cell, in stored order) without superseded ones, and
    a sentence saying what was left out ("" when nothing was).

    ``key_columns``: the store's key; ``hashes``: member name → sha256 of its weights now
    (empty when no zoo cards are at hand).
    """
    if rows.empty:
        return rows, ""
    rows = with_later_columns(rows)
    earlier, changed = _on_earlier_weights(rows, hashes)
    kept = rows[~earlier]
    hashes_of_a_run = {*HASH_COLUMNS.values(), SPLIT_HASH}
    cell = [c for c in (*key_columns, "experiment") if c in kept and c not in hashes_of_a_run]
    kept = kept[~kept.duplicated(subset=cell, keep="last")]
    parts = []
    if changed:
        parts.append(f"{_rows(int(earlier.sum()))} computed on earlier weights of {', '.join(sorted(changed))}")
    older = len(rows) - int(earlier.sum()) - len(kept)
    if older:
        parts.append(f"{_rows(older)} of cells computed again later")
    note = f"Left out of attacks.csv: {' and '.join(parts)}." if parts else ""
    return kept.reset_index(drop=True), note


def _on_earlier_weights(rows: pd.DataFrame, hashes: Mapping[str, str]) -> tuple[pd.Series, set[str]]:
    """Which rows name a zoo member with a hash other than its weights' now, and those members."""
    mask = pd.Series(False, index=rows.index)
    members: set[str] = set()
    for role, column in HASH_COLUMNS.items():
        if role in rows and column in rows:
            now = rows[role].map(dict(hashes))  # NaN for members not in the zoo
            changed = now.notna() & (rows[column] != now)
            members |= set(rows.loc[changed, role])
            mask |= changed
    return mask, members


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"
