"""The extensions experiment (tests/extension/my_study.py: a pooling kind, a model and an
analysis registered in the experiment file) swept on real SLURM and Ray clusters: every job
imports the file the planner imported, and the analysis reaches results.csv and report.md."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
from clusterlib import REPO

pytestmark = pytest.mark.cluster
EXPERIMENT = str(REPO / "tests" / "extension" / "my_study.py")


def _sweep(tmp_path, data_dir, *args):
    wd = str(tmp_path / "sweep")
    env = {**os.environ, "CNN_JAX_TEST_DATA_DIR": data_dir}
    out = subprocess.run([sys.executable, "-m", "cnn_jax", "sweep", EXPERIMENT, "--workdir", wd, *args],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    with open(os.path.join(wd, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    assert {r["model.pool"] for r in rows} == {"max", "half_max_avg"}
    assert all(0 <= float(r["mean_confidence"]) <= 1 for r in rows)
    report = open(os.path.join(wd, "report.md")).read()
    assert "### Mean top-1 agreement compared with the baseline" in report
    return out.stdout


def test_the_extensions_experiment_on_slurm(slurm, tmp_path, data_dir):
    out = _sweep(tmp_path, data_dir, "--executor", "slurm", "--cpus-per-trial", "1")
    assert "SLURM job" in out


def test_the_extensions_experiment_on_ray(ray_cluster, tmp_path, data_dir):
    out = _sweep(tmp_path, data_dir, "--executor", "ray", "--ray-address", ray_cluster)
    assert "Ray task" in out
