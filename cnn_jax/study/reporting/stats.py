"""Statistics over seeds: means with t confidence intervals, paired tests, effect sizes,
and the power of the paired t-test.

Only ``numpy`` and the t, noncentral t and normal distributions of ``scipy.stats`` are
used; the Wilcoxon signed-rank test is computed exactly here (all sign assignments), so the
tests can check every function against ``scipy.stats`` independently.
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
    sd_diff: float = math.nan  # sample sd (ddof=1) of the differences
    n_nonzero: int = -1  # differences that are not exactly 0 (what the Wilcoxon test ranks)


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
    return Paired(len(a), est.mean, est.lo, est.hi, t, p, pw, cohens_d_paired(a, b), est.std,
                  int(np.count_nonzero(a - b)))


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


# ----------------------------------------------------------------------------- power

POWER = 0.8  # the power at which detectable differences and sample sizes are stated
MAX_SEEDS = 10**6  # seeds_needed gives up (inf) beyond this


def t_test_power(effect: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired (one-sample) t-test at level ``alpha`` with ``n``
    pairs when the differences have mean ``delta`` and sd ``sigma``, ``effect = delta /
    sigma`` (Cohen's d_z of the population).

    Under that alternative the statistic ``T = mean(d) / (sd(d) / sqrt(n))`` follows the
    noncentral t distribution with ``n - 1`` degrees of freedom and noncentrality
    ``lambda = effect * sqrt(n)``; the test rejects when ``|T| > c``, ``c = t_{1 - alpha/2,
    n - 1}``, so::

        power = P(T > c) + P(T < -c) = nct.sf(c, n - 1, lambda) + nct.cdf(-c, n - 1, lambda)

    (both tails: at ``effect = 0`` it is exactly ``alpha``). The lower tail is computed as
    ``nct.sf(c, n - 1, -lambda)``, equal by symmetry: scipy's ``nct.cdf`` far in the left
    tail of a large ``lambda`` returns NaN where the value is below 1e-10. Cohen (1988),
    *Statistical Power Analysis for the Behavioral Sciences*, ch. 2. NaN when ``n < 2``.
    """
    from scipy import stats

    if n < 2 or not math.isfinite(effect) or not 0 < alpha < 1:
        return math.nan
    df = n - 1
    c = float(stats.t.ppf(1 - alpha / 2, df))
    lam = abs(effect) * math.sqrt(n)
    upper = float(stats.nct.sf(c, df, lam))
    lower = float(stats.nct.sf(c, df, -lam))
    return upper + (lower if math.isfinite(lower) else 0.0)


def detectable_effect(n: int, alpha: float = 0.05, power: float = POWER) -> float:
    """The standardised effect ``d = delta / sigma`` that the two-sided paired t-test with
    ``n`` pairs detects with probability ``power`` at level ``alpha``: the root of
    ``t_test_power(d, n, alpha) = power`` (power grows with ``d``; solved with Brent's
    method). NaN when ``n < 2`` or ``power <= alpha``."""
    from scipy import optimize

    if n < 2 or not alpha < power < 1:
        return math.nan
    hi = 1.0
    for _ in range(80):  # n = 2 at a small alpha needs d in the hundreds
        if t_test_power(hi, n, alpha) >= power:
            break
        hi *= 2
    else:  # pragma: no cover  (beyond what float arithmetic resolves)
        return math.inf
    return float(optimize.brentq(lambda d: t_test_power(d, n, alpha) - power, 0.0, hi, xtol=1e-12))


def min_detectable_difference(
    sd: float, n: int, alpha: float = 0.05, power: float = POWER
) -> float:
    """Minimum detectable difference (MDD) of a paired comparison: the smallest true mean
    difference that the two-sided paired t-test with ``n`` pairs at level ``alpha``
    detects with probability ``power``, given the sd ``sd`` of the paired differences:
    ``sd * detectable_effect(n, alpha, power)``.

    For large ``n`` it tends to the normal-approximation closed form
    ``(z_{1 - alpha/2} + z_{power}) * sd / sqrt(n)``; for small ``n`` it is larger (the
    t distribution's heavier tails). ``0`` when ``sd == 0``; NaN when ``n < 2``."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    return abs(sd) * detectable_effect(n, alpha, power)


def seeds_needed(
    diff: float,
    sd: float,
    alpha: float = 0.05,
    power: float = POWER,
    max_n: int = MAX_SEEDS,
) -> float:
    """The smallest number of pairs (seeds) ``n >= 2`` at which the two-sided paired
    t-test at level ``alpha`` detects a true mean difference ``diff`` with probability at
    least ``power``, when the differences have sd ``sd`` (the observed values, taken as
    the truth): the least ``n`` with ``t_test_power(diff / sd, n, alpha) >= power``.

    ``inf`` when ``diff == 0`` or more than ``max_n`` would be needed; ``2`` when ``sd ==
    0 != diff``; NaN for non-finite input. Returned as a float so that ``inf`` fits."""
    if not (math.isfinite(diff) and math.isfinite(sd)) or not alpha < power < 1:
        return math.nan
    if diff == 0:
        return math.inf
    if sd == 0:
        return 2.0
    effect = abs(diff) / abs(sd)

    def enough(n: int) -> bool:
        return t_test_power(effect, n, alpha) >= power

    lo, hi = 1, 2  # invariant: not enough(lo) (n = 1 has no test), enough(hi) once found
    while not enough(hi):
        if hi >= max_n:
            return math.inf
        lo, hi = hi, min(2 * hi, max_n)
    while hi - lo > 1:  # power grows with n at fixed effect
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return float(hi)
