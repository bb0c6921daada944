"""The power of the paired t-test (cnn_jax.study.reporting.stats): against scipy's noncentral t used
directly, the normal-approximation closed form for large n, a simulation, and statsmodels
where it is installed."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from cnn_jax.study.reporting import stats

POWER = 0.8


def _power_direct(effect, n, alpha):
    """Two-sided paired t-test power straight from scipy.stats.nct (cdf for the lower tail,
    which scipy returns as NaN where it is negligible)."""
    df, lam = n - 1, effect * math.sqrt(n)
    c = sps.t.ppf(1 - alpha / 2, df)
    lower = sps.nct.cdf(-c, df, lam)
    return (1 - sps.nct.cdf(c, df, lam)) + (0.0 if math.isnan(lower) else lower)


def _normal_mdd(sd, n, alpha, power=POWER):
    """The large-sample closed form: (z_{1-alpha/2} + z_power) * sd / sqrt(n)."""
    return (sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)) * sd / math.sqrt(n)


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
@pytest.mark.parametrize("alpha", [0.05, 0.05 / 4])
def test_power_at_the_mdd_is_80_percent(n, alpha):
    sd = 0.7
    mdd = stats.min_detectable_difference(sd, n, alpha)
    assert mdd / sd == pytest.approx(stats.detectable_effect(n, alpha), rel=1e-12)
    assert _power_direct(mdd / sd, n, alpha) == pytest.approx(POWER, abs=1e-6)
    # a bit less is under-powered, a bit more over-powered
    assert (
        _power_direct(0.99 * mdd / sd, n, alpha) < POWER < _power_direct(1.01 * mdd / sd, n, alpha)
    )
    # small samples need more than the normal approximation says (heavier t tails)
    assert mdd > _normal_mdd(sd, n, alpha)


@pytest.mark.parametrize("n", [2000, 20000])
def test_mdd_tends_to_the_normal_closed_form(n):
    for alpha in (0.05, 0.01):
        assert stats.min_detectable_difference(1.3, n, alpha) == pytest.approx(
            _normal_mdd(1.3, n, alpha), rel=2e-3
        )


def test_power_function_against_nct_and_its_limits():
    for effect, n, alpha in [(0.3, 5, 0.05), (1.0, 8, 0.01), (2.5, 3, 0.0125), (0.05, 400, 0.05)]:
        assert stats.t_test_power(effect, n, alpha) == pytest.approx(
            _power_direct(effect, n, alpha), abs=1e-12
        )
        # symmetric in the sign of the effect (two-sided)
        assert stats.t_test_power(-effect, n, alpha) == stats.t_test_power(effect, n, alpha)
    # no effect: the test rejects at its level
    for n in (2, 5, 50):
        assert stats.t_test_power(0.0, n, 0.05) == pytest.approx(0.05, abs=1e-12)
    assert math.isnan(stats.t_test_power(1.0, 1, 0.05))
    assert math.isnan(stats.min_detectable_difference(1.0, 1))


def test_power_at_the_mdd_by_simulation():
    """An independent check of the whole formula: paired experiments whose true mean
    difference is the MDD reject (scipy's one-sample t-test) in about 80 % of draws."""
    n, alpha, sd, reps = 6, 0.05 / 3, 0.012, 40_000
    mdd = stats.min_detectable_difference(sd, n, alpha)
    d = np.random.default_rng(0).normal(mdd, sd, size=(reps, n))
    rejected = sps.ttest_1samp(d, 0.0, axis=1).pvalue < alpha
    assert rejected.mean() == pytest.approx(POWER, abs=0.01)  # binomial sd 0.002


def test_seeds_needed_is_the_least_n_with_enough_power():
    for diff, sd, alpha in [(0.5, 1.0, 0.05), (0.004, 0.006, 0.05 / 8), (0.02, 0.01, 0.05)]:
        n = stats.seeds_needed(diff, sd, alpha)
        assert n == int(n) and n >= 2
        assert _power_direct(diff / sd, int(n), alpha) >= POWER
        if n > 2:
            assert _power_direct(diff / sd, int(n) - 1, alpha) < POWER
    # a small effect: close to the normal approximation ((z + z) / d)^2, never below it
    d = 0.05
    approx = ((sps.norm.ppf(0.975) + sps.norm.ppf(POWER)) / d) ** 2
    n = stats.seeds_needed(d, 1.0)
    assert approx <= n <= approx * 1.01 + 2
    # the sign of the difference does not matter
    assert stats.seeds_needed(-0.5, 1.0) == stats.seeds_needed(0.5, 1.0)


def test_power_edge_cases():
    assert stats.seeds_needed(0.0, 1.0) == math.inf  # no difference is never detected
    assert stats.seeds_needed(1e-6, 1.0, max_n=1000) == math.inf
    assert stats.seeds_needed(0.01, 0.0) == 2  # no spread: the smallest paired test
    assert stats.min_detectable_difference(0.0, 5) == 0.0
    assert math.isnan(stats.seeds_needed(math.nan, 1.0))
    assert math.isnan(stats.min_detectable_difference(math.nan, 5))


def test_against_statsmodels():
    # an independent implementation (statsmodels is in the test extra)
    import statsmodels.stats.power as smp

    for n, alpha in [(3, 0.05), (5, 0.0125), (20, 0.05)]:
        effect = smp.TTestPower().solve_power(nobs=n, alpha=alpha, power=POWER)
        assert stats.detectable_effect(n, alpha) == pytest.approx(effect, rel=1e-4)
