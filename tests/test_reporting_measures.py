"""The report iterates the analyses registry (nothing trains): a sweep's measures come from
its sweep.json (``study.analyses``, or the old ``study.shift_consistency``), each with its
results.csv column, table columns, paragraph, comparison with the baseline and plot; an
analysis registered in an experiment file the sweep recorded is known to the report."""

import json
import os
import uuid
from pathlib import Path

import pandas as pd
import pytest
from test_study_report import ACC, _fake_sweep

from cnn_jax import analyses
from cnn_jax.study import store
from cnn_jax.study.reporting import rows
from cnn_jax.study.reporting import write as reporting

# A second analysis, registered for these tests: not a fraction, lower is better.
SPREAD = "reporting_test_spread"
OFFSET = {"max": 0.0, "avg": -0.5, "lp": 0.0}  # avg spreads clearly less than max


def _describe(options) -> str:
    return f"Prediction spread: a test measure at scale {options['scale']}."


if SPREAD not in analyses.names():
    analyses.register(
        SPREAD,
        measures=[
            analyses.Measure(
                SPREAD, "prediction spread", short="spread", higher_is_better=False,
                fraction=False, reference="Test 2024",
            )
        ],
        options={"scale": 1.0},
        describe=_describe,
    )(lambda ctx, scale: {SPREAD: 0.0})

SHIFT = {"max_shift": 3, "seed": 0}


def _spread(point: dict, seed: int) -> float:
    a = ACC[(point["model.name"], point["model.pool"])][seed]
    return 2.0 + OFFSET[point["model.pool"]] + (a - 0.95)


def _with_analyses(wd: str, spec: dict, imports=(), values=None) -> dict:
    """Records ``spec`` (and ``imports``) in the sweep's sweep.json and rewrites every
    trial's analysis.json in the registry format: shift consistency as the fake sweep wrote
    it, and ``values(point, seed)`` for the other measures (default: :func:`_spread`)."""
    path = os.path.join(wd, store.SWEEP_FILE)
    rec = json.loads(Path(path).read_text())
    rec["study"]["analyses"] = [{"name": n, "options": o} for n, o in spec.items()]  # in order
    rec["imports"] = list(imports)
    Path(path).write_text(json.dumps(rec))
    for t in rec["trials"]:
        p = Path(wd, "trials", t["name"], store.ANALYSIS_FILE)
        if not p.exists():
            continue
        old = json.loads(p.read_text())
        new = {}
        for name, options in spec.items():
            if name == "shift_consistency":
                got = {"shift_consistency": old["shift_consistency"]}
            else:
                got = {m.name: (values or _spread)(t["point"], t["seed"])
                       for m in analyses.get(name).measures}
            new[name] = {"options": options, "values": got}
        p.write_text(json.dumps(new))
    return rec


def test_the_measures_of_a_sweep_record():
    study = {"keys": [], "shift_consistency": 3}
    assert rows.analyses_of({"study": study}) == {"shift_consistency": SHIFT}
    assert rows.analyses_of({"study": {**study, "shift_consistency": 0}}) == {}
    spec = {SPREAD: {"scale": 2.0}, "shift_consistency": SHIFT}
    listed = [{"name": n, "options": o} for n, o in spec.items()]  # as sweep.json lists them
    got = rows.analyses_of({"study": {**study, "analyses": listed}})  # it wins
    assert list(got.items()) == list(spec.items())
    assert rows.analyses_of({"study": {**study, "analyses": spec}}) == spec
    assert rows.analyses_of({"study": {**study, "analyses": []}}) == {}
    assert [m.name for m in rows.measures_of({"study": {"analyses": listed}})] == [
        SPREAD, "shift_consistency"
    ]
    assert rows.measured({"shift_consistency": 0.5, "shift_max": 3}, {"shift_consistency": SHIFT}) == {
        "shift_consistency": 0.5
    }
    new = {"shift_consistency": {"options": SHIFT, "values": {"shift_consistency": 0.25}}}
    got = rows.measured(new, {"shift_consistency": SHIFT, SPREAD: {"scale": 1.0}})
    assert got["shift_consistency"] == 0.25 and got[SPREAD] != got[SPREAD]  # NaN: not measured


def test_the_registry_format_gives_the_same_report(tmp_path):
    old = _fake_sweep(str(tmp_path / "old"), diverge=(("mlp", "lp"), 4))
    path = os.path.join(old, store.SWEEP_FILE)
    rec = json.loads(Path(path).read_text())
    rec["study"].pop("analyses", None)  # as written before the registry: shift_consistency=3
    Path(path).write_text(json.dumps(rec))
    before = Path(reporting.write(old, with_plots=False)["report"]).read_text()
    csv_before = pd.read_csv(os.path.join(old, "results.csv"))
    _with_analyses(old, {"shift_consistency": SHIFT})
    assert Path(reporting.write(old, with_plots=False)["report"]).read_text() == before
    csv_after = pd.read_csv(os.path.join(old, "results.csv"))
    assert list(csv_after.columns) == list(csv_before.columns)
    assert csv_after["shift_consistency"].equals(csv_before["shift_consistency"])


def test_a_second_analysis_is_reported_like_shift_consistency(tmp_path):
    wd = _fake_sweep(str(tmp_path))
    _with_analyses(wd, {"shift_consistency": SHIFT, SPREAD: {"scale": 2.0}})
    out = reporting.write(wd)
    df = pd.read_csv(out["results"])
    cols = list(df.columns)
    i = cols.index("train_accuracy")
    assert cols[i : i + 4] == ["train_accuracy", "shift_consistency", SPREAD, "params"]
    r = df[df.trial.str.startswith("lenet5_pool-avg_seed1")].iloc[0]
    assert r[SPREAD] == pytest.approx(2.0 - 0.5 + ACC[("lenet5", "avg")][1] - 0.95)
    text = Path(out["report"]).read_text()
    # the results table: its pair of columns after shift consistency's, not in per cent
    assert (
        "| shift consistency % | 95 % CI (shift) | prediction spread | 95 % CI (spread) | params |"
        in text
    )
    row = next(line for line in text.splitlines() if line.startswith("| lenet5 | avg | 5/5 |"))
    assert f"| {2.0 - 0.5 + sum(ACC[('lenet5', 'avg')]) / 5 - 0.95:.4f} |" in row
    # its paragraph after shift consistency's, both after the table
    results = text.split("## Results per configuration")[1].split("\n## ")[0]
    assert results.index("Shift consistency: fraction") < results.index(
        "Prediction spread: a test measure at scale 2.0."
    )
    # each names the state it measured
    assert results.count(" Measured on each trial's final state (the one its test metrics are "
                         "reported for).") == 2
    # its own comparison: Δ not in pp; lower is better, so avg's lower spread is better
    section = text.split("### Prediction spread compared with the baseline (model.pool = max)")[1]
    section = section.split("\n## ")[0]
    assert section.startswith("\n\nThe same paired analysis for prediction spread.\n")
    assert "| n | Δ | 95 % CI of Δ (unadjusted) |" in section and "MDD |" in section
    row = next(line for line in section.splitlines() if line.startswith("| lenet5 | avg | 5 |"))
    assert row.endswith("| significantly better |")
    assert "### Shift consistency compared with the baseline (model.pool = max)" in text
    answer = text.split("## What the numbers say")[1].split("\n## ")[0]
    assert "- Prediction spread (lower is better): significantly different from pool=max" in answer
    assert "avg (model=lenet5): Δ -0.50" in answer
    # its plot against the metric
    names = {os.path.basename(p) for p in out["plots"]}
    assert {f"{SPREAD}.png", "shift_consistency.png"} <= names
    assert f"![prediction spread against accuracy](plots/{SPREAD}.png)" in text
    agg = reporting.aggregate(reporting.collect(wd), ["model.name", "model.pool"])
    assert {f"{SPREAD}_mean", f"{SPREAD}_ci_lo", f"{SPREAD}_ci_hi"} <= set(agg.columns)


def test_the_metric_of_the_study_is_not_compared_twice(tmp_path):
    wd = _fake_sweep(str(tmp_path))
    rec = _with_analyses(wd, {SPREAD: {"scale": 1.0}})
    rec["study"]["metric"] = SPREAD
    Path(wd, store.SWEEP_FILE).write_text(json.dumps(rec))
    text = Path(reporting.write(wd, with_plots=False)["report"]).read_text()
    assert "### Prediction spread compared" not in text and "### " not in text
    comparison = text.split("## Comparison with the baseline")[1].split("\n## ")[0]
    row = next(line for line in comparison.splitlines() if line.startswith("| lenet5 | avg | 5 |"))
    assert row.endswith("| significantly better |")  # lower is better
    assert "shift" not in text


@pytest.mark.parametrize("record", ["analyses", "old"])
def test_a_study_without_analyses_reports_none(tmp_path, record):
    wd = _fake_sweep(str(tmp_path))
    if record == "analyses":
        _with_analyses(wd, {})
    else:  # written before the registry, with shift consistency off
        path = os.path.join(wd, store.SWEEP_FILE)
        rec = json.loads(Path(path).read_text())
        rec["study"]["shift_consistency"] = 0
        rec["study"].pop("analyses", None)
        Path(path).write_text(json.dumps(rec))
    out = reporting.write(wd)
    df = pd.read_csv(out["results"])
    cols = list(df.columns)
    assert cols[cols.index("train_accuracy") + 1] == "params"
    assert "shift_consistency" not in cols and SPREAD not in cols
    text = Path(out["report"]).read_text()
    assert "shift" not in text.lower() and "95 % CI (spread)" not in text
    assert "### " not in text and "compared with the baseline" not in text
    assert {os.path.basename(p) for p in out["plots"]} == {
        "accuracy.png", "curves.png", "acc_vs_params.png", "acc_vs_time.png"
    }


def test_an_analysis_of_the_sweeps_experiment_file_is_known(tmp_path):
    name = f"reporting_test_{uuid.uuid4().hex[:8]}"  # new to this process
    exp = tmp_path / "exp.py"
    exp.write_text(
        "from cnn_jax import analyses\n\n"
        f"@analyses.register({name!r}, measures=[analyses.Measure({name!r}, 'file measure')],\n"
        "                    describe=lambda o: 'File measure: registered by the experiment.')\n"
        "def measure(ctx):\n"
        f"    return {{{name!r}: 0.5}}\n"
    )
    wd = _fake_sweep(str(tmp_path / "sweep"))
    assert name not in analyses.names()
    # as the execution wing records it; the values are a fraction here
    path = os.path.join(wd, store.SWEEP_FILE)
    rec = json.loads(Path(path).read_text())
    rec["study"]["analyses"] = [{"name": name, "options": {}}]
    rec["imports"] = [str(exp)]
    Path(path).write_text(json.dumps(rec))
    for t in rec["trials"]:
        p = Path(wd, "trials", t["name"], store.ANALYSIS_FILE)
        p.write_text(json.dumps({name: {"options": {}, "values": {name: 0.5 + 0.01 * t["seed"]}}}))
    out = reporting.write(wd, with_plots=False)
    assert name in pd.read_csv(out["results"]).columns
    text = Path(out["report"]).read_text()
    assert "| file measure % | 95 % CI (file measure) |" in text
    assert "File measure: registered by the experiment." in text
    assert "### File measure compared with the baseline (model.pool = max)" in text
