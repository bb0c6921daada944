"""Report wording: an exact tie has its own verdict, the Wilcoxon floor counts only the
non-zero differences it ranks, and the CI of Δ is labelled unadjusted beside Holm verdicts."""

import math

import pandas as pd

from cnn_jax.study.reporting import aggregate, markdown, stats


def test_every_difference_exactly_zero_is_identical_not_too_few_seeds():
    c = stats.compare([0.9, 0.8, 0.85], [0.9, 0.8, 0.85])
    assert (c.mean_diff, c.sd_diff, c.n_nonzero) == (0.0, 0.0, 0) and math.isnan(c.p_t)
    row = {"n": c.n, "diff": c.mean_diff, "sd_diff": c.sd_diff, "p_holm": math.nan}
    assert aggregate.verdict(row) == "identical in all 3 seeds (Δ = 0)"
    assert aggregate.verdict({**row, "n": 1}) == "too few seeds"


def test_the_wilcoxon_floor_counts_non_zero_differences():
    c = stats.compare([0.9, 0.8, 0.85, 0.7, 0.6], [0.9, 0.8, 0.84, 0.69, 0.61])
    assert c.n == 5 and c.n_nonzero == 3
    comp = pd.DataFrame([{"n": 5, "n_nonzero": 3}, {"n": 5, "n_nonzero": 5}])
    (line,) = markdown._wilcoxon_floor(comp)
    assert "cannot go below p = 0.2500 (it drops zero differences: the fewest non-zero ones" in line
    assert "are 3 of 5 seeds)" in line
    assert stats.wilcoxon([0.9, 0.8, 0.85], [0.9, 0.8, 0.84])[1] >= 2 / 2**1  # one ranked difference
    (line,) = markdown._wilcoxon_floor(pd.DataFrame([{"n": 5, "n_nonzero": 5}]))
    assert "cannot go below p = 0.0625;" in line and "drops zero" not in line
    assert markdown._wilcoxon_floor(pd.DataFrame([{"n": 8, "n_nonzero": 8}])) == []
