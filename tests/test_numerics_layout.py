"""A trial's numbers do not depend on how it was run: the same config and seed give
bitwise-equal metrics and parameters under ``cnn-jax train --cpus 1``, the local pool with
one worker and with two, and after a kill -9 and resume (every trial is pinned to
``--cpus-per-trial`` CPUs, default 1: XLA:CPU compiles and runs its kernels differently
for another count). SLURM and Ray: tests/cluster."""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers.hold import hold, wait_held
from helpers.numerics import EXPERIMENT, assert_same, clean_env, outcome, trial_dir

from cnn_jax import runtime
from cnn_jax.study import store

ROOT = os.path.dirname(os.path.dirname(__file__))
HANG_S = 1800  # a guard against a hung process, never a statement about speed

def _sweep(exp, wd, *extra):
    return [sys.executable, "-m", "cnn_jax", "sweep", exp, "--workdir", str(wd), *extra]


def test_same_trial_bitwise_equal_under_train_one_and_two_workers_and_kill_resume(tmp_path):
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT)
    env = clean_env(ROOT)
    run = lambda cmd, **kw: subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, **kw)  # noqa: E731

    for workers in ("2", "1"):
        p = run(_sweep(exp, tmp_path / f"w{workers}", "--workers", workers))
        assert p.returncode == 0, p.stderr[-3000:]
    two = [store.read_status(trial_dir(tmp_path / "w2", pool)) for pool in ("max", "avg")]
    assert len({s["pid"] for s in two}) == 2  # each trial in its own worker

    # kill -9 (the sweep and its worker) inside the 13th batch of the first trial, then resume
    hold_env, held, release = hold(tmp_path, run=1, batch=13)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_sweep(exp, killed, "--workers", "1"), env={**env, **hold_env}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_held(proc, held, "the sweep", HANG_S)
        (first,) = [d for d in os.listdir(killed / "trials")
                    if store.read_status(str(killed / "trials" / d))["status"] == "running"]
        worker = store.read_status(str(killed / "trials" / first))["pid"]
        os.kill(worker, signal.SIGKILL)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    steps = os.listdir(killed / "trials" / first / "checkpoints")
    assert any(s.isdigit() and 0 < int(s) < 20 for s in steps), steps  # it resumes mid-run
    release.touch()
    p = run(_sweep(exp, killed, "--workers", "1"))
    assert p.returncode == 0, p.stderr[-3000:]

    for pool in ("max", "avg"):
        ref = outcome(trial_dir(tmp_path / "w2", pool))
        assert_same(ref, outcome(trial_dir(tmp_path / "w1", pool)), f"{pool}: 1 worker vs 2")
        assert_same(ref, outcome(trial_dir(killed, pool)), f"{pool}: killed and resumed vs 2 workers")
        summary = json.loads(open(os.path.join(trial_dir(killed, pool), "summary.json")).read())
        assert summary["numerics"]["cpus"] == 1

    # the same trial through `cnn-jax train --cpus 1`
    solo = tmp_path / "solo"
    p = run([sys.executable, "-m", "cnn_jax", "train", "--config", str(exp), "--workdir", str(solo),
             "--config.model.pool=avg", "--config.seed=3", "--cpus", "1", "--quiet"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert_same(outcome(trial_dir(tmp_path / "w2", "avg")), outcome(str(solo)), "train --cpus 1 vs the pool")

    # The control: on two CPUs the same trial comes out different, so the comparisons above
    # can fail (if a future XLA:CPU made them equal, this test would need another control).
    if runtime.usable_cpus() >= 2:
        p = run([sys.executable, "-m", "cnn_jax", "train", "--config", str(exp), "--workdir",
                 str(tmp_path / "two"), "--config.model.pool=avg", "--config.seed=3", "--cpus", "2",
                 "--quiet"])
        assert p.returncode == 0, p.stderr[-3000:]
        one, two = outcome(str(solo)), outcome(str(tmp_path / "two"))
        assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(one[2]), jax.tree.leaves(two[2]))), (
            "2 CPUs gave the same parameters as 1: this XLA no longer shows the effect this test guards")


def test_cpus_per_trial_and_cpus_bad_values_are_one_line_errors(tmp_path):
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT)
    have = runtime.usable_cpus()
    for cmd in (
        _sweep(exp, tmp_path / "wd", "--cpus-per-trial", str(have + 1)),
        _sweep(exp, tmp_path / "wd", "--cpus-per-trial", "0"),
        [sys.executable, "-m", "cnn_jax", "train", "--config", str(exp), "--workdir",
         str(tmp_path / "wd"), "--cpus", str(have + 1)],
    ):
        p = subprocess.run(cmd, env=clean_env(ROOT), cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 2, p.stderr
        assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
        assert str(have) in p.stderr or "positive" in p.stderr or ">= 1" in p.stderr, p.stderr
    assert not (tmp_path / "wd").exists()  # nothing written


def test_pin_cpus_prefers_cpus_no_other_process_holds(tmp_path, monkeypatch):
    if not hasattr(os, "sched_setaffinity") or runtime.usable_cpus() < 2:
        pytest.skip("needs Linux CPU affinity and two CPUs")
    monkeypatch.setenv("CNN_JAX_CPU_LOCKS", str(tmp_path / "locks"))
    code = ("import sys, time; from cnn_jax import runtime; print(runtime.pin_cpus(1), flush=True); "
            "sys.stdin.readline()")
    env = {**clean_env(ROOT), "CNN_JAX_CPU_LOCKS": str(tmp_path / "locks")}
    first = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got_first = first.stdout.readline().strip()
    second = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got_second = second.stdout.readline().strip()
    for p in (first, second):
        p.stdin.close()
        p.wait()
    assert got_first != got_second, (got_first, got_second)  # the second took another CPU
    assert first.stderr.read() == "" and second.stderr.read() == ""
    # once they have exited (their locks released), a third gets the first CPU again
    third = subprocess.run([sys.executable, "-c", code.replace("sys.stdin.readline()", "")], env=env,
                           capture_output=True, text=True)
    assert third.stdout.strip() == got_first
    # a local pool's worker prefers its group's CPUs, and takes another where a process of
    # another sweep holds them (two sweeps at once do not stack on one CPU)
    last = sorted(os.sched_getaffinity(0))[-1]
    code = code.replace("pin_cpus(1)", f"pin_cpus(1, prefer=[{last}])")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    got = [procs[0].stdout.readline().strip()]
    procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    got.append(procs[1].stdout.readline().strip())
    for p in procs:
        p.stdin.close()
        p.wait()
    assert got[0] == f"[{last}]" and got[1] != got[0], got


TINY = '''
from cnn_jax import study
from cnn_jax.config import base_config

def get_config():
    c = base_config()
    c.data.name, c.data.data_dir, c.model.name, c.data.batch_size = "digits", {data_dir!r}, "mlp", 32
    c.train.steps = 6
    return c

def get_sweep():
    return study.Study(study.grid({{"model.activation": ["relu", "tanh"]}}), seeds=2,
                       baseline={{"model.activation": "relu"}}, analyses={{}})
'''


def test_strict_numerics_refuses_a_study_of_mixed_environments(tmp_path, data_dir):
    exp = tmp_path / "tiny.py"
    exp.write_text(TINY.format(data_dir=data_dir))
    wd = tmp_path / "sweep"
    env = clean_env(ROOT)
    p = subprocess.run(_sweep(exp, wd, "--workers", "0", "--strict-numerics"), env=env, cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]  # one environment: reported
    report = (wd / "report.md").read_text()
    assert "- Numeric environment: jax " in report
    # one trial as if it had run on two CPUs
    odd = sorted(os.listdir(wd / "trials"))[0]
    path = wd / "trials" / odd / "summary.json"
    summary = json.loads(path.read_text())
    summary["numerics"]["cpus"] = summary["numerics"]["cpus"] + 1
    path.write_text(json.dumps(summary))
    before = {f: (wd / f).read_bytes() for f in ("report.md", "results.csv")}
    p = subprocess.run([sys.executable, "-m", "cnn_jax", "report", str(wd), "--strict-numerics"],
                       env=env, cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert "--strict-numerics: the trials ran in 2 numeric environments (3 trials: " in p.stderr
    assert "1 trial: " in p.stderr and "re-run the trials of the odd ones out" in p.stderr
    assert {f: (wd / f).read_bytes() for f in before} == before  # nothing rewritten
    p = subprocess.run(_sweep(exp, wd, "--workers", "0", "--strict-numerics"), env=env, cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "--strict-numerics: the trials ran in 2" in p.stderr, p.stderr
    assert {f: (wd / f).read_bytes() for f in before} == before
    # without the flag the report is written and says that its comparisons mix them
    p = subprocess.run([sys.executable, "-m", "cnn_jax", "report", str(wd)], env=env, cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "- Numeric environments: the trials ran in 2 (3 trials: " in (wd / "report.md").read_text()
