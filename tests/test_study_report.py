"""The report of a sweep directory with known results (written here, nothing trains):
tables against scipy, results.csv, determinism, plots."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cnn_jax import study
from cnn_jax.study import reporting, store

# test accuracy per (model, pool) and seed 0..4
ACC = {
    ("lenet5", "max"): [0.981, 0.978, 0.984, 0.979, 0.983],
    ("lenet5", "avg"): [0.975, 0.977, 0.979, 0.970, 0.980],
    ("lenet5", "lp"): [0.982, 0.976, 0.985, 0.981, 0.982],
    ("mlp", "max"): [0.950, 0.948, 0.955, 0.951, 0.949],
    ("mlp", "avg"): [0.951, 0.947, 0.955, 0.953, 0.950],
    ("mlp", "lp"): [0.940, 0.941, 0.946, 0.938, 0.944],
}


def _fake_sweep(workdir, acc=ACC, diverge=None, baseline="max"):
    """A sweep directory as `cnn-jax sweep` leaves it, with the accuracies above (random
    timings); ``baseline``: the baseline pool, or ``None``."""
    baseline = {"model.pool": baseline} if baseline else None
    rng = np.random.default_rng()
    models = list(dict.fromkeys(m for m, _ in acc))
    pools = list(dict.fromkeys(p for _, p in acc))
    s = study.Study(
        study.grid({"model.name": models, "model.pool": pools}), seeds=5, baseline=baseline
    )
    trials = []
    for point, seed in s.trials():
        key = (point["model.name"], point["model.pool"])
        name = f"{key[0]}_pool-{key[1]}_seed{seed}_{abs(hash(key)) % 10**8:08d}"
        trials.append({"name": name, "hash": "0" * 64, "group": "g", "point": point, "seed": seed})
        d = os.path.join(workdir, "trials", name)
        os.makedirs(d)
        if diverge == (key, seed):
            store.write_status(
                d,
                "diverged",
                error="training diverged: the loss is not finite at "
                "step 7; the last good checkpoint (step 5) is kept in /x",
                step=7,
            )
            continue
        a = acc[key][seed]
        summary = {
            "test": {"accuracy": a, "loss": 1 - a, "top5": 1.0, "count": 1000},
            "best": {"accuracy": a, "step": 20},
            "train": {"loss": 0.1, "accuracy": 0.99},
            "steps": 20,
            "epochs": 1.0,
            "params": 1000 if key[0] == "mlp" else 2000,
            "train_seconds": 10 * rng.random(),
            "images_per_second": 1000 * rng.random(),
        }
        Path(d, "summary.json").write_text(json.dumps(summary))
        Path(d, store.ANALYSIS_FILE).write_text(json.dumps({"shift_consistency": a - 0.1}))
        records = [
            {"step": step, "split": "train", "loss": 1 / step, "accuracy": a}
            for step in (5, 10, 15, 20)
        ]
        records.append({"step": 20, "split": "test", "loss": 1 - a, "accuracy": a})
        Path(d, "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        store.write_status(d, "done")
    store.write_json(
        os.path.join(workdir, store.SWEEP_FILE),
        {
            "version": 1,
            "experiment": "experiments/fake.py",
            "overrides": [["data.data_dir", "/data"]],
            "study": s.options(),
            "trials": trials,
        },
    )
    return workdir


def test_tables_match_scipy(tmp_path):
    wd = _fake_sweep(str(tmp_path))
    df = reporting.collect(wd)
    keys = ["model.name", "model.pool"]
    agg = reporting.aggregate(df, keys)
    row = agg[(agg["model.name"] == "lenet5") & (agg["model.pool"] == "avg")].iloc[0]
    x = ACC[("lenet5", "avg")]
    lo, hi = sps.t.interval(0.95, 4, loc=np.mean(x), scale=sps.sem(x))
    assert (row["n"], row["mean"], row["ci_lo"], row["ci_hi"]) == pytest.approx(
        (5, np.mean(x), lo, hi)
    )
    assert row["shift_mean"] == pytest.approx(np.mean(x) - 0.1)
    comp = reporting.comparisons(df, keys, {"model.pool": "max"})
    assert len(comp) == 4  # avg and lp, per model; max is the baseline
    c = comp[(comp["model.name"] == "lenet5") & (comp["model.pool"] == "avg")].iloc[0]
    base = ACC[("lenet5", "max")]
    assert c["p_t"] == pytest.approx(sps.ttest_rel(x, base).pvalue)
    assert c["p_wilcoxon"] == pytest.approx(sps.wilcoxon(x, base, method="exact").pvalue)
    d = np.subtract(x, base)
    assert c["diff"] == pytest.approx(d.mean()) and c["cohens_d"] == pytest.approx(
        d.mean() / d.std(ddof=1)
    )
    # Holm within each model: two comparisons per family
    lp = comp[(comp["model.name"] == "lenet5") & (comp["model.pool"] == "lp")].iloc[0]
    ps = sorted([c["p_t"], lp["p_t"]])
    assert min(c["p_holm"], lp["p_holm"]) == pytest.approx(min(1, 2 * ps[0]))
    assert max(c["p_holm"], lp["p_holm"]) == pytest.approx(max(min(1, 2 * ps[0]), ps[1]))


def test_report_content_is_deterministic_and_complete(tmp_path):
    wd = _fake_sweep(str(tmp_path), diverge=(("mlp", "lp"), 4))
    out = reporting.write(wd)
    text = Path(out["report"]).read_text()
    assert "| lenet5 | avg | 5/5 |" in text
    assert "| mlp | lp | 4/5 (1 diverged) |" in text
    assert "## Comparison with the baseline (model.pool = max)" in text
    assert "## Trials that did not finish" in text and "diverged at step 7" not in text
    assert "the loss is not finite at step 7 |" in text and "/x" not in text  # no paths
    assert "/data" not in text  # the data directory is not part of the result
    assert "train seconds" not in text and "timing.md" in text
    # lp vs max for mlp is paired over the 4 seeds both have
    comp = reporting.comparisons(
        reporting.collect(wd), ["model.name", "model.pool"], {"model.pool": "max"}
    )
    assert comp[(comp["model.name"] == "mlp") & (comp["model.pool"] == "lp")]["n"].iloc[0] == 4
    # rewriting gives the same report even though the timings differ
    for name in os.listdir(os.path.join(wd, "trials")):
        p = os.path.join(wd, "trials", name, "summary.json")
        if os.path.exists(p):
            s = json.loads(Path(p).read_text())
            s["train_seconds"] *= 3
            Path(p).write_text(json.dumps(s))
    assert Path(reporting.write(wd)["report"]).read_text() == text
    # results.csv: one row per trial, pandas reads it, timings in their own columns
    df = pd.read_csv(out["results"])
    assert len(df) == 30 and list(df.columns[:4]) == ["trial", "status", "model.name", "model.pool"]
    assert {
        "seed",
        "test_accuracy",
        "best_accuracy",
        "shift_consistency",
        "params",
        "train_seconds",
        "images_per_second",
    } <= set(df.columns)
    assert df.status.value_counts().to_dict() == {"done": 29, "diverged": 1}
    assert df.loc[df.status == "done", "test_accuracy"].sum() == pytest.approx(
        sum(sum(v) for v in ACC.values()) - ACC[("mlp", "lp")][4]
    )
    # the plots are real images
    for p in out["plots"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize(p) > 5000
    assert {os.path.basename(p) for p in out["plots"]} == {
        "accuracy.png",
        "curves.png",
        "acc_vs_params.png",
        "acc_vs_time.png",
        "shift_consistency.png",
    }


def test_answer_names_the_significant_differences(tmp_path):
    acc = dict(ACC)
    acc[("lenet5", "avg")] = [v - 0.02 + 0.001 * i for i, v in enumerate(ACC[("lenet5", "max")])]
    wd = _fake_sweep(str(tmp_path), acc=acc)
    text = Path(reporting.write(wd, with_plots=False)["report"]).read_text()
    answer = text.split("## What the numbers say")[1].split("##")[0]
    assert (
        "model=lenet5: ranking by mean test accuracy: lp (98.12) > max (98.10) > avg (96.30)"
        in answer
    )
    assert (
        "Significantly different from pool=max" in answer
        and "avg (model=lenet5): Δ -1.80 pp" in answer
    )
    assert "cannot go below p = 0.0625" in answer
    row = next(line for line in text.splitlines() if line.startswith("| lenet5 | avg | 5 |"))
    assert row.endswith("| worse |")


def test_without_baseline_every_configuration_is_ranked(tmp_path):
    wd = _fake_sweep(str(tmp_path), baseline=None)
    text = Path(reporting.write(wd, with_plots=False)["report"]).read_text()
    assert "## Comparison" not in text
    assert "Best: **lenet5 pool=lp**, 98.12 %" in text
