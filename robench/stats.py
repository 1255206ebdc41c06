"""Intervals and tests: Student-t intervals of means and paired differences over
repeats, Welch's two-sample test of a claim over training seeds or repeats, exact
binomial intervals of one attack cell, Bonferroni's adjustment over a family of claims,
and the smallest effect a test of a few units detects.

The experiments repeat each setting on a few random subsets or noisy sets (5 in the
paper); PROTOCOL.md asks for the mean and a 95 % confidence interval over the repeats,
and for comparisons with ce paired by repeat (the same subset / noisy set), which removes
the between-repeat variance that both losses share. Claims about a loss take the
training seed as their unit (docs/protocol.md, "Claims"). scipy and statsmodels compute
the distributions; this module only chooses which.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
from scipy import stats as scipy_stats


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` and its two-sided Student-t interval
    ``mean ± t_{(1+level)/2, n−1} · s / √n`` (``s`` the sample standard deviation,
    ddof = 1). One value gives ``(v, nan, nan)``; none gives three NaNs."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level!r}")
    x = np.asarray(list(values), dtype=np.float64)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, math.nan
    half = _t_half_width(float(x.std(ddof=1)), n, level)
    return mean, mean - half, mean + half


def _t_half_width(sd: float, n: int, level: float) -> float:
    """``t_{(1+level)/2, n−1} · sd / √n``."""
    return float(scipy_stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)


def paired_difference(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the paired differences ``a[i] − b[i]`` (the paired
    t-interval): ``a`` and ``b`` are the same repeats of two methods, in the same order."""
    a = np.asarray(list(a), dtype=np.float64)
    b = np.asarray(list(b), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    return mean_ci(a - b, level)




# ---------------------------------------------------------------- per cell: binomial

def clopper_pearson(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper–Pearson) interval of a proportion ``correct / n``
    (statsmodels ``proportion_confint(method="beta")``); (nan, nan) when ``n`` is 0."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return math.nan, math.nan
    low, high = proportion_confint(correct, n, alpha=1 - level, method="beta")
    return float(low), float(high)


# ---------------------------------------------------------------- over training seeds

def one_sample_t(values: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, sd, p)`` of ``values`` and the two-sided p-value of the one-sample
    Student t-test of mean 0 (scipy ``ttest_1samp``); p is NaN with fewer than two
    values or none of them different (a zero spread is no evidence)."""
    x = np.asarray(list(values), dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    if len(x) < 2 or not sd > 0:
        return float(x.mean()), sd, math.nan
    return float(x.mean()), sd, float(scipy_stats.ttest_1samp(x, 0.0).pvalue)


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """Bonferroni-adjusted p-values over a family of m tests, min(1, m · p) (statsmodels'
    ``multipletests(method="bonferroni")`` gives the same values, tested, but runs a garbage
    collection per call). A test rejects at family-wise level α when its adjusted p-value
    is below α, which is when its t-interval at level 1 − α/m excludes 0: the intervals at
    that level cover all m means jointly with probability at least 1 − α."""
    m = len(p_values)
    return [min(1.0, m * p) for p in p_values]


ROUNDING = 1e-12  # a spread this small is float rounding (accuracies are multiples of 1/n)


class Side(NamedTuple):
    """One side of a two-sample test: its values' sample standard deviation (ddof = 1)
    and how many there are."""

    sd: float
    n: int


@dataclass(frozen=True)
class TTest:
    """A t-test of a difference in means and what goes with it: the estimate, its
    standard error, the degrees of freedom of its t distribution, the two-sided p-value of
    "no difference", and the spread of each side it was computed from. One-sample (paired)
    tests have ``se = s / √n``, ``df = n − 1`` and one side; Welch's two-sample test has
    ``se = √(s_T² / n_T + s_R² / n_R)``, the Welch–Satterthwaite ``df`` and two."""

    difference: float
    se: float
    df: float
    p: float
    sides: tuple[Side, ...] = ()

    def interval(self, level: float) -> tuple[float, float]:
        """``difference ± t_{(1+level)/2, df} · se``; NaNs without a spread."""
        if not (self.se > 0 and self.df > 0 and 0 < level < 1):
            return math.nan, math.nan
        half = float(scipy_stats.t.ppf((1 + level) / 2, self.df)) * self.se
        return self.difference - half, self.difference + half

    def detectable(self, alpha: float, power: float = 0.8) -> float:
        """The true difference this test detects at two-sided level ``alpha`` with
        probability ``power`` if each side's spread were the one observed, made
        median-unbiased (:func:`median_unbiased_se`): Welch's exact power
        (:func:`welch_detectable`) for two sides, the noncentral t (:func:`noncentrality`)
        for one; NaN without a spread."""
        if not (self.se > 0 and self.df > 0):
            return math.nan
        if len(self.sides) == 2:
            treatment, reference = (Side(median_unbiased_se(s.sd, s.n - 1), s.n) for s in self.sides)
            return welch_detectable(treatment, reference, alpha, power)
        return noncentrality(self.df, alpha, power) * median_unbiased_se(self.se, self.df)


NO_TEST = TTest(math.nan, math.nan, math.nan, math.nan)


def paired_t(differences: Sequence[float]) -> TTest:
    """The one-sample t-test of mean 0 of paired ``differences`` (scipy ``ttest_1samp``);
    p is NaN with fewer than two values or none of them different (a zero spread is no
    evidence)."""
    mean, sd, p = one_sample_t(differences)
    n = len(list(differences))
    return TTest(mean, sd / math.sqrt(n) if n > 1 else math.nan, n - 1 if n > 1 else math.nan, p, (Side(sd, n),))


def welch_t(treatment: Sequence[float], reference: Sequence[float]) -> TTest:
    """Welch's two-sample t-test of equal means, unequal variances allowed (scipy
    ``ttest_ind(equal_var=False)`` for the p-value): difference mean(T) − mean(R),
    se = √(s_T² / n_T + s_R² / n_R), the Welch–Satterthwaite df. Fewer than two values on
    a side, or no spread on either (values within :data:`ROUNDING` of each other: the float
    rounding of averaged accuracies, not a measured spread), gives NaN se, df and p."""
    t = np.asarray(list(treatment), dtype=np.float64)
    r = np.asarray(list(reference), dtype=np.float64)
    if not len(t) or not len(r):
        return NO_TEST
    difference = float(t.mean() - r.mean())
    if len(t) < 2 or len(r) < 2:
        return TTest(difference, math.nan, math.nan, math.nan)
    vt, vr = t.var(ddof=1) / len(t), r.var(ddof=1) / len(r)
    if np.ptp(t) <= ROUNDING and np.ptp(r) <= ROUNDING:
        return TTest(difference, math.nan, math.nan, math.nan)
    df = (vt + vr) ** 2 / (vt ** 2 / (len(t) - 1) + vr ** 2 / (len(r) - 1))
    p = float(scipy_stats.ttest_ind(t, r, equal_var=False).pvalue)
    sides = (Side(float(t.std(ddof=1)), len(t)), Side(float(r.std(ddof=1)), len(r)))
    return TTest(difference, math.sqrt(vt + vr), float(df), p, sides)


def median_unbiased_se(se: float, df: float) -> float:
    """A standard error with ``df`` degrees of freedom scaled so that its median is the
    true one: df · se² / σ² is (approximately, for Welch) χ² with df degrees of freedom,
    so se · √(df / χ²₀.₅,df) is above the true σ in half of the samples. The plain se is
    below it more often than not, so an effect stated from it overstates the power."""
    if not (df > 0 and math.isfinite(se)):
        return math.nan
    return se * math.sqrt(df / float(scipy_stats.chi2.median(df)))


@functools.lru_cache(maxsize=1024)
def noncentrality(df: float, alpha: float, power: float = 0.8) -> float:
    """The noncentrality λ at which a two-sided t-test with ``df`` degrees of freedom at
    level ``alpha`` rejects with probability ``power``: P(|T'| > t_{1−α/2}) = power for T'
    noncentral t (scipy ``nct``), solved for λ."""
    from scipy.optimize import brentq

    critical = float(scipy_stats.t.ppf(1 - alpha / 2, df))

    def shortfall(nc: float) -> float:
        wrong_side = float(scipy_stats.nct.cdf(-critical, df, nc))  # NaN where it underflows
        return float(scipy_stats.nct.sf(critical, df, nc)) + (wrong_side if math.isfinite(wrong_side) else 0.0) - power

    return float(brentq(shortfall, 0.0, 2 * critical + 5))  # power at 2 · critical is above 0.95 for any df ≥ 1


QUANTILES = 128  # points per side of the grid Welch's power is averaged over: 1e-4 relative, measured


def welch_power_curve(treatment: Side, reference: Side, alpha: float) -> Callable[[float], float]:
    """The exact power of Welch's two-sided test at level ``alpha`` as a function of the
    true difference, for normal values with the standard deviations of ``treatment`` and
    ``reference``. The test rejects when
    |D| > t_{1−α/2, df̂} · ŝe, and both ŝe and the Welch–Satterthwaite df̂ depend only on
    the two sample variances, which are independent of the estimate D ~ N(δ, σ²_T/n_T +
    σ²_R/n_R). So the power is P(|D| > c(V_T, V_R)) averaged over V_i = σ²_i ·
    χ²_{n_i−1} / (n_i − 1), here over a grid of :data:`QUANTILES` quantiles of each χ²
    (the noncentral t at one df overstates it: docs/protocol.md)."""
    quantiles = (np.arange(QUANTILES) + 0.5) / QUANTILES
    variances = [s.sd ** 2 / s.n * scipy_stats.chi2.ppf(quantiles, s.n - 1) / (s.n - 1) for s in (treatment, reference)]
    vt, vr = variances[0][:, None], variances[1][None, :]  # (Q, 1), (1, Q)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (vt + vr) ** 2 / (vt ** 2 / (treatment.n - 1) + vr ** 2 / (reference.n - 1))  # (Q, Q)
    critical = (scipy_stats.t.ppf(1 - alpha / 2, df) * np.sqrt(vt + vr)).ravel()  # (Q²,) the rejection bound on |D|
    sd = math.sqrt(treatment.sd ** 2 / treatment.n + reference.sd ** 2 / reference.n)

    def power(difference: float) -> float:
        return float(np.mean(scipy_stats.norm.sf((critical - difference) / sd)
                             + scipy_stats.norm.cdf((-critical - difference) / sd)))

    return power


def welch_detectable(treatment: Side, reference: Side, alpha: float, power: float = 0.8) -> float:
    """The true difference Welch's test at level ``alpha`` detects with probability
    ``power`` when the sides have these standard deviations (:func:`welch_power_curve`,
    solved with ``brentq``); NaN without a spread or with fewer than two values a side."""
    if min(treatment.n, reference.n) < 2 or not treatment.sd ** 2 + reference.sd ** 2 > 0:
        return math.nan
    curve = welch_power_curve(treatment, reference, alpha)
    sd = math.sqrt(treatment.sd ** 2 / treatment.n + reference.sd ** 2 / reference.n)
    from scipy.optimize import brentq

    high = sd
    while curve(high) < power:  # the power rises to 1 with the difference
        high *= 2
    return float(brentq(lambda d: curve(d) - power, 0.0, high, xtol=sd * 1e-9))


__all__ = ["NO_TEST", "Side", "TTest", "bonferroni", "clopper_pearson", "mean_ci", "median_unbiased_se", "noncentrality",
           "one_sample_t", "paired_difference", "paired_t", "welch_detectable", "welch_power_curve", "welch_t"]
