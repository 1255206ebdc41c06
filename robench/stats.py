"""Means with Student-t confidence intervals, and paired differences over repeats.

The experiments repeat each setting on a few random subsets or noisy sets (5 in the
paper); PROTOCOL.md asks for the mean and a 95 % confidence interval over the repeats,
and for comparisons with ce paired by repeat (the same subset / noisy set), which removes
the between-repeat variance that both losses share.
"""

from __future__ import annotations

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
    half = float(scipy_stats.t.ppf((1 + level) / 2, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


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


__all__ = ["mean_ci", "paired_difference"]
