"""The report of a sweep directory with known results (written here, nothing trains):
tables against scipy, selection by validation, the plateau check, power, results.csv,
determinism, plots."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cnn_jax import rundir, study
from cnn_jax.study import store
from cnn_jax.study.execution import status as trial_status
from cnn_jax.study.reporting import stats
from cnn_jax.study.reporting import write as reporting

# test accuracy per (model, pool) and seed 0..4
ACC = {
    ("lenet5", "max"): [0.981, 0.978, 0.984, 0.979, 0.983],
    ("lenet5", "avg"): [0.975, 0.977, 0.979, 0.970, 0.980],
    ("lenet5", "lp"): [0.982, 0.976, 0.985, 0.981, 0.982],
    ("mlp", "max"): [0.950, 0.948, 0.955, 0.951, 0.949],
    ("mlp", "avg"): [0.951, 0.947, 0.955, 0.953, 0.950],
    ("mlp", "lp"): [0.940, 0.941, 0.946, 0.938, 0.944],
}
# final validation accuracy = test accuracy + this shift: by validation, lenet5 max ranks
# first (98.40), though lp has the best test accuracy (98.12 against 98.10)
VAL_SHIFT = {("lenet5", "max"): 0.003, ("lenet5", "lp"): -0.001}
STEPS = (5, 10, 15, 20)  # evaluation (and log) steps
# validation accuracy at STEPS minus the final one: mlp lp is still rising (its last two
# evaluations average 1 pp below its best), lenet5 avg peaks at step 15 (best checkpoint)
CURVES = {("mlp", "lp"): (-0.06, -0.04, -0.02, 0.0), ("lenet5", "avg"): (-0.05, -0.01, 0.002, 0.0)}
CURVE = (-0.05, -0.01, -0.001, 0.0)
SIZES = {"train": 3600, "validation": 400, "test": 1000}


def _fake_sweep(workdir, acc=ACC, diverge=None, baseline="max", wall=False, curves=CURVES):
    """A sweep directory as `cnn-jax sweep` leaves it, with the accuracies above (random
    timings); ``baseline``: the baseline pool, or ``None``; ``wall``: the trials record
    their wall time in status.json; ``curves``: the validation curves that differ from
    :data:`CURVE`."""
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
        config = {
            "data": {"name": "mnist5k", "batch_size": 32, "validation": 0.1, "data_dir": "/data"},
            "model": {"name": key[0], "pool": key[1]},
            "optim": {
                "name": "adam",
                "learning_rate": 0.002,
                "schedule": "constant",
                "warmup_steps": 0,
                "warmup_epochs": 0,
                "weight_decay": 0.0,
            },
            "train": {
                "epochs": 1,
                "steps": 0,
                "eval_every_epochs": 0.25,
                "early_stopping_patience": 0,
            },
            "seed": seed,
        }
        Path(d, "config.json").write_text(json.dumps(config))
        if diverge == (key, seed):
            trial_status.write_status(
                d,
                "diverged",
                error="training diverged: the loss is not finite at "
                "step 7; the last good checkpoint (step 5) is kept in /x",
                reason="training diverged: the loss is not finite at step 7",  # as task writes it
                step=7,
            )
            continue
        a = acc[key][seed]
        v = acc[key][seed] + VAL_SHIFT.get(key, -0.002)
        curve = [v + c for c in curves.get(key, CURVE)]
        best_i = int(np.argmax(curve))
        best_test = a if best_i == len(STEPS) - 1 else a - 0.001
        test = {"accuracy": a, "loss": 1 - a, "top5": 1.0, "count": SIZES["test"]}
        summary = {
            "test": test,
            "validation": {"accuracy": v, "loss": 1 - v, "top5": 1.0, "count": 400},
            "best": {
                "step": STEPS[best_i],
                "validation_accuracy": curve[best_i],
                "test_accuracy": best_test,
                "selected_by": "validation",
                "test": {**test, "accuracy": best_test},
            },
            "train": {"loss": 0.1, "accuracy": 0.99},
            "data": SIZES,
            "steps": 20,
            "planned_steps": 20,
            "stopped_early": False,
            "epochs": 1.0,
            "params": 1000 if key[0] == "mlp" else 2000,
            "train_seconds": 10 * rng.random(),
            "images_per_second": 1000 * rng.random(),
            "step_seconds": 5 * rng.random(),  # less than a loop's train_seconds, as in fit
            "first_step_at": 1.7e9 + rng.random(),
        }
        Path(d, "summary.json").write_text(json.dumps(summary))
        Path(d, store.ANALYSIS_FILE).write_text(json.dumps({"shift_consistency": a - 0.1}))
        records = []
        for step, acc_v in zip(STEPS, curve):
            records.append({"step": step, "split": "train", "loss": 1 / step, "accuracy": a})
            records.append(
                {"step": step, "split": "validation", "loss": 1 - acc_v, "accuracy": acc_v}
            )
        records.append({"step": 20, "split": "test", "loss": 1 - a, "accuracy": a})
        if best_i != len(STEPS) - 1:
            records.append(
                {
                    "step": STEPS[best_i],
                    "split": "test",
                    "accuracy": best_test,
                    "checkpoint": "best",
                }
            )
        Path(d, "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        extra = {"wall_seconds": summary["train_seconds"] + 2.0} if wall else {}
        trial_status.write_status(d, "done", **extra)
    rundir.write_json(
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


KEYS = ["model.name", "model.pool"]


def _row(frame, model, pool):
    return frame[(frame["model.name"] == model) & (frame["model.pool"] == pool)].iloc[0]


def test_tables_match_scipy(tmp_path):
    wd = _fake_sweep(str(tmp_path))
    df = reporting.collect(wd)
    agg = reporting.aggregate(df, KEYS, workdir=wd)
    row = _row(agg, "lenet5", "avg")
    x = ACC[("lenet5", "avg")]
    lo, hi = sps.t.interval(0.95, 4, loc=np.mean(x), scale=sps.sem(x))
    assert (row["n"], row["mean"], row["ci_lo"], row["ci_hi"]) == pytest.approx(
        (5, np.mean(x), lo, hi)
    )
    assert (row["test_mean"], row["test_ci_lo"]) == pytest.approx((np.mean(x), lo))
    v = np.add(x, -0.002)
    vlo, vhi = sps.t.interval(0.95, 4, loc=np.mean(v), scale=sps.sem(v))
    assert (row["val_mean"], row["val_std"], row["val_ci_lo"], row["val_ci_hi"]) == pytest.approx(
        (np.mean(v), np.std(v, ddof=1), vlo, vhi)
    )
    # lenet5 avg's best checkpoint (by validation) is at step 15, before the end
    assert row["best_val_mean"] == pytest.approx(np.mean(v) + 0.002)
    assert row["best_test_mean"] == pytest.approx(np.mean(x) - 0.001)
    assert row["shift_consistency_mean"] == pytest.approx(np.mean(x) - 0.1)
    comp = reporting.comparisons(df, KEYS, {"model.pool": "max"})
    assert len(comp) == 4  # avg and lp, per model; max is the baseline
    c = _row(comp, "lenet5", "avg")
    base = ACC[("lenet5", "max")]
    assert c["p_t"] == pytest.approx(sps.ttest_rel(x, base).pvalue)
    assert c["p_wilcoxon"] == pytest.approx(sps.wilcoxon(x, base, method="exact").pvalue)
    d = np.subtract(x, base)
    assert c["diff"] == pytest.approx(d.mean()) and c["cohens_d"] == pytest.approx(
        d.mean() / d.std(ddof=1)
    )
    # Holm within each model: two comparisons per family
    lp = _row(comp, "lenet5", "lp")
    ps = sorted([c["p_t"], lp["p_t"]])
    assert min(c["p_holm"], lp["p_holm"]) == pytest.approx(min(1, 2 * ps[0]))
    assert max(c["p_holm"], lp["p_holm"]) == pytest.approx(max(min(1, 2 * ps[0]), ps[1]))
    # power at alpha / 2 (two comparisons per model), from the sd of the paired differences
    sd = d.std(ddof=1)
    assert (c["family_size"], c["alpha_power"], c["sd_diff"]) == pytest.approx((2, 0.025, sd))
    df_, c_t = 4, sps.t.ppf(1 - 0.025 / 2, 4)
    lam = c["mdd"] / sd * math.sqrt(5)
    assert sps.nct.sf(c_t, df_, lam) + sps.nct.sf(c_t, df_, -lam) == pytest.approx(0.8, abs=1e-6)
    n_needed = c["seeds_needed"]
    assert n_needed == stats.seeds_needed(d.mean(), sd, 0.025)
    assert stats.t_test_power(d.mean() / sd, int(n_needed), 0.025) >= 0.8
    assert stats.t_test_power(d.mean() / sd, int(n_needed) - 1, 0.025) < 0.8


def test_plateau_check_from_the_validation_curves(tmp_path):
    wd = _fake_sweep(str(tmp_path))
    agg = reporting.aggregate(reporting.collect(wd), KEYS, workdir=wd)
    still_rising = _row(agg, "mlp", "lp")
    assert still_rising["plateaued"] == False
    assert still_rising["plateau_evaluations"] == 4
    assert still_rising["plateau_gap"] == pytest.approx(-0.01)  # mean(-0.02, 0) - 0
    peaked = _row(agg, "lenet5", "avg")  # best at step 15, last two within 0.1 pp of it
    assert peaked["plateaued"] == True
    assert peaked["plateau_gap"] == pytest.approx((0.002 + 0.0) / 2 - 0.002)
    assert agg["plateaued"].sum() == 5
    text = Path(reporting.write(wd, with_plots=False)["report"]).read_text()
    # every seed's own curve is still rising: 5 of 5 seeds have not plateaued
    assert still_rising["plateau_seeds"] == 5 and still_rising["plateau_not"] == 5
    assert "- Plateau check: not plateaued: mlp pool=lp (-1.00 pp; 5 of 5 seeds)" in text
    assert "| mlp | lp | 5/5 |" in text
    row = next(line for line in text.splitlines() if line.startswith("| mlp | lp | 5/5 |"))
    assert row.endswith("| no (-1.00; 5 of 5 seeds) |")
    row = next(line for line in text.splitlines() if line.startswith("| lenet5 | max | 5/5 |"))
    assert row.endswith("| yes (-0.05) |")
    # every arm plateaued: said once
    wd2 = _fake_sweep(str(tmp_path / "flat"), curves={})
    text = Path(reporting.write(wd2, with_plots=False)["report"]).read_text()
    assert "- Plateau check: every arm plateaued." in text


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
    assert "train seconds" not in text and "images/s" not in text and "timing.md" in text
    # the protocol: split sizes, budget, selection rule, plateau check, power
    protocol = text.split("## Protocol")[1].split("\n## ")[0]
    assert "- Data: mnist5k: 3,600 train / 400 validation / 1,000 test images." in protocol
    assert "(`data.validation` = 0.1)" in protocol
    assert "- Budget per trial: 20 steps (1 epoch) at batch size 32;" in protocol
    assert "every trial trained all its planned steps" in protocol
    assert "- Optimizer adam, learning rate 0.002, schedule constant" in protocol
    assert "validation evaluated every 0.25 epoch(s)" in protocol
    assert "best checkpoint, early stopping and every ranking" in protocol
    assert "the test split is evaluated once, at the end of training" in protocol
    assert "- Plateau check: not plateaued: mlp pool=lp" in protocol
    assert "α/m = 0.025 (α = 0.05; m = 2, the number of comparisons in the Holm" in protocol
    # lp vs max for mlp is paired over the 4 seeds both have
    comp = reporting.comparisons(reporting.collect(wd), KEYS, {"model.pool": "max"})
    assert _row(comp, "mlp", "lp")["n"] == 4
    # rewriting gives the same report even though the timings differ
    for name in os.listdir(os.path.join(wd, "trials")):
        p = os.path.join(wd, "trials", name, "summary.json")
        if os.path.exists(p):
            s = json.loads(Path(p).read_text())
            s["train_seconds"] *= 3
            s["images_per_second"] *= 3
            s["first_step_at"] += 100
            Path(p).write_text(json.dumps(s))
    assert Path(reporting.write(wd)["report"]).read_text() == text
    # results.csv: one row per trial, pandas reads it, timings in their own columns
    df = pd.read_csv(out["results"])
    assert len(df) == 30 and list(df.columns[:4]) == ["trial", "status", "model.name", "model.pool"]
    assert {
        "seed",
        "validation_accuracy",
        "validation_loss",
        "test_accuracy",
        "test_loss",
        "test_top5",
        "test_count",
        "best_step",
        "best_validation_accuracy",
        "best_test_accuracy",
        "stopped_early",
        "steps",
        "planned_steps",
        "train_n",
        "validation_n",
        "test_n",
        "train_loss",
        "train_accuracy",
        "shift_consistency",
        "params",
        "epochs",
        *reporting.TIMING_COLUMNS,
    } <= set(df.columns)
    assert "best_accuracy" not in df.columns  # ambiguous: which split chose, which measured
    assert df.status.value_counts().to_dict() == {"done": 29, "diverged": 1}
    done = df[df.status == "done"]
    assert done["test_accuracy"].sum() == pytest.approx(
        sum(sum(v) for v in ACC.values()) - ACC[("mlp", "lp")][4]
    )
    r = done[done.trial.str.startswith("lenet5_pool-avg_seed0")].iloc[0]
    assert (r.best_step, r.best_validation_accuracy, r.best_test_accuracy) == pytest.approx(
        (15, 0.975 - 0.002 + 0.002, 0.974)
    )
    assert (r.validation_accuracy, r.validation_loss) == pytest.approx((0.973, 0.027))
    assert (r.train_n, r.validation_n, r.test_n, r.steps, r.planned_steps) == (
        3600,
        400,
        1000,
        20,
        20,
    )
    assert not done.stopped_early.any() and done.wall_seconds.isna().all()
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
    timing = Path(out["timing"]).read_text()
    assert "training images/s (mean)" in timing and "wall time is not recorded" in timing


def test_timing_reports_the_overhead_where_wall_time_is_recorded(tmp_path):
    wd = _fake_sweep(str(tmp_path), wall=True)
    out = reporting.write(wd, with_plots=False)
    df = reporting.collect(wd)
    wall, train, steps = df.wall_seconds.sum(), df.train_seconds.sum(), df.step_seconds.sum()
    assert wall == pytest.approx(train + 2.0 * 30)
    timing = Path(out["timing"]).read_text()
    assert "| lenet5 | max | 5 |" in timing and "outside the training loop" in timing
    assert (
        f"Sweep: {wall:.1f} s of trial wall time over 30 trials, of which {steps:.1f} s in "
        f"training steps ({train:.1f} s in the training loops): outside the training steps "
        f"{100 * (1 - steps / wall):.0f} % of the trials' time."
    ) in timing


def test_answer_ranks_and_selects_by_validation(tmp_path):
    acc = dict(ACC)
    acc[("lenet5", "avg")] = [v - 0.02 + 0.001 * i for i, v in enumerate(ACC[("lenet5", "max")])]
    wd = _fake_sweep(str(tmp_path), acc=acc)
    text = Path(reporting.write(wd, with_plots=False)["report"]).read_text()
    answer = text.split("## What the numbers say")[1].split("##")[0]
    # by validation max leads (98.40), though lp has the higher test accuracy (98.12)
    assert (
        "model=lenet5: ranking by mean validation accuracy: max (98.40, n = 5) > lp (98.02, "
        "n = 5) > avg (96.10, n = 5)" in answer
    )
    x = ACC[("lenet5", "max")]
    v = np.add(x, 0.003)
    vlo, vhi = sps.t.interval(0.95, 4, loc=np.mean(v), scale=sps.sem(v))
    lo, hi = sps.t.interval(0.95, 4, loc=np.mean(x), scale=sps.sem(x))
    assert (
        f"Selected by validation accuracy: **max**, 98.40 % (95 % CI [{100 * vlo:.2f}, "
        f"{100 * vhi:.2f}] over 5 seeds); its test accuracy is 98.10 % (95 % CI "
        f"[{100 * lo:.2f}, {100 * hi:.2f}])." in answer
    )
    assert (
        "Significantly different from pool=max" in answer
        and "avg (model=lenet5): Δ -1.80 pp" in answer
    )
    # the others are not significant: their power is stated
    assert 'Not significant is not "equal": at n = 5 only a true Δ of at least the MDD' in answer
    # one comparison has a seed with a zero difference, which the exact Wilcoxon test drops
    assert "cannot go below p = 0.1250 (it drops zero differences: the fewest non-zero ones in a " \
        "comparison are 4 of 5 seeds)" in answer
    row = next(line for line in text.splitlines() if line.startswith("| lenet5 | avg | 5 |"))
    assert row.endswith("| significantly worse |")
    comp = reporting.comparisons(reporting.collect(wd), KEYS, {"model.pool": "max"})
    lp = _row(comp, "lenet5", "lp")
    row = next(line for line in text.splitlines() if line.startswith("| lenet5 | lp | 5 |"))
    assert row.endswith(f"| no difference detectable at n = 5 (MDD {100 * lp['mdd']:.2f} pp) |")
    assert f"| {100 * lp['mdd']:.2f} | {int(lp['seeds_needed']):,} |" in row


def test_without_baseline_every_configuration_is_ranked_by_validation(tmp_path):
    wd = _fake_sweep(str(tmp_path), baseline=None)
    text = Path(reporting.write(wd, with_plots=False)["report"]).read_text()
    assert "## Comparison" not in text and "- Power" not in text
    assert "ranking by mean validation accuracy: lenet5 pool=max (98.40, n = 5) > lenet5 pool=lp" in text
    assert "Selected by validation accuracy: **lenet5 pool=max**, 98.40 %" in text
    assert "its test accuracy is 98.10 %" in text


def test_without_validation_nothing_is_ranked(tmp_path):
    wd = _fake_sweep(str(tmp_path), baseline=None)
    for name in os.listdir(os.path.join(wd, "trials")):
        p = os.path.join(wd, "trials", name, "summary.json")
        s = json.loads(Path(p).read_text())
        s.update(validation=None, data={**SIZES, "train": 4000, "validation": 0})
        s["best"] = {
            "step": None,
            "validation_accuracy": None,
            "test_accuracy": None,
            "selected_by": "validation",
        }
        Path(p).write_text(json.dumps(s))
        m = os.path.join(wd, "trials", name, "metrics.jsonl")
        rows = [r for r in map(json.loads, Path(m).read_text().splitlines())]
        Path(m).write_text(
            "".join(json.dumps(r) + "\n" for r in rows if r["split"] != "validation")
        )
    text = Path(reporting.write(wd, with_plots=False)["report"]).read_text()
    assert "ranking by" not in text and "Selected by" not in text
    assert "the configurations are not ranked, since ranking them on the test split" in text
    assert "No validation split (`data.validation` = 0)" in text
    assert "- Plateau check: not judged" in text


def test_equal_parameter_counts_are_spread_apart_in_the_plot():
    from cnn_jax.study.reporting.figures import _dodged

    xs = [100.0, 100.0, 100.0, 250.0]
    out = _dodged(xs, log=False)
    assert out[3] == 250.0  # alone at its x: unchanged
    assert len(set(out[:3])) == 3 and out[1] == pytest.approx(100.0)  # spread around 100
    assert out[0] < out[1] < out[2]
    logged = _dodged([1e4, 1e4, 1e6], log=True)
    assert logged[0] < 1e4 < logged[1] and logged[2] == pytest.approx(1e6)


def test_preload_imports_what_the_report_needs():
    """A sweep imports the report's libraries while its workers start (reporting.preload)."""
    code = (
        "import sys\n"
        "from cnn_jax.study.reporting import write as reporting\n"
        "heavy = ('pandas', 'scipy.stats', 'matplotlib.pyplot')\n"
        "before = [m for m in heavy if m in sys.modules]\n"
        "reporting.preload()\n"
        "print(before, [m for m in heavy if m not in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[]"), out.stdout  # all three imported by preload


def test_the_sweeps_overhead_is_taken_against_its_workers_time(tmp_path):
    """One worker: the wall time; two: twice the wall time (not a negative overhead);
    cluster jobs (concurrency unknown): the trials' own wall times."""
    from cnn_jax import rundir
    from cnn_jax.study.execution import progress

    class T:
        def __init__(self, name):
            self.name = name

        def dir(self, workdir):
            return os.path.join(workdir, "trials", self.name)

    trials = [T("a"), T("b"), T("old")]
    for t, steps, wall in ((trials[0], 30.0, 36.0), (trials[1], 40.0, 44.0), (trials[2], 99.0, 99.0)):
        d = t.dir(str(tmp_path))
        os.makedirs(d)
        rundir.write_json(rundir.path(d, rundir.SUMMARY), {"step_seconds": steps})
        trial_status.write_status(d, "done", wall_seconds=wall)
    old = rundir.path(trials[2].dir(str(tmp_path)), rundir.SUMMARY)
    os.utime(old, (1.0, 1.0))  # finished by an earlier run: not counted
    since = os.path.getmtime(rundir.path(trials[0].dir(str(tmp_path)), rundir.SUMMARY)) - 1
    one = progress.overhead(str(tmp_path), trials, since, wall=100.0)
    assert one["step_seconds"] == 70.0 and one["overhead"] == pytest.approx(0.30)
    line = progress.overhead_line({**one, "ran": 2})
    assert line.endswith("overhead (everything else: start-up, compilation, evaluation, "
                         "checkpoints, analysis, report) 30s = 30 % of the wall time")
    two = progress.overhead(str(tmp_path), trials, since, wall=50.0, workers=2)
    assert two["capacity_seconds"] == 100.0 and two["overhead"] == pytest.approx(0.30)
    assert "in 2 workers (35s each)" in progress.overhead_line({**two, "ran": 2})
    assert "30s of the workers' 1m40s (2 x the wall time) = 30 %" in progress.overhead_line({**two, "ran": 2})
    jobs = progress.overhead(str(tmp_path), trials, since, wall=500.0, workers=None)
    assert jobs["capacity_seconds"] == 80.0 and jobs["overhead"] == pytest.approx(1 - 70 / 80)
    assert "overhead inside the trials" in progress.overhead_line({**jobs, "ran": 2})


ENV = {"jax": "0.10.2", "jaxlib": "0.10.2", "backend": "cpu", "devices": 1, "device_kind": "cpu",
       "cpu": "AMD EPYC", "isa": ["avx2", "avx512f"], "cpus": 1, "xla_flags": "", "conv": "auto",
       "compiler_options": {"xla_cpu_experimental_ynn_fusion_type": ""}}


def _set_numerics(wd, env_of):
    for name in os.listdir(os.path.join(wd, "trials")):
        p = os.path.join(wd, "trials", name, "summary.json")
        if os.path.exists(p):
            s = json.loads(Path(p).read_text())
            s["numerics"] = env_of(name)
            Path(p).write_text(json.dumps(s))


def test_the_protocol_states_the_numeric_environment(tmp_path):
    wd = _fake_sweep(str(tmp_path))
    text = Path(reporting.write(wd, with_plots=False)["report"]).read_text()
    assert "- Numeric environment: not recorded by these trials." in text
    _set_numerics(wd, lambda name: ENV)
    text = Path(reporting.write(wd, with_plots=False)["report"]).read_text()
    assert ("- Numeric environment: jax 0.10.2 / jaxlib 0.10.2 on cpu (1 × cpu), AMD EPYC (avx2, "
            "avx512f), 1 CPU(s) per trial; convolutions auto; compile options "
            "xla_cpu_experimental_ynn_fusion_type=''.") in text


def test_trials_from_two_numeric_environments_are_said_to_be_mixed(tmp_path):
    wd = _fake_sweep(str(tmp_path))
    names = sorted(os.listdir(os.path.join(wd, "trials")))
    two = set(names[:3])  # three trials got both cores
    _set_numerics(wd, lambda name: {**ENV, "cpus": 2} if name in two else ENV)
    text = Path(reporting.write(wd, with_plots=False)["report"]).read_text()
    line = next(x for x in text.splitlines() if x.startswith("- Numeric environments:"))
    assert "the trials ran in 2 (" in line and "3 trials: " in line and "2 CPU(s) per trial" in line
    assert line.endswith("Comparisons mix them: a difference can come from the environment as well "
                         "as from the configuration; `cnn-jax report --strict-numerics` refuses such "
                         "a study.")
