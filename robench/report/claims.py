"""The claims: one declarative entry each, in two families, evaluated by one function.

A claim compares a **treatment** group of member configurations with a **reference**
group (:class:`Group`: a loss, and where it matters a bound, a head or the larger /
smaller margin) on one source of records: one attack mode and its attacks, or one
experiment. Its unit of replication is the training seed (attack claims) or the repeat
(experiment claims: the subset or noisy set). Per unit u it computes

    T_u = mean over treatment configurations c of v(c, u)
    R_u = mean over treatment configurations c of [mean over the reference
          configurations r that share c's ``match`` fields of v(r, u)]

where v is the configuration's accuracy in that unit averaged over the claim's cells
(:mod:`robench.report.claim_data`). The claim's estimate is mean(T) − mean(R), tested
unpaired (Welch) on {T_u} and {R_u}: pairing units by value did not narrow the intervals
on the committed stores (docs/protocol.md, "Paired or unpaired"). The per-unit
differences T_u − R_u are kept for the report's detail. The test, intervals and verdicts
are :mod:`robench.report.verdicts`'s.

The **primary** family holds the paper's own statements, each read per attack mode
(never pooled: a transfer attack and a white-box attack measure different things) and,
under white-box attacks, both on the paper's FGSM/IFGSM and on the worst case; the
**secondary** family the exploratory comparisons (the head, the margin). Each family is
corrected for its own size. Adding a claim is adding an entry to :data:`CLAIMS`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from robench.report.claim_data import Units, attack_units, experiment_units

PAPER_ATTACKS = ("fgsm", "ifgsm")  # the paper's protocol (PROTOCOL.md, "Attacks")
WORST_CASE = ("worst",)  # the per-sample worst case over robench's strong attacks (robench.attacks.ensemble)
PRIMARY, SECONDARY = "primary", "secondary"
FAMILIES = (PRIMARY, SECONDARY)
MODE_WORDS = {"whitebox": "white-box", "blackbox": "black-box"}


@dataclass(frozen=True)
class Group:
    """Member configurations by loss, and optionally bound, head and margin: ``margin``
    "largest" / "smallest" keeps, among the configurations sharing loss, bound and head
    that were trained with more than one δ, those with the largest / smallest."""

    loss: str
    bound: str | None = None
    head: str | None = None
    margin: str | None = None

    def selects(self, configurations: pd.DataFrame) -> pd.Series:
        """Which rows of ``configurations`` (loss, bound, delta, head columns) belong to the group."""
        chosen = configurations["loss"] == self.loss
        if self.bound is not None:
            chosen &= configurations["bound"] == self.bound
        if self.head is not None:
            chosen &= configurations["head"] == self.head
        if self.margin is not None:
            siblings = configurations.groupby(["loss", "bound", "head"], dropna=False)["delta"]
            extreme = siblings.transform("max" if self.margin == "largest" else "min")
            chosen &= (configurations["delta"] == extreme) & (siblings.transform("nunique") > 1)
        return chosen

    @property
    def label(self) -> str:
        parts = ([f"{self.margin}-δ"] if self.margin else []) + [self.loss] + (
            [f"bound {self.bound}"] if self.bound else []) + ([f"{self.head} head"] if self.head else [])
        return " ".join(parts)


@dataclass(frozen=True)
class Claim:
    """One claim: which records, which configurations against which, in which family."""

    key: str
    statement: str
    source: str  # "attacks", "generalization" or "noise"
    treatment: Group
    reference: Group
    modes: tuple[str, ...] = ()  # attack claims: the one mode whose cells it reads
    attacks: tuple[str, ...] = PAPER_ATTACKS  # attack claims: the attacks whose cells are pooled
    match: tuple[str, ...] = ()  # fields a treatment configuration shares with its references
    highest: bool = False  # experiment claims: the largest setting (else the smallest)
    family: str = PRIMARY

    @property
    def unit(self) -> str:
        return "seed" if self.source == "attacks" else "repeat"

    @property
    def data(self) -> str:
        if self.source != "attacks":
            return self.source
        attacks = "worst case" if self.attacks == WORST_CASE else "/".join(a.upper() for a in self.attacks)
        return " and ".join(MODE_WORDS[m] for m in self.modes) + f" attacks ({attacks})"

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
        return (f"per {self.unit}: mean over {self.treatment.label} configurations of their accuracy against the "
                f"mean of the {self.reference.label} configurations{matched}; accuracy averaged over {cells}; "
                f"the two sides' {self.unit}s compared unpaired (Welch)")


def read_by_mode(key: str, statement: str, treatment: Group, reference: Group, match: tuple[str, ...] = (),
                 modes: tuple[str, ...] = ("blackbox", "whitebox"), family: str = PRIMARY) -> tuple[Claim, ...]:
    """One statement read per attack mode, never pooled: ``<key>bb`` on black-box
    FGSM/IFGSM, ``<key>wb`` on white-box FGSM/IFGSM, ``<key>wc`` on the white-box worst case
    (attacks that gradient masking cannot fool)."""
    readings = []
    if "blackbox" in modes:
        readings.append(Claim(f"{key}bb", f"{statement} (black-box)", "attacks", treatment, reference,
                              modes=("blackbox",), match=match, family=family))
    if "whitebox" in modes:
        readings += [Claim(f"{key}wb", f"{statement} (white-box)", "attacks", treatment, reference,
                           modes=("whitebox",), match=match, family=family),
                     Claim(f"{key}wc", f"{statement} (white-box worst case)", "attacks", treatment, reference,
                           modes=("whitebox",), attacks=WORST_CASE, match=match, family=family)]
    return tuple(readings)


CE_LINEAR = Group("ce", head="linear")

#: The paper's statements (§IV-C–E): generalization and noise against CE; hinge and 1-to-N
#: beat CE "for all attacks and all datasets"; 1-to-N beats hinge under white-box attacks;
#: the bound [0, δ] beats [−δ, δ] and 1-to-N + CE boosts CE (no mode stated: both read).
PRIMARY_CLAIMS = (
    Claim("1", "1-to-N beats CE on small subsets", "generalization", Group("1toN"), CE_LINEAR),
    Claim("2", "1-to-N beats CE under label noise", "noise", Group("1toN"), CE_LINEAR, highest=True),
    *read_by_mode("3", "hinge beats CE", Group("hinge"), CE_LINEAR),
    *read_by_mode("4", "1-to-N beats CE", Group("1toN"), CE_LINEAR),
    *read_by_mode("5", "1-to-N beats hinge", Group("1toN"), Group("hinge"), modes=("whitebox",)),
    *read_by_mode("6", "[0, δ] beats [−δ, δ]", Group("1toN", bound="zero"), Group("1toN", bound="sym"),
                  match=("delta", "head")),
    *read_by_mode("7", "1-to-N + CE beats CE", Group("1toN+ce"), CE_LINEAR),
)

#: Exploratory comparisons: the unit-norm head's own effect (the 1-to-N members' head
#: with the CE loss), and the margin in the direction the paper reports for each mode
#: (§IV-E: large δ for white-box, small δ for black-box).
SECONDARY_CLAIMS = (
    *read_by_mode("S1", "the unit head beats the linear head (CE loss)", Group("ce", head="unit"), CE_LINEAR,
                  family=SECONDARY),
    *read_by_mode("S2", "the smaller δ beats the larger (1-to-N)", Group("1toN", margin="smallest"),
                  Group("1toN", margin="largest"), match=("bound", "head"), modes=("blackbox",),
                  family=SECONDARY),
    *read_by_mode("S3", "the larger δ beats the smaller (1-to-N)", Group("1toN", margin="largest"),
                  Group("1toN", margin="smallest"), match=("bound", "head"), modes=("whitebox",),
                  family=SECONDARY),
)

#: Every claim, primary family first.
CLAIMS = PRIMARY_CLAIMS + SECONDARY_CLAIMS


@dataclass
class Sample:
    """A claim's values per unit on each side, their paired differences, and what went in."""

    treatment: pd.Series  # unit -> T_u
    reference: pd.Series  # unit -> R_u
    differences: pd.Series  # unit -> T_u − R_u, over the units both sides have (the detail)
    members: frozenset[str]  # every member (and attacker) whose records went in
    detail: str = ""
    missing: str = ""

    @classmethod
    def empty(cls, missing: str = "") -> "Sample":
        nothing = pd.Series(dtype=float)
        return cls(nothing, nothing, nothing, frozenset(), missing=missing)


def units_of(claim: Claim, attacks: pd.DataFrame, experiments: dict[str, pd.DataFrame],
             eps: float | None = None, attack: str | None = None) -> Units:
    """The accuracies a claim draws on, by configuration and unit (of one of the claim's
    attacks only with ``attack``)."""
    if claim.source == "attacks":
        return attack_units(attacks, claim.modes, (attack,) if attack else claim.attacks, eps)
    return experiment_units(experiments.get(claim.source, pd.DataFrame()), claim.highest)


def claim_sample(claim: Claim, units: Units) -> Sample:
    """Each side's values per unit and the paired differences of ``claim`` over ``units``."""
    configurations = units.configurations
    treated = list(configurations.index[claim.treatment.selects(configurations)])
    referred = configurations[claim.reference.selects(configurations)]
    if not treated or referred.empty:
        return Sample.empty(f"no {claim.treatment.label} or no {claim.reference.label} members in the {claim.data}")
    pairs = _pairs(claim, configurations.loc[treated], referred)
    if not pairs:
        return Sample.empty(f"no {claim.treatment.label} configuration has a {claim.reference.label} one with the "
                            f"same {', '.join(claim.match)}")
    compared = sorted({c for t, refs in pairs for c in (t, *refs)})
    values, cells = units.averaged(compared)  # configuration × unit, NaN where a configuration lacks the unit
    references = {t: values.loc[list(refs)].T.mean(axis=1, skipna=False) for t, refs in pairs}  # t -> unit -> value
    treatment = values.loc[list(references)].T.dropna().mean(axis=1)
    reference = pd.DataFrame(references).dropna().mean(axis=1)
    differences = (treatment - reference).dropna()
    used_units = set(treatment.index) | set(reference.index)
    used = units.members[units.members.index.get_level_values("configuration").isin(compared)
                         & units.members.index.get_level_values("unit").isin(used_units)]
    per_configuration = {t: values.loc[t].mean() - r.mean() for t, r in references.items()}
    detail = (f"{_count(len(treatment), claim.unit)} treatment, {_count(len(reference), claim.unit)} reference, "
              f"{_count(cells, 'cell')}; per {claim.unit} (treatment − reference): "
              + "; ".join(f"{u} {d:+.4f}" for u, d in differences.items())
              + "; per configuration: " + "; ".join(f"{c} {v:+.4f}" for c, v in per_configuration.items()))
    return Sample(treatment, reference, differences, frozenset().union(*used), detail)


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
