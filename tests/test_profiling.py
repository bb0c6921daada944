"""Profiler traces: the step range's parsing, and traces of exactly the chosen steps that
jax's own reader (the XSpace TensorBoard's profile plugin lists) parses, from
`cnn-jax bench --profile` and from training with `train.profile_steps`."""

import glob
import os
import warnings

import pytest

from cnn_jax.errors import UserError
from cnn_jax.train import profiling


def _train_events(logdir):
    """The trace files under ``logdir`` and the step numbers of their "train" annotations."""
    import jax

    files = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    steps = []
    # jaxlib (0.12) builds the stats' nanobind type on first use with a DeprecationWarning
    # of its own (no __module__); as an error (the strict stage) it aborts the interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for f in files:
            data = jax.profiler.ProfileData.from_file(f)
            for plane in data.planes:
                for line in plane.lines:
                    steps += [dict(e.stats).get("step_num") for e in line.events if e.name == "train"]
    return files, steps


def test_parse_steps():
    assert profiling.parse_steps("") is None
    assert profiling.parse_steps("3:5") == (3, 5) and profiling.parse_steps("4:4") == (4, 4)
    for bad in ("5:3", "0:2", "3", "a:b", "1:2:3"):
        with pytest.raises(UserError, match=rf"train.profile_steps '{bad}': give A:B with 1 <= A <= B"):
            profiling.parse_steps(bad)


def test_bench_writes_a_trace_of_its_timed_steps(tmp_path):
    from cnn_jax import bench
    from cnn_jax.config import base_config, resolve

    c = base_config()
    c.model.name, c.data.batch_size = "lenet5", 16
    out = bench.run(resolve(c), steps=3, warmup=1, shape=(28, 28, 1), num_classes=10,
                    profile=str(tmp_path / "p"))
    files, steps = _train_events(str(tmp_path / "p"))
    assert out["profile"] == str(tmp_path / "p") and len(files) == 1
    assert sorted(steps) == [1, 2, 3]


def test_training_traces_exactly_the_chosen_steps(tmp_path, data_dir):
    import subprocess
    import sys

    wd = tmp_path / "run"
    env = {**os.environ, "CNN_JAX_DATA_DIR": data_dir}
    exp = "experiments/lenet5_mnist.py"
    out = subprocess.run([sys.executable, "-m", "cnn_jax", "train", "--config", exp, "--workdir", str(wd),
                          "--config.data.name=digits", "--config.model.name=mlp",
                          "--config.train.steps=8", "--config.train.profile_steps=3:5"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    files, steps = _train_events(str(wd / profiling.PROFILE_DIR))
    assert len(files) == 1 and sorted(steps) == [3, 4, 5]
    bad = subprocess.run([sys.executable, "-m", "cnn_jax", "train", "--config", exp,
                          "--workdir", str(tmp_path / "b"),
                          "--config.data.name=digits", "--config.train.profile_steps=5:3"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "train.profile_steps '5:3': give A:B" in bad.stderr and not (tmp_path / "b").exists()
