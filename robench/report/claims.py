"""The paper's claims, each measured on this dataset's results with a verdict.

Every claim is a difference of test accuracies, "treatment − reference", summarised by
its mean over a sample and the 95 % Student-t interval of that mean
(:func:`robench.stats.mean_ci`). The verdict reads the interval: **supported** when it
lies entirely above 0, **contradicted** when entirely below 0, **inconclusive** when it
contains 0 or when there is too little data (no sample, or one value, so no interval).

Member groups are read from the loss recorded in each row: "1-to-N" is loss ``1toN``
(every bound and δ; not ``1toN+ce``), "hinge" is ``hinge``, "CE" is ``ce``.

Experiment claims (paired by repeat, PROTOCOL.md):

1. *1-to-N beats CE on small subsets* — generalization rows at the smallest fraction.
   For each repeat r holding the ce member and at least one 1-to-N member,
   d_r = mean over the 1-to-N members m of acc(m, r) − acc(ce, r); the sample is
   {d_r}, one value per repeat (the ce member is the first ``ce`` member by name).
2. *1-to-N beats CE under label noise* — the same on the noise rows at the highest rate.

Attack claims (one repeat per cell, so the sample runs over the ε grid and the members):
rows are the attack records of the report's evaluation
(:class:`robench.evaluate.evaluation.Evaluation`), ε > 0
only; black-box cells are attacked by a CE attacker whose seed no defender uses (the
threat model of PROTOCOL.md, :func:`independent_ce_attackers`; each such attacker of a
matrix counted). A CE attacker that shares its seed with a defender (``ce-s0`` against
the seed-0 hinge and 1-to-N members of the default zoo) is left out: its attack
transfers better to its same-seed siblings than to the CE reference of another seed,
which would bias every black-box comparison against the treatment losses. A *cell* is
(attack, ε) in white-box and
(attacker, attack, ε) in black-box; the sample holds one value per (treatment member,
cell): acc(member, cell) − mean accuracy of the reference members in the same cell.

3a. *Hinge beats CE under black-box attacks* — treatment hinge defenders, reference
    the CE defenders (the attacker itself is never a black-box defender).
3b. *1-to-N beats CE under black-box attacks* — treatment 1-to-N defenders, as 3a.
4.  *1-to-N beats hinge under white-box attacks* — white-box cells, treatment 1-to-N
    members, reference the hinge members.
5.  *[0, δ] beats [−δ, δ]* — matched pairs of 1-to-N members with bound ``zero`` and
    ``sym`` and the same δ, head and seed; one value acc(zero) − acc(sym) per (pair,
    cell) over white-box and black-box cells.
6.  *1-to-N + CE beats CE* — treatment ``1toN+ce`` members, reference CE members, over
    white-box and black-box cells.

The attack samples are not independent draws (neighbouring ε values and members share
test images and attackers), so their intervals describe the spread over the grid and
are optimistic as confidence statements; the report says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from robench.stats import mean_ci

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
ONE_TO_N, HINGE, CE, ONE_TO_N_CE = "1toN", "hinge", "ce", "1toN+ce"
CLAIM_COLUMNS = ("claim", "statement", "data", "n", "difference", "ci_low", "ci_high",
                 "verdict", "reason", "detail", "definition")
ATTACK_NOTE = (
    "Attack claims: one repeat per cell, so the sample is one paired difference per "
    "(treatment member, cell) over the ε grid (ε > 0) and the relevant members; these values "
    "share test images and attackers, so the 95 % interval describes the spread over the "
    "grid and is optimistic as a confidence interval."
)


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and the exact definition of its statistic."""

    key: str
    statement: str
    data: str
    definition: str


@dataclass
class Sample:
    """Differences measured for one claim, per-member means, and why it may be empty."""

    values: list[float]
    detail: str = ""
    missing: str = ""


CLAIMS = (
    Claim("1", "1-to-N beats CE on small subsets", "generalization",
          "smallest fraction; per repeat r: mean over 1-to-N members of acc(m, r) − acc(ce, r); "
          "sample = one value per repeat"),
    Claim("2", "1-to-N beats CE under label noise", "noise",
          "highest noise rate; per repeat r: mean over 1-to-N members of acc(m, r) − acc(ce, r); "
          "sample = one value per repeat"),
    Claim("3a", "hinge beats CE under black-box attacks", "black-box attacks",
          "per (hinge defender, CE attacker of a seed no defender uses, attack, ε > 0): acc − mean "
          "acc of the ce defenders in the same cell"),
    Claim("3b", "1-to-N beats CE under black-box attacks", "black-box attacks",
          "per (1-to-N defender, CE attacker of a seed no defender uses, attack, ε > 0): acc − mean "
          "acc of the ce defenders in the same cell"),
    Claim("4", "1-to-N beats hinge under white-box attacks", "white-box attacks",
          "per (1-to-N member, attack, ε > 0): white-box acc − mean white-box acc of the hinge "
          "members"),
    Claim("5", "[0, δ] beats [−δ, δ]", "white-box and black-box attacks",
          "per (1-to-N zero/sym pair with equal δ, head, seed; cell): acc(zero) − acc(sym), "
          "cells = white-box (attack, ε > 0) and black-box (CE attacker of a seed no defender uses, "
          "attack, ε > 0)"),
    Claim("6", "1-to-N + CE beats CE", "white-box and black-box attacks",
          "per (1toN+ce member, cell): acc − mean acc of the ce members in the same cell, "
          "cells = white-box (attack, ε > 0) and black-box (CE attacker of a seed no defender uses, "
          "attack, ε > 0)"),
)


# ---------------------------------------------------------------- verdicts

def verdict(n: int, low: float, high: float, missing: str = "") -> tuple[str, str]:
    """(verdict, reason) from the sample size and the 95 % interval."""
    if n == 0:
        return INCONCLUSIVE, f"no data: {missing}" if missing else "no data"
    if n == 1 or math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE, f"too little data (n = {n}, no interval)"
    if low > 0:
        return SUPPORTED, "95 % CI entirely above 0"
    if high < 0:
        return CONTRADICTED, "95 % CI entirely below 0"
    return INCONCLUSIVE, "95 % CI contains 0"


def _per_member(frame: pd.DataFrame) -> str:
    """``member +0.0123; ...``: the mean difference of each treatment member."""
    if frame.empty:
        return ""
    means = frame.groupby("member", sort=True)["diff"].mean()
    return "; ".join(f"{m} {v:+.4f}" for m, v in means.items())


# ---------------------------------------------------------------- experiments

def experiment_sample(rows: pd.DataFrame, highest: bool, experiment: str, dataset: str) -> Sample:
    """Claims 1–2: one paired difference per repeat at the extreme setting."""
    if rows.empty:
        return Sample([], missing=f"no {experiment} results: run `robench experiment {experiment} --dataset {dataset}`")
    setting = rows["setting"].max() if highest else rows["setting"].min()
    at = rows[rows["setting"] == setting]
    ce_members = sorted(at.loc[at["loss"] == CE, "member"].unique())
    if not ce_members or not (at["loss"] == ONE_TO_N).any():
        return Sample([], missing=f"{experiment} results at {setting:g} lack a ce or a 1toN member")
    ce = at[at["member"] == ce_members[0]].set_index("repeat")["test_accuracy"]
    treat = at[at["loss"] == ONE_TO_N].copy()
    treat["diff"] = treat["test_accuracy"] - treat["repeat"].map(ce)
    treat = treat.dropna(subset=["diff"])
    per_repeat = treat.groupby("repeat", sort=True)["diff"].mean()
    name = "fraction" if experiment == "generalization" else "rate"
    detail = f"{name} {setting:g}, {len(per_repeat)} repeats; per member: {_per_member(treat)}"
    if "stop_reason" in at:
        stops = at["stop_reason"].value_counts().sort_index()
        detail += "; runs stopped by " + ", ".join(f"{reason} {count}" for reason, count in stops.items())
    return Sample(per_repeat.tolist(), detail)


# ---------------------------------------------------------------- attacks

def independent_ce_attackers(blackbox: pd.DataFrame) -> list[str]:
    """The CE attackers of black-box rows whose seed no defender other than themselves
    uses (PROTOCOL.md: "a CE model trained with another seed than every defender"), by name.
    Rows without seeds (files from before those columns) cannot tell: every CE attacker."""
    ce = blackbox[blackbox["attacker_loss"] == CE]
    if not {"attacker_seed", "defender_seed"} <= set(blackbox.columns):
        return sorted(ce["attacker"].unique())
    chosen = []
    for name, own in ce.groupby("attacker", sort=True):
        others = set(blackbox.loc[blackbox["defender"] != name, "defender_seed"])
        if not set(own["attacker_seed"]) & others:
            chosen.append(name)
    return chosen


def _positive(attacks: pd.DataFrame, mode: str) -> pd.DataFrame:
    rows = attacks[(attacks["mode"] == mode) & (attacks["eps"] > 0)]
    if mode == "blackbox":
        rows = rows[rows["attacker"].isin(independent_ce_attackers(rows))]
    return rows


CELL_KEYS = {"whitebox": ["attack", "eps"], "blackbox": ["attacker", "attack", "eps"]}


def cell_differences(rows: pd.DataFrame, keys: list[str], treat: str, ref: str) -> pd.DataFrame:
    """One row per (treatment member, cell): ``member`` and ``diff`` = its accuracy minus
    the mean accuracy of the reference-loss members in the same cell."""
    if rows.empty:
        return pd.DataFrame(columns=["member", "diff"])
    reference = rows[rows["defender_loss"] == ref].groupby(keys)["accuracy"].mean().rename("reference")
    treated = rows[rows["defender_loss"] == treat].join(reference, on=keys, how="inner")
    return pd.DataFrame({"member": treated["defender"], "diff": treated["accuracy"] - treated["reference"]})


def bound_differences(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Claim 5: acc(zero) − acc(sym) per matched pair (equal δ, head, seed) and cell."""
    one_to_n = rows[rows["defender_loss"] == ONE_TO_N]
    match = keys + ["defender_delta", "defender_head", "defender_seed"]
    zero = one_to_n[one_to_n["defender_bound"] == "zero"]
    sym = one_to_n[one_to_n["defender_bound"] == "sym"]
    pairs = zero.merge(sym, on=match, suffixes=("", "_sym"))
    return pd.DataFrame({"member": pairs["defender"] + " vs " + pairs["defender_sym"],
                         "diff": pairs["accuracy"] - pairs["accuracy_sym"]})


def _modes_sample(attacks: pd.DataFrame, modes: tuple[str, ...], differ: Callable, missing: str) -> Sample:
    parts = [differ(_positive(attacks, mode), CELL_KEYS[mode]) for mode in modes]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return Sample([], missing=missing)
    frame = pd.concat(parts)
    return Sample(frame["diff"].astype(float).tolist(), "per member: " + _per_member(frame))


def _absent(mode: str, stored: set[str], dataset: str) -> str:
    """Why a claim has no records of ``mode``: none stored, or none in the evaluation."""
    label = "white-box" if mode == "whitebox" else "black-box"
    if mode in stored:
        return (f"no {label} records in the evaluation the claims read (the {label} "
                "section's note says which)")
    return f"no {label} results: run `robench attack --{mode} --dataset {dataset}`"


def attack_sample(claim: str, attacks: pd.DataFrame, dataset: str, stored: set[str] | None = None) -> Sample:
    """Claims 3a–6 from the evaluation's attack records; ``stored``: the modes of every stored
    attack row (default: those of ``attacks``), to say why a mode is absent."""
    has = set(attacks["mode"]) if not attacks.empty else set()
    stored = has if stored is None else stored
    both = ("whitebox", "blackbox")
    if claim in ("3a", "3b"):
        if "blackbox" not in has:
            return Sample([], missing=_absent("blackbox", stored, dataset))
        treat = HINGE if claim == "3a" else ONE_TO_N
        return _modes_sample(attacks, ("blackbox",), lambda r, k: cell_differences(r, k, treat, CE),
                             f"no {treat} and ce defenders under a CE black-box attacker whose seed no "
                             "defender uses, at ε > 0")
    if claim == "4":
        if "whitebox" not in has:
            return Sample([], missing=_absent("whitebox", stored, dataset))
        return _modes_sample(attacks, ("whitebox",), lambda r, k: cell_differences(r, k, ONE_TO_N, HINGE),
                             "no 1toN and hinge members in the white-box results at ε > 0")
    if not has:
        return Sample([], missing=f"{_absent('whitebox', stored, dataset)}; {_absent('blackbox', stored, dataset)}")
    if claim == "5":
        return _modes_sample(attacks, both, bound_differences,
                             "no 1toN zero/sym pair with equal δ, head and seed in the attack results")
    return _modes_sample(attacks, both, lambda r, k: cell_differences(r, k, ONE_TO_N_CE, CE),
                         "no 1toN+ce and ce members in the attack results at ε > 0")


# ---------------------------------------------------------------- all claims

def claim_sample(claim: Claim, experiments: dict[str, pd.DataFrame], attacks: pd.DataFrame,
                 dataset: str, stored: set[str] | None = None) -> Sample:
    """The sample of one claim (see the module docstring for each definition)."""
    if claim.key == "1":
        return experiment_sample(experiments.get("generalization", pd.DataFrame()), False, "generalization", dataset)
    if claim.key == "2":
        return experiment_sample(experiments.get("noise", pd.DataFrame()), True, "noise", dataset)
    return attack_sample(claim.key, attacks, dataset, stored)


def evaluate_claims(experiments: dict[str, pd.DataFrame], attacks: pd.DataFrame, dataset: str,
                    level: float = 0.95, stored: set[str] | None = None) -> pd.DataFrame:
    """One row per claim: sample size, mean difference, its CI, verdict and reason
    (``stored``: the modes of every stored attack row, see :func:`attack_sample`)."""
    rows = []
    for claim in CLAIMS:
        sample = claim_sample(claim, experiments, attacks, dataset, stored)
        mean, low, high = mean_ci(sample.values, level)
        outcome, reason = verdict(len(sample.values), low, high, sample.missing)
        rows.append({
            "claim": claim.key, "statement": claim.statement, "data": claim.data,
            "n": len(sample.values), "difference": mean, "ci_low": low, "ci_high": high,
            "verdict": outcome, "reason": reason, "detail": sample.detail,
            "definition": claim.definition,
        })
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))
