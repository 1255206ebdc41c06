"""The paper's claims: one declarative entry each, evaluated by one function.

A claim compares a **treatment** group of member configurations with a **reference**
group (:class:`Group`: a loss, and where it matters a bound and a head) on one source of
records, and its unit of replication is the training seed (attack claims) or the repeat
(experiment claims, paired by the shared subset or noisy set). Per unit u it computes

    d_u = mean over treatment configurations c of [ v(c, u) − mean over the reference
          configurations r that share c's ``match`` fields of v(r, u) ]

where v is the configuration's accuracy in that unit averaged over the claim's cells
(:mod:`robench.report.claim_data`). Units are paired by value: treatment seed s with
reference seed s (the same initialisation stream and batch order; repeat r with repeat
r). The claim's sample is {d_u} over the units every compared configuration has; its
test, interval and verdict are :mod:`robench.report.verdicts`'s. Adding a claim is adding
an entry to :data:`CLAIMS`; the report's claims table and its definitions come from them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from robench.report.claim_data import Units, attack_units, experiment_units

ATTACK_MODES = ("whitebox", "blackbox")
PAPER_ATTACKS = ("fgsm", "ifgsm")  # the paper's protocol (PROTOCOL.md, "Attacks")
WORST_CASE = ("worst",)  # the per-sample worst case over robench's strong attacks (robench.attacks.ensemble)


@dataclass(frozen=True)
class Group:
    """Member configurations by loss, and optionally bound and head."""

    loss: str
    bound: str | None = None
    head: str | None = None

    def selects(self, configurations: pd.DataFrame) -> pd.Series:
        """Which rows of ``configurations`` (loss, bound, head columns) belong to the group."""
        chosen = configurations["loss"] == self.loss
        if self.bound is not None:
            chosen &= configurations["bound"] == self.bound
        if self.head is not None:
            chosen &= configurations["head"] == self.head
        return chosen

    @property
    def label(self) -> str:
        parts = [self.loss] + ([f"bound {self.bound}"] if self.bound else []) + (
            [f"{self.head} head"] if self.head else [])
        return " ".join(parts)


@dataclass(frozen=True)
class Claim:
    """One claim: which records, which configurations against which, how paired."""

    key: str
    statement: str
    source: str  # "attacks", "generalization" or "noise"
    treatment: Group
    reference: Group
    modes: tuple[str, ...] = ()  # attack claims: the modes whose cells are pooled
    attacks: tuple[str, ...] = PAPER_ATTACKS  # attack claims: the attacks whose cells are pooled
    match: tuple[str, ...] = ()  # fields a treatment configuration shares with its references
    highest: bool = False  # experiment claims: the largest setting (else the smallest)

    @property
    def unit(self) -> str:
        return "seed" if self.source == "attacks" else "repeat"

    @property
    def data(self) -> str:
        if self.source != "attacks":
            return self.source
        attacks = "worst case" if self.attacks == WORST_CASE else "/".join(a.upper() for a in self.attacks)
        return (" and ".join({"whitebox": "white-box", "blackbox": "black-box"}[m] for m in self.modes)
                + f" attacks ({attacks})")

    @property
    def definition(self) -> str:
        """The claim's statistic in words (the report's definitions list)."""
        if self.source == "attacks":
            cells = ", ".join({"whitebox": "white-box (attack, ε > 0)",
                               "blackbox": "black-box (CE attacker of a seed no defender uses, attack, ε > 0)"}[m]
                              for m in self.modes)
        else:
            cells = f"the {'largest' if self.highest else 'smallest'} {'rate' if self.source == 'noise' else 'fraction'}"
        matched = f" with the same {', '.join(self.match)}" if self.match else ""
        return (f"per {self.unit}: mean over {self.treatment.label} configurations of their accuracy minus the mean "
                f"of the {self.reference.label} configurations{matched}; accuracy averaged over {cells}; "
                f"{self.unit}s paired by value")


PAPER_CLAIMS = (
    Claim("1", "1-to-N beats CE on small subsets", "generalization", Group("1toN"), Group("ce", head="linear")),
    Claim("2", "1-to-N beats CE under label noise", "noise", Group("1toN"), Group("ce", head="linear"),
          highest=True),
    Claim("3a", "hinge beats CE under black-box attacks", "attacks", Group("hinge"), Group("ce", head="linear"),
          modes=("blackbox",)),
    Claim("3b", "1-to-N beats CE under black-box attacks", "attacks", Group("1toN"), Group("ce", head="linear"),
          modes=("blackbox",)),
    Claim("4", "1-to-N beats hinge under white-box attacks", "attacks", Group("1toN"), Group("hinge"),
          modes=("whitebox",)),
    Claim("5", "[0, δ] beats [−δ, δ]", "attacks", Group("1toN", bound="zero"), Group("1toN", bound="sym"),
          modes=ATTACK_MODES, match=("delta", "head")),
    Claim("6", "1-to-N + CE beats CE", "attacks", Group("1toN+ce"), Group("ce", head="linear"), modes=ATTACK_MODES),
    Claim("7", "the unit head beats the linear head (CE loss)", "attacks", Group("ce", head="unit"),
          Group("ce", head="linear"), modes=ATTACK_MODES),
)


def under_worst_case(claim: Claim) -> Claim:
    """``claim`` read on the white-box worst case instead of the paper's FGSM/IFGSM (key
    ``<key>w``): the same comparison under attacks that gradient masking cannot fool."""
    return replace(claim, key=f"{claim.key}w", statement=f"{claim.statement} (worst case)", modes=("whitebox",),
                   attacks=WORST_CASE)


#: Every claim: the paper's, then each white-box attack claim again under the worst case.
CLAIMS = PAPER_CLAIMS + tuple(under_worst_case(c) for c in PAPER_CLAIMS if "whitebox" in c.modes)


@dataclass
class Sample:
    """A claim's paired differences, one per unit, and what went into them."""

    differences: pd.Series  # unit -> d_u
    treatment_units: int
    reference_units: int
    members: frozenset[str]  # every member (and attacker) whose records went in
    detail: str = ""
    missing: str = ""


def units_of(claim: Claim, attacks: pd.DataFrame, experiments: dict[str, pd.DataFrame],
             eps: float | None = None, attack: str | None = None) -> Units:
    """The accuracies a claim draws on, by configuration and unit (of one of the claim's
    attacks only with ``attack``)."""
    if claim.source == "attacks":
        return attack_units(attacks, claim.modes, (attack,) if attack else claim.attacks, eps)
    return experiment_units(experiments.get(claim.source, pd.DataFrame()), claim.highest)


def claim_sample(claim: Claim, units: Units) -> Sample:
    """The paired differences of ``claim`` over the units of ``units``."""
    configurations = units.configurations
    treated = list(configurations.index[claim.treatment.selects(configurations)])
    referred = configurations[claim.reference.selects(configurations)]
    unit_counts = units.values.index.to_frame(index=False).groupby("configuration")["unit"].nunique()
    most_units = {side: int(unit_counts[list(names)].max()) if len(names) else 0
                  for side, names in (("treatment", treated), ("reference", referred.index))}
    empty = Sample(pd.Series(dtype=float), most_units["treatment"], most_units["reference"], frozenset())
    if not treated or referred.empty:
        empty.missing = f"no {claim.treatment.label} or no {claim.reference.label} members in the {claim.data}"
        return empty
    pairs = _pairs(claim, configurations.loc[treated], referred)
    if not pairs:
        empty.missing = (f"no {claim.treatment.label} configuration has a {claim.reference.label} one with the same "
                         f"{', '.join(claim.match)}")
        return empty
    compared = sorted({c for t, refs in pairs for c in (t, *refs)})
    values, cells = units.averaged(compared)
    per_configuration = pd.DataFrame({t: values.loc[t] - values.loc[list(refs)].mean() for t, refs in pairs})
    differences = per_configuration.dropna().mean(axis=1)  # units every compared configuration has
    used = units.members[units.members.index.get_level_values("configuration").isin(compared)
                         & units.members.index.get_level_values("unit").isin(differences.index)]
    detail = (f"{_count(len(differences), claim.unit)}, {_count(cells, 'cell')}; per {claim.unit}: "
              + "; ".join(f"{u} {d:+.4f}" for u, d in differences.items())
              + "; per configuration: " + "; ".join(f"{c} {v:+.4f}" for c, v in per_configuration.mean().items()))
    return Sample(differences, empty.treatment_units, empty.reference_units, frozenset().union(*used), detail)


def _pairs(claim: Claim, treated: pd.DataFrame, referred: pd.DataFrame) -> list[tuple[str, tuple[str, ...]]]:
    """(treatment configuration, its reference configurations): those sharing ``match``."""
    pairs = []
    for configuration, row in treated.sort_index().iterrows():
        same = referred
        for field in claim.match:
            same = same[same[field] == row[field]]
        if not same.empty:
            pairs.append((configuration, tuple(sorted(same.index))))
    return pairs


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
