"""Which stored attack records describe the zoo as it is now: one record per cell.

The store keeps every record it is given. A record's key holds the attacker's and the
defender's weight hashes, so a member retrained to new weights (``robench train zoo
--force``; on CUDA a rerun rarely gives the same bits) gets new records beside its old
ones, and the old ones stay. Validity flags and reports must not read both: a table
would show whichever comes first, and a claim would count the member twice. So they
read :func:`current_attack_records`:

* a record whose attacker or defender is a zoo member that has other weights now (its
  hash differs from the member's card) is superseded and left out. Records of members
  that are no longer in the zoo are kept, since nothing says their weights changed;
* of records that are the same cell up to the hashes (the members' weights and the
  test split's ``split_hash``), the last stored (the newest run) is kept, which settles
  the case where no cards are at hand and a test set that changed under the same weights.

A cell stored in two precisions (bf16 and fp32), or under two schedules, is two cells:
both are key fields of :class:`robench.store.AttackRecord`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from robench.store import AttackRecord

HASH_FIELDS = {"attacker": "attacker_sha256", "defender": "defender_sha256"}
RUN_HASHES = ("attacker_sha256", "defender_sha256", "split_hash")


def current_attack_records(records: Sequence[AttackRecord],
                           hashes: Mapping[str, str]) -> tuple[list[AttackRecord], str]:
    """``records`` (in stored order) without superseded ones, and a sentence saying what
    was left out ("" when nothing was). ``hashes``: member name → sha256 of its weights
    now (empty when no zoo cards are at hand)."""
    changed: set[str] = set()
    kept = []
    for record in records:
        stale = {getattr(record, role) for role, column in HASH_FIELDS.items()
                 if hashes.get(getattr(record, role), getattr(record, column)) != getattr(record, column)}
        changed |= stale
        if not stale:
            kept.append(record)
    earlier = len(records) - len(kept)
    last = {_cell_up_to_hashes(r): i for i, r in enumerate(kept)}
    current = [r for i, r in enumerate(kept) if last[_cell_up_to_hashes(r)] == i]
    parts = []
    if changed:
        parts.append(f"{_rows(earlier)} computed on earlier weights of {', '.join(sorted(changed))}")
    older = len(kept) - len(current)
    if older:
        parts.append(f"{_rows(older)} of cells computed again later")
    note = f"Left out of the stored attack records: {' and '.join(parts)}." if parts else ""
    return current, note


def _cell_up_to_hashes(record: AttackRecord) -> tuple:
    return tuple(getattr(record, k) for k in AttackRecord.KEY if k not in RUN_HASHES)


def _rows(count: int) -> str:
    return f"{count} record" if count == 1 else f"{count} records"
