"""Does pairing by seed reduce the variance of a claim's estimate? Measured on a store.

For every attack claim (robench.report.claims) this reads the store's records on the
newest weights of each member, leaves out failed trainings (judged from each member's
clean accuracy on the attacked test images), and compares, over the seeds both sides
have, the variance of the paired differences d_s = T_s − R_s with the sum of the two
sides' variances (what an unpaired test assumes): pairing helps when the ratio
var(d) / (var(T) + var(R)) = 1 − 2 cov(T, R) / (var(T) + var(R)) is below 1, that is
when the two sides are positively correlated over seeds. What decides between the two
tests is the width of the interval each gives, degrees of freedom included: the paired
test has n_paired − 1 of them (and loses a unit wherever a failed training removed a seed
from one side only), Welch's about n_T + n_R − 2. So it also gives, per claim, the ratio of
the paired to the Welch simultaneous half-width at α / 16 (the primary family's size).
Experiment claims are measured likewise over repeats. docs/protocol.md ("Paired or unpaired") quotes its output.

    python scripts/pairing_evidence.py reports/digits/results digits
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from robench.evaluate.current import current_attack_records
from robench.evaluate.evaluation import Evaluation
from robench.report.claims import CLAIMS, claim_sample, units_of
from robench.report.load import records_frame
from robench.report.training_failures import failed_trainings, without_failed
from robench.stats import paired_t, welch_t
from robench.store import SANITY, AttackRecord, ExperimentRecord, ResultStore

FAMILY = 16  # the primary family's size (robench.report.claims)


def newest_weights(records: list[AttackRecord]) -> dict[str, str]:
    """Member → the sha256 of the weights of its newest record (defender or attacker)."""
    newest: dict[str, tuple[str, str]] = {}
    for r in records:
        for name, sha in ((r.defender, r.defender_sha256), (r.attacker, r.attacker_sha256)):
            if name and sha and (name not in newest or r.timestamp > newest[name][0]):
                newest[name] = (r.timestamp, sha)
    return {name: sha for name, (_, sha) in newest.items()}


def pseudo_cards(attacks: pd.DataFrame) -> list[dict]:
    """One card-like entry per white-box defender: its clean accuracy on the attacked images."""
    clean = attacks[(attacks["mode"] == "whitebox") & (attacks["eps"] == 0)].drop_duplicates("defender")
    return [{"name": r.defender, "clean_test_accuracy": r.clean_accuracy, "head": r.defender_head,
             "loss": {"name": r.defender_loss, "bound": r.defender_bound or "sym",
                      "delta": 1.0 if pd.isna(r.defender_delta) else float(r.defender_delta)}}
            for r in clean.itertuples()]


def measure(results_dir: Path, dataset: str) -> dict:
    with ResultStore(results_dir) as store:
        records = [r for r in store.records(AttackRecord) if r.dataset == dataset]
        experiments = records_frame([r for r in store.records(ExperimentRecord) if r.dataset == dataset],
                                    ExperimentRecord)
    current, _ = current_attack_records(records, newest_weights(records))
    frame = records_frame(current, AttackRecord)
    attacks, _ = Evaluation().select(frame[frame["mode"] != SANITY])
    failed = failed_trainings(pseudo_cards(attacks), dataset)
    attacks = without_failed(attacks, failed)
    sources = {name: experiments[experiments["experiment"] == name] for name in ("generalization", "noise")}
    claims = {}
    for claim in CLAIMS:
        sample = claim_sample(claim, units_of(claim, attacks, sources))
        shared = sample.differences.index
        if sample.missing or len(shared) < 3:
            continue
        t, r = sample.treatment[shared], sample.reference[shared]
        unpaired = float(t.var() + r.var())
        level = 1 - 0.05 / FAMILY
        paired = paired_t(sample.differences.tolist()).interval(level)
        welch = welch_t(sample.treatment.tolist(), sample.reference.tolist()).interval(level)
        claims[claim.key] = {"units": len(shared), "treatment_units": len(sample.treatment),
                             "reference_units": len(sample.reference),
                             "correlation": float(np.corrcoef(t, r)[0, 1]),
                             "variance_ratio": float(sample.differences.var() / unpaired) if unpaired else None,
                             "width_ratio": float((paired[1] - paired[0]) / (welch[1] - welch[0]))}
    by_source = {}
    for source, keys in (("attacks", [c.key for c in CLAIMS if c.source == "attacks"]),
                         ("experiments", [c.key for c in CLAIMS if c.source != "attacks"])):
        ratios = [claims[k]["variance_ratio"] for k in keys if k in claims and claims[k]["variance_ratio"]]
        correlations = [claims[k]["correlation"] for k in keys if k in claims]
        widths = [claims[k]["width_ratio"] for k in keys if k in claims]
        if ratios:
            by_source[source] = {"claims": len(ratios), "median_variance_ratio": statistics.median(ratios),
                                 "median_correlation": statistics.median(correlations),
                                 "variance_ratio_below_1": sum(x < 1 for x in ratios),
                                 "median_width_ratio": statistics.median(widths),
                                 "paired_narrower": sum(x < 1 for x in widths)}
    return {"dataset": dataset, "failed_trainings": sorted(failed), "claims": claims, "by_source": by_source}


if __name__ == "__main__":
    json.dump(measure(Path(sys.argv[1]), sys.argv[2]), sys.stdout, indent=1)
    sys.stdout.write("\n")
