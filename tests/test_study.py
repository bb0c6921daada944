"""Sweeps end to end on tiny configs: results, skip-done, resume after an interruption or a
kill (identical report), a diverging trial, vmapped seeds equal to sequential runs, the
command line."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.hold import hold

from cnn_jax import cli, train
from cnn_jax import config as config_lib
from cnn_jax.study import store
from cnn_jax.study.reporting import write as reporting
from cnn_jax.study.execution import runner
from cnn_jax import rundir
from cnn_jax.train import writer as writer_lib

EXPERIMENT = """
from cnn_jax import study
from cnn_jax.config import base_config


def get_config():
    c = base_config()
    c.model.name = "mlp"
    c.model.hidden = (32,)
    c.data.name = "digits"
    c.data.data_dir = {data_dir!r}
    c.data.batch_size = 32
    c.train.steps = 12
    c.train.log_every_steps = 3
    c.train.checkpoint_every_steps = 4
    c.optim.learning_rate = 0.01
    return c


def get_sweep():
    return study.Study({sweep}, seeds={seeds}, baseline={baseline})
"""

ACTIVATIONS = 'study.grid({"model.activation": ["relu", "tanh"]})'


def _experiment(
    tmp_path,
    data_dir,
    sweep=ACTIVATIONS,
    seeds=2,
    baseline='{"model.activation": "relu"}',
    name="exp.py",
):
    path = tmp_path / name
    path.write_text(
        EXPERIMENT.format(data_dir=data_dir, sweep=sweep, seeds=seeds, baseline=baseline)
    )
    return str(path)


def _statuses(workdir):
    rec = store.load_sweep(workdir)
    return {
        t["name"]: store.read_status(os.path.join(workdir, "trials", t["name"]))["status"]
        for t in rec["trials"]
    }


def _mtimes(workdir):
    return {
        n: os.stat(os.path.join(workdir, "trials", n, "summary.json")).st_mtime_ns
        for n, s in _statuses(workdir).items()
        if s == "done"
    }


def _report_identity(workdir):
    return (
        Path(os.path.join(workdir, "report.md")).read_text(),
        pd.read_csv(os.path.join(workdir, "results.csv")).drop(
            columns=list(reporting.TIMING_COLUMNS)
        ),
    )


def test_sweep_runs_every_trial_then_skips_them(tmp_path, data_dir):
    exp = _experiment(tmp_path, data_dir)
    wd = str(tmp_path / "sweep")
    out = runner.run(exp, wd, workers=0, log=lambda s: None)
    assert (out["trials"], out["ran"], out["done"], out["failed"]) == (4, 4, 4, 0)
    assert set(_statuses(wd).values()) == {"done"}
    # every trial is a normal run directory
    for name in _statuses(wd):
        d = os.path.join(wd, "trials", name)
        assert {
            "config.json",
            "metrics.jsonl",
            "summary.json",
            "status.json",
            "analysis.json",
            "checkpoints",
        } <= set(os.listdir(d))
    df = pd.read_csv(os.path.join(wd, "results.csv"))
    assert len(df) == 4 and list(df["model.activation"]) == ["relu", "relu", "tanh", "tanh"]
    assert list(df.seed) == [0, 1, 0, 1]
    for col in (
        "validation_accuracy",
        "test_accuracy",
        "best_validation_accuracy",
        "best_test_accuracy",
        "train_n",
        "validation_n",
        "test_n",
        "shift_consistency",
        "params",
        "train_seconds",
        "images_per_second",
        "test_loss",
    ):
        assert df[col].notna().all(), col
    # the csv holds what the run directories hold
    s = json.loads(Path(os.path.join(wd, "trials", df.trial[0], "summary.json")).read_text())
    assert (
        df.test_accuracy[0] == pytest.approx(s["test"]["accuracy"]) and df.params[0] == s["params"]
    )
    assert df.validation_accuracy[0] == pytest.approx(s["validation"]["accuracy"])
    assert df.best_test_accuracy[0] == pytest.approx(s["best"]["test_accuracy"])
    sizes = s["data"]
    assert (df.train_n[0], df.validation_n[0], df.test_n[0]) == (
        sizes["train"],
        sizes["validation"],
        sizes["test"],
    )
    assert df.test_accuracy.between(0.4, 1).all()  # 12 steps learn something (chance 0.1)
    report = Path(os.path.join(wd, "report.md")).read_text()
    assert "## Results per configuration" in report and "## Comparison with the baseline" in report
    assert "## Protocol" in report and "ranking by mean validation accuracy" in report
    assert "shift consistency" in report and "plots/accuracy.png" in report
    for png in ("accuracy", "curves", "acc_vs_params", "acc_vs_time", "shift_consistency"):
        path = os.path.join(wd, "plots", f"{png}.png")
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 5000
    before, mtimes = _report_identity(wd), _mtimes(wd)
    again = runner.run(exp, wd, workers=0, log=lambda s: None)  # with plots: same report.md
    assert (again["ran"], again["skipped"]) == (0, 4)
    assert _mtimes(wd) == mtimes  # nothing retrained
    assert _report_identity(wd)[0] == before[0]
    pd.testing.assert_frame_equal(_report_identity(wd)[1], before[1])


class _Kill(BaseException):
    """Stands for a kill: not an Exception, so nothing catches it on the way out."""


def test_interrupted_sweep_resumes_only_missing_trials_with_an_identical_report(
    tmp_path, data_dir, monkeypatch
):
    exp = _experiment(tmp_path, data_dir)
    ref = str(tmp_path / "ref")
    runner.run(exp, ref, workers=0, log=lambda s: None, plots=False)

    wd = str(tmp_path / "sweep")
    calls = {"n": 0}
    real_write = writer_lib.MetricWriter.write

    def write(self, step, split, metrics):  # the third trial dies after its step-8 checkpoint
        real_write(self, step, split, metrics)
        if split == "train" and step == 9:
            calls["n"] += 1
            if calls["n"] == 3:
                raise _Kill

    monkeypatch.setattr(writer_lib.MetricWriter, "write", write)
    with pytest.raises(_Kill):
        runner.run(exp, wd, workers=0, log=lambda s: None, plots=False)
    monkeypatch.setattr(writer_lib.MetricWriter, "write", real_write)
    st = _statuses(wd)
    # the killed trial's lease went with it: it reads interrupted, not running
    assert sorted(st.values()) == ["done", "done", "interrupted", "queued"]
    killed = next(n for n, s in st.items() if s == "interrupted")
    ckpt = os.path.join(wd, "trials", killed, "checkpoints")
    assert "8" in os.listdir(ckpt)  # it will resume from step 8, not start over
    mtimes = _mtimes(wd)
    out = runner.run(exp, wd, workers=0, log=lambda s: None, plots=False)
    assert (out["ran"], out["skipped"], out["done"]) == (2, 2, 4)
    assert _mtimes(wd).items() >= mtimes.items()  # the done trials were not touched
    assert (
        json.loads(Path(os.path.join(wd, "trials", killed, "summary.json")).read_text())[
            "resumed_from"
        ]
        == 8
    )
    report, df = _report_identity(wd)
    ref_report, ref_df = _report_identity(ref)
    assert report == ref_report
    pd.testing.assert_frame_equal(df, ref_df)


def test_killed_cli_sweep_reruns_only_the_missing_trials(tmp_path, data_dir):
    exp = _experiment(
        tmp_path, data_dir, sweep='study.grid({"model.activation": ["relu", "tanh", "elu"]})'
    )
    wd = str(tmp_path / "sweep")
    cmd = [sys.executable, "-m", "cnn_jax", "sweep", exp, "--workdir", wd, "--workers", "1"]
    # The worker is held inside the first batch of its second training run (helpers/hold.py),
    # so the sweep is killed with a trial done and others not, on any machine. Waits are for
    # observed events (a trial done, the orphans gone); HANG_S only keeps a hung process from
    # hanging the suite.
    env, held, _ = hold(tmp_path, run=2, batch=1)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **env})
    deadline = time.monotonic() + HANG_S
    try:
        while not (
            held.exists() and "done" in _statuses(wd).values()
        ):
            if proc.poll() is not None:
                pytest.fail(f"the sweep exited ({proc.returncode}) before a trial was done")
            if time.monotonic() > deadline:
                pytest.fail(f"the sweep hung: no trial done after {HANG_S} s")
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)  # no cleanup at all in the parent
        proc.wait()
    # the worker notices that its parent is gone and exits by itself
    pids = {
        store.read_json(os.path.join(wd, "trials", n, "status.json")).get("pid")
        for n in _statuses(wd)
    }
    deadline = time.monotonic() + HANG_S
    while any(_alive(p) for p in pids if p and p != proc.pid):
        if time.monotonic() > deadline:
            pytest.fail(f"an orphaned worker kept running for {HANG_S} s")
        time.sleep(0.05)
    st = _statuses(wd)
    finished = [n for n, s in st.items() if s == "done"]
    assert 1 <= len(finished) < 6 and "running" not in st.values()  # dead ones read interrupted
    mtimes = _mtimes(wd)
    out = runner.run(exp, wd, workers=0, log=lambda s: None, report=False)
    assert out["ran"] == 6 - len(finished) and out["done"] == 6
    assert {n: t for n, t in _mtimes(wd).items() if n in mtimes} == mtimes


HANG_S = 1800  # a guard against a hung process, never a statement about speed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_diverging_trial_is_recorded_and_the_others_complete(tmp_path, data_dir):
    exp = _experiment(
        tmp_path,
        data_dir,
        sweep='study.grid({"optim.learning_rate": [0.05, 1e8]})',
        seeds=1,
        baseline="None",
    )
    text = (
        Path(exp)
        .read_text()
        .replace("c.train.steps = 12", 'c.train.steps = 12\n    c.optim.name = "sgd"')
    )
    Path(exp).write_text(text)
    wd = str(tmp_path / "sweep")
    lines = []
    out = runner.run(exp, wd, workers=0, log=lines.append, plots=False)
    assert (out["done"], out["diverged"], out["failed"]) == (1, 1, 0)
    st = _statuses(wd)
    bad = next(n for n in st if "learning_rate-1e+08" in n)
    assert st[bad] == "diverged"
    rec = store.read_json(os.path.join(wd, "trials", bad, "status.json"))
    assert "not finite" in rec["error"] and rec["step"] >= 1
    # what happened, apart from the advice: the report's cell, no error text split
    assert rec["reason"] == f"training diverged: the loss is not finite at step {rec['step']}"
    assert rec["error"].startswith(rec["reason"] + "; ") and rec["reason"] in set(
        pd.read_csv(os.path.join(wd, "results.csv")).error.dropna())
    assert any(line.startswith("[2/2] diverged") or "diverged" in line for line in lines)
    df = pd.read_csv(os.path.join(wd, "results.csv"))
    assert list(df.status) == ["done", "diverged"] and np.isnan(df.test_accuracy[1])
    assert "## Trials that did not finish" in Path(os.path.join(wd, "report.md")).read_text()
    # a finished divergence is not retried
    assert runner.run(exp, wd, workers=0, log=lambda s: None, report=False)["ran"] == 0


def _fit_cfg(data_dir, seed):
    c = config_lib.base_config()
    c.model.name = "lenet5"
    c.data.data_dir = data_dir
    c.data.batch_size = 16
    c.data.crop_padding = 2
    c.train.steps = 6
    c.train.log_every_steps = 2
    c.train.checkpoint_every_steps = 3
    c.seed = seed
    with c.model.unlocked():
        c.model.dropout = 0.3  # each seed its own dropout keys
    return c


def test_vmapped_seeds_equal_sequential_runs(tmp_path, data_dir):
    from cnn_jax.train import vmap as seeds_lib

    seeds = [0, 1, 2]
    ref = [
        train.fit(_fit_cfg(data_dir, s), str(tmp_path / f"fit{s}"), progress=False) for s in seeds
    ]
    outs = seeds_lib.fit_seeds(
        [_fit_cfg(data_dir, s) for s in seeds], [str(tmp_path / f"vmap{s}") for s in seeds]
    )
    for s, r, o in zip(seeds, ref, outs):
        assert o["status"] == "done"
        # fit_seeds hands back what it trained, like fit
        assert o["result"].summary is not None and o["result"].state.step.shape == ()
        o = {"status": o["status"], "summary": o["result"].summary}
        a = rundir.read_jsonl(str(tmp_path / f"fit{s}" / "metrics.jsonl"))
        b = rundir.read_jsonl(str(tmp_path / f"vmap{s}" / "metrics.jsonl"))
        assert [(x["step"], x["split"]) for x in a] == [(x["step"], x["split"]) for x in b]
        for x, y in zip(a, b):
            for k in ("loss", "accuracy", "top5"):
                assert y[k] == pytest.approx(x[k], rel=2e-5, abs=1e-6), (s, x["step"], k)
        assert o["summary"]["test"]["accuracy"] == pytest.approx(r["test"]["accuracy"], abs=1e-9)
        assert o["summary"]["params"] == r["params"] and o["summary"]["steps"] == r["steps"]
        # and the final parameters agree
        fit_state = train.evaluate(str(tmp_path / f"fit{s}"))
        assert fit_state["loss"] == pytest.approx(o["summary"]["test"]["loss"], rel=2e-5)
        assert {"config.json", "metrics.jsonl", "summary.json", "checkpoints"} <= set(
            os.listdir(tmp_path / f"vmap{s}")
        )
    # the seeds really differ from each other (own init, data order, dropout)
    accs = [o["result"].summary["test"]["loss"] for o in outs]
    assert len(set(accs)) == 3
    # a vmapped run resumes like any run: fit on its directory has nothing left to do
    again = train.fit(_fit_cfg(data_dir, 1), str(tmp_path / "vmap1"), progress=False)
    assert again["resumed_from"] == 6
    assert again["test"]["loss"] == pytest.approx(outs[1]["result"].summary["test"]["loss"], rel=1e-6)


def test_vmapped_sweep_writes_normal_trials(tmp_path, data_dir):
    exp = _experiment(
        tmp_path,
        data_dir,
        sweep='study.grid({"model.activation": ["relu"]})',
        seeds=3,
        baseline="None",
    )
    wd = str(tmp_path / "sweep")
    out = runner.run(exp, wd, workers=0, vmap="on", log=lambda s: None, plots=False)
    assert out["done"] == 3
    df = pd.read_csv(os.path.join(wd, "results.csv"))
    assert df.test_accuracy.notna().all() and df.shift_consistency.notna().all()
    s = json.loads(Path(os.path.join(wd, "trials", df.trial[0], "summary.json")).read_text())
    assert s["seeds_trained_together"] == 3
    assert runner.run(exp, wd, workers=0, vmap="on", log=lambda s: None, report=False)["ran"] == 0


# ----------------------------------------------------------------------------- command line


def _cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_errors_are_one_line(capsys, tmp_path, data_dir):
    code, _, err = _cli(
        capsys, "sweep", str(tmp_path / "nope.py"), "--workdir", str(tmp_path / "w")
    )
    assert (
        code == 2
        and err.strip() == f"error: experiment file '{tmp_path / 'nope.py'}' does not exist"
    )
    assert not (tmp_path / "w").exists()
    # an experiment without get_sweep is not a study
    code, _, err = _cli(
        capsys, "sweep", "experiments/lenet5_mnist.py", "--workdir", str(tmp_path / "w")
    )
    assert (
        code == 2
        and "defines no get_sweep() function" in err
        and len(err.strip().splitlines()) == 1
    )
    # a directory that is not a sweep
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    for cmd in ("status", "report"):
        code, _, err = _cli(capsys, cmd, str(run_dir))
        assert code == 2
        assert err.strip() == (
            f"error: '{run_dir}' is not a sweep directory (no sweep.json) (it is a "
            "single run: use `cnn-jax evaluate` or `cnn-jax viz`); give the "
            "--workdir of a `cnn-jax sweep`"
        )
    code, _, err = _cli(capsys, "status", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err
    # sweeping into a non-empty directory that is not a sweep is refused
    exp = _experiment(tmp_path, data_dir)
    code, _, err = _cli(capsys, "sweep", exp, "--workdir", str(run_dir))
    assert code == 2 and "is not a sweep directory; use a new --workdir" in err
    # a bad sweep value names the point
    bad = _experiment(
        tmp_path,
        data_dir,
        sweep='study.grid({"model.activation": ["rleu"]})',
        baseline="None",
        name="bad.py",
    )
    code, _, err = _cli(capsys, "sweep", bad, "--workdir", str(tmp_path / "w2"))
    assert code == 2 and "sweep point {model.activation='rleu'}: unknown activation 'rleu'" in err
    assert not (tmp_path / "w2").exists()


def test_cli_dry_run_status_and_report(capsys, tmp_path, data_dir):
    exp = _experiment(tmp_path, data_dir)
    wd = str(tmp_path / "sweep")
    code, out, _ = _cli(
        capsys, "sweep", exp, "--workdir", wd, "--dry-run", "--config.train.steps=6"
    )
    assert code == 0 and out.count("run  ") == 4 and "4 trials: 4 to run" in out
    assert not os.path.exists(wd)
    code, out, _ = _cli(
        capsys, "sweep", exp, "--workdir", wd, "--workers", "0", "--config.train.steps=6"
    )
    assert (
        code == 0
        and "4 trials: 4 run now" in out
        and "report:  " + os.path.join(wd, "report.md") in out
    )
    assert "| relu | 2/2 |" in out  # the aggregate table is printed
    assert json.loads(Path(os.path.join(wd, store.SWEEP_FILE)).read_text())["overrides"] == [
        ["train.steps", "6"]
    ]
    t = store.load_sweep(wd)["trials"][0]
    assert (
        config_lib.from_json(
            Path(os.path.join(wd, "trials", t["name"], "config.json")).read_text()
        ).train.steps
        == 6
    )
    code, out, _ = _cli(capsys, "status", wd)
    assert code == 0 and "4 trials" in out and "done 4" in out
    os.remove(os.path.join(wd, "report.md"))
    code, out, _ = _cli(capsys, "report", wd)
    assert code == 0 and os.path.exists(os.path.join(wd, "report.md"))
