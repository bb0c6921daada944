"""The same trial, bit for bit, on SLURM, on Ray and in the local pool: every executor pins
a trial to ``--cpus-per-trial`` CPUs (default 1), and XLA:CPU's numbers depend on that count
(tests/test_numerics_layout.py shows the local side and the control: two CPUs differ)."""

from __future__ import annotations

import json
import os

import pytest
from helpers.numerics import EXPERIMENT, assert_same, outcome, trial_dir

pytestmark = pytest.mark.cluster


def test_the_same_trial_is_bitwise_equal_on_slurm_ray_and_the_local_pool(slurm, ray_cluster, tmp_path, capsys):
    from cnn_jax import cli

    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT)
    runs = {
        "local": ["--workers", "2"],
        "slurm": ["--executor", "slurm"],
        "ray": ["--executor", "ray", "--ray-address", ray_cluster],
    }
    for name, extra in runs.items():
        code = cli.main(["sweep", str(exp), "--workdir", str(tmp_path / name), *extra])
        out = capsys.readouterr()
        assert code == 0, f"{name}: {out.out[-2000:]} {out.err[-2000:]}"
    for pool in ("max", "avg"):
        ref = outcome(trial_dir(tmp_path / "local", pool))
        for name in ("slurm", "ray"):
            d = trial_dir(tmp_path / name, pool)
            assert json.loads(open(os.path.join(d, "status.json")).read())["job"]["executor"] == name
            assert json.loads(open(os.path.join(d, "summary.json")).read())["numerics"]["cpus"] == 1
            assert_same(ref, outcome(d), f"{pool}: {name} vs the local pool")
