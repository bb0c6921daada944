"""Sweep definitions, trial planning (names, hashes, typed values) and statistics against
scipy.stats. Nothing here trains."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from cnn_jax import config as config_lib
from cnn_jax import study
from cnn_jax.errors import UserError
from cnn_jax.study import planning
from cnn_jax.study.reporting import stats

# ----------------------------------------------------------------------------- sweeps


def test_grid_is_the_product_with_the_first_key_slowest():
    g = study.grid({"model.name": ["lenet5", "simple_cnn"], "model.pool": ["max", "avg", "lp"]})
    assert len(g) == 6
    assert g.points()[:4] == [
        {"model.name": "lenet5", "model.pool": "max"},
        {"model.name": "lenet5", "model.pool": "avg"},
        {"model.name": "lenet5", "model.pool": "lp"},
        {"model.name": "simple_cnn", "model.pool": "max"},
    ]
    assert g.keys() == ["model.name", "model.pool"]


def test_zip_chain_product_compose():
    z = study.zipped({"optim.learning_rate": [1e-3, 1e-2], "optim.name": ["adam", "sgd"]})
    assert z.points() == [
        {"optim.learning_rate": 1e-3, "optim.name": "adam"},
        {"optim.learning_rate": 1e-2, "optim.name": "sgd"},
    ]
    c = study.grid({"model.pool": ["max"]}) + study.grid({"model.pool": ["avg", "lp"]})
    assert [p["model.pool"] for p in c] == ["max", "avg", "lp"]
    p = study.grid({"model.name": ["a", "b"]}) * z
    assert len(p) == 4 and p.points()[1] == {
        "model.name": "a",
        "optim.learning_rate": 1e-2,
        "optim.name": "sgd",
    }
    with pytest.raises(UserError, match="equal length, got optim.learning_rate: 2, optim.name: 1"):
        study.zipped({"optim.learning_rate": [1, 2], "optim.name": ["adam"]})
    with pytest.raises(UserError, match="sets 'model.pool' twice"):
        (study.grid({"model.pool": ["max"]}) * study.grid({"model.pool": ["avg"]})).points()
    with pytest.raises(UserError, match="must be a list"):
        study.grid({"model.pool": "max"})


def test_random_search_is_seeded_distinct_and_within_bounds():
    space = {
        "optim.learning_rate": study.log_uniform(1e-4, 1e-1),
        "optim.weight_decay": study.uniform(0.0, 1e-3),
        "data.batch_size": [32, 64, 128],
        "train.epochs": study.int_uniform(1, 3),
    }
    a = study.random_search(space, budget=12, seed=3).points()
    b = study.random_search(space, budget=12, seed=3).points()
    c = study.random_search(space, budget=12, seed=4).points()
    assert a == b and a != c and len(a) == 12
    assert len({tuple(sorted(p.items())) for p in a}) == 12  # distinct points
    for p in a:
        assert 1e-4 <= p["optim.learning_rate"] <= 1e-1
        assert 0 <= p["optim.weight_decay"] <= 1e-3
        assert p["data.batch_size"] in (32, 64, 128) and p["train.epochs"] in (1, 2, 3)
        assert float(f"{p['optim.learning_rate']:.3g}") == p["optim.learning_rate"]  # readable
    # a space with only 3 distinct points cannot give more than 3
    assert len(study.random_search({"data.batch_size": [32, 64, 128]}, budget=10)) == 3
    # log-uniform: the log of the samples is spread over the whole range
    lr = np.log10(
        [
            p["optim.learning_rate"]
            for p in study.random_search(
                {"optim.learning_rate": study.log_uniform(1e-4, 1e-1)}, budget=200
            ).points()
        ]
    )
    assert lr.min() < -3.7 and lr.max() > -1.3 and abs(lr.mean() + 2.5) < 0.25


def test_study_crosses_every_point_with_every_seed():
    s = study.Study(
        study.grid({"model.pool": ["max", "avg"]}), seeds=3, baseline={"model.pool": "max"}
    )
    assert s.trials() == [
        ({"model.pool": "max"}, 0),
        ({"model.pool": "max"}, 1),
        ({"model.pool": "max"}, 2),
        ({"model.pool": "avg"}, 0),
        ({"model.pool": "avg"}, 1),
        ({"model.pool": "avg"}, 2),
    ]
    assert study.Study(study.grid({"model.pool": ["max"]}), seeds=[7, 11]).seed_list() == [7, 11]
    with pytest.raises(UserError, match="baseline key 'model.name' is not swept"):
        study.Study(study.grid({"model.pool": ["max"]}), baseline={"model.name": "lenet5"})
    with pytest.raises(UserError, match="sets 'seed' itself"):
        study.Study(study.grid({"seed": [1, 2]}))


# ----------------------------------------------------------------------------- planning


def _base():
    c = config_lib.base_config()
    c.model.name = "lenet5"
    return c


def test_trial_names_are_readable_and_hashes_stable():
    s = study.Study(
        study.grid({"model.name": ["lenet5", "mlp"], "model.activation": ["relu", "tanh"]}), seeds=2
    )
    trials = planning.plan_trials(s, _base())
    names = [t.name for t in trials]
    assert (
        names[0].startswith("lenet5_activation-relu_seed0_") and len(names[0].split("_")[-1]) == 8
    )
    assert len(set(names)) == len(names) == 8
    again = planning.plan_trials(s, _base())
    assert [t.name for t in again] == names  # stable: same configs, same names
    # the hash is that of the resolved config: changing any setting changes it ...
    other = _base()
    other.train.epochs = 3
    assert planning.plan_trials(s, other)[0].hash != trials[0].hash
    # ... except where the data lives
    moved = _base()
    moved.data.data_dir = "/elsewhere"
    assert planning.plan_trials(s, moved)[0].hash == trials[0].hash
    # seeds of one config share a group; configs do not
    assert trials[0].group == trials[1].group != trials[2].group
    # switching model.name drops the experiment's options the new model lacks (mlp: no pool)
    mlp = next(t for t in trials if t.point["model.name"] == "mlp")
    assert "pool" not in mlp.config.model and mlp.config.model.activation in ("relu", "tanh")


def test_points_keep_python_types():
    # padding of lenet5 is a tuple: a sweep value replaces it whole (not parsed as text)
    s = study.Study(
        study.grid({"model.padding": [("SAME", "SAME"), "VALID"], "optim.learning_rate": [1]}),
        seeds=1,
    )
    t = planning.plan_trials(s, _base())
    assert tuple(t[0].config.model.padding) == ("SAME", "SAME")
    assert t[1].config.model.padding == "VALID"
    assert isinstance(t[0].config.optim.learning_rate, float)


def test_planning_reports_mistakes_with_the_point():
    with pytest.raises(UserError, match=r"sweep point \{model.pool='maxx'\}: unknown pool 'maxx'"):
        planning.plan_trials(study.Study(study.grid({"model.pool": ["maxx"]})), _base())
    with pytest.raises(UserError, match="unknown config key 'optim.learning_rat'"):
        planning.plan_trials(study.Study(study.grid({"optim.learning_rat": [0.1]})), _base())
    with pytest.raises(UserError, match="give the same config"):
        planning.plan_trials(study.Study(study.grid({"optim.learning_rate": [0.1, 0.10]})), _base())


# ----------------------------------------------------------------------------- statistics


A = [0.981, 0.978, 0.984, 0.979, 0.983, 0.976]
B = [0.975, 0.977, 0.979, 0.970, 0.980, 0.974]


def test_mean_ci_matches_scipy_t_interval():
    e = stats.mean_ci(A)
    lo, hi = sps.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=sps.sem(A))
    assert e.n == 6 and e.mean == pytest.approx(np.mean(A), abs=1e-15)
    assert e.std == pytest.approx(np.std(A, ddof=1), rel=1e-12)
    assert (e.lo, e.hi) == pytest.approx((lo, hi), rel=1e-12)
    # known closed form: n=2, values 0 and 2 -> mean 1, sd sqrt(2), half width t_.975,1 * 1
    e2 = stats.mean_ci([0.0, 2.0])
    assert e2.half_width == pytest.approx(12.706204736174698, rel=1e-9)
    assert math.isnan(stats.mean_ci([0.5]).lo) and stats.mean_ci([0.5, math.nan]).n == 1


def test_paired_t_matches_scipy_ttest_rel():
    t, p = stats.paired_t(A, B)
    ref = sps.ttest_rel(A, B)
    assert t == pytest.approx(ref.statistic, rel=1e-12) and p == pytest.approx(
        ref.pvalue, rel=1e-10
    )
    assert all(math.isnan(v) for v in stats.paired_t([1.0, 2.0], [1.0, 2.0]))
    assert stats.paired_t([2.0, 3.0, 4.0], [1.0, 2.0, 3.0]) == (math.inf, 0.0)


@pytest.mark.parametrize(
    "a,b",
    [
        (A, B),
        ([1.0, 2.0, 3.0, 4.0, 5.0], [1.5, 1.1, 2.2, 5.7, 3.6]),  # no ties: scipy exact is exact
        (
            list(np.random.default_rng(0).normal(size=12)),
            list(np.random.default_rng(1).normal(size=12)),
        ),
    ],
)
def test_wilcoxon_exact_matches_scipy(a, b):
    w, p = stats.wilcoxon(a, b)
    ref = sps.wilcoxon(a, b, method="exact", zero_method="wilcox")
    d = np.asarray(a) - np.asarray(b)
    assert w == pytest.approx(np.sum(sps.rankdata(np.abs(d))[d > 0]))
    assert min(w, len(d) * (len(d) + 1) / 2 - w) == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue, rel=1e-12)


def test_wilcoxon_closed_forms():
    # every difference positive: p = 2 / 2**n
    assert stats.wilcoxon([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])[1] == pytest.approx(2 / 32)
    # zeros are dropped (n = 3 left), ties get average ranks
    w, p = stats.wilcoxon([1, 1, 2, 5], [0, 0, 2, 6])
    assert w == pytest.approx(2 * 2.0) and p == pytest.approx(1.0)
    assert math.isnan(stats.wilcoxon([1.0, 2.0], [1.0, 2.0])[1])


def test_cohens_d_paired_and_holm():
    d = np.asarray(A) - np.asarray(B)
    assert stats.cohens_d_paired(A, B) == pytest.approx(d.mean() / d.std(ddof=1))
    # d_z relates to t: t = d_z * sqrt(n)
    assert stats.paired_t(A, B)[0] == pytest.approx(stats.cohens_d_paired(A, B) * math.sqrt(6))
    # Holm: sorted p * (m - rank), made monotone, capped at 1; NaN ignored
    assert stats.holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx(
        [0.03, 0.06, 0.06, math.nan], nan_ok=True
    )
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]


def test_compare_pairs_and_summarises():
    c = stats.compare(A, B)
    assert c.n == 6 and c.mean_diff == pytest.approx(np.mean(np.subtract(A, B)))
    lo, hi = sps.t.interval(0.95, 5, loc=c.mean_diff, scale=sps.sem(np.subtract(A, B)))
    assert (c.diff_lo, c.diff_hi) == pytest.approx((lo, hi))
    assert c.p_t == pytest.approx(sps.ttest_rel(A, B).pvalue)
    with pytest.raises(ValueError, match="equal lengths"):
        stats.compare([1, 2], [1])


def test_a_larger_random_budget_extends_the_smaller_one():
    # so re-running a search with a larger budget reuses every finished trial
    space = {"optim.learning_rate": study.log_uniform(1e-4, 3e-2), "data.batch_size": [32, 64, 128]}
    small = study.random_search(space, budget=12, seed=0).points()
    assert study.random_search(space, budget=24, seed=0).points()[:12] == small
