"""Calibration of the claims over seeds, by simulation with a known truth and the
structure of a real run: the quick-start digits unit counts (5 seeds, 3 CE attackers, 5
experiment repeats), a member effect shared by all its cells (the training seed), an
effect per member and attack shared by its ε cells, white-box accuracy (FGSM, IFGSM and
the worst case below both) falling to the floor at 0 and clean accuracy near 1, and one
failed training left out.

Under the null every configuration is drawn from the same distribution, so every true
difference is exactly 0 whatever the clipping does. The checks:

- in each family (primary, secondary) the rate of false verdicts is at most 5 % (within
  Monte Carlo error), and the same check fails on the same simulations without the
  multiplicity correction;
- every marginal 95 % interval covers 0 in at least 95 % of the simulations, and those of
  the attack claims (seeds: independent sides) in 95 %, not more; the experiment claims'
  intervals are conservative, as Welch's unpaired test is where both sides share each
  repeat's subset or noisy set; each family's simultaneous intervals cover all its true
  differences jointly in at least 95 %;
- a true black-box effect of the size the report states as detectable is found 80 % of
  the time.

The default run uses QUICK simulations; ``-m slow`` runs FULL of them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from factories import DIGITS_CONFIGURATIONS
from robench.report.verdicts import ALPHA, CONTRADICTED, SUPPORTED, evaluate_claims

CONFIGURATIONS = DIGITS_CONFIGURATIONS
SEEDS = (0, 1, 2, 3, 4)
ATTACKERS = {"ce-s100": 100, "ce-s101": 101, "ce-s102": 102}
REPEATS = 5
EPS = (0.0, 0.1, 0.2, 0.3)
ATTACKS = ("fgsm", "ifgsm", "worst")  # the worst case white-box only
FAILED = {"ce-unit-s0": "a failed training, left out"}
SEED_SD, ATTACK_SD, CELL_SD = 0.02, 0.01, 0.005  # member, member × attack, cell
REPEAT_SD = 0.02  # an experiment repeat's subset or noisy set, shared by every configuration
QUICK, FULL = 50, 1000


def _cells() -> pd.DataFrame:
    """Every attack cell of the zoo, accuracy still to be drawn."""
    rows = []
    for configuration, (loss, bound, delta, head) in CONFIGURATIONS.items():
        for seed in SEEDS:
            member = f"{configuration}-s{seed}"
            for mode, attacker, attacker_seed in [("whitebox", member, seed)] + [
                    ("blackbox", a, s) for a, s in ATTACKERS.items()]:
                for attack in ATTACKS if mode == "whitebox" else ATTACKS[:2]:
                    for eps in EPS:
                        rows.append(dict(mode=mode, attacker=attacker, attacker_seed=attacker_seed,
                                         attacker_loss="ce", defender=member, defender_seed=seed,
                                         defender_loss=loss, defender_bound=bound, defender_delta=delta,
                                         defender_head=head, configuration=configuration, attack=attack, eps=eps))
    return pd.DataFrame(rows)


CELLS = _cells()
_MEMBER = pd.factorize(CELLS["defender"])[0]  # (cells,) member index
_MEMBER_ATTACK = pd.factorize(CELLS["defender"] + " " + CELLS["attack"])[0]
_WHITEBOX = (CELLS["mode"] == "whitebox").to_numpy()
_EPS = CELLS["eps"].to_numpy()
_IFGSM = (CELLS["attack"] == "ifgsm").to_numpy()
_WORST = (CELLS["attack"] == "worst").to_numpy()


def simulate(rng: np.random.Generator, blackbox_effect: dict[str, float] | None = None) -> tuple[pd.DataFrame, dict]:
    """One run's attack records and experiment records. White-box accuracy falls from about
    0.97 to the floor at 0 by ε = 0.3, black-box (transfer) accuracy to about 0.5;
    ``blackbox_effect`` adds to the black-box cells (ε > 0) of those configurations."""
    member = rng.normal(0, SEED_SD, _MEMBER.max() + 1)[_MEMBER]
    member_attack = rng.normal(0, ATTACK_SD, _MEMBER_ATTACK.max() + 1)[_MEMBER_ATTACK]
    slope = np.where(_WHITEBOX, 3.3 + 0.4 * _IFGSM + 0.8 * _WORST, 1.5 + 0.2 * _IFGSM)
    value = 0.97 - slope * _EPS + member + (_EPS > 0) * member_attack + rng.normal(0, CELL_SD, len(CELLS))
    for configuration, effect in (blackbox_effect or {}).items():
        value += effect * ((CELLS["configuration"] == configuration).to_numpy() & ~_WHITEBOX & (_EPS > 0))
    value[(CELLS["defender"].isin(FAILED)).to_numpy()] -= 0.4  # the failed training
    attacks = CELLS.assign(accuracy=np.clip(value, 0.0, 1.0))
    return attacks, _experiments(rng)


def _experiments(rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    frames = {}
    for experiment, settings, level in (("generalization", (0.01, 1.0), 0.6), ("noise", (0.0, 0.8), 0.5)):
        shared = {(s, r): rng.normal(0, REPEAT_SD) for s in settings for r in range(REPEATS)}
        frames[experiment] = pd.DataFrame([
            dict(experiment=experiment, setting=s, repeat=r, member=f"{c}-s0", loss=loss,
                 bound=bound if loss.startswith("1toN") else "", delta=None if loss == "ce" else delta, head=head,
                 test_accuracy=float(np.clip(level + shared[(s, r)] + rng.normal(0, REPEAT_SD), 0, 1)))
            for c, (loss, bound, delta, head) in CONFIGURATIONS.items() for s in settings for r in range(REPEATS)])
    return frames


def _claims(rng: np.random.Generator, blackbox_effect: dict[str, float] | None = None) -> pd.DataFrame:
    attacks, experiments = simulate(rng, blackbox_effect)
    frame = evaluate_claims(attacks, experiments, "digits", failed=FAILED)
    return frame[frame["p_adjusted"].notna()].set_index("claim")  # the claims tested, both families


def _upper(rate: float, trials: int) -> float:
    """``rate`` plus three Monte Carlo standard errors at that rate."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / trials)


def _lower(rate: float, trials: int) -> float:
    return rate - 3 * math.sqrt(rate * (1 - rate) / trials)


def _null_runs(simulations: int) -> list[pd.DataFrame]:
    rng = np.random.default_rng(20261207)
    return [_claims(rng) for _ in range(simulations)]


@pytest.fixture(scope="module")
def null_runs() -> list[pd.DataFrame]:
    return _null_runs(QUICK)


def _check_null(runs: list[pd.DataFrame]) -> None:
    trials = len(runs)
    tested = runs[0].index
    assert all(run.index.equals(tested) for run in runs) and len(tested) == 22  # every claim has data
    assert all("ce-unit-s0" in run.loc[key, "left_out"] for run in runs for key in ("S1bb", "S1wb", "S1wc"))
    for family, size in (("primary", 16), ("secondary", 6)):
        members = [run[run["family"] == family] for run in runs]
        assert all((f["family_size"] == size).all() and len(f) == size for f in members)
        false_verdict = [f["verdict"].isin([SUPPORTED, CONTRADICTED]).any() for f in members]
        assert np.mean(false_verdict) <= _upper(ALPHA, trials), (family, np.mean(false_verdict))
        jointly = np.mean([((f["simultaneous_low"] <= 0) & (0 <= f["simultaneous_high"])).all() for f in members])
        assert jointly >= _lower(0.95, trials), (family, jointly)
    uncorrected = [(run.loc[run["family"] == "primary", "p"] < ALPHA).any() for run in runs]  # no correction
    assert np.mean(uncorrected) > _upper(ALPHA, trials), np.mean(uncorrected)
    for claim in tested:
        covered = np.mean([run.loc[claim, "ci_low"] <= 0 <= run.loc[claim, "ci_high"] for run in runs])
        assert covered >= _lower(0.95, trials), (claim, covered)  # valid: at least 95 %
        if runs[0].loc[claim, "unit"] == "seed":  # independent sides: 95 %, not more
            assert covered <= _upper(0.95, trials), (claim, covered)


def test_no_effect_family_wise_errors_and_coverage(null_runs):
    _check_null(null_runs)


def _check_power(null: list[pd.DataFrame], simulations: int) -> None:
    """Claim 4bb (1-to-N beats CE, black-box) with the effect its reason states as detected
    with 80 % power (the median over the null runs of the stated effect), added to every
    1-to-N configuration's black-box cells."""
    stated = float(np.median([run.loc["4bb", "detectable"] for run in null]))
    effect = {c: stated for c in CONFIGURATIONS if c.startswith("1toN-")}
    rng = np.random.default_rng(7)
    found = np.mean([_claims(rng, effect).loc["4bb", "verdict"] == SUPPORTED for _ in range(simulations)])
    assert _lower(0.80, simulations) <= found <= _upper(0.80, simulations), (found, stated)


def test_the_stated_detectable_effect_is_found_with_80_percent_power(null_runs):
    _check_power(null_runs, QUICK)


@pytest.mark.slow
def test_calibration_with_many_simulations():
    null = _null_runs(FULL)
    _check_null(null)
    _check_power(null, FULL)
