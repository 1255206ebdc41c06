"""Intervals and tests: Student-t intervals of means and paired differences over
repeats and training seeds, exact binomial intervals of one attack cell, Bonferroni's
adjustment over a family of claims, and the smallest effect a test of a few seeds detects.

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
from typing import Sequence

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


def t_interval(mean: float, sd: float, n: int, level: float) -> tuple[float, float]:
    """``mean ± t_{(1+level)/2, n−1} · sd / √n``; NaNs without a spread."""
    if n < 2 or not sd > 0 or not 0 < level < 1:
        return math.nan, math.nan
    half = _t_half_width(sd, n, level)
    return mean - half, mean + half


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """Bonferroni-adjusted p-values over a family of m tests, min(1, m · p) (statsmodels'
    ``multipletests(method="bonferroni")`` gives the same values, tested, but runs a garbage
    collection per call). A test rejects at family-wise level α when its adjusted p-value
    is below α, which is when its t-interval at level 1 − α/m excludes 0: the intervals at
    that level cover all m means jointly with probability at least 1 − α."""
    m = len(p_values)
    return [min(1.0, m * p) for p in p_values]


def median_unbiased_sd(sd: float, n: int) -> float:
    """The sample standard deviation ``sd`` of ``n`` normal values scaled so that its
    median is the true σ: (n − 1) s² / σ² is χ² with n − 1 degrees of freedom, so
    s · √((n − 1) / χ²₀.₅,ₙ₋₁) is above σ in half of the samples. Plugged into
    :func:`detectable_effect`, it makes the stated effect one that has its stated power
    at the median, where the plain s (which is below σ more often than not) overstates
    the power; NaN below two values."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    return sd * math.sqrt((n - 1) / float(scipy_stats.chi2.median(n - 1)))


def detectable_effect(sd: float, n: int, alpha: float, power: float = 0.8) -> float:
    """The smallest mean difference that a two-sided one-sample t-test at level ``alpha``
    detects with probability ``power`` from ``n`` values of standard deviation ``sd``
    (statsmodels ``TTestPower``, the noncentral t); NaN below two values or without a spread."""
    if n < 2 or not sd > 0:
        return math.nan
    return _standardized_effect(n, alpha, power) * sd


@functools.lru_cache(maxsize=256)
def _standardized_effect(n: int, alpha: float, power: float) -> float:
    """The detectable effect in units of the standard deviation (it depends on nothing else)."""
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                          alternative="two-sided"))


__all__ = ["clopper_pearson", "bonferroni", "detectable_effect", "mean_ci", "median_unbiased_sd", "one_sample_t", "paired_difference", "t_interval"]
