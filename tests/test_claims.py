"""Claims over training seeds: every claim recomputed independently from the records,
the verdict rules and gating flags (their calibration by simulation: test_calibration.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from factories import DIGITS_CONFIGURATIONS, attack_record
from robench.report.claims import CLAIMS
from robench.report.gates import explained_flags, gates
from robench.report.verdicts import (ALPHA, CONTRADICTED, INCONCLUSIVE, SUPPORTED, WITHHELD, claims_by_eps,
                                     evaluate_claims)

CONFIGURATIONS = DIGITS_CONFIGURATIONS
SEEDS = (0, 1, 2, 3, 4)
ATTACKERS = {"ce-s100": 100, "ce-s101": 101}
EPS = (0.0, 0.1, 0.2)
ATTACKS = ("fgsm", "ifgsm", "worst")
REPEATS = 5
N = 1000


def _member(configuration: str, seed: int) -> str:
    return f"{configuration}-s{seed}"


def attack_frame(accuracy, attackers=ATTACKERS, eps=EPS) -> pd.DataFrame:
    """Every white-box and black-box cell of the configurations × seeds as a records
    frame (the worst case white-box only); ``accuracy(configuration, seed, mode,
    attacker, attack, eps)`` sets each."""
    rows = []
    for configuration, (loss, bound, delta, head) in CONFIGURATIONS.items():
        for seed in SEEDS:
            member = _member(configuration, seed)
            cells = [("whitebox", member, seed)] + [("blackbox", a, s) for a, s in attackers.items()]
            for mode, attacker, attacker_seed in cells:
                for attack in ATTACKS if mode == "whitebox" else ATTACKS[:2]:
                    for e in eps:
                        value = accuracy(configuration, seed, mode, attacker, attack, e)
                        rows.append(dict(mode=mode, attacker=attacker, attacker_seed=attacker_seed, attacker_loss="ce",
                                         defender=member, defender_seed=seed, defender_loss=loss,
                                         defender_bound=bound, defender_delta=delta, defender_head=head,
                                         attack=attack, eps=e, accuracy=value))
    return pd.DataFrame(rows)


def experiment_frames(accuracy, repeats=REPEATS) -> dict[str, pd.DataFrame]:
    """generalization and noise rows of every configuration at seed 0, two settings;
    ``accuracy(experiment, configuration, setting, repeat)``."""
    frames = {}
    for experiment, settings in (("generalization", (0.01, 1.0)), ("noise", (0.0, 0.8))):
        frames[experiment] = pd.DataFrame([
            dict(experiment=experiment, setting=setting, repeat=r, member=_member(c, 0), loss=loss,
                 bound=bound if loss.startswith("1toN") else "", delta=None if loss == "ce" else delta, head=head,
                 test_accuracy=accuracy(experiment, c, setting, r))
            for c, (loss, bound, delta, head) in CONFIGURATIONS.items() for setting in settings for r in range(repeats)])
    return frames


# ---------------------------------------------------------------- independent recomputation

def _effect(configuration: str) -> float:
    return {"ce": 0.0, "ce-unit": 0.01, "hinge-d1": -0.02, "1toN-sym-d1": 0.03, "1toN-zero-d1": 0.05,
            "1toN-sym-d4": 0.02, "1toN-zero-d4": 0.0, "1toN+ce-sym-d1": 0.004}[configuration]


def _fixed(configuration, seed, mode, attacker, attack, eps):
    """A deterministic accuracy with seed-to-seed spread of its own per configuration."""
    wobble = math.sin(7 * seed + 3 * len(configuration) + (attacker == "ce-s101") + len(attack)) * 0.015
    return round(0.9 - (2.0 if attack != "fgsm" else 1.5) * eps + _effect(configuration) + wobble, 6)


ONE_TO_N = ["1toN-sym-d1", "1toN-zero-d1", "1toN-sym-d4", "1toN-zero-d4"]
#: Each claim from its definition (docs/protocol.md): (treatment, its matched reference
#: configurations per treatment configuration, where the cells come from).
DEFINITIONS = {
    "1": (ONE_TO_N, [["ce"]] * 4, ("generalization", False)),
    "2": (ONE_TO_N, [["ce"]] * 4, ("noise", True)),
    "3": (["hinge-d1"], [["ce"]], None),
    "4": (ONE_TO_N, [["ce"]] * 4, None),
    "5": (ONE_TO_N, [["hinge-d1"]] * 4, None),
    "6": (["1toN-zero-d1", "1toN-zero-d4"], [["1toN-sym-d1"], ["1toN-sym-d4"]], None),
    "7": (["1toN+ce-sym-d1"], [["ce"]], None),
    "S1": (["ce-unit"], [["ce"]], None),
    "S2": (["1toN-sym-d1", "1toN-zero-d1"], [["1toN-sym-d4"], ["1toN-zero-d4"]], None),
    "S3": (["1toN-sym-d4", "1toN-zero-d4"], [["1toN-sym-d1"], ["1toN-zero-d1"]], None),
}
READINGS = {"bb": ("blackbox", ("fgsm", "ifgsm")), "wb": ("whitebox", ("fgsm", "ifgsm")),
            "wc": ("whitebox", ("worst",))}
KEYS = {"primary": ["1", "2", "3bb", "3wb", "3wc", "4bb", "4wb", "4wc", "5wb", "5wc", "6bb", "6wb", "6wc", "7bb",
                    "7wb", "7wc"],
        "secondary": ["S1bb", "S1wb", "S1wc", "S2bb", "S3wb", "S3wc"]}


def _sides(attacks: pd.DataFrame, experiments: dict[str, pd.DataFrame], key: str) -> tuple[list[float], list[float]]:
    """A claim's treatment and reference values per unit, straight from the definitions."""
    base = key[:-2] if key[-2:] in READINGS else key
    treatment, references, experiment = DEFINITIONS[base]
    if experiment:
        rows = experiments[experiment[0]]
        at = rows[rows["setting"] == (rows["setting"].max() if experiment[1] else rows["setting"].min())]
        value = {(m.rsplit("-s", 1)[0], r): a for m, r, a in zip(at["member"], at["repeat"], at["test_accuracy"])}
        units = range(REPEATS)
    else:
        mode, names = READINGS[key[-2:]]
        rows = attacks[(attacks["eps"] > 0) & (attacks["mode"] == mode) & attacks["attack"].isin(names)]
        value = rows.assign(configuration=rows["defender"].str.rsplit("-s", n=1).str[0]).groupby(
            ["configuration", "defender_seed"])["accuracy"].mean().to_dict()
        units = SEEDS
    t = [np.mean([value[(c, u)] for c in treatment]) for u in units]
    r = [np.mean([np.mean([value[(c, u)] for c in refs]) for refs in references]) for u in units]
    return t, r


def _welch(t: list[float], r: list[float], level: float) -> tuple[float, float, float]:
    """mean(t) − mean(r) and its Welch interval at ``level``, from the textbook formulas."""
    t, r = np.asarray(t), np.asarray(r)
    vt, vr = t.var(ddof=1) / len(t), r.var(ddof=1) / len(r)
    df = (vt + vr) ** 2 / (vt ** 2 / (len(t) - 1) + vr ** 2 / (len(r) - 1))
    half = scipy_stats.t.ppf((1 + level) / 2, df) * math.sqrt(vt + vr)
    return t.mean() - r.mean(), t.mean() - r.mean() - half, t.mean() - r.mean() + half


def test_every_claim_recomputed_independently_from_the_records():
    attacks = attack_frame(_fixed)
    experiments = experiment_frames(lambda e, c, s, r: 0.6 + _effect(c) + 0.01 * math.cos(5 * r + len(c)))
    frame = evaluate_claims(attacks, experiments, "digits").set_index("claim")
    assert list(frame.index) == KEYS["primary"] + KEYS["secondary"]
    for family, keys in KEYS.items():
        m = len(keys)
        for key in keys:
            row, (t, r) = frame.loc[key], _sides(attacks, experiments, key)
            difference, low, high = _welch(t, r, 0.95)
            assert (row["family"], row["treatment_units"], row["reference_units"]) == (family, len(t), len(r)), key
            assert (row["difference"], row["ci_low"], row["ci_high"]) == (
                pytest.approx(difference), pytest.approx(low), pytest.approx(high)), key
            p = scipy_stats.ttest_ind(t, r, equal_var=False).pvalue
            _, low, high = _welch(t, r, 1 - ALPHA / m)
            assert (row["p"], row["p_adjusted"], row["family_size"]) == (
                pytest.approx(p), pytest.approx(min(1.0, m * p)), m), key
            assert (row["simultaneous_low"], row["simultaneous_high"]) == (pytest.approx(low), pytest.approx(high)), key
            verdict = INCONCLUSIVE if m * p >= ALPHA else SUPPORTED if difference > 0 else CONTRADICTED
            assert row["verdict"] == verdict, key
    assert {SUPPORTED, CONTRADICTED, INCONCLUSIVE} <= set(frame["verdict"])  # the fixture builds every outcome


def test_each_family_is_corrected_for_its_own_size():
    """Without the secondary claims' records (no ce-unit member, one δ per bound) the
    primary family's m and adjusted p-values stay as they were."""
    attacks = attack_frame(_fixed)
    experiments = experiment_frames(lambda e, c, s, r: 0.6 + _effect(c) + 0.01 * math.cos(5 * r + len(c)))
    full = evaluate_claims(attacks, experiments, "digits").set_index("claim")
    primary_only = attacks[attacks["defender"].str.rsplit("-s", n=1).str[0] != "ce-unit"]
    part = evaluate_claims(primary_only, experiments, "digits").set_index("claim")
    assert (part.loc[KEYS["secondary"][:3], "verdict"] == "not run").all()
    assert (part.loc[KEYS["primary"], "family_size"] == 16).all() and part.loc["S2bb", "family_size"] == 3
    pd.testing.assert_series_equal(part.loc[KEYS["primary"], "p_adjusted"], full.loc[KEYS["primary"], "p_adjusted"])


def test_claims_by_eps_are_welch_intervals_at_one_attack_and_eps():
    """S1bb at IFGSM, ε = 0.2: per seed, each side's mean over that seed's two black-box
    cells; then Welch's interval over the seeds."""
    attacks = attack_frame(_fixed)
    row = claims_by_eps(attacks).set_index(["claim", "attack", "eps"]).loc[("S1bb", "ifgsm", 0.2)]
    cells = attacks[(attacks["attack"] == "ifgsm") & (attacks["eps"] == 0.2) & (attacks["mode"] == "blackbox")]
    value = cells.assign(configuration=cells["defender"].str.rsplit("-s", n=1).str[0]).groupby(
        ["configuration", "defender_seed"])["accuracy"].mean()
    difference, low, high = _welch([value[("ce-unit", s)] for s in SEEDS], [value[("ce", s)] for s in SEEDS], 0.95)
    assert (row["treatment_units"], row["reference_units"], row["difference"], row["ci_low"], row["ci_high"]) == (
        len(SEEDS), len(SEEDS), pytest.approx(difference), pytest.approx(low), pytest.approx(high))


def test_a_failed_seed_on_one_side_costs_only_that_side_a_unit():
    """Welch does not pair: a treatment seed left out (its member absent) leaves the
    reference with all its seeds."""
    attacks = attack_frame(_fixed)
    row = evaluate_claims(attacks[attacks["defender"] != "hinge-d1-s3"], {}, "digits").set_index("claim").loc["3wb"]
    assert (row["treatment_units"], row["reference_units"]) == (len(SEEDS) - 1, len(SEEDS))


# ---------------------------------------------------------------- verdict rules

def test_identical_seeds_give_no_interval_and_no_verdict():
    """Every seed gives the same value on both sides: a zero-width interval is never evidence."""
    frame = evaluate_claims(attack_frame(lambda c, s, *_: 0.8 + (0.001 if c == "ce-unit" else 0.0)), {},
                            "digits").set_index("claim")
    assert frame.loc["S1wb", "difference"] == pytest.approx(0.001)
    assert frame.loc["S1wb", "verdict"] == INCONCLUSIVE and "no spread over the seeds" in frame.loc["S1wb", "reason"]


def test_fewer_than_three_seeds_per_side_is_inconclusive_with_the_detectable_effect():
    attacks = attack_frame(_fixed)
    attacks = attacks[attacks["defender_seed"] < 2]
    row = evaluate_claims(attacks, {}, "digits").set_index("claim").loc["4bb"]
    assert row["verdict"] == INCONCLUSIVE and row["reason"].startswith("too few seeds: 2 treatment, 2 reference")
    assert "would be detected with 80 % power at α/" in row["reason"] and math.isnan(row["p_adjusted"])


def test_missing_modes_and_experiments_name_the_command():
    attacks = attack_frame(_fixed)
    frame = evaluate_claims(attacks[attacks["mode"] == "whitebox"], {}, "digits").set_index("claim")
    assert frame.loc["3bb", "reason"] == "no data: no black-box results: run `robench attack --blackbox --dataset digits`"
    assert frame.loc["1", "reason"].endswith("run `robench experiment generalization --dataset digits`")
    assert frame.loc["5wb", "verdict"] in (SUPPORTED, CONTRADICTED, INCONCLUSIVE)
    assert frame.loc["5wb", "treatment_units"] == 5


def test_duplicate_cells_are_an_error_naming_them_never_averaged():
    """A second member of configuration hinge-d1 at seed 2 (a copy under another name):
    its cells would be averaged with the first's, a number nobody measured."""
    from robench.errors import UserError

    attacks = attack_frame(_fixed)
    copy = attacks[(attacks["defender"] == "hinge-d1-s2") & (attacks["mode"] == "whitebox")].assign(
        defender="hinge-d1-copy-s2", attacker="hinge-d1-copy-s2", accuracy=1.0)
    with pytest.raises(UserError) as error:
        evaluate_claims(pd.concat([attacks, copy], ignore_index=True), {}, "digits")
    message = str(error.value)
    assert message.startswith(f"{2 * (len(EPS) - 1)} claim cells are stored more than once")  # FGSM, IFGSM
    assert "hinge-d1 unit 2 cell 'whitebox fgsm 0.1' from hinge-d1-copy-s2, hinge-d1-s2" in message


def _records(correct_at_eps0=None, chance_correct=10):
    """White-box records of ce-s0 and hinge-d1-s0 at ε 0 and 0.1, and their ε = 1 sanity cells."""
    records = []
    for member, loss in (("ce-s0", "ce"), ("hinge-d1-s0", "hinge")):
        eps0 = correct_at_eps0 if correct_at_eps0 is not None and loss == "hinge" else 90
        records += [attack_record(member, member, "fgsm", 0.0, eps0, defender_loss=loss),
                    attack_record(member, member, "fgsm", 0.1, 60, defender_loss=loss),
                    attack_record(member, member, "ifgsm", 1.0, chance_correct, mode="sanity", defender_loss=loss,
                                  n=256)]
    return records


def test_gating_flags_hold_back_the_claims_of_their_members(tmp_path):
    """eps0_is_clean failing on hinge-d1-s0 withholds the claims that use hinge records
    (3bb, 5wb) until it is explained in explained_flags.toml; the others are not held."""
    records = _records(correct_at_eps0=80)
    held = gates(records, {})
    assert list(held) == ["hinge-d1-s0"] and held["hinge-d1-s0"][0].startswith("eps0_is_clean (fgsm/ce/native")
    frame = evaluate_claims(attack_frame(_fixed), {}, "digits", held).set_index("claim")
    assert frame.loc["3bb", "verdict"] == WITHHELD and "hinge-d1-s0: eps0_is_clean" in frame.loc["3bb", "reason"]
    assert frame.loc["5wb", "verdict"] == WITHHELD and frame.loc["S1wb", "verdict"] != WITHHELD
    scope = held["hinge-d1-s0"][0][len("eps0_is_clean ("):-1]
    (tmp_path / "explained_flags.toml").write_text(
        f'[[explained]]\nflag = "eps0_is_clean"\nscope = "{scope}"\nreason = "a known driver bug, fixed"\n')
    assert gates(records, explained_flags(tmp_path)) == {}


def test_a_sanity_cell_above_chance_gates_its_member():
    held = gates(_records(chance_correct=200), {})
    assert set(held) == {"ce-s0", "hinge-d1-s0"} and all("large_eps_to_chance" in v[0] for v in held.values())


def test_a_malformed_explanation_file_is_a_user_error(tmp_path):
    from robench.errors import UserError

    (tmp_path / "explained_flags.toml").write_text('[[explained]]\nflag = "eps0_is_clean"\n')
    with pytest.raises(UserError, match="needs exactly flag, reason, scope"):
        explained_flags(tmp_path)


def test_the_attackers_own_white_box_cells_change_no_claim():
    """The zoo's attackers (CE, seeds of their own) are also attacked white-box; those
    cells are no defender's and leave every claim as it is (an attacker's seed is no
    unit, and its missing black-box cells must not shrink the others' cells)."""
    attacks = attack_frame(_fixed)
    own = pd.DataFrame([dict(mode="whitebox", attacker=a, attacker_seed=s, attacker_loss="ce", defender=a,
                             defender_seed=s, defender_loss="ce", defender_bound="sym", defender_delta=1.0,
                             defender_head="linear", attack=k, eps=e, accuracy=0.5)
                        for a, s in ATTACKERS.items() for k in ATTACKS for e in EPS])
    alone = evaluate_claims(attacks, {}, "digits")
    pd.testing.assert_frame_equal(evaluate_claims(pd.concat([attacks, own], ignore_index=True), {}, "digits"), alone)
    assert "8 cells" in alone.set_index("claim").loc["S1bb", "detail"]  # 2 attackers × 2 attacks × 2 ε


def test_every_statement_is_read_per_mode_never_pooled():
    """No claim reads two modes; each statement with a white-box reading on the paper's
    attacks has one on the worst case with the same groups; a masking flag holds back
    white-box readings only."""
    from robench.report.claims import PAPER_ATTACKS, WORST_CASE
    from robench.report.verdicts import _holding

    by_key = {c.key: c for c in CLAIMS}
    attack_claims = [c for c in CLAIMS if c.source == "attacks"]
    assert all(len(c.modes) == 1 for c in attack_claims)
    for claim in (c for c in attack_claims if c.attacks == WORST_CASE):
        paper = by_key[claim.key[:-2] + "wb"]
        assert (claim.treatment, claim.reference, claim.match, claim.modes, claim.family) == (
            paper.treatment, paper.reference, paper.match, ("whitebox",), paper.family)
        assert paper.attacks == PAPER_ATTACKS
    flags = ["gradient_free_not_stronger (worst/ce/native m eps 0.1 (steps 50))", "eps0_is_clean (fgsm m eps 0)"]
    assert _holding(by_key["3bb"], flags) == flags[1:]  # black-box only: the member's masked gradient is not used
    assert _holding(by_key["5wb"], flags) == flags
