"""Extensions from outside the package: a pooling kind, a model and a per-trial analysis
registered in an experiment file work in `train`, in a 2-worker `sweep` and in `report`;
registrations that clash and analyses that do not exist are one-line errors (exit 2)."""

import csv
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXPERIMENT = os.path.join(HERE, "extension", "my_study.py")


def _cli(args, data_dir, cwd=None):
    env = {**os.environ, "CNN_JAX_TEST_DATA_DIR": data_dir}
    return subprocess.run([sys.executable, "-m", "cnn_jax", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=900)


def _rows(workdir):
    with open(os.path.join(workdir, "results.csv")) as f:
        return list(csv.DictReader(f))


def test_an_experiments_own_pool_model_and_analysis_run_in_a_two_worker_sweep(tmp_path, data_dir):
    wd = str(tmp_path / "sweep")
    out = _cli(["sweep", EXPERIMENT, "--workdir", wd, "--workers", "2"], data_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _rows(wd)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    assert {r["model.pool"] for r in rows} == {"max", "half_max_avg"}
    # the experiment's analysis: a column in its place, values in [0, 1]
    header = list(rows[0])
    assert header.index("shift_consistency") + 1 == header.index("mean_confidence")
    assert all(0 <= float(r["mean_confidence"]) <= 1 for r in rows)
    report = open(os.path.join(wd, "report.md")).read()
    assert "Mean top-1 agreement: fraction of the first 32 test images" in report
    assert "### Mean top-1 agreement compared with the baseline" in report
    assert "mean top-1 agreement %" in report
    # analysis.json records each analysis with the options it was measured with
    name = rows[0]["trial"]
    rec = json.load(open(os.path.join(wd, "trials", name, "analysis.json")))
    assert rec["mean_confidence"]["options"] == {"images": 32, "state": "best"}
    assert rec["shift_consistency"]["options"] == {"max_shift": 1, "seed": 0, "fill": "zero",
                                                   "diagonal": False, "state": "best"}
    summary = json.load(open(os.path.join(wd, "trials", name, "summary.json")))
    assert rec["shift_consistency"]["measured"] == {"state": "best", "step": summary["best"]["step"]}
    assert "checkpoint selected by validation accuracy" in report
    # a fresh process reports it again (it imports the experiment sweep.json records)
    os.remove(os.path.join(wd, "report.md"))
    again = _cli(["report", wd], data_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert open(os.path.join(wd, "report.md")).read() == report
    # evaluate and viz of a trial (its model and pooling kind exist only in the experiment)
    trial = os.path.join(wd, "trials", rows[-1]["trial"])
    ev = _cli(["evaluate", "--workdir", trial, "--json"], data_dir)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads(ev.stdout.strip().splitlines()[-1])["accuracy"] == pytest.approx(
        float(rows[-1]["test_accuracy"]))
    vz = _cli(["viz", "--workdir", trial, "--what", "filters", "--out", str(tmp_path / "viz")], data_dir)
    assert vz.returncode == 0, vz.stderr[-2000:]
    assert os.listdir(tmp_path / "viz")


def test_a_run_trained_from_the_experiment_file_is_evaluated_with_its_registrations(tmp_path, data_dir):
    wd = str(tmp_path / "run")
    out = _cli(["train", "--config", EXPERIMENT, "--config.model.pool=half_max_avg", "--workdir", wd,
                "--quiet"], data_dir)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.load(open(os.path.join(wd, "imports.json"))) == [EXPERIMENT]
    ev = _cli(["evaluate", "--workdir", wd, "--json"], data_dir)
    assert ev.returncode == 0, ev.stderr[-2000:]


def test_changed_analysis_options_measure_again_without_retraining(tmp_path, data_dir):
    src = open(EXPERIMENT).read()
    exp = tmp_path / "mine.py"
    exp.write_text(src.replace('seeds=2', 'seeds=1').replace('"model.pool": ["max", "half_max_avg"]',
                                                              '"model.pool": ["max", "avg"]'))
    wd = str(tmp_path / "sweep")
    assert _cli(["sweep", str(exp), "--workdir", wd, "--workers", "0"], data_dir).returncode == 0
    before = _rows(wd)
    steps = {r["trial"]: os.path.getmtime(os.path.join(wd, "trials", r["trial"], "summary.json"))
             for r in before}
    exp.write_text(exp.read_text().replace('{"images": 32}', '{"images": 16}'))
    out = _cli(["sweep", str(exp), "--workdir", wd, "--workers", "0"], data_dir)
    assert out.returncode == 0, out.stderr[-2000:]
    after = _rows(wd)
    assert [r["trial"] for r in after] == [r["trial"] for r in before]  # same trials
    for r in after:  # not retrained: summary untouched, same accuracy; measured again
        d = os.path.join(wd, "trials", r["trial"])
        assert os.path.getmtime(os.path.join(d, "summary.json")) == steps[r["trial"]]
        assert json.load(open(os.path.join(d, "analysis.json")))["mean_confidence"]["options"] == {
            "images": 16, "state": "best"}
    assert [r["test_accuracy"] for r in after] == [r["test_accuracy"] for r in before]
    assert "first 16 test images" in open(os.path.join(wd, "report.md")).read()
    # the state measured is an option of every analysis: changed, it is measured again
    exp.write_text(exp.read_text().replace('{"images": 16}', '{"images": 16, "state": "final"}'))
    assert _cli(["sweep", str(exp), "--workdir", wd, "--workers", "0"], data_dir).returncode == 0
    for r in after:
        d = os.path.join(wd, "trials", r["trial"])
        assert os.path.getmtime(os.path.join(d, "summary.json")) == steps[r["trial"]]
        rec = json.load(open(os.path.join(d, "analysis.json")))["mean_confidence"]
        assert rec["measured"]["state"] == "final" and rec["options"]["state"] == "final"
    assert "Measured on each trial's final state" in open(os.path.join(wd, "report.md")).read()


def test_the_best_state_is_read_from_its_checkpoint(tmp_path, data_dir):
    """An analysis measures the checkpoint selected by validation (default), read back from
    the trial's checkpoints when it is not the final state; the final state on request."""
    import dataclasses

    import jax
    import numpy as np

    from cnn_jax import config as config_lib
    from cnn_jax import train
    from cnn_jax.study.execution import measure
    from cnn_jax.train.checkpoint import Checkpoints

    c = config_lib.base_config()
    c.data.data_dir, c.data.name, c.model.name, c.data.batch_size = data_dir, "digits", "mlp", 32
    c.train.steps, c.train.checkpoint_every_steps, c.train.keep_latest = 20, 10, 3
    out = train.fit(c, str(tmp_path / "run"), progress=False)
    # as if validation had selected step 10 (its checkpoint exists)
    picked = dataclasses.replace(out, summary={**out.summary, "best": {"step": 10}})
    state, measured = measure.measured_state(picked, str(tmp_path / "run"), "best")
    ckpt = Checkpoints(str(tmp_path / "run" / "checkpoints"), read_only=True)
    want, _, _ = ckpt.restore(out.setup.state, 10)
    ckpt.close()
    leaves = lambda s: jax.tree.leaves(jax.device_get(s.params))  # noqa: E731
    assert measured == {"state": "best", "step": 10}
    assert all(np.array_equal(a, b) for a, b in zip(leaves(state), leaves(want)))
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(state), leaves(out.state)))
    state, measured = measure.measured_state(picked, str(tmp_path / "run"), "final")
    assert measured == {"state": "final", "step": 20} and state is out.state
    gone = dataclasses.replace(out, summary={**out.summary, "best": {"step": 5}})  # not kept
    state, measured = measure.measured_state(gone, str(tmp_path / "run"), "best")
    assert state is out.state and measured["why"] == "the best checkpoint (step 5) was not kept"
    none = dataclasses.replace(out, summary={**out.summary, "best": {"step": None}})
    assert measure.measured_state(none, None, "best")[1] == {
        "state": "final", "step": 20, "why": "no validation split to select by"}


BAD = {
    "a pool called max": (
        'from cnn_jax import pooling\n@pooling.register("max")\ndef mine(x, w, s, p, **k):\n    return x\n',
        "pool 'max' is already registered",
    ),
    "an analysis option that does not exist": (
        "", "analysis 'shift_consistency' has no option 'shift'",
    ),
    "an unknown analysis": ("", "unknown analysis 'calibrations'"),
    "an analysed state that does not exist": (
        "", "analysis 'shift_consistency': option 'state' is 'last'; choose one of: best, final",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_extensions_are_one_line_errors_and_write_nothing(tmp_path, data_dir, case):
    head, message = BAD[case]
    sweep = {
        "an analysis option that does not exist": 'analyses={"shift_consistency": {"shift": 2}}',
        "an unknown analysis": 'analyses=["shift_consistency", "calibrations"]',
        "an analysed state that does not exist": 'analyses={"shift_consistency": {"state": "last"}}',
    }.get(case, "seeds=1")
    exp = tmp_path / "bad.py"
    exp.write_text(
        head
        + "from cnn_jax import study\nfrom cnn_jax.config import base_config\n"
        + "def get_config():\n    return base_config()\n"
        + f'def get_sweep():\n    return study.Study(study.grid({{"model.pool": ["max", "avg"]}}), {sweep})\n'
    )
    wd = tmp_path / "sweep"
    out = _cli(["sweep", str(exp), "--workdir", str(wd)], data_dir)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], out.stderr
    assert "choose" in lines[0] or "registered:" in lines[0]  # the valid choices are named
    assert not wd.exists()  # nothing written


def test_an_analysis_that_raises_fails_its_trial_with_the_error_and_spares_the_others(tmp_path, data_dir):
    """Nothing after training is lost in silence: the trial whose analysis raised is
    ``failed`` with the error and traceback in status.json; the other trials finish."""
    from cnn_jax import study

    exp = tmp_path / "raising.py"
    exp.write_text(f'''
from cnn_jax import analyses, study
from cnn_jax.config import base_config


@analyses.register("fragile", measures=[analyses.Measure("fragile", "fragile")])
def fragile(ctx):
    if ctx.setup.cfg.seed == 1:
        raise RuntimeError("the analysis broke on seed 1")
    return {{"fragile": 0.5}}


def get_config():
    c = base_config()
    c.model.name, c.model.hidden = "mlp", (8,)
    c.data.name, c.data.data_dir, c.data.batch_size = "digits", {data_dir!r}, 32
    c.train.steps, c.train.log_every_steps, c.train.eval_every_epochs = 4, 2, 1
    return c


def get_sweep():
    return study.Study(study.grid({{"model.activation": ["relu"]}}), seeds=3, analyses=["fragile"])
''')
    wd = str(tmp_path / "sweep")
    out = study.run(str(exp), wd, workers=0, log=lambda s: None, plots=False)
    assert (out["done"], out["failed"]) == (2, 1)
    st = {}
    for name in os.listdir(os.path.join(wd, "trials")):
        st[name] = json.load(open(os.path.join(wd, "trials", name, "status.json")))
    failed = [s for s in st.values() if s["status"] == "failed"]
    assert len(failed) == 1 and "the analysis broke on seed 1" in failed[0]["error"]
    assert failed[0]["error"].startswith("after training: RuntimeError")
    assert "fragile" in failed[0]["traceback"]  # where it broke
    assert sorted(s["status"] for s in st.values()) == ["done", "done", "failed"]
