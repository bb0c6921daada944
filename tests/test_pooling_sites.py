"""Pooling per site: one kind per pooling site, in the model's site order, end to end."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from cnn_jax import models, study
from cnn_jax.errors import UserError
from cnn_jax.study import store

ROOT = os.path.dirname(os.path.dirname(__file__))


def _cli(*args, timeout=1800):
    return subprocess.run([sys.executable, "-m", "cnn_jax", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_site_order_of_the_models():
    assert models.pooling_sites("lenet5") == ["pool1", "pool2"]
    assert models.pooling_sites("simple_cnn") == ["pool1", "pool2"]
    assert models.pooling_sites("vgg11") == [f"pool{i}" for i in range(1, 6)]
    assert models.pooling_sites("resnet20", downsample="pool")[:2] == ["layer2_0/pool", "layer2_0/shortcut_pool"]


@pytest.mark.parametrize("name", ["lenet5", "simple_cnn"])
def test_each_site_runs_its_own_kind(name):
    # max at pool1 and avg at pool2 give pool1's output of the all-max model and pool2's
    # output of a model whose pool2 averages the same inputs
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 28, 28, 1) if name == "lenet5" else (2, 32, 32, 3))
    mixed = models.create(name, 10, pool=("max", "avg"))
    v = mixed.init(jax.random.PRNGKey(1), x)
    f = models.features(mixed, v, x)
    ref_max = models.features(models.create(name, 10, pool="max"), v, x)
    assert jnp.array_equal(f["pool1"], ref_max["pool1"])
    before = f["conv2"] if "conv2" in f else None
    assert before is not None
    b, h, w, c = before.shape
    want = before[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).mean((2, 4))
    assert jnp.allclose(f["pool2"], want, atol=1e-6)
    assert jax.tree.structure(v) == jax.tree.structure(
        models.create(name, 10, pool="max").init(jax.random.PRNGKey(1), x))  # same parameter paths


def test_wrong_counts_and_kinds_are_one_line_errors():
    with pytest.raises(UserError, match=r"lists 3 kinds .* has 2 pooling sites here \(pool1, pool2\)"):
        models.resolve_pool("lenet5", "max,avg,max")
    with pytest.raises(UserError, match="unknown pool 'maxx'"):
        models.resolve_pool("lenet5", ("max", "maxx"))
    assert models.resolve_pool("lenet5", "max, avg") == ("max", "avg")


def test_summary_train_and_errors_through_the_command_line(tmp_path):
    p = _cli("summary", "--model", "lenet5", "--config.model.pool=avg,max", "--format", "json")
    assert p.returncode == 0, p.stderr
    layers = {r["name"]: r["type"] for r in json.loads(p.stdout)["layers"]}
    assert layers["pool1"] == "Pool(avg)" and layers["pool2"] == "Pool(max)"
    wd = tmp_path / "run"
    p = _cli("train", "--config", "experiments/lenet5_mnist.py", "--workdir", str(wd),
             "--config.model.pool=max,avg", "--config.train.steps=3", "--quiet",
             f"--config.data.data_dir={tmp_path / 'tfds'}")
    assert p.returncode == 0, p.stderr
    assert json.loads((wd / "config.json").read_text())["model"]["pool"] == ["max", "avg"]
    for bad, want in [("max,avg,max", "has 2 pooling sites here (pool1, pool2)"),
                      ("max,maxx", "unknown pool 'maxx'")]:
        wd2 = tmp_path / f"bad-{bad}"
        p = _cli("train", "--config", "experiments/lenet5_mnist.py", "--workdir", str(wd2),
                 f"--config.model.pool={bad}", "--config.train.steps=3")
        assert p.returncode == 2 and want in p.stderr and "Traceback" not in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and not wd2.exists()


def test_a_sweep_over_per_site_kinds(tmp_path, data_dir):
    exp = tmp_path / "sites.py"
    exp.write_text(f"""
from cnn_jax import study
from cnn_jax.config import base_config

def get_config():
    c = base_config()
    c.model.name = "lenet5"
    c.data.data_dir = {data_dir!r}
    c.data.batch_size = 32
    c.train.steps = 4
    return c

def get_sweep():
    return study.Study(study.grid({{"model.pool": [("max", "max"), ("avg", "max")]}}), seeds=1,
                       baseline={{"model.pool": ("max", "max")}}, shift_consistency=0)
""")
    wd = str(tmp_path / "sweep")
    out = study.run(str(exp), wd, workers=0, plots=False, log=lambda s: None)
    assert out["done"] == 2
    pools = set()
    for t in store.load_sweep(wd)["trials"]:
        cfg = json.loads(open(os.path.join(wd, "trials", t["name"], "config.json")).read())
        pools.add(tuple(cfg["model"]["pool"]))
    assert pools == {("max", "max"), ("avg", "max")}
    assert "avg, max" in open(os.path.join(wd, "report.md")).read()
