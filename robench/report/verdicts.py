"""Verdicts on the two families of claims: tests over seeds or repeats, Bonferroni's
simultaneous intervals within each family, and what a verdict needs before it says anything.

For each claim (:mod:`robench.report.claims`) the sample is each side's value per unit
(training seed or repeat), and its test Welch's two-sample t-test (scipy) of the two
sides' values, unpaired (docs/protocol.md gives the measurements behind the choice). The
marginal interval is the 95 % Welch t-interval. The claims of one family (primary: the
paper's statements; secondary: exploratory) that can be tested (at least
:data:`MIN_UNITS` units on each side, a spread) number m; withheld ones stay
in (so a flag on one claim's members never makes the test of another claim less strict).
Each gets the t-interval at level 1 − α/m: Bonferroni's simultaneous intervals, which
cover all m true differences of the family jointly with probability at least 1 − α = 95 %,
and its p-value times m (capped at 1).

- **supported** / **contradicted**: the Bonferroni-adjusted p-value is below α = 0.05,
  with the estimate above / below 0 — exactly when the simultaneous interval lies above /
  below 0, so the verdict can be read off the interval;
- **not run**: no records to read the claim on (a mode, attack or experiment never run,
  or no member of a compared configuration); the reason says which command runs it;
- **inconclusive** otherwise, with the reason: too few units, no spread (a
  zero-width interval is never evidence), or an adjusted p-value of at least α. The reason
  gives the effect that the test at α/m would detect with 80 % power if each side's spread
  were the one its units show (Welch's exact power, :meth:`robench.stats.TTest.detectable`,
  from median-unbiased spreads): an estimate from few units, not a bound on what goes
  undetected;
- **withheld**: a member whose records the claim uses failed a gating validity flag
  (:data:`robench.report.gates.GATING_FLAGS`) that ``explained_flags.toml`` does not explain; the claim
  is shown with its numbers and its adjusted p-value, and without a verdict, until the
  flag is explained.
"""

from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

from robench.evaluate.masking import MASKING_FLAGS
from robench.report.claim_data import Units, zoo_attackers
from robench.report.claims import CLAIMS, FAMILIES, Claim, Sample, claim_sample, units_of
from robench.report.training_failures import without_failed
from robench.stats import NO_TEST, TTest, bonferroni, welch_t

ALPHA = 0.05
MIN_UNITS = 3
SUPPORTED, CONTRADICTED, INCONCLUSIVE, WITHHELD = "supported", "contradicted", "inconclusive", "withheld"
NOT_RUN = "not run"  # no records to read the claim on: never counted as inconclusive
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, WITHHELD, NOT_RUN)
CLAIM_COLUMNS = ("claim", "family", "statement", "data", "unit", "treatment_units", "reference_units",
                 "difference", "se", "df", "ci_low", "ci_high", "p", "p_adjusted", "family_size",
                 "simultaneous_low", "simultaneous_high", "detectable", "verdict", "reason", "left_out", "detail",
                 "definition")


def _missing(claim: Claim, attacks: pd.DataFrame, experiments: dict[str, pd.DataFrame], dataset: str,
             stored: set[str]) -> str:
    """Why a claim has no records ("" when it has): a mode or experiment never run, or
    none of its records in the evaluation."""
    if claim.source != "attacks":
        if experiments.get(claim.source, pd.DataFrame()).empty:
            return f"no {claim.source} results: run `robench experiment {claim.source} --dataset {dataset}`"
        return ""
    present = set(attacks["mode"]) if not attacks.empty else set()
    if present and not set(attacks["attack"]) & set(claim.attacks):
        return (f"no {'/'.join(claim.attacks)} records in the evaluation: run `robench attack --whitebox "
                f"--attacks {','.join(claim.attacks)} --dataset {dataset}`")
    parts = []
    for mode in (m for m in claim.modes if m not in present):
        label = "white-box" if mode == "whitebox" else "black-box"
        if mode in stored:
            parts.append(f"no {label} records in the evaluation the claims read (the {label} section's note says which)")
        else:
            parts.append(f"no {label} results: run `robench attack --{mode} --dataset {dataset}`")
    return "; ".join(parts)


def _sample(claim: Claim, attacks: pd.DataFrame, experiments: dict[str, pd.DataFrame], dataset: str,
            stored: set[str], units: dict[tuple, Units]) -> Sample:
    """The claim's sample; ``units`` caches the units of each source and modes."""
    missing = _missing(claim, attacks, experiments, dataset, stored)
    if missing:
        return Sample.empty(missing=missing)
    key = (claim.source, claim.modes, claim.highest, claim.attacks)
    if key not in units:
        units[key] = units_of(claim, attacks, experiments)
    return claim_sample(claim, units[key])


def evaluate_claims(attacks: pd.DataFrame, experiments: dict[str, pd.DataFrame], dataset: str,
                    gates: Mapping[str, list[str]] | None = None, stored: set[str] | None = None,
                    failed: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per claim: its family, units per side, Welch's estimate with its standard
    error, df and marginal 95 % interval, p-value, Bonferroni-adjusted p-value and
    simultaneous interval within its family, the family size m, the effect detected with
    80 % power, verdict and reason.

    ``attacks``: the evaluation's attack records; ``gates``: member → failed, unexplained
    gating flags (their scopes); ``stored``: the attack modes of every stored record (to
    say why a mode is absent); ``failed``: member → why its training failed
    (:mod:`robench.report.training_failures`), left out of every claim, each claim naming
    the failed members it would have used."""
    gates, failed = gates or {}, failed or {}
    stored = set(attacks["mode"]) if stored is None and not attacks.empty else stored or set()
    kept = without_failed(attacks, failed)
    attackers = set(zoo_attackers(attacks)) if failed else set()
    rows, tests, units, failed_rows = [], [], {}, {}
    for claim in CLAIMS:
        sample = _sample(claim, kept, experiments, dataset, stored, units)
        test = _test(sample)
        tests.append(test)
        left_out = [] if sample.missing else _left_out(claim, attacks, failed, attackers, failed_rows)
        low, high = test.interval(1 - ALPHA)
        held = {m: flags for m in sample.members if (flags := _holding(claim, gates.get(m, [])))}
        rows.append({
            "claim": claim.key, "family": claim.family, "statement": claim.statement, "data": claim.data,
            "unit": claim.unit, "treatment_units": len(sample.treatment), "reference_units": len(sample.reference),
            "difference": test.difference, "se": test.se, "df": test.df,
            "ci_low": low, "ci_high": high, "p": test.p,
            "blocked": sorted(held), "held": held, "missing": sample.missing, "detail": sample.detail,
            "left_out": ", ".join(left_out), "definition": claim.definition,
            "testable": (not sample.missing and min(len(sample.treatment), len(sample.reference)) >= MIN_UNITS
                         and math.isfinite(test.p)),
        })
    frame = pd.DataFrame(rows)
    frame["family_size"] = frame.groupby("family")["testable"].transform("sum").astype(int)
    frame["p_adjusted"] = math.nan
    for family in FAMILIES:
        tested = frame.index[frame["testable"] & (frame["family"] == family)]
        frame.loc[tested, "p_adjusted"] = bonferroni(frame.loc[tested, "p"].tolist())
    alphas = [ALPHA / max(m, 1) for m in frame["family_size"]]
    frame["detectable"] = [t.detectable(a) for t, a in zip(tests, alphas)]
    simultaneous = [t.interval(1 - a) if ok else (math.nan, math.nan)
                    for t, a, ok in zip(tests, alphas, frame["testable"])]
    frame["simultaneous_low"], frame["simultaneous_high"] = zip(*simultaneous) if simultaneous else ((), ())
    frame["verdict"], frame["reason"] = zip(*[_verdict(r) for r in frame.itertuples()])
    frame["reason"] = [reason + (f"; left out as failed trainings: {out}" if out else "")
                       for reason, out in zip(frame["reason"], frame["left_out"])]
    return frame[list(CLAIM_COLUMNS)]


def _test(sample: Sample) -> TTest:
    """A claim's test: Welch's on its two sides' values per unit."""
    return NO_TEST if sample.missing else welch_t(sample.treatment.tolist(), sample.reference.tolist())


def _left_out(claim: Claim, attacks: pd.DataFrame, failed: Mapping[str, str], attackers: set[str],
              cache: dict[tuple, pd.DataFrame]) -> list[str]:
    """The failed members ``claim`` would have used: defenders (not the zoo's
    ``attackers``) of its groups with records in its modes and attacks, and the
    attackers of its black-box records (``cache``: the failed members' rows per modes and
    attacks)."""
    if claim.source != "attacks" or not failed or attacks.empty:
        return []
    key = (claim.modes, claim.attacks)
    if key not in cache:
        rows = attacks[attacks["mode"].isin(claim.modes) & attacks["attack"].isin(claim.attacks)]
        cache[key] = rows[rows["defender"].isin(set(failed) - attackers)
                          | ((rows["mode"] == "blackbox") & rows["attacker"].isin(failed))]
    rows = cache[key]
    defenders = rows[rows["defender"].isin(set(failed) - attackers)].drop_duplicates("defender").rename(
        columns={"defender_loss": "loss", "defender_bound": "bound", "defender_delta": "delta", "defender_head": "head"})
    names = set(defenders.loc[claim.treatment.selects(defenders) | claim.reference.selects(defenders), "defender"])
    names |= set(rows.loc[(rows["mode"] == "blackbox") & rows["attacker"].isin(failed), "attacker"])
    return sorted(names)


def _holding(claim: Claim, flags: list[str]) -> list[str]:
    """The gating flags (``flag (scope)``) of a member that hold ``claim`` back: all of
    them, but a gradient-masking flag only where the claim reads white-box cells (a
    member's masked gradient weakens attacks on it crafted with its own gradient, not
    transfer attacks crafted on another model's)."""
    return [f for f in flags if "whitebox" in claim.modes or f.split(" ", 1)[0] not in MASKING_FLAGS]


def _verdict(r) -> tuple[str, str]:
    """(verdict, reason) of one claim row (see the module docstring)."""
    unit, m = f"{r.unit}s", r.family_size
    family = f"m = {m}, {r.family} family"
    power = (f"; an effect of ±{r.detectable:.4f} would be detected with 80 % power at α/{m}, estimated from "
             f"the spread of these {unit}" if math.isfinite(r.detectable) else "")
    if r.missing:
        return NOT_RUN, f"no data: {r.missing}"
    if r.blocked:
        flags = "; ".join(f"{member}: {', '.join(r.held[member])}" for member in r.blocked)
        return WITHHELD, (f"withheld until explained (results/explained_flags.toml): failed validity flags of the "
                          f"members it uses — {flags}")
    if min(r.treatment_units, r.reference_units) < MIN_UNITS:
        return INCONCLUSIVE, (f"too few {unit}: {r.treatment_units} treatment, {r.reference_units} reference "
                              f"(at least {MIN_UNITS} each){power}")
    if not math.isfinite(r.p):
        return INCONCLUSIVE, f"no spread over the {unit}: not evidence"
    if r.p_adjusted < ALPHA:
        side = "above" if r.difference > 0 else "below"
        return (SUPPORTED if r.difference > 0 else CONTRADICTED,
                f"Bonferroni-adjusted p = {r.p_adjusted:.3g} < {ALPHA} ({family}); simultaneous interval {side} 0")
    return INCONCLUSIVE, f"Bonferroni-adjusted p = {r.p_adjusted:.3g} ≥ {ALPHA} ({family}){power}"


def claims_by_eps(attacks: pd.DataFrame) -> pd.DataFrame:
    """Each attack claim per attack and ε: the estimate and its 95 % interval from the
    claim's own test, not adjusted for multiplicity (a breakdown, not a test)."""
    columns = ["claim", "attack", "eps", "treatment_units", "reference_units", "difference", "ci_low", "ci_high"]
    rows = []
    if attacks.empty:
        return pd.DataFrame(columns=columns)
    for claim in (c for c in CLAIMS if c.source == "attacks"):
        for attack in sorted(set(attacks["attack"]) & set(claim.attacks)):
            for eps in sorted(e for e in attacks["eps"].unique() if e > 0):
                sample = claim_sample(claim, units_of(claim, attacks, {}, eps=eps, attack=attack))
                if sample.missing or sample.treatment.empty or sample.reference.empty:
                    continue
                test = _test(sample)
                low, high = test.interval(1 - ALPHA)
                rows.append({"claim": claim.key, "attack": attack, "eps": eps,
                             "treatment_units": len(sample.treatment), "reference_units": len(sample.reference),
                             "difference": test.difference, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=columns)
