"""The budget check (``Study(budget_check=BudgetCheck(...))``): its mistakes are one-line
errors that leave a workdir untouched; its trials are planned after the study trials and kept
out of the study's tables; its report against numpy/scipy on hand-made results; a partly
finished check; and the plateau check read on each seed's own curve."""

import hashlib
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

from cnn_jax import cli, rundir, study
from cnn_jax import config as config_lib
from cnn_jax.config import base_config
from cnn_jax.errors import UserError
from cnn_jax.study import planning, store
from cnn_jax.study.execution import status as trial_status
from cnn_jax.study.reporting import aggregate as agg_lib
from cnn_jax.study.reporting import budget
from cnn_jax.study.reporting import write as reporting

GRID = {"model.name": ["lenet5", "mlp"], "model.pool": ["max", "avg", "lp"]}
HANG_S = 1800  # subprocess guard against a hang, never a statement about speed


def _study(**check):
    return study.Study(study.grid(GRID), seeds=4, baseline={"model.pool": "max"},
                       budget_check=study.BudgetCheck(**check))


# ----------------------------------------------------------------------------- mistakes


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: _study(seeds=1), "BudgetCheck.seeds must be at least 2: "),
        (lambda: _study(seeds=5), ("BudgetCheck.seeds = 5 is more than the study's 4 seeds "
                                   "[0, 1, 2, 3]; choose 2 to 4")),
        (lambda: _study(factor=1.0), "BudgetCheck.factor must be a number above 1"),
        (lambda: _study(factor=0.5), "got 0.5"),
        (lambda: _study(values=["max", "stochastic"]),
         ("BudgetCheck.values ['stochastic'] are not values of 'model.pool' in the sweep; "
          "choose among ['max', 'avg', 'lp']")),
        (lambda: _study(values=["avg", "lp"]),
         ("BudgetCheck.values ['avg', 'lp'] must include the baseline model.pool='max'; "
          "choose among ['max', 'avg', 'lp']")),
        (lambda: study.Study(study.grid(GRID), seeds=4, budget_check=study.BudgetCheck()),
         "Study.budget_check needs a baseline (e.g. baseline={'model.pool': 'max'})"),
        (lambda: study.Study(study.grid({**GRID, "train.epochs": [2, 4]}), seeds=4,
                             baseline={"model.pool": "max"}, budget_check=study.BudgetCheck()),
         "Study.budget_check multiplies 'train.epochs', which the study sweeps or tunes"),
        (lambda: study.Study(study.grid(GRID), baseline={"model.pool": "max"}, budget_check=2),
         "Study.budget_check must be a study.BudgetCheck(...) or None, got 2"),
    ],
)
def test_a_bad_budget_check_is_a_one_line_error(make, message):
    with pytest.raises(UserError) as e:
        make()
    assert message in str(e.value) and "\n" not in str(e.value)


def _base(steps=12, epochs=3):
    c = base_config()
    c.model.name, c.model.hidden, c.data.name = "mlp", (16,), "digits"
    c.train.steps, c.train.epochs = steps, epochs
    return c


def test_a_budget_that_is_not_whole_fails_at_planning():
    s = study.Study(study.grid({"model.activation": ["relu", "tanh"]}), seeds=2,
                    baseline={"model.activation": "relu"},
                    budget_check=study.BudgetCheck(factor=1.5))
    with pytest.raises(UserError, match=r"BudgetCheck.factor 1.5 x train.steps 5 = 7.5 is not a "
                                        r"whole number of steps; choose a factor"):
        planning.plan_budget(s, _base(steps=5))
    assert {t.config.train.steps for t in planning.plan_budget(s, _base(steps=6))} == {9}


# ----------------------------------------------------------------------------- planning


def test_budget_trials_follow_the_study_trials_at_the_multiplied_budget():
    s = study.Study(study.grid({"model.activation": ["relu", "tanh", "gelu"]}), seeds=3,
                    baseline={"model.activation": "relu"},
                    budget_check=study.BudgetCheck(factor=3, seeds=2, values=["gelu", "relu"]))
    trials = planning.plan_trials(s, _base()) + planning.plan_budget(s, _base())
    main, extra = trials[:9], trials[9:]
    assert {t.phase for t in main} == {""} and {t.phase for t in extra} == {"budget"}
    # the values in sweep order, the first two study seeds, 3 x train.steps
    assert [(t.point["model.activation"], t.seed) for t in extra] == [
        ("relu", 0), ("relu", 1), ("gelu", 0), ("gelu", 1)]
    assert {t.config.train.steps for t in extra} == {36} and "steps-36" in extra[0].name
    assert extra[0].record()["phase"] == "budget" and "phase" not in main[0].record()
    # every other setting as the study trial of the same seed (its pair)
    twin = next(t for t in main if t.point == {"model.activation": "relu"} and t.seed == 1)
    a, b = (json.loads(config_lib.to_json(t.config)) for t in (twin, extra[1]))
    assert (a["train"].pop("steps"), b["train"].pop("steps")) == (12, 36) and a == b
    # without train.steps: train.epochs x factor; with per-arm tuning each arm's chosen values
    by_epochs = planning.plan_budget(s, _base(steps=0, epochs=3))
    assert {t.config.train.epochs for t in by_epochs} == {9}
    tuned = study.Study(s.sweep, seeds=3, baseline=s.baseline, budget_check=s.budget_check,
                        tune={"optim.learning_rate": [1e-3, 1e-2]})
    chosen = [{"optim.learning_rate": 1e-2}, {"optim.learning_rate": 1e-3},
              {"optim.learning_rate": 1e-3}]
    lrs = {(t.point["model.activation"], t.config.optim.learning_rate)
           for t in planning.plan_budget(tuned, _base(), chosen)}
    assert lrs == {("relu", 1e-2), ("gelu", 1e-3)}
    assert s.options()["budget_check"] == {"factor": 3.0, "seeds": [0, 1],
                                           "values": ["relu", "gelu"]}


# ----------------------------------------------------------------------------- the report

# test accuracy of the study trials per (model, pool), seeds 0..3
ACC = {
    ("lenet5", "max"): [0.980, 0.978, 0.984, 0.979],
    ("lenet5", "avg"): [0.975, 0.977, 0.979, 0.970],
    ("lenet5", "lp"): [0.982, 0.976, 0.985, 0.981],
    ("mlp", "max"): [0.950, 0.948, 0.955, 0.951],
    ("mlp", "avg"): [0.951, 0.947, 0.955, 0.953],
    ("mlp", "lp"): [0.940, 0.941, 0.946, 0.938],
}
# at twice the budget, seeds 0..2: mlp lp catches up (its significant deficit turns into a
# lead, so its verdict is flagged and mlp's ranking by validation changes); the rest move
# a little
LONGER = {("mlp", "lp"): [0.955, 0.957, 0.958]}
NUDGE = (0.001, 0.002, 0.0)
VAL_SHIFT = 0.001  # validation accuracy = test accuracy + this


def _trial(workdir, rec, test, curve=None):
    """A finished trial's files: summary.json, metrics.jsonl (validation ``curve``, by
    default two evaluations ending at the final validation accuracy) and status.json."""
    d = os.path.join(workdir, "trials", rec["name"])
    os.makedirs(d)
    val = test + VAL_SHIFT
    summary = {"test": {"accuracy": test, "loss": 1 - test, "count": 1000},
               "validation": {"accuracy": val, "loss": 1 - val},
               "data": {"train": 900, "validation": 100, "test": 1000}, "steps": 20,
               "planned_steps": 20, "epochs": 1.0, "stopped_early": False, "params": 10}
    Path(d, "summary.json").write_text(json.dumps(summary))
    curve = curve or [val - 0.01, val]
    Path(d, "metrics.jsonl").write_text("".join(
        json.dumps({"step": 5 * (i + 1), "split": "validation", "accuracy": a, "loss": 1 - a})
        + "\n" for i, a in enumerate(curve)))
    trial_status.write_status(d, "done")


def _longer(key, seed):
    return LONGER[key][seed] if key in LONGER else ACC[key][seed] + NUDGE[seed]


def _fake_sweep(workdir, skip=()):
    """A sweep directory with a budget check (2 x, seeds 0..2, every pool) as `cnn-jax sweep`
    leaves it; the budget trials in ``skip`` (``(model, pool, seed)``) never ran."""
    s = _study(seeds=3)
    trials = []
    for (point, seed), phase in [(t, "") for t in s.trials()] + [
            (t, "budget") for t in s.budget_arms()]:
        key = (point["model.name"], point["model.pool"])
        rec = {"name": f"{key[0]}_{key[1]}{'_x2' if phase else ''}_seed{seed}", "hash": "0",
               "group": "g", "point": {**point, **({"train.epochs": 2} if phase else {})},
               "seed": seed, **({"phase": phase} if phase else {})}
        trials.append(rec)
        if not (phase and (*key, seed) in skip):
            _trial(workdir, rec, _longer(key, seed) if phase else ACC[key][seed])
    rundir.write_json(os.path.join(workdir, store.SWEEP_FILE), {
        "version": 1, "experiment": "experiments/fake.py", "overrides": [],
        "study": s.options(), "trials": trials})
    return workdir


def _reference(model, pool):
    """The check's numbers for one arm, from the hand-made accuracies with numpy/scipy."""
    short, long_ = np.array(ACC[(model, pool)][:3]), np.array([_longer((model, pool), s)
                                                               for s in range(3)])
    change = long_ - short
    lo, hi = sps.t.interval(0.95, 2, loc=change.mean(), scale=sps.sem(change))
    return short.mean(), long_.mean(), change.mean(), lo, hi


def _row(frame, model, pool):
    return frame[(frame["model.name"] == model) & (frame["model.pool"] == pool)].iloc[0]


def test_the_budget_check_against_numpy_and_scipy(tmp_path):
    wd = _fake_sweep(str(tmp_path))
    out = reporting.write(wd, with_plots=False)
    frame = pd.read_csv(out["budget"])
    assert len(frame) == 6 and set(frame["n"]) == {3} and set(frame["factor"]) == {2.0}
    for model, pool in list(ACC):
        r = _row(frame, model, pool)
        m1, mf, change, lo, hi = _reference(model, pool)
        assert (r["mean_1x"], r["mean_fx"], r["change"]) == pytest.approx((m1, mf, change))
        assert (r["change_ci_lo"], r["change_ci_hi"]) == pytest.approx((lo, hi))
        assert (r["validation_1x"], r["validation_fx"]) == pytest.approx(
            (m1 + VAL_SHIFT, mf + VAL_SHIFT))
        if pool == "max":
            assert r["verdict_study"] == "baseline"
            continue
        # the study's comparison: all 4 seeds, paired t, Holm over the 2 pools of a model
        d = np.subtract(ACC[(model, pool)], ACC[(model, "max")])
        slo, shi = sps.t.interval(0.95, 3, loc=d.mean(), scale=sps.sem(d))
        ps = {p: sps.ttest_rel(ACC[(model, p)], ACC[(model, "max")]).pvalue for p in ("avg", "lp")}
        p_holm = min(1, 2 * min(ps.values())) if ps[pool] == min(ps.values()) else max(
            min(1, 2 * min(ps.values())), ps[pool])
        assert (r["diff_study"], r["diff_study_ci_lo"], r["diff_study_ci_hi"]) == pytest.approx(
            (d.mean(), slo, shi))
        # at twice the budget, over the check's seeds
        d2 = np.array([_longer((model, pool), s) - _longer((model, "max"), s) for s in range(3)])
        assert r["diff_fx_k"] == pytest.approx(d2.mean())
        assert r["diff_1x_k"] == pytest.approx(d[:3].mean())
        flagged = not slo <= d2.mean() <= shi or (p_holm < 0.05 and d2.mean() * d.mean() < 0)
        assert bool(r["verdict_flagged"]) == flagged, (model, pool)
    # mlp lp: significantly worse in the study, ahead at twice the budget
    assert bool(_row(frame, "mlp", "lp")["verdict_flagged"])
    assert _row(frame, "mlp", "lp")["verdict_study"] == "significantly worse"
    assert not _row(frame, "lenet5", "avg")["verdict_flagged"]
    # the ranking by validation on seeds 0..2: mlp's changes, lenet5's does not
    assert set(frame[frame["model.name"] == "mlp"]["ranking_changed"]) == {True}
    assert set(frame[frame["model.name"] == "lenet5"]["ranking_changed"]) == {False}
    assert _row(frame, "mlp", "max")["ranking_fx"] == "lp > max > avg"
    text = Path(out["report"]).read_text()
    sec = text.split("## Budget check: twice the budget")[1].split("\n## ")[0]
    assert text.index("## Comparison with the baseline") < text.index("## Budget check")
    assert text.index("## Budget check") < text.index("## What the numbers say")
    assert ("Rule: a verdict is flagged when, at twice the budget, the mean difference from "
            "the baseline over the 3 seeds falls outside the study's (unadjusted) 95 % CI of "
            "that difference, or has the opposite sign of a significant difference.") in sec
    # lenet5's pools all change by the same amount: the first listed is named
    m1, mf, change, lo, hi = _reference("lenet5", "max")
    assert [_reference("lenet5", p)[2] for p in ("avg", "lp")] == pytest.approx([change] * 2)
    assert ("- model=lenet5: twice the budget changes no verdict and not the ranking by "
            f"validation; the largest change of a mean test accuracy is {100 * change:+.2f} pp "
            f"[{100 * lo:.2f}, {100 * hi:.2f}] (max).") in sec
    assert "- model=mlp: twice the budget changes the verdict of lp against max (study: " \
           "significantly worse" in sec
    assert "changes the ranking by validation (max > avg > lp at 1×, lp > max > avg at " \
           "twice the budget)" in sec
    widest = max((_reference(*k)[4] - _reference(*k)[3]) / 2 for k in ACC)
    assert (f"- What it cannot detect: with 3 seeds, a change smaller than the half-width of "
            f"its 95 % CI (here up to {100 * widest:.2f} pp) cannot be told from seed noise; "
            "only the re-run values (max, avg, lp) are checked, on the study's seeds 0, 1, 2.") \
        in sec
    # the budget trials are in no other table, test or count of the report
    results = pd.read_csv(out["results"])
    assert len(results) == 24 and not results["trial"].str.contains("_x2_").any()
    assert "24 trials (6 configurations × 4 seeds" in text
    assert "_x2_" not in text.split("## Budget check")[0]


def test_a_partly_finished_budget_check_is_reported(tmp_path):
    wd = _fake_sweep(str(tmp_path / "part"), skip={("mlp", "lp", 2), ("mlp", "lp", 1)})
    out = reporting.write(wd, with_plots=False)
    sec = Path(out["report"]).read_text().split("## Budget check")[1].split("\n## ")[0]
    assert ("Not finished: 2 trial(s) the check needs (mlp_lp_x2_seed1 (missing), "
            "mlp_lp_x2_seed2 (missing)); the rows use the seeds finished at both budgets.") in sec
    assert "fewer than two seeds finished at both budgets for lp" in sec
    r = _row(pd.read_csv(out["budget"]), "mlp", "lp")
    assert r["n"] == 1 and math.isnan(r["change_ci_lo"])
    assert r["change"] == pytest.approx(LONGER[("mlp", "lp")][0] - ACC[("mlp", "lp")][0])
    # nothing of the check finished, or none planned yet (tuning pending): still a report
    wd = _fake_sweep(str(tmp_path / "none"), skip={(*k, s) for k in ACC for s in range(3)})
    sec = Path(reporting.write(wd, with_plots=False)["report"]).read_text()
    assert "Not finished: 18 trial(s)" in sec and "mlp_lp_x2_seed0 (missing)" in sec
    rec = json.loads(Path(wd, store.SWEEP_FILE).read_text())
    rec["trials"] = [t for t in rec["trials"] if t.get("phase") != "budget"]
    rundir.write_json(os.path.join(wd, store.SWEEP_FILE), rec)
    text = Path(reporting.write(wd, with_plots=False)["report"]).read_text()
    assert "No budget trial is in this sweep's record yet" in text


def test_times_and_rule_words():
    assert [budget.times(f) for f in (2.0, 3, 2.5, 6)] == ["twice", "three times", "2.5×", "6×"]
    assert budget.rule(2.0, 4).startswith("a verdict is flagged when, at twice the budget, the "
                                          "mean difference from the baseline over the 4 seeds")


# ----------------------------------------------------------------------------- plateau


def test_the_plateau_is_read_on_each_seeds_own_curve(tmp_path):
    """The mean curve plateaus where a seed does not; with early stopping the seeds' curves
    end at different steps, and each is read to its own end."""
    # two seeds of one arm: the mean curve (0.90, 0.93, 0.9425, 0.9375) has plateaued (last
    # two 0.25 pp below its best), seed 0's own curve (best 0.95, last two 0.925) has not
    a, b = [0.90, 0.95, 0.93, 0.92], [0.90, 0.91, 0.955, 0.955]
    mean = agg_lib.plateau_of([5, 10, 15, 20], np.mean([a, b], axis=0))
    assert mean.plateaued and mean.gap == pytest.approx(-0.0025)
    arm = agg_lib.plateau_of_seeds([agg_lib.plateau_of([5, 10, 15, 20], c) for c in (a, b)])
    assert (arm.plateaued, arm.seeds, arm.not_plateaued) == (False, 2, 1)
    assert arm.gap == pytest.approx(((0.925 - 0.95) + 0.0) / 2)
    # early stopping: seed 1 stopped after two evaluations; on the steps both logged the
    # mean curve is flat, but seed 0 kept rising to the end of its own curve
    wd = tmp_path / "wd"
    curves = {"s0": [0.95, 0.95, 0.96, 0.99], "s1": [0.90, 0.90]}
    for name, curve in curves.items():
        _trial(str(wd), {"name": name}, curve[-1] - VAL_SHIFT, curve)
    sub = pd.DataFrame({"trial": ["s0", "s1"], "status": ["done", "done"]})
    pl = agg_lib.plateau(str(wd), sub)
    assert (pl.plateaued, pl.seeds, pl.not_plateaued, pl.evaluations) == (False, 2, 1, 2)
    assert pl.gap == pytest.approx(((0.975 - 0.99) + 0.0) / 2)
    on_common_steps = agg_lib.plateau_of([5, 10], [0.925, 0.925])  # the old reading
    assert on_common_steps.plateaued
    from cnn_jax.study.reporting.tables import aggregate_table

    row = {"n": 2, "trials": 2, "diverged": 0, "failed": 0, "params": 10.0, "train_loss": 0.1,
           "best_val_mean": 0.9, "best_test_mean": 0.9, "plateaued": pl.plateaued,
           "plateau_gap": pl.gap, "plateau_seeds": pl.seeds, "plateau_not": pl.not_plateaued,
           **{f"{p}{s}": 0.9 for p in ("val_", "test_", "") for s in
              ("mean", "std", "ci_lo", "ci_hi")}, "model.pool": "max"}
    assert aggregate_table(pd.DataFrame([row]), ["model.pool"], "test_accuracy").endswith(
        "| no (-0.75; 1 of 2 seeds) |")


# ----------------------------------------------------------------------------- end to end

EXPERIMENT = """
from cnn_jax import study
from cnn_jax.config import base_config


def get_config():
    c = base_config()
    c.model.name = "mlp"
    c.model.hidden = (16,)
    c.data.name = "digits"
    c.data.data_dir = {data_dir!r}
    c.data.batch_size = 32
    c.train.steps = 4
    c.train.log_every_steps = 2
    c.train.eval_every_epochs = 1
    c.optim.learning_rate = 0.01
    return c


def get_sweep():
    return study.Study(study.grid({{"model.activation": ["relu", "tanh"]}}), seeds=2,
                       baseline={{"model.activation": "relu"}}, shift_consistency=0,
                       budget_check={check})
"""


def _experiment(tmp_path, data_dir, check, name):
    path = tmp_path / name
    path.write_text(EXPERIMENT.format(data_dir=data_dir, check=check))
    return str(path)


def _snapshot(directory):
    """Every file below ``directory``: its bytes' digest and its mtime."""
    out = {}
    for root, _, files in os.walk(directory):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, directory)] = (
                hashlib.sha256(Path(p).read_bytes()).hexdigest(), os.stat(p).st_mtime_ns)
    return out


def test_a_sweep_with_a_budget_check_and_the_command_line(capsys, tmp_path, data_dir):
    wd = str(tmp_path / "sweep")
    good = _experiment(tmp_path, data_dir, "study.BudgetCheck()", "good.py")
    assert cli.main(["sweep", good, "--workdir", wd, "--workers", "0"]) == 0
    capsys.readouterr()
    rec = store.load_sweep(wd)
    phases = [t.get("phase", "") for t in rec["trials"]]
    assert phases == [""] * 4 + ["budget"] * 4  # the main answer first
    for t in rec["trials"][4:]:
        cfg = json.loads(Path(wd, "trials", t["name"], "config.json").read_text())
        assert cfg["train"]["steps"] == 8 and rundir.read_summary(
            os.path.join(wd, "trials", t["name"]))["steps"] == 8
    assert len(pd.read_csv(os.path.join(wd, "results.csv"))) == 4
    assert len(pd.read_csv(os.path.join(wd, rundir.BUDGET_CSV))) == 2
    text = Path(wd, "report.md").read_text()
    assert "## Budget check: twice the budget" in text and "Not finished" not in text
    assert cli.main(["status", wd]) == 0
    assert "8 trials" in capsys.readouterr().out  # status counts the budget trials
    # a bad budget check: exit 2, one line on stderr, the workdir untouched to the byte
    before = _snapshot(wd)
    bad = {
        "seeds.py": ("study.BudgetCheck(seeds=1)", "BudgetCheck.seeds must be at least 2: "),
        "many.py": ("study.BudgetCheck(seeds=3)", "is more than the study's 2 seeds"),
        "factor.py": ("study.BudgetCheck(factor=1.0)", "must be a number above 1"),
        "values.py": ("study.BudgetCheck(values=['gelu'])", "are not values of"),
        "whole.py": ("study.BudgetCheck(factor=1.3)", "is not a whole number of steps"),
    }
    for name, (check, message) in bad.items():
        exp = _experiment(tmp_path, data_dir, check, name)
        assert cli.main(["sweep", exp, "--workdir", wd, "--workers", "0"]) == 2, name
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    # the real command line: no traceback either
    exp = str(tmp_path / "whole.py")
    p = subprocess.run([sys.executable, "-m", "cnn_jax", "sweep", exp, "--workdir", wd],
                       capture_output=True, text=True, timeout=HANG_S, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "is not a whole number" in p.stderr
    assert _snapshot(wd) == before
