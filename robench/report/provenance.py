"""What a report was computed from, written beside it as ``provenance.json``: the digest
of the store's records (:meth:`robench.store.ResultStore.digest`) and the options that
chose what the report read, so that ``robench results verify`` can compute the same
report again from the same records and cards and compare it with the published one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from robench.errors import UserError
from robench.evaluate.evaluation import Evaluation
from robench.io import atomic_write_text
from robench.jsonfile import read_json_object, shown

PROVENANCE = "provenance.json"


@dataclasses.dataclass(frozen=True)
class Provenance:
    """A report's inputs: its dataset, the digest of the records it read, and its options."""

    dataset: str
    records_digest: str
    evaluation: Evaluation
    matrix_eps: float | None
    margins: bool

    def write(self, out_dir: Path) -> None:
        payload = {**dataclasses.asdict(self), "evaluation": dataclasses.asdict(self.evaluation)}
        atomic_write_text(Path(out_dir) / PROVENANCE, json.dumps(payload, indent=1, sort_keys=True) + "\n")


def read_provenance(report_dir: Path) -> Provenance:
    """The provenance of the report in ``report_dir``; a UserError when it has none or it
    is not one robench wrote."""
    path = Path(report_dir) / PROVENANCE
    remedy = "regenerate the report with `robench report`"
    if not Path(report_dir).is_dir():
        raise UserError(f"no report folder {report_dir}; give the report's folder with --report")
    if not path.exists():
        raise UserError(f"{report_dir} holds no {PROVENANCE}: not a report of this robench; {remedy}")
    raw: dict[str, Any] = read_json_object(path, remedy)
    fields = {f.name for f in dataclasses.fields(Provenance)}
    evaluation_fields = {f.name for f in dataclasses.fields(Evaluation)}
    evaluation = raw.get("evaluation")
    if set(raw) != fields or not isinstance(evaluation, dict) or set(evaluation) != evaluation_fields:
        raise UserError(f"{path} is not a report's provenance (keys {shown(sorted(raw))}); {remedy}")
    return Provenance(**{**raw, "evaluation": Evaluation(**evaluation)})
