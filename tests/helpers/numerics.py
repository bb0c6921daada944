"""One small study whose trials' numbers depend on how many CPUs a process has (the
simple CNN on the embedded MNIST digits), and how two run directories are compared: the
summary's metrics, the logged rows and the parameters, bit for bit. Used by
tests/test_numerics_layout.py and tests/cluster/test_numerics_clusters.py."""

from __future__ import annotations

import json
import os

import jax
import numpy as np

# The simple CNN on the embedded MNIST digits: big enough for XLA:CPU to split its loop
# kernels over two threads (on 8x8 digits it does not, and the control below would show
# nothing). Two configs, so that both workers of a two-worker pool get one.
EXPERIMENT = '''
from cnn_jax import study
from cnn_jax.config import base_config

def get_config():
    c = base_config()
    c.model.name, c.model.pool, c.data.name = "simple_cnn", "max", "mnist5k"
    c.data.validation, c.data.batch_size, c.data.eval_batch_size = 0.1, 64, 100
    c.optim.name, c.optim.learning_rate, c.optim.schedule = "adam", 2e-3, "cosine"
    c.train.steps, c.train.log_every_steps, c.train.eval_every_steps = 20, 5, 10
    c.train.checkpoint_every_steps = 5
    return c

def get_sweep():
    return study.Study(study.grid({"model.pool": ["max", "avg"]}), seeds=[3],
                       baseline={"model.pool": "max"}, analyses={})
'''


def clean_env(root: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "CNN_JAX_HOST_DEVICES")}
    return {**env, "PYTHONPATH": os.pathsep.join([root, env.get("PYTHONPATH", "")])}


def trial_dir(wd, pool):
    (name,) = [n for n in os.listdir(os.path.join(wd, "trials")) if n.startswith(f"pool-{pool}_")]
    return os.path.join(wd, "trials", name)


def outcome(run_dir):
    """What must be equal: the summary's metrics, the logged rows and the parameters."""
    summary = json.loads(open(os.path.join(run_dir, "summary.json")).read())
    rows = {}
    for line in open(os.path.join(run_dir, "metrics.jsonl")):
        r = json.loads(line)  # (a row logged again after a resume replaces the first)
        rows[(r["step"], r["split"], r.get("checkpoint"))] = r
    from cnn_jax.train import saved_runs

    params = jax.device_get(saved_runs.restore(run_dir, "latest").state.params)
    return {k: summary[k] for k in ("test", "validation", "best", "steps")}, rows, params


def assert_same(a, b, what):
    assert a[0] == b[0], f"{what}: summaries differ"
    assert a[1] == b[1], f"{what}: logged metrics differ"
    leaves_a, leaves_b = jax.tree.leaves(a[2]), jax.tree.leaves(b[2])
    assert len(leaves_a) == len(leaves_b)
    assert all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b)), f"{what}: parameters differ"


