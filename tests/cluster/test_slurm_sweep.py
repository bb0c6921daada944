"""Sweeps on a real SLURM cluster (scripts/local-slurm) through submitit: the same results as
the local pool; a cancelled trial resumes on the next sweep; a USR2 (submitit's pre-emption
and time-limit signal) saves, requeues and resumes exactly; local and slurm mix."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from clusterlib import (
    LONG,
    SMALL,
    experiment,
    metrics,
    running_trial,
    statuses,
    summary_mtimes,
    sweep_cli,
    wait_for,
)

pytestmark = pytest.mark.cluster


def test_slurm_sweep_equals_the_local_one(slurm, reference, tmp_path, data_dir, capsys):
    from cnn_jax import cli

    exp = experiment(tmp_path, data_dir, SMALL, "exp")
    wd = str(tmp_path / "sweep")
    code = cli.main(["sweep", exp, "--workdir", wd, "--executor", "slurm", "--cpus-per-trial", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "submitted 8 SLURM jobs" in out
    pd.testing.assert_frame_equal(metrics(wd), metrics(reference(SMALL)))  # bitwise
    st = statuses(wd)
    jobs = {s["job"]["id"] for s in st.values()}
    assert all(s["job"]["executor"] == "slurm" for s in st.values()) and len(jobs) == 8
    assert len({j.split("_")[0] for j in jobs}) == 1  # one job array
    # the jobs shared the sweep's compilation cache (conftest's, as set in this process)
    # and cnn-jax status names each trial's job
    code = cli.main(["status", wd, "--all"])
    out = capsys.readouterr().out
    rows = [x for x in out.splitlines() if x.startswith("  done  ")]
    assert code == 0 and len(rows) == 8


def test_scancel_then_rerun_resumes_the_trial_exactly(slurm, reference, tmp_path, data_dir):
    exp = experiment(tmp_path, data_dir, LONG, "long")
    wd = str(tmp_path / "sweep")
    proc = sweep_cli(exp, wd, "--executor", "slurm")
    name, st = wait_for(lambda: running_trial(wd, 200), 240, "a trial at step 200", proc)
    job = st["lease"]["job"]["id"]
    subprocess.run(["scancel", job], check=True, timeout=30)
    assert proc.wait(300) == 75  # the sweep says: interrupted, re-run to resume
    log = Path(f"{wd}.log").read_text()
    assert "interrupted" in log and name in log
    trial = os.path.join(wd, "trials", name)
    after = statuses(wd)
    assert after[name]["status"] in ("queued", "interrupted")
    saved = [int(d) for d in os.listdir(os.path.join(trial, "checkpoints")) if d.isdigit()]
    assert max(saved) >= 200
    done_before = summary_mtimes(wd)
    # the re-run (slurm again) resumes it and leaves the finished trial alone
    proc = sweep_cli(exp, wd, "--executor", "slurm")
    assert proc.wait(300) == 0, Path(f"{wd}.log").read_text()[-3000:]
    assert {n: t for n, t in summary_mtimes(wd).items() if n in done_before} == done_before
    summary = json.loads(Path(os.path.join(trial, "summary.json")).read_text())
    assert summary["resumed_from"] >= 200
    pd.testing.assert_frame_equal(metrics(wd), metrics(reference(LONG)))


def test_usr2_saves_requeues_and_resumes_exactly(slurm, reference, tmp_path, data_dir):
    exp = experiment(tmp_path, data_dir, LONG, "long")
    wd = str(tmp_path / "sweep")
    proc = sweep_cli(exp, wd, "--executor", "slurm")
    name, st = wait_for(lambda: running_trial(wd, 200), 240, "a trial at step 200", proc)
    job = st["lease"]["job"]["id"]
    # what SLURM sends before a time limit (--signal=USR2@90) and submitit turns into a requeue
    subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)
    assert proc.wait(400) == 0, Path(f"{wd}.log").read_text()[-3000:]
    summary = json.loads(Path(os.path.join(wd, "trials", name, "summary.json")).read_text())
    assert summary["resumed_from"] >= 200  # the same job, requeued, resumed the checkpoint
    pd.testing.assert_frame_equal(metrics(wd), metrics(reference(LONG)))


def test_executors_mix_across_reruns(slurm, reference, tmp_path, data_dir):
    """Start locally (one trial), finish on SLURM: the store is the one source of truth."""
    from cnn_jax.study.execution import runner

    exp = experiment(tmp_path, data_dir, SMALL, "exp")
    wd = str(tmp_path / "sweep")
    first = experiment(tmp_path, data_dir, {**SMALL, "activations": ["relu"], "seeds": 1}, "first")
    runner.run(first, wd, workers=1, log=lambda s: None, report=False)
    done = summary_mtimes(wd)
    assert len(done) == 1
    out = runner.run(exp, wd, executor="slurm", log=lambda s: None, plots=False)
    assert (out["skipped"], out["ran"], out["done"]) == (1, 7, 8)
    assert {n: t for n, t in summary_mtimes(wd).items() if n in done} == done
    pd.testing.assert_frame_equal(metrics(wd), metrics(reference(SMALL)))
