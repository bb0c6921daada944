"""Statistics over seeds: means with t confidence intervals, paired tests, effect sizes.

Only ``numpy`` and the t / normal distributions of ``scipy.stats`` are used; the Wilcoxon
signed-rank test is computed exactly here (all sign assignments), so the tests can check
every function against ``scipy.stats`` independently.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

import numpy as np


def _array(x: Sequence[float]) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Mean, sample standard deviation (ddof=1) and t-based confidence interval."""

    n: int
    mean: float
    std: float
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def mean_ci(x: Sequence[float], confidence: float = 0.95) -> Estimate:
    """Mean of ``x`` with the two-sided ``confidence`` interval of the t distribution
    (``n - 1`` degrees of freedom). Non-finite values are dropped; with fewer than two
    values the std and interval are NaN."""
    from scipy import stats

    a = _array(x)
    n = len(a)
    if n == 0:
        return Estimate(0, math.nan, math.nan, math.nan, math.nan)
    m = float(a.mean())
    if n < 2:
        return Estimate(1, m, math.nan, math.nan, math.nan)
    sd = float(a.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(n, m, sd, m - half, m + half)


@dataclasses.dataclass(frozen=True)
class Paired:
    """A paired comparison of ``a`` against ``b`` (differences ``a - b``)."""

    n: int
    mean_diff: float
    diff_lo: float  # 95 % t interval of the mean difference
    diff_hi: float
    t: float
    p_t: float  # two-sided paired t-test
    p_wilcoxon: float  # two-sided exact Wilcoxon signed-rank test (NaN if not computable)
    cohens_d: float  # Cohen's d for paired samples (d_z = mean / sd of the differences)


def paired_t(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided paired t-test of ``a`` against ``b``: ``(t, p)``; equals
    ``scipy.stats.ttest_rel``. When all differences are equal it gives ``(nan, nan)`` if
    they are zero and ``(±inf, 0.0)`` otherwise."""
    from scipy import stats

    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = len(d)
    if n < 2:
        return math.nan, math.nan
    m, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:
        return (math.nan, math.nan) if m == 0 else (math.copysign(math.inf, m), 0.0)
    t = m / (sd / math.sqrt(n))
    return t, float(2 * stats.t.sf(abs(t), n - 1))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


MAX_EXACT = 20  # 2**20 sign assignments


def wilcoxon(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of ``a - b``: ``(W+, p)``.

    Zero differences are dropped (Wilcoxon's convention); ties get average ranks. The
    p-value is exact: the fraction of the ``2**n`` equally likely sign assignments whose
    rank sum is at least as far from ``n(n+1)/4`` as the observed one. Above
    :data:`MAX_EXACT` differences the normal approximation (with tie correction) is used.
    With ``n`` non-zero differences the smallest possible p-value is ``2 / 2**n``
    (0.0625 for n = 5), so small studies cannot reach p < 0.05 with this test.
    """
    from scipy import stats

    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    d = d[d != 0]
    n = len(d)
    if n == 0:
        return math.nan, math.nan
    r = _ranks(np.abs(d))
    w_plus = float(r[d > 0].sum())
    center = r.sum() / 2
    if n <= MAX_EXACT:
        signs = np.array(list(itertools.product((0.0, 1.0), repeat=n)))  # [2**n, n]
        sums = signs @ r
        tol = 1e-9
        p = float(np.mean(np.abs(sums - center) >= abs(w_plus - center) - tol))
        return w_plus, min(p, 1.0)
    var = (r**2).sum() / 4
    z = (w_plus - center) / math.sqrt(var)
    return w_plus, float(min(1.0, 2 * stats.norm.sf(abs(z))))


def cohens_d_paired(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's d for paired samples, ``d_z = mean(a - b) / sd(a - b)`` (ddof=1)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if len(d) < 2:
        return math.nan
    sd = float(d.std(ddof=1))
    m = float(d.mean())
    if sd == 0:
        return math.nan if m == 0 else math.copysign(math.inf, m)
    return m / sd


def compare(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Paired:
    """Paired comparison of ``a`` with ``b`` (same length, pairs at equal index)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    est = mean_ci(a - b, confidence)
    t, p = paired_t(a, b)
    _, pw = wilcoxon(a, b)
    return Paired(len(a), est.mean, est.lo, est.hi, t, p, pw, cohens_d_paired(a, b))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaNs stay NaN and are not counted)."""
    p = np.asarray(pvalues, np.float64)
    out = np.full(len(p), math.nan)
    idx = [i for i in np.argsort(p, kind="mergesort") if np.isfinite(p[i])]
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()
