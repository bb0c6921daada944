"""The profile's study-level figures: mCE and relative mCE (Hendrycks & Dietterich 2019)
against a hand computation, the Pareto front, the cost table's pairing, and the report's
profile section and plots on a sweep directory written by hand."""

import json
import os

import pandas as pd
import pytest

from cnn_jax.analyses import corruptions
from cnn_jax.study.reporting import profile, profile_plots


def _details(clean, acc):
    return {"clean": clean, "accuracy": acc, "severities": [1, 2], "images": 100}


def test_mce_by_hand():
    # kind errors: a: (0.2, 0.4), b: (0.1, 0.1); baseline: a: (0.1, 0.3), b: (0.2, 0.2)
    kind = _details(0.9, {"a": [0.8, 0.6], "b": [0.9, 0.9]})
    base = _details(0.95, {"a": [0.9, 0.7], "b": [0.8, 0.8]})
    # CE_a = 0.6 / 0.4 = 1.5, CE_b = 0.2 / 0.4 = 0.5 -> mCE = 1.0
    assert corruptions.mce(kind, base) == pytest.approx(1.0)
    # relative: a: (0.6 - 2*0.1) / (0.4 - 2*0.05) = 0.4/0.3; b: (0.2 - 0.2)/(0.4 - 0.1) = 0
    assert corruptions.mce(kind, base, relative=True) == pytest.approx((0.4 / 0.3 + 0.0) / 2)
    assert corruptions.mce(base, base) == pytest.approx(1.0)
    assert corruptions.ce([0.1], [0.0]) != corruptions.ce([0.1], [0.0])  # NaN: no baseline error


def test_pareto_front():
    pts = [(1.0, 90.0), (2.0, 95.0), (1.5, 89.0), (3.0, 95.0), (0.5, 80.0)]
    # lower x better: (0.5, 80) (1, 90) (2, 95) are on the front; (1.5, 89) and (3, 95) not
    assert profile_plots.pareto_front(pts, lower_x=True) == [4, 0, 1]
    # higher x better: (3, 95) dominates everything
    assert profile_plots.pareto_front(pts, lower_x=False) == [3]


def _sweep(tmp_path):
    """A sweep directory with 2 kinds x 2 seeds, their analysis details written by hand."""
    work = tmp_path / "w"
    rows, recs = [], {}
    acc = {("max", 0): 0.8, ("max", 1): 0.7, ("avg", 0): 0.6, ("avg", 1): 0.7}
    for (pool, seed), a in acc.items():
        name = f"{pool}_{seed}"
        os.makedirs(work / "trials" / name)
        rec = {
            "corruptions": {"values": {"corruption_accuracy": a}, "details": _details(
                0.9, {"x": [a, a]})},
            "cost": {"details": {"params": 10, "macs": 20, "inference_us": 2.0 if pool == "max" else 3.0,
                                 "inference_ratio": 1.0 if pool == "max" else 1.5}},
        }
        (work / "trials" / name / "analysis.json").write_text(json.dumps(rec))
        rows.append({"trial": name, "status": "done", "model.pool": pool, "seed": seed,
                     "images_per_second": 100.0 if pool == "max" else 50.0, "params": 10})
    return str(work), pd.DataFrame(rows)


def test_mce_per_seed_and_the_cost_table(tmp_path):
    work, df = _sweep(tmp_path)
    recs = profile.records(work, df)
    out = profile.mce(df, recs, ["model.pool"], {"model.pool": "max"})
    # seed 0: errors 0.4 / 0.2 = 2; seed 1: 0.3 / 0.3 = 1 -> mean 1.5; the baseline is 1
    assert out["pool=avg"][0].mean == pytest.approx(1.5)
    assert out["pool=avg"][0].n == 2
    assert out["pool=max"][0].mean == pytest.approx(1.0) and out["pool=max"][0].std == 0
    # relative: seed 0: (0.8 - 0.2) / (0.4 - 0.2) = 3; seed 1: (0.6 - 0.2) / (0.6 - 0.2) = 1
    assert out["pool=avg"][1].mean == pytest.approx(2.0)
    text = profile.cost_section(df, recs, ["model.pool"], {"model.pool": "max"})
    row = [line for line in text.splitlines() if line.startswith("| pool=avg")][0]
    # the step time ratio: baseline images/s over the kind's, 100 / 50 = 2 in both seeds
    assert "| 2 | 2.00 [2.00, 2.00] | 3.0 | 1.50 [1.50, 1.50] |" in row


def test_profile_section_and_plots(tmp_path):
    from cnn_jax import analyses

    work, df = _sweep(tmp_path)
    recs = profile.records(work, df)
    measures = analyses.measures_of({"corruptions": {}})
    agg = pd.DataFrame({"model.pool": ["max", "avg"], "n": [2, 2], "test_mean": [0.905, 0.925],
                        "corruption_accuracy_mean": [0.75, 0.65]})
    lines = profile.section(df, agg, recs, ["model.pool"], {"model.pool": "max"}, "test_accuracy",
                            measures)
    text = "\n".join(lines)
    assert "## Profile per configuration" in text and "relative mCE %" in text
    # test accuracy, mean corruption accuracy, mCE (1.5 [CI]), relative mCE, params, MACs
    row = [x for x in text.splitlines() if x.startswith("| pool=avg")][0]
    assert row.startswith("| pool=avg | 2 | 92.50 | 65.00 | 150.0 [") and row.endswith("| 10 | 20 |")
    figs = profile_plots.pareto(work, agg, ["model.pool"], {"model.pool": "max"})
    assert os.path.getsize(os.path.join(work, figs["pareto"])) > 0
    figs = profile_plots.pareto_cost(work, df, agg, recs, ["model.pool"], {"model.pool": "max"})
    assert os.path.getsize(os.path.join(work, figs["pareto_cost"])) > 0
    # no calibration or equivariance details: no such plot
    assert profile_plots.reliability(work, df, ["model.pool"], {"model.pool": "max"}, recs) == {}
    assert profile_plots.equivariance(work, df, ["model.pool"], {"model.pool": "max"}, recs) == {}


def test_accuracy_per_corruption(tmp_path):
    work, df = _sweep(tmp_path)
    recs = profile.records(work, df)
    names, means = profile.corruption_means(df, recs, ["model.pool"])
    assert names == ["x"]
    assert means["pool=max"]["x"] == pytest.approx(0.75) and means["pool=avg"]["x"] == pytest.approx(0.65)
    text = "\n".join(profile.corruption_section(df, recs, ["model.pool"], {"model.pool": "max"}))
    assert "| pool=max | **90.0** | **75.0** |" in text and "| pool=avg | **90.0** | 65.0 |" in text
