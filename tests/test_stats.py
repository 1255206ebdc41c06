"""robench.stats: Student-t intervals and paired differences against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from robench.stats import mean_ci, paired_difference


def _by_hand(values, level=0.95):
    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = x.sum() / n
    s = math.sqrt(((x - mean) ** 2).sum() / (n - 1))
    half = scipy_stats.t.ppf(1 - (1 - level) / 2, n - 1) * s / math.sqrt(n)
    return mean, mean - half, mean + half


@pytest.mark.parametrize("level", [0.95, 0.9, 0.99])
def test_mean_ci_matches_the_t_interval(level):
    values = [0.91, 0.87, 0.95, 0.89, 0.93]
    assert mean_ci(values, level) == pytest.approx(_by_hand(values, level), abs=1e-12)


def test_mean_ci_known_numbers():
    # mean 2, s = 1, n = 3: half width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051
    mean, low, high = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302652729911275 / math.sqrt(3), abs=1e-9)
    assert mean - low == pytest.approx(high - mean)


def test_mean_ci_edge_cases():
    mean, low, high = mean_ci([0.7])
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in mean_ci([]))
    assert mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)  # no spread, zero width
    with pytest.raises(ValueError):
        mean_ci([1.0, 2.0], level=1.0)


def test_paired_difference_is_the_t_interval_of_the_differences():
    a = [0.90, 0.85, 0.80, 0.95]
    b = [0.88, 0.82, 0.79, 0.91]
    diffs = [x - y for x, y in zip(a, b)]
    assert paired_difference(a, b) == pytest.approx(_by_hand(diffs), abs=1e-12)
    assert paired_difference(a, b)[0] == pytest.approx(0.025)


def test_pairing_removes_shared_variance():
    # b tracks a's repeat-to-repeat swings: the paired interval is much narrower than
    # the difference of two independent intervals would suggest.
    a = [0.60, 0.80, 0.70, 0.90]
    b = [0.58, 0.77, 0.69, 0.87]
    _, low, high = paired_difference(a, b)
    assert low > 0  # a beats b on every repeat, significantly
    a_ci, b_ci = mean_ci(a), mean_ci(b)
    assert a_ci[1] < b_ci[2]  # unpaired intervals overlap


def test_paired_difference_needs_equal_lengths():
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])
    mean, low, high = paired_difference([0.8], [0.7])
    assert mean == pytest.approx(0.1) and math.isnan(low) and math.isnan(high)


def test_bonferroni_equals_statsmodels_and_matches_the_simultaneous_interval():
    """adjusted p < α exactly when the t-interval at 1 − α/m excludes 0."""
    from statsmodels.stats.multitest import multipletests

    from robench.stats import bonferroni, paired_t

    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 8):
        p = list(rng.uniform(0, 0.2, m)) + [0.01] * (m > 2)  # with a tie
        assert bonferroni(p) == pytest.approx(list(multipletests(p, alpha=0.05, method="bonferroni")[1]))
    samples = [rng.normal(shift, 1.0, 5) for shift in np.linspace(0, 3, 40)]
    tests = [paired_t(x) for x in samples]
    adjusted = bonferroni([t.p for t in tests])
    for test, p_adjusted in zip(tests, adjusted):
        low, high = test.interval(1 - 0.05 / len(samples))
        assert (p_adjusted < 0.05) == (low > 0 or high < 0)
    assert 0 < sum(a < 0.05 for a in adjusted) < len(samples)  # both outcomes occur


def test_clopper_pearson_is_the_exact_beta_interval():
    from robench.stats import clopper_pearson

    low, high = clopper_pearson(90, 100)
    assert low == pytest.approx(scipy_stats.beta.ppf(0.025, 90, 11)) and high == pytest.approx(scipy_stats.beta.ppf(0.975, 91, 10))
    assert clopper_pearson(0, 10)[0] == 0 and clopper_pearson(10, 10)[1] == 1


def test_the_noncentrality_has_the_stated_power():
    """A true mean of λ standard errors is found by the two-sided t-test 80 % of the time (noncentral t)."""
    from robench.stats import noncentrality

    for df, alpha in ((4, 0.05), (2.5, 0.05 / 16), (17.3, 0.01)):
        nc = noncentrality(df, alpha)
        critical = scipy_stats.t.ppf(1 - alpha / 2, df)
        power = scipy_stats.nct.sf(critical, df, nc) + np.nan_to_num(scipy_stats.nct.cdf(-critical, df, nc))  # NaN: underflow
        assert power == pytest.approx(0.8, abs=1e-6), (df, alpha)


def test_the_median_unbiased_se_is_above_the_true_one_in_half_of_the_samples():
    from robench.stats import median_unbiased_se

    rng = np.random.default_rng(3)
    for n in (3, 5):
        samples = rng.normal(0.0, 2.0, (20000, n))
        corrected = np.array([median_unbiased_se(float(x.std(ddof=1)), n - 1) for x in samples])
        plain = samples.std(axis=1, ddof=1)
        assert np.mean(corrected > 2.0) == pytest.approx(0.5, abs=0.015), n
        assert np.mean(plain > 2.0) < 0.47, n  # the plain s is below σ more often than not
    assert math.isnan(median_unbiased_se(1.0, 0))


def test_welch_matches_scipy_and_its_interval_the_textbook_formula():
    from robench.stats import welch_t

    rng = np.random.default_rng(5)
    t, r = rng.normal(0.3, 0.02, 7), rng.normal(0.28, 0.05, 4)
    test = welch_t(t, r)
    assert test.p == pytest.approx(scipy_stats.ttest_ind(t, r, equal_var=False).pvalue)
    vt, vr = t.var(ddof=1) / 7, r.var(ddof=1) / 4
    df = (vt + vr) ** 2 / (vt ** 2 / 6 + vr ** 2 / 3)
    half = scipy_stats.t.ppf(0.995, df) * math.sqrt(vt + vr)
    assert test.interval(0.99) == (pytest.approx(t.mean() - r.mean() - half), pytest.approx(t.mean() - r.mean() + half))
    assert math.isnan(welch_t([0.5, 0.5, 0.5], [0.4, 0.4 + 1e-15, 0.4]).p)  # float rounding is no spread
    assert math.isnan(welch_t([0.5], [0.4, 0.3]).se)


def test_the_welch_interval_covers_at_its_level():
    """Simulated unequal variances and unit counts: the 95 % Welch interval covers the
    true difference in 95 % of the samples."""
    from robench.stats import welch_t

    rng = np.random.default_rng(11)
    sims, (nt, nr), (st, sr) = 4000, (8, 5), (0.01, 0.03)
    covered = 0
    for _ in range(sims):
        low, high = welch_t(rng.normal(0.0, st, nt), rng.normal(0.0, sr, nr)).interval(0.95)
        covered += low <= 0 <= high
    assert abs(covered / sims - 0.95) < 3 * math.sqrt(0.95 * 0.05 / sims)


def _welch_rejections(rng, difference, treatment, reference, alpha, sims=20000) -> float:
    t = rng.normal(difference, treatment.sd, (sims, treatment.n))
    r = rng.normal(0.0, reference.sd, (sims, reference.n))
    return float(np.mean(scipy_stats.ttest_ind(t, r, axis=1, equal_var=False).pvalue < alpha))


@pytest.mark.parametrize("treatment, reference, alpha", [
    ((0.5, 5), (1.0, 5), 0.05 / 16),  # a claim's sides: four configurations' mean against one
    ((0.01, 8), (0.03, 5), 0.01),
    ((2.0, 3), (1.0, 8), 0.05),
    ((1.0, 10), (1.0, 10), 0.05 / 22),
])
def test_welchs_detectable_effect_is_found_with_its_power(treatment, reference, alpha):
    """Welch's tests simulated on normal values (scipy) reject at the detectable effect
    in 80 % of the samples and at 0 in the fraction the power curve gives, within three
    Monte Carlo standard errors; the noncentral t at the true Welch df, which the
    stated effect once came from, falls short where the sides differ."""
    from robench.stats import Side, noncentrality, welch_detectable, welch_power_curve

    treatment, reference = Side(*treatment), Side(*reference)
    rng, sims = np.random.default_rng(17), 20000
    effect = welch_detectable(treatment, reference, alpha)
    assert _welch_rejections(rng, effect, treatment, reference, alpha, sims) == pytest.approx(
        0.8, abs=3 * math.sqrt(0.8 * 0.2 / sims))
    size = welch_power_curve(treatment, reference, alpha)(0.0)
    assert _welch_rejections(rng, 0.0, treatment, reference, alpha, sims) == pytest.approx(
        size, abs=3 * math.sqrt(size * (1 - size) / sims) + 1e-4)
    vt, vr = treatment.sd ** 2 / treatment.n, reference.sd ** 2 / reference.n
    df = (vt + vr) ** 2 / (vt ** 2 / (treatment.n - 1) + vr ** 2 / (reference.n - 1))
    assert noncentrality(df, alpha) * math.sqrt(vt + vr) <= effect * 1.001


def test_the_stated_detectable_effect_uses_median_unbiased_spreads():
    from robench.stats import NO_TEST, Side, TTest, median_unbiased_se, noncentrality, welch_detectable, welch_t

    t, r = [0.1, 0.3, 0.2, 0.25], [0.0, 0.05, 0.2]
    test = welch_t(t, r)
    corrected = [Side(median_unbiased_se(s.sd, s.n - 1), s.n) for s in test.sides]
    assert corrected[0].sd > test.sides[0].sd and test.sides[1] == Side(pytest.approx(np.std(r, ddof=1)), 3)
    assert test.detectable(0.05) == pytest.approx(welch_detectable(*corrected, 0.05))
    assert test.detectable(0.05) > welch_detectable(*test.sides, 0.05)
    assert TTest(0.0, 0.01, 4.0, 0.5).detectable(0.05) > noncentrality(4.0, 0.05) * 0.01  # one side: the noncentral t
    assert math.isnan(NO_TEST.detectable(0.05)) and math.isnan(welch_detectable(Side(1.0, 1), Side(1.0, 5), 0.05))


def test_the_one_sample_detectable_effect_agrees_with_statsmodels():
    from statsmodels.stats.power import TTestPower

    from robench.stats import noncentrality, paired_t

    for n, alpha in ((3, 0.05), (5, 0.05 / 16), (10, 0.01)):
        expected = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=0.8)
        assert noncentrality(n - 1, alpha) / math.sqrt(n) == pytest.approx(expected, rel=1e-4)
    x = [0.1, 0.3, 0.2, 0.25]
    test = paired_t(x)
    assert (test.df, test.p) == (3, pytest.approx(scipy_stats.ttest_1samp(x, 0).pvalue))
