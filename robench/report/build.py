"""The sections of a report, built from loaded results.

Each builder writes its tables (``tables/<name>.csv`` long, ``.md`` for display) and
figures (``figures/<name>.png|svg``) and returns a :class:`Section`; when its input is
missing, the section says which command produces it instead of failing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from robench.evaluate.masking import MASKING_FLAGS
from robench.presets import presets_matching
from robench.report import figures as figs
from robench.report import tables as tab
from robench.report import verdicts
from robench.report.claim_data import configuration_of, independent_ce_attackers, zoo_attackers
from robench.report.claims import CLAIMS, FAMILIES
from robench.report.content import Section, TableView
from robench.report.departures import departures
from robench.report.forest import CAPTION as FOREST_CAPTION, forest_figure
from robench.report.gates import explained_flags, failed_flags, gates
from robench.report.load import Results, describe_rows, image_counts
from robench.report.training_failures import without_failed
from robench.report.margins import margin_summary, member_margins
from robench.store import SANITY

COLLAPSE_ROWS = 25


def commands(dataset: str) -> dict[str, str]:
    """The command that produces each kind of result."""
    return {
        "run": f"robench run --dataset {dataset}",
        "zoo": f"robench train zoo --dataset {dataset}",
        "whitebox": f"robench attack --whitebox --dataset {dataset}",
        "blackbox": f"robench attack --blackbox --dataset {dataset}",
        "matrix": f"robench attack --blackbox --attacker all --dataset {dataset}",
        "generalization": f"robench experiment generalization --dataset {dataset}",
        "noise": f"robench experiment noise --dataset {dataset}",
    }


@dataclass
class Context:
    """What every builder needs: the results, where to write, shared choices."""

    results: Results
    out_dir: Path
    data_root: Path
    matrix_eps: float | None
    evaluated: pd.DataFrame  # the attack records of the evaluation figures and claims read
    evaluation_note: str
    configurations: dict[str, str]  # member name -> its configuration (loss, bound, δ, head)
    losses: dict[str, str]  # configuration -> loss name
    palette: dict[str, tuple]  # configuration -> colour, in display order
    failed: dict[str, str]  # member name -> why its training failed (robench.report.training_failures)
    margins: bool = True

    @property
    def tables_dir(self) -> Path:
        return self.out_dir / "tables"

    @property
    def figures_dir(self) -> Path:
        return self.out_dir / "figures"

    @property
    def run(self) -> dict[str, str]:
        return commands(self.results.dataset)

    def order(self, members) -> list[str]:
        """``members`` by their configuration's place in the palette, then by name."""
        rank = {c: i for i, c in enumerate(self.palette)}
        return sorted(set(members), key=lambda m: (rank.get(self.configurations.get(m, ""), len(rank)), m))

    def with_configuration(self, rows: pd.DataFrame, column: str) -> pd.DataFrame:
        """``rows`` with the ``configuration`` of the member in ``column``."""
        return rows.assign(configuration=rows[column].map(self.configurations).fillna(rows[column]))


def member_configurations(results: Results) -> tuple[dict[str, str], dict[str, str]]:
    """(member → configuration, configuration → loss) of every member in the cards, the
    attack records (defenders) and the experiments."""
    members: dict[str, str] = {}
    losses: dict[str, str] = {}

    def add(names, loss, bound, delta, head) -> None:
        for name, *spec in zip(names, loss, bound, delta, head):
            members[name] = configuration_of(*spec)
            losses[members[name]] = spec[0]

    cards = results.cards
    add([c["name"] for c in cards], [c["loss"]["name"] for c in cards], [c["loss"]["bound"] for c in cards],
        [c["loss"]["delta"] for c in cards], [c["head"] for c in cards])
    a = results.attacks
    add(a["defender"], a["defender_loss"], a["defender_bound"], a["defender_delta"], a["defender_head"])
    for rows in results.experiments.values():
        add(rows["member"], rows["loss"], rows["bound"], rows["delta"], rows["head"])
    return members, losses


def _missing(command: str, what: str) -> str:
    return f"no {what}: run `{command}`"


# ---------------------------------------------------------------- claims

def claims_section(ctx: Context) -> tuple[Section, pd.DataFrame]:
    """The claims in their two families: Welch's t over seeds (or repeats), marginal and
    simultaneous (Bonferroni within the family) intervals and p-values, verdicts; then each
    attack claim per attack and ε."""
    res = ctx.results
    stored = set(res.attacks["mode"]) if not res.attacks.empty else set()
    explained = explained_flags(res.results_dir)
    held = gates(_gated_records(ctx), explained, res.flags, _other_budgets(ctx))
    frame = verdicts.evaluate_claims(ctx.evaluated, res.experiments, res.dataset, held, stored, ctx.failed)
    tab.write_table(ctx.tables_dir, "claims", frame, claims_display(frame, with_family=True))
    by_eps = verdicts.claims_by_eps(without_failed(ctx.evaluated, ctx.failed))
    by_eps_shown = tab.claims_by_eps_display(by_eps)
    tab.write_table(ctx.tables_dir, "claims_by_eps", by_eps, by_eps_shown)
    section = Section("claims", "Claims of the paper", tables=[
        TableView(f"claims-{family}", _family_title(frame, family), shown, CLAIMS_NOTE)
        for family in FAMILIES if not (shown := claims_display(frame[frame["family"] == family])).empty] + [
        TableView("claims_by_eps", "Attack claims per attack and ε (95 % Welch intervals over seeds, not adjusted)",
                  by_eps_shown, collapsed=True)])
    section.paragraphs = list(CLAIMS_TEXT)
    section.bullets = [f"({c.key}) {c.statement} — {c.data}: {c.definition}." for c in CLAIMS]
    section.notes += [f"Explained flag {flag} ({scope}): {reason}" for (flag, scope), reason in explained.items()]
    return section, frame


FAMILY_TITLES = {"primary": "Primary family: the paper's statements",
                 "secondary": "Secondary family: exploratory comparisons"}
SIMULTANEOUS_HEADER = "simultaneous 95 % interval (Bonferroni, α/m within the family)"


def departures_section(ctx: Context) -> Section:
    """Where this run departs from the paper's protocol (:mod:`robench.report.departures`)."""
    res = ctx.results
    frame = departures(res.dataset, res.cards, ctx.evaluated, res.experiments)
    tab.write_table(ctx.tables_dir, "departures", frame, frame)
    return Section("departures", "Departures from the paper's protocol", tables=[TableView(
        "departures", "The paper's protocol and this run's", frame,
        "The paper's column is its protocol for the dataset this run stands in for; this run's column reads the "
        "zoo cards and the stored records. docs/protocol.md gives the reasons for each choice.")])


def _family_title(frame: pd.DataFrame, family: str) -> str:
    m = int(frame.loc[frame["family"] == family, "family_size"].iloc[0])
    return f"{FAMILY_TITLES[family]} (m = {m} tested): treatment − reference accuracy"


def claims_display(frame: pd.DataFrame, with_family: bool = False) -> pd.DataFrame:
    """The claims table as shown: units per side, estimate, marginal and simultaneous
    intervals, p-values, verdict and reason (the CSV keeps every column); the family and
    its size m ``with_family`` (the page shows one table per family)."""
    family = {"family (m)": [f"{f} ({m})" for f, m in zip(frame["family"], frame["family_size"])]} if with_family else {}
    return pd.DataFrame({
        "claim": frame["claim"], "statement": frame["statement"], **family,
        "seeds or repeats T / R": [f"{t} / {r}" for t, r in zip(frame["treatment_units"], frame["reference_units"])],
        "estimate": [tab.fmt_number(m, signed=True) if math.isfinite(m) else tab.DASH for m in frame["difference"]],
        "95 % CI": [_bracket(lo, hi) for lo, hi in zip(frame["ci_low"], frame["ci_high"])],
        SIMULTANEOUS_HEADER: [_bracket(lo, hi) for lo, hi in zip(frame["simultaneous_low"], frame["simultaneous_high"])],
        "p": [tab.fmt_p(p) for p in frame["p"]],
        "Bonferroni p": [tab.fmt_p(p) for p in frame["p_adjusted"]],
        "verdict": frame["verdict"], "reason": frame["reason"],
    })


def _bracket(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return tab.DASH
    return f"[{tab.fmt_number(low, signed=True)}, {tab.fmt_number(high, signed=True)}]"


def glance_section(ctx: Context, claims: pd.DataFrame) -> Section:
    """The forest plot of every claim, first on the page (:mod:`robench.report.forest`)."""
    section = Section("glance", "The claims at a glance")
    if (claims["verdict"] == verdicts.NOT_RUN).all():
        section.notes.append("no claim has records to be read on yet: the claims table says what to run")
        return section
    section.figures.append(figs.save_figure(forest_figure(claims), ctx.figures_dir, "claims", FOREST_CAPTION))
    return section


CLAIMS_TEXT = (
    "Each claim compares member configurations that differ in their loss (or head, or margin) on one source of "
    "records, and its unit is the training seed (attack claims: every configuration is trained with the same "
    "seeds) or the repeat (experiment claims: a subset or noisy set shared by every loss). Per unit the value of "
    "a side is its configurations' accuracy averaged over the claim's cells (ε > 0; black-box cells only from CE "
    "attackers with seeds of their own). A statement is read per attack mode, never pooled: black-box (bb) and "
    "white-box (wb) on the paper's FGSM and IFGSM, and white-box on the worst case over robench's strong attacks "
    "(wc), which gradient masking cannot fool.",
    "The estimate is the difference of the two sides' means and its test Welch's t over the units, unpaired: "
    "pairing by seed did not narrow the intervals on the committed stores (docs/protocol.md). The primary family "
    "holds the paper's statements, the secondary family the exploratory comparisons (the head, the margin); each "
    "family's m testable claims (at least 3 units per side) get the t-interval at level 1 − 0.05/m, Bonferroni's "
    "simultaneous intervals, which cover all m true differences of the family jointly with probability at least "
    "95 %. A claim is supported / contradicted when its simultaneous interval lies above / below 0 (its p-value "
    "times m is below 0.05), else inconclusive with the reason and the effect the test at 0.05/m would detect "
    "with 80 % power, estimated from the spread of its units. A claim that uses a member with a failed "
    "eps0_is_clean, large_eps_to_chance or gradient-masking flag is withheld until the flag is explained.",
)
CLAIMS_NOTE = ("Intervals and tests run over training seeds (attack claims) or repeats (experiment claims) on one "
               "fixed test set: they describe the spread between trained models, not test-set sampling, which the "
               "per-cell intervals of the attack tables show. docs/protocol.md gives the reasons.")


def _gated_records(ctx: Context) -> list:
    """The records whose gating flags hold claims back: the evaluation's, and the sanity
    cells of its attack loss, backend and precision."""
    evaluated = set(ctx.evaluated["cell"]) if not ctx.evaluated.empty else set()
    keys = set(zip(ctx.evaluated["attack_loss"], ctx.evaluated["backend"], ctx.evaluated["precision"]))
    return [r for r in ctx.results.records if r.cell in evaluated
            or (r.mode == SANITY and (r.attack_loss, r.backend, r.precision) in keys)]


def _other_budgets(ctx: Context) -> list:
    """White-box runs of the evaluation's attacks, attack loss, backend and precision
    under other budgets: what the ``converged`` flag compares the evaluation's runs with."""
    if ctx.evaluated.empty:
        return []
    evaluated = set(ctx.evaluated["cell"])
    keys = set(zip(ctx.evaluated["attack"], ctx.evaluated["attack_loss"], ctx.evaluated["backend"],
                   ctx.evaluated["precision"]))
    return [r for r in ctx.results.records if r.mode == "whitebox" and r.cell not in evaluated
            and (r.attack, r.attack_loss, r.backend, r.precision) in keys]


# ---------------------------------------------------------------- flags

def flags_section(ctx: Context) -> Section:
    """Validity flags of the attack results, failures first."""
    flags, section = ctx.results.flags, Section("flags", "Validity flags")
    if flags.empty:
        what = "validity flags" if ctx.results.attacks.empty else "validity flags (attack records exist)"
        section.notes.append(_missing(ctx.run["whitebox"], what))
        return section
    shown = tab.display(flags[["flag", "passed", "scope", "detail"]].assign(
        passed=["passed" if p else "failed" for p in flags["passed"]]))
    tab.write_table(ctx.tables_dir, "flags", flags[["flag", "passed", "scope", "detail"]], shown)
    counts = tab.flag_counts(flags)
    failed = int((~flags["passed"]).sum())
    section.paragraphs.append(
        f"{tab.flags_line(flags)}. A failure does not make a number wrong by itself but asks "
        "for a second look before it is read as evidence (see docs/flags.md); a flag that was not run checked "
        "nothing. Every check, passed ones included, is in `tables/flags.csv`. "
        f"The {len(ctx.results.sanity)} ε = 1 sanity cells behind `large_eps_to_chance` are kept out of the "
        "tables and figures.")
    tab.write_table(ctx.tables_dir, "flag_counts", counts, tab.display(counts))
    section.tables.append(TableView("flag_counts", "Checks per flag", tab.display(counts)))
    if failed:
        section.tables.append(TableView("flag_failures", "Failed checks", shown[shown["passed"] == "failed"]))
    return section


# ---------------------------------------------------------------- clean accuracy and margins

def clean_section(ctx: Context) -> Section:
    """Clean test accuracy per zoo member (cards) and the distribution of clean margins."""
    section = Section("clean", "Zoo members: clean accuracy and logit margins")
    rank = {m: i for i, m in enumerate(ctx.order(c["name"] for c in ctx.results.cards))}
    cards = sorted(ctx.results.cards, key=lambda c: rank[c["name"]])
    if not cards:
        section.notes.append(_missing(ctx.run["zoo"], f"trained members in {ctx.results.zoo_dir}/{ctx.results.dataset}"))
        return section
    table = tab.clean_accuracy_table(cards)
    shown = tab.clean_accuracy_display(table)
    tab.write_table(ctx.tables_dir, "clean_accuracy", table, shown)
    section.tables.append(TableView("clean_accuracy", "Clean accuracy per member (from the cards)", shown))
    if ctx.margins:
        _margins(ctx, cards, section)
    return section


def _margins(ctx: Context, cards: list[dict], section: Section) -> None:
    margins, notes = member_margins(cards, ctx.results.dataset, ctx.data_root)
    section.notes += notes
    if margins.empty:
        return
    summary = margin_summary(margins)
    tab.write_table(ctx.tables_dir, "margins", summary, tab.display(summary))
    fig = figs.margin_figure(ctx.with_configuration(margins, "member"), list(ctx.palette), ctx.palette)
    section.figures.append(figs.save_figure(
        fig, ctx.figures_dir, "margins",
        "Clean logit margins z_y − max_{k≠y} z_k on the test split, per configuration, its seeds pooled "
        "(lines: quartiles). "
        "Unit-head members (1-to-N) have logits that are distances to unit-norm hyperplanes; linear-head "
        "logits have no fixed scale, so compare shapes rather than values across heads."))
    section.tables.append(TableView("margins", "Clean logit margins per member", tab.display(summary),
                                    "positive: share of test images with a positive margin (correctly classified)."))


# ---------------------------------------------------------------- experiments

EXPERIMENT_TITLES = {
    "generalization": ("Generalization: accuracy vs training-subset size (paper Fig. 4)",
                       "Test accuracy vs the fraction of the training split used (log scale): mean over "
                       "repeats (random subsets shared by every loss), band = 95 % t-interval."),
    "noise": ("Label noise: accuracy vs noise rate (paper Fig. 5)",
              "Test accuracy vs the share of training labels replaced by a different class: mean over "
              "repeats (noisy sets shared by every loss), band = 95 % t-interval."),
}


def experiment_section(ctx: Context, experiment: str) -> Section:
    """Figure and summary table (mean, 95 % CI, paired difference to ce) of one experiment."""
    title, caption = EXPERIMENT_TITLES[experiment]
    section = Section(experiment, title)
    rows = ctx.results.experiments.get(experiment, pd.DataFrame())
    if rows.empty:
        section.notes.append(_missing(ctx.run[experiment], f"{experiment} results"))
        return section
    summary = tab.summary_table(rows)
    shown = tab.summary_display(summary)
    tab.write_table(ctx.tables_dir, experiment, summary, shown)
    fig = figs.experiment_figure(ctx.with_configuration(summary, "member"), experiment, ctx.palette, ctx.losses)
    section.figures.append(figs.save_figure(fig, ctx.figures_dir, experiment, f"{caption} {_sizes(rows, experiment)}"))
    section.tables.append(TableView(experiment, f"{experiment}: mean, 95 % CI, paired difference to ce", shown,
                                    "member − ce: mean over the repeats both have of the per-repeat difference, "
                                    "with its paired t-interval.", collapsed=len(shown) > COLLAPSE_ROWS))
    section.notes.extend(stop_reason_notes(rows, experiment))
    return section


def _sizes(rows: pd.DataFrame, experiment: str) -> str:
    """The test (and, for noise, training) set sizes behind an experiment's figure."""
    def images(column: str) -> str:
        return image_counts(rows[column]) if column in rows else "?"

    text = f"Test accuracy on {images('num_test')} test images"
    if experiment == "noise":
        text += f"; {images('num_train')} training images per noisy set"
    return text + "."


def stop_reason_notes(rows: pd.DataFrame, experiment: str) -> list[str]:
    """How the runs of each setting stopped, and for the noise experiment how many never
    reached the protocol's stop point (80 % noisy-training accuracy) before the epoch cap."""
    if "stop_reason" not in rows:
        return []
    name = "fraction" if experiment == "generalization" else "rate"
    counts = rows.groupby("setting", sort=True)["stop_reason"].value_counts().sort_index()
    per_setting = "; ".join(
        f"{setting:g}: " + ", ".join(f"{reason} {count}" for (_, reason), count in group.items())
        for setting, group in counts.groupby(level=0))
    notes = [f"How the runs stopped, per {name}: {per_setting}."]
    capped = rows["stop_reason"] == "epoch_cap"
    if experiment == "noise" and capped.any():
        notes.append(f"{int(capped.sum())} of {len(rows)} runs reached the epoch cap before 80 % noisy-training "
                     "accuracy; their test accuracy is read at the cap, not at the protocol's stop point.")
    return notes


# ---------------------------------------------------------------- attacks

def figure_attackers(blackbox: pd.DataFrame) -> list[str]:
    """The attackers of the black-box figure: the CE attackers whose seed no defender uses
    (PROTOCOL.md), else the CE attackers, else every attacker."""
    independent = independent_ce_attackers(blackbox)
    if independent:
        return independent
    ce = blackbox[blackbox["attacker_loss"] == "ce"]
    return sorted((ce if not ce.empty else blackbox)["attacker"].unique())


SEED_BANDS = ("the line is the mean over the configuration's seeds, the band its 95 % t-interval (none with one "
              "seed), and each faint line one seed")
ATTACK_TITLES = {"blackbox": "Black-box (transfer) attacks: accuracy vs ε (paper Figs. 6–8)",
                 "whitebox": "White-box attacks: accuracy vs ε (paper Figs. 6–8)"}


def attack_section(ctx: Context, mode: str) -> Section:
    """Accuracy per member × attack × ε of one mode: table of every record, figure of the evaluation's."""
    section = Section(mode, ATTACK_TITLES[mode])
    long = tab.attack_table(ctx.results.attacks, mode)
    if long.empty:
        section.notes.append(_missing(ctx.run[mode], f"{'black' if mode == 'blackbox' else 'white'}-box results"))
        return section
    shown = tab.attack_pivot(long, mode, ctx.order(set(long["defender"]) | set(long["attacker"])))
    masked = _masked_members(ctx)
    if masked and "defender" in shown:
        shown["defender"] = [f"{d} {MASKED_MARK}" if d in masked else d for d in shown["defender"]]
        section.notes.append(f"{MASKED_MARK}: a gradient-masking flag failed for this member (docs/flags.md); claims "
                             "using its records are withheld until explained — "
                             + "; ".join(f"{m}: {', '.join(f)}" for m, f in sorted(masked.items())) + ".")
    settings = tab.shared_run_settings(long)
    shared = f"Every row: {settings}." if settings else ""
    tab.write_table(ctx.tables_dir, mode, long, "\n\n".join(filter(None, [shared, tab.to_markdown(shown)])))
    rows = ctx.evaluated[(ctx.evaluated["mode"] == mode) & ~ctx.evaluated["attack"].str.contains("@")]
    if ctx.evaluation_note:
        section.notes.append(ctx.evaluation_note)
    if rows.empty:
        section.notes.append("None of these records is in the evaluation the figures read, "
                             "so this mode has no figure.")
    elif mode == "blackbox":
        attackers = figure_attackers(rows)
        rows = rows[rows["attacker"].isin(attackers)]
        title, caption = (f"transfer attacks crafted on {', '.join(attackers)}",
                          f"Accuracy of each defender configuration under {_attack_names(rows)} crafted on "
                          f"{', '.join(attackers)} (black-box), vs ε: per seed the mean over these attackers, "
                          f"{SEED_BANDS} ({describe_rows(rows)}).")
    else:
        attackers = zoo_attackers(ctx.evaluated)
        rows = rows[~rows["defender"].isin(attackers)]
        title, caption = ("each member attacks itself",
                          f"Accuracy of each configuration under its own {_attack_names(rows)} (white-box), vs ε: "
                          f"{SEED_BANDS} ({describe_rows(rows)})."
                          + (f" The attackers' own white-box cells ({', '.join(attackers)}) are in the table only."
                             if attackers else ""))
    if not rows.empty:
        fig = figs.attack_figure(ctx.with_configuration(rows, "defender"), title, ctx.palette, ctx.losses)
        section.figures.append(figs.save_figure(fig, ctx.figures_dir, mode, caption))
        summary = tab.configuration_pivot(ctx.with_configuration(rows, "defender"), list(ctx.palette))
        section.tables.append(TableView(
            f"{mode}-configurations", f"{ATTACK_WORDS[mode]} accuracy per configuration, attack and ε (the figure's "
                                      "records)", summary,
            f"Mean over the configuration's members{' and attackers' if mode == 'blackbox' else ''}. Every member's "
            f"cells, with exact 95 % intervals over the test images: tables/{mode}.md and tables/{mode}.csv."))
    return section


ATTACK_WORDS = {"blackbox": "Black-box", "whitebox": "White-box"}
MASKED_MARK = "⚑"


def _masked_members(ctx: Context) -> dict[str, list[str]]:
    """Member → the gradient-masking flags it failed (records and stored saturation flags)."""
    masked: dict[str, set[str]] = {}
    for member, flag, _ in failed_flags(ctx.results.records, ctx.results.flags):
        if flag in MASKING_FLAGS:
            masked.setdefault(member, set()).add(flag)
    return {m: sorted(f) for m, f in masked.items()}


def _attack_names(rows: pd.DataFrame) -> str:
    """The attacks of ``rows`` as a caption names them, e.g. ``FGSM / IFGSM``."""
    return " / ".join(attack.upper() for attack in sorted(set(rows["attack"])))


def matrix_section(ctx: Context) -> Section:
    """Attacker × defender matrix: heatmap at the chosen ε, tables at every ε."""
    section = Section("matrix", "Attacker × defender matrix")
    long = tab.matrix_table(ctx.evaluated)
    if long.empty:
        section.notes.append(_missing(ctx.run["matrix"], "attacker × defender matrix (black-box results from one attacker at most)"))
        return section
    members = ctx.order(set(long["defender"]) | set(long["attacker"]))
    tab.write_table(ctx.tables_dir, "matrix", long, tab.matrix_markdown(long, members))
    eps = tab.middle_eps(long) if ctx.matrix_eps is None else tab.nearest_eps(long, ctx.matrix_eps)
    if ctx.matrix_eps is not None and abs(eps - ctx.matrix_eps) > 1e-12:
        section.notes.append(f"ε = {ctx.matrix_eps:g} is not on the grid; showing the nearest, ε = {tab.fmt_eps(eps)}.")
    used = ctx.evaluated[ctx.evaluated["attacker"].isin(set(long["attacker"]))]
    blackbox = ctx.with_configuration(used[used["mode"] == "blackbox"], "defender")
    fig = figs.matrix_figure(blackbox, eps, ctx.order(blackbox["attacker"]), list(ctx.palette))
    diagonal = ("the tables' diagonal is white-box" if (long["attacker"] == long["defender"]).any()
                else "no white-box rows for the diagonal")
    section.figures.append(figs.save_figure(
        fig, ctx.figures_dir, "matrix",
        f"Accuracy of each defender configuration (columns, the mean over its seeds) under attacks crafted on each "
        f"attacker (rows) at ε = {tab.fmt_eps(eps)}, black-box cells only; {diagonal} ({describe_rows(used)})."))
    for attack in sorted(long["attack"].unique()):
        wide = tab.matrix_pivot(long, attack, eps, members)
        shown = tab.display(wide.reset_index().rename(columns={"attacker": "attacker \\ defender"}))
        section.tables.append(TableView(f"matrix-{attack}", f"{attack} at ε = {tab.fmt_eps(eps)}", shown))
    section.paragraphs.append("`tables/matrix.md` holds the matrix at every ε of the grid.")
    return section


# ---------------------------------------------------------------- protocol and versions

CHOICES = (
    "Paper: losses CE, squared hinge and 1-to-N with bounds [−δ, δ] and [0, δ] and the 1-to-N + CE joint loss; "
    "batch 256, RMSProp, BatchNorm, no dropout; subsets doubling from 0.125 %, 5 per fraction; noise 0–80 %; "
    "FGSM and IFGSM; black-box attacker a CE model.",
    "robench: RMSProp with TensorFlow 1.15 semantics; unit-norm last layer for 1-to-N; δ = 1 and 4, chosen on "
    "digits' validation split and shipped as a starting point for the other datasets (docs/margins.md); "
    "IFGSM α = 1/255 with Kurakin's step rule; ε grids; attacker = CE of another seed; "
    "minimum optimizer steps on tiny subsets; the 80 % training-accuracy stop rule for noisy labels; "
    "repeats paired by subset or noisy set (5 in the paper preset, 3 in quick) and 95 % t-intervals; "
    "the digits dataset and quick presets.",
    "Details: PROTOCOL.md and the README (which choice is the paper's and which is ours, with the reasons).",
)


def _versions(ctx: Context) -> pd.DataFrame:
    """robench / torch versions, preset, split hash and thread count per result source."""
    res, out = ctx.results, []
    keys = ["robench_version", "torch_version", "split_hash", "defender_preset", "thread_count"]
    presets = {card["name"]: _card_preset(card, numbers=False) for card in res.cards}
    for source, a in (("attack records (ε sweeps)", res.attacks), ("attack records (ε = 1 sanity cells)", res.sanity)):
        if a.empty:
            continue
        a = a.assign(defender_preset=[presets.get(d, "defenders without a zoo card") for d in a["defender"]],
                     thread_count=_threads(a["threads"]))
        for (rv, tv, split, preset, threads), group in a.groupby(keys):
            out.append({"source": source, "rows": len(group), "robench": rv, "torch": tv,
                        "preset": preset, "split hash": split[:16], "threads": threads})
    for name, rows in res.experiments.items():
        rows = rows.assign(thread_count=_threads(rows["threads"]))
        for (rv, tv, preset, split, threads), group in rows.groupby(["robench_version", "torch_version", "preset",
                                                                     "split_hash", "thread_count"]):
            out.append({"source": f"{name} records", "rows": len(group), "robench": rv, "torch": tv,
                        "preset": preset, "split hash": split[:16], "threads": threads})
    cards: dict[tuple, list[str]] = {}
    for card in res.cards:
        v = card.get("versions", {})
        key = (v.get("robench", ""), v.get("torch", ""), _card_preset(card), str(card.get("split_hash", ""))[:16],
               str(card.get("threads", NOT_RECORDED)))
        cards.setdefault(key, []).append(card["name"])
    for (rv, tv, preset, split, threads), names in cards.items():
        out.append({"source": f"zoo cards ({', '.join(names) if len(names) <= 3 else f'{len(names)} members'})",
                    "rows": len(names), "robench": rv, "torch": tv, "preset": preset, "split hash": split,
                    "threads": threads})
    return pd.DataFrame(out, columns=["source", "rows", "robench", "torch", "preset", "split hash", "threads"])


NOT_RECORDED = "not recorded"  # records of result schema 1 and cards from before the thread count was kept


def _threads(column: pd.Series) -> list[str]:
    """Thread counts as text, ``not recorded`` where a row has none."""
    return [NOT_RECORDED if pd.isna(t) else str(int(t)) for t in column]


def _runs(ctx: Context) -> pd.DataFrame:
    """The stored runs behind the report's records: id, kind, records, configuration (by kind and configuration)."""
    res = ctx.results
    counts = pd.concat([res.attacks["run_id"], res.sanity["run_id"],
                        *(rows["run_id"] for rows in res.experiments.values())]).value_counts()
    runs = res.runs[res.runs["run_id"].isin(counts.index)].sort_values(["kind", "config"])  # not as stored:
    # the order of storing follows whichever worker process came first
    return pd.DataFrame({"run": runs["run_id"], "kind": runs["kind"], "records": runs["run_id"].map(counts),
                         "created": runs["created"], "configuration": runs["config"]})


def _card_preset(card: dict, numbers: bool = True) -> str:
    """The preset a card's member was trained with, e.g. ``quick (epochs 3, lr 0.003,
    batch 128)``, or without ``numbers`` just ``quick``; the numbers alone for a spec
    that is no preset's."""
    train = card.get("train", {})
    if not train:
        return ""
    values = f"epochs {train.get('epochs')}, lr {train.get('lr')}, batch {train.get('batch_size')}"
    names = " = ".join(presets_matching(str(card.get("dataset")), str(card.get("loss", {}).get("name")), train))
    if not names:
        return values
    return f"{names} ({values})" if numbers else names


def protocol_section(ctx: Context, generator: dict[str, str]) -> Section:
    """Versions, presets and split hashes behind the numbers, and whose choice each is."""
    section = Section("protocol", "Protocol and versions")
    versions = _versions(ctx)
    splits = {s for s in versions["split hash"] if s}
    if len(splits) > 1:
        section.notes.append(f"results and cards come from {len(splits)} different data splits: "
                             "numbers from different splits are not comparable.")
    section.paragraphs.append("This report was generated with " +
                              ", ".join(f"{k} {v}" for k, v in generator.items()) + ".")
    section.bullets = list(CHOICES)
    if not versions.empty:
        shown = tab.display(versions.assign(rows=versions["rows"].astype(str)))
        section.tables.append(TableView("versions", "Where the numbers come from", shown,
                                        "zoo cards: their training spec (the preset's values).",
                                        collapsed=len(shown) > COLLAPSE_ROWS))
    runs = _runs(ctx)
    if not runs.empty:
        shown = tab.display(runs.assign(records=runs["records"].astype(str)))
        section.tables.append(TableView("runs", "Stored runs behind these records", shown,
                                        "`robench report --run-id RUN` reads the attack records of one run.",
                                        collapsed=len(shown) > COLLAPSE_ROWS))
    return section
