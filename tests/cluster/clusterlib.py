"""Helpers of tests/cluster/: the experiments they sweep, what they compare, how they wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRE = os.environ.get("CNN_JAX_REQUIRE_CLUSTER") == "1"


def unavailable(message: str):
    """Skip, or fail under ``CNN_JAX_REQUIRE_CLUSTER=1`` (CI), saying what is missing."""
    if REQUIRE:
        pytest.fail(f"{message} (CNN_JAX_REQUIRE_CLUSTER=1)")
    pytest.skip(message)


# ----------------------------------------------------------------------------- experiments

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
    c.train.steps = {steps}
    c.train.log_every_steps = {log}
    c.train.checkpoint_every_steps = {ckpt}
    c.optim.learning_rate = 0.01
{extra}
    return c


def get_sweep():
    return study.Study(
        study.grid({{"model.activation": {activations!r}}}), seeds={seeds},
        baseline={{"model.activation": "relu"}},
    )
"""

# The 8-trial sweep every executor runs: 2 activations x 4 seeds, 12 steps each.
SMALL = {"activations": ["relu", "tanh"], "seeds": 4, "steps": 12, "log": 3, "ckpt": 4}
# Trials long enough (1,500 steps, a few seconds) to be caught running and interrupted.
# Without best-by-validation selection: with validation accuracy tied at many steps (144
# validation images), a run resumed after its best step restored Orbax's "best" checkpoint
# (the latest of the tied steps) instead of the first best step the loop selects, so its
# best_test_accuracy differed from an uninterrupted run's (a loop issue, not the executors').
LONG = {
    "activations": ["relu"], "seeds": 2, "steps": 1500, "log": 25, "ckpt": 50,
    "extra": "    c.data.validation = 0\n    c.train.keep_best = 0",
}


def experiment(directory: Path, data_dir: str, spec: dict, name: str) -> str:
    path = directory / f"{name}.py"
    path.write_text(EXPERIMENT.format(data_dir=data_dir, **{"extra": "", **spec}))
    return str(path)


def metrics(workdir: str) -> pd.DataFrame:
    """results.csv without what depends on the machine's speed."""
    from cnn_jax.study.reporting.rows import TIMING_COLUMNS

    return pd.read_csv(os.path.join(workdir, "results.csv")).drop(columns=list(TIMING_COLUMNS))


def statuses(workdir: str) -> dict[str, dict]:
    from cnn_jax.study import store

    rec = store.load_sweep(workdir)
    return {
        t["name"]: store.read_status(os.path.join(workdir, "trials", t["name"]))
        for t in rec["trials"]
    }


def summary_mtimes(workdir: str) -> dict[str, int]:
    out = {}
    for name in statuses(workdir):
        p = os.path.join(workdir, "trials", name, "summary.json")
        if os.path.exists(p):
            out[name] = os.stat(p).st_mtime_ns
    return out


def sweep_cli(exp: str, workdir: str, *args: str) -> subprocess.Popen:
    """``cnn-jax sweep`` in a subprocess (its output in ``workdir``.log)."""
    log = open(f"{workdir}.log", "ab")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "cnn_jax", "sweep", exp, "--workdir", workdir, *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    """Polls ``predicate()`` until it returns something true (observed progress)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the sweep ended (exit {proc.returncode}) before: {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for: {what}")


def running_trials(workdir: str, min_step: int = 100) -> list:
    """The trials that train now and have logged ``min_step`` steps: ``[(name, status)]``."""
    from cnn_jax import rundir

    if not os.path.exists(os.path.join(workdir, "sweep.json")):
        return []
    out = []
    for name, st in statuses(workdir).items():
        if st["status"] != "running":
            continue
        steps = [r["step"] for r in rundir.read_metrics(os.path.join(workdir, "trials", name))]
        if steps and max(steps) >= min_step:
            out.append((name, st))
    return out


def running_trial(workdir: str, min_step: int = 100):
    """A trial that trains now and has logged ``min_step`` steps: ``(name, status)``."""
    found = running_trials(workdir, min_step)
    return found[0] if found else None
