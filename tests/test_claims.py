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
ATTACKS = ("fgsm", "ifgsm")
N = 1000


def _member(configuration: str, seed: int) -> str:
    return f"{configuration}-s{seed}"


def attack_frame(accuracy, attackers=ATTACKERS, eps=EPS) -> pd.DataFrame:
    """Every white-box and black-box cell of the configurations × seeds as a records
    frame; ``accuracy(configuration, seed, mode, attacker, attack, eps)`` sets each."""
    rows = []
    for configuration, (loss, bound, delta, head) in CONFIGURATIONS.items():
        for seed in SEEDS:
            member = _member(configuration, seed)
            cells = [("whitebox", member, seed)] + [("blackbox", a, s) for a, s in attackers.items()]
            for mode, attacker, attacker_seed in cells:
                for attack in ATTACKS:
                    for e in eps:
                        value = accuracy(configuration, seed, mode, attacker, attack, e)
                        rows.append(dict(mode=mode, attacker=attacker, attacker_seed=attacker_seed, attacker_loss="ce",
                                         defender=member, defender_seed=seed, defender_loss=loss,
                                         defender_bound=bound, defender_delta=delta, defender_head=head,
                                         attack=attack, eps=e, accuracy=value))
    return pd.DataFrame(rows)


def experiment_frames(accuracy, repeats=3) -> dict[str, pd.DataFrame]:
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
    wobble = math.sin(7 * seed + 3 * len(configuration) + (attacker == "ce-s101")) * 0.015
    return round(0.9 - (2.0 if attack == "ifgsm" else 1.5) * eps + _effect(configuration) + wobble, 6)


def _expected(attacks: pd.DataFrame, experiments: dict[str, pd.DataFrame]) -> dict[str, list[float]]:
    """Every claim's per-unit differences, computed straight from the definitions."""
    attacks = attacks[attacks["eps"] > 0]

    def per_seed(configuration: str, modes) -> dict[int, float]:
        rows = attacks[attacks["mode"].isin(modes)]
        rows = rows[rows["defender"].map(lambda d: d.rsplit("-s", 1)[0] == configuration)]
        return rows.groupby("defender_seed")["accuracy"].mean().to_dict()

    def seed_differences(treatment: list[str], reference: list[str], modes) -> list[float]:
        t = [per_seed(c, modes) for c in treatment]
        r = [per_seed(c, modes) for c in reference]
        return [np.mean([x[s] for x in t]) - np.mean([x[s] for x in r]) for s in SEEDS]

    def repeat_differences(experiment: str, highest: bool) -> list[float]:
        rows = experiments[experiment]
        at = rows[rows["setting"] == (rows["setting"].max() if highest else rows["setting"].min())]
        value = {(m.rsplit("-s", 1)[0], r): a for m, r, a in zip(at["member"], at["repeat"], at["test_accuracy"])}
        one_to_n = [c for c in CONFIGURATIONS if c.startswith("1toN-")]
        return [np.mean([value[(c, r)] for c in one_to_n]) - value[("ce", r)] for r in range(3)]

    one_to_n = [c for c in CONFIGURATIONS if c.startswith("1toN-")]
    both = ("whitebox", "blackbox")
    zero_vs_sym = [seed_differences([f"1toN-zero-d{d}"], [f"1toN-sym-d{d}"], both) for d in (1, 4)]
    return {
        "1": repeat_differences("generalization", False), "2": repeat_differences("noise", True),
        "3a": seed_differences(["hinge-d1"], ["ce"], ("blackbox",)),
        "3b": seed_differences(one_to_n, ["ce"], ("blackbox",)),
        "4": seed_differences(one_to_n, ["hinge-d1"], ("whitebox",)),
        "5": list(np.mean(zero_vs_sym, axis=0)),
        "6": seed_differences(["1toN+ce-sym-d1"], ["ce"], both),
        "7": seed_differences(["ce-unit"], ["ce"], both),
    }


def test_every_claim_recomputed_independently_from_the_records():
    attacks = attack_frame(_fixed)
    experiments = experiment_frames(lambda e, c, s, r: 0.6 + _effect(c) + 0.01 * math.cos(5 * r + len(c)))
    frame = evaluate_claims(attacks, experiments, "digits").set_index("claim")
    expected = _expected(attacks, experiments)
    p_values = {}
    for key, values in expected.items():
        row = frame.loc[key]
        x = np.asarray(values)
        half = scipy_stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
        assert (row["n"], row["difference"], row["ci_low"], row["ci_high"]) == (
            len(x), pytest.approx(x.mean()), pytest.approx(x.mean() - half), pytest.approx(x.mean() + half)), key
        p_values[key] = scipy_stats.ttest_1samp(x, 0).pvalue
        assert row["p"] == pytest.approx(p_values[key]), key
    m = len(p_values)
    for key, p in p_values.items():
        row, x = frame.loc[key], np.asarray(expected[key])
        adjusted = min(1.0, m * p)
        half = scipy_stats.t.ppf(1 - ALPHA / (2 * m), len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
        assert (row["p_adjusted"], row["family_size"], row["simultaneous_low"], row["simultaneous_high"]) == (
            pytest.approx(adjusted), m, pytest.approx(x.mean() - half), pytest.approx(x.mean() + half)), key
        verdict = INCONCLUSIVE if adjusted >= ALPHA else SUPPORTED if row["difference"] > 0 else CONTRADICTED
        assert row["verdict"] == verdict, key
    assert {SUPPORTED, INCONCLUSIVE} <= set(frame["verdict"])  # the fixture builds both outcomes


def test_claims_by_eps_are_per_seed_means_at_one_attack_and_eps():
    """Claim 7 at IFGSM, ε = 0.2: per seed, the mean over that seed's one white-box and
    two black-box cells of ce-unit minus ce's; then the t-interval over the seeds."""
    attacks = attack_frame(_fixed)
    row = claims_by_eps(attacks).set_index(["claim", "attack", "eps"]).loc[("7", "ifgsm", 0.2)]
    cells = attacks[(attacks["attack"] == "ifgsm") & (attacks["eps"] == 0.2)]
    value = cells.assign(configuration=cells["defender"].str.rsplit("-s", n=1).str[0]).groupby(
        ["configuration", "defender_seed"])["accuracy"].mean()
    differences = np.array([value[("ce-unit", s)] - value[("ce", s)] for s in SEEDS])
    half = scipy_stats.t.ppf(0.975, len(SEEDS) - 1) * differences.std(ddof=1) / math.sqrt(len(SEEDS))
    assert (row["n"], row["difference"], row["ci_low"], row["ci_high"]) == (
        len(SEEDS), pytest.approx(differences.mean()), pytest.approx(differences.mean() - half),
        pytest.approx(differences.mean() + half))


# ---------------------------------------------------------------- verdict rules

def test_identical_seeds_give_no_interval_and_no_verdict():
    """Every seed gives the same difference: a zero-width interval is never evidence."""
    frame = evaluate_claims(attack_frame(lambda c, s, *_: 0.8 + (0.001 if c == "ce-unit" else 0.0)), {},
                            "digits").set_index("claim")
    assert frame.loc["7", "difference"] == pytest.approx(0.001)
    assert frame.loc["7", "verdict"] == INCONCLUSIVE and "no spread over the seeds" in frame.loc["7", "reason"]


def test_fewer_than_three_seeds_per_side_is_inconclusive_with_the_detectable_effect():
    attacks = attack_frame(_fixed)
    attacks = attacks[attacks["defender_seed"] < 2]
    row = evaluate_claims(attacks, {}, "digits").set_index("claim").loc["3b"]
    assert row["verdict"] == INCONCLUSIVE and row["reason"].startswith("too few seeds: 2 treatment, 2 reference")
    assert "would be detected with 80 % power at α/" in row["reason"] and math.isnan(row["p_adjusted"])


def test_missing_modes_and_experiments_name_the_command():
    attacks = attack_frame(_fixed)
    frame = evaluate_claims(attacks[attacks["mode"] == "whitebox"], {}, "digits").set_index("claim")
    assert frame.loc["3a", "reason"] == "no data: no black-box results: run `robench attack --blackbox --dataset digits`"
    assert frame.loc["1", "reason"].endswith("run `robench experiment generalization --dataset digits`")
    assert frame.loc["4", "verdict"] in (SUPPORTED, CONTRADICTED, INCONCLUSIVE) and frame.loc["4", "n"] == 5


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
    assert message.startswith(f"{len(ATTACKS) * (len(EPS) - 1)} claim cells are stored more than once")
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
    (3a, 4) until it is explained in explained_flags.toml; the others are not held."""
    records = _records(correct_at_eps0=80)
    held = gates(records, {})
    assert list(held) == ["hinge-d1-s0"] and held["hinge-d1-s0"][0].startswith("eps0_is_clean (fgsm/ce/native")
    frame = evaluate_claims(attack_frame(_fixed), {}, "digits", held).set_index("claim")
    assert frame.loc["3a", "verdict"] == WITHHELD and "hinge-d1-s0: eps0_is_clean" in frame.loc["3a", "reason"]
    assert frame.loc["4", "verdict"] == WITHHELD and frame.loc["7", "verdict"] != WITHHELD
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
    cells are no defender's and leave every claim as it is (an attacker's seed never
    pairs, and its missing black-box cells must not shrink the others' cells)."""
    attacks = attack_frame(_fixed)
    own = pd.DataFrame([dict(mode="whitebox", attacker=a, attacker_seed=s, attacker_loss="ce", defender=a,
                             defender_seed=s, defender_loss="ce", defender_bound="sym", defender_delta=1.0,
                             defender_head="linear", attack=k, eps=e, accuracy=0.5)
                        for a, s in ATTACKERS.items() for k in ATTACKS for e in EPS])
    alone = evaluate_claims(attacks, {}, "digits")
    pd.testing.assert_frame_equal(evaluate_claims(pd.concat([attacks, own], ignore_index=True), {}, "digits"), alone)
    assert "12 cells" in alone.set_index("claim").loc["7", "detail"]  # 2 × 2 white-box + 2 × 2 × 2 black-box


def test_each_white_box_claim_is_read_again_on_the_worst_case():
    """``<key>w``: the same comparison on the white-box worst-case cells only; black-box
    claims have no worst-case reading; a masking flag holds back white-box readings only."""
    from robench.report.claims import PAPER_CLAIMS, WORST_CASE
    from robench.report.verdicts import _holding

    paper = {c.key: c for c in PAPER_CLAIMS}
    worst = [c for c in CLAIMS if c.attacks == WORST_CASE]
    assert [c.key for c in worst] == [f"{k}w" for k, c in paper.items() if "whitebox" in c.modes]
    for claim in worst:
        base = paper[claim.key[:-1]]
        assert (claim.treatment, claim.reference, claim.match, claim.modes) == (
            base.treatment, base.reference, base.match, ("whitebox",))
    flags = ["gradient_free_not_stronger (worst/ce/native m eps 0.1 (steps 50))", "eps0_is_clean (fgsm m eps 0)"]
    assert _holding(paper["3a"], flags) == flags[1:]  # black-box only: the member's masked gradient is not used
    assert _holding(paper["4"], flags) == flags
