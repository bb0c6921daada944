"""The moving average of the weights (``train.ema_decay``) and gradient accumulation
(``train.grad_accum_steps``): the average against one computed by hand, a kill -9 and
resume that keeps it exact, ``evaluate --weights ema``; k micro-batches against the k times
larger batch in every parallel mode and vmapped; one-line errors; and nothing changed while
both are off."""

import functools
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers.hold import hold, wait_held

from cnn_jax import cli, losses, models, optim
from cnn_jax import config as config_lib
from cnn_jax.train import assemble, saved_runs
from cnn_jax.train import state as state_lib
from cnn_jax.train import step as step_lib
from cnn_jax.train.parallel import Runner

ROOT = os.path.dirname(os.path.dirname(__file__))
EXP = "experiments/lenet5_mnist.py"
HANG_S = 1800  # a guard against a hung subprocess, never a statement about speed


def _tiny(norm="batch"):
    """An MLP on 8x8 inputs (with BatchNorm: its statistics are averaged too), momentum SGD."""
    model = models.create("mlp", 10, hidden=(32,), norm=norm)
    c = config_lib.base_config().optim
    c.name, c.learning_rate = "momentum", 0.05
    loss_fn = functools.partial(losses.softmax_cross_entropy, num_classes=10)
    return model, optim.build(c, 100, 10), loss_fn


def _batches(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return [{"image": rng.normal(size=(size, 8, 8, 1)).astype(np.float32),
             "label": rng.integers(0, 10, size).astype(np.int32)} for _ in range(n)]


def _average(d, e, w):
    return d * np.float64(e) + (1 - d) * np.float64(w)


def _weights(state):
    return jax.device_get({"params": state.params, "batch_stats": state.batch_stats})


# ----------------------------------------------------------------------------- EMA


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_is_the_moving_average_computed_by_hand(warmup):
    model, tx, loss_fn = _tiny()
    decay, steps = 0.8, 5
    runner = Runner("single", loss_fn, loss_fn, ema_decay=decay, ema_warmup=warmup)
    plain = Runner("single", loss_fn, loss_fn)
    st = runner.put_state(state_lib.create(model, tx, (8, 8, 1), seed=0, ema=True))
    ref = plain.put_state(state_lib.create(model, tx, (8, 8, 1), seed=0))
    by_hand = _weights(st)  # the average starts at the initial weights
    assert by_hand["batch_stats"]  # BatchNorm's statistics are averaged too
    for n, batch in enumerate(_batches(steps, 16)):
        st, _ = runner.train_step(st, runner.put_batch(batch))
        ref, _ = plain.train_step(ref, plain.put_batch(batch))
        raw = _weights(st)
        # the average leaves the raw weights alone: bit for bit those of a run without it
        jax.tree.map(np.testing.assert_array_equal, raw, _weights(ref))
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        by_hand = jax.tree.map(functools.partial(_average, d), by_hand, raw)
        got = jax.device_get(st.ema)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7), got, by_hand)
    if warmup:  # (1 + n) / (10 + n) < 0.8 for the first steps: not the plain average
        assert float(step_lib.ema_decay_at(0, decay, True)) == pytest.approx(0.1)


def _cli(data_dir, workdir, *extra):
    return [sys.executable, "-m", "cnn_jax", "train", "--config", EXP, "--workdir", str(workdir),
            f"--config.data.data_dir={data_dir}", "--config.model.name=mlp",
            # 10 steps an epoch (1,294 training digits): evaluations at steps 10, 20 and 24
            "--config.data.name=digits", "--config.data.batch_size=128", "--config.train.steps=24",
            "--config.train.checkpoint_every_steps=2",
            "--config.train.log_every_steps=2", "--config.model.dropout=0.2",
            "--config.train.ema_decay=0.9", "--config.train.ema_warmup=true",
            "--config.train.select_weights=ema", "--config.optim.name=momentum",
            "--config.optim.learning_rate=0.05", "--quiet", *extra]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "CNN_JAX_HOST_DEVICES")}
    return env


def _read(path):
    with open(path) as f:
        return f.read()


def test_kill_9_and_resume_gives_the_uninterrupted_ema_and_evaluate_weights_ema(data_dir, tmp_path, capsys):
    ref, wd = tmp_path / "ref", tmp_path / "run"
    assert cli.main(_cli(data_dir, ref)[3:]) == 0  # uninterrupted, in this process
    capsys.readouterr()
    env, held, _ = hold(tmp_path, batch=17)  # held inside its 17th batch, then killed
    p = subprocess.Popen(_cli(data_dir, wd), env={**_env(), **env}, cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_held(p, held, "the run", HANG_S)
        p.kill()  # SIGKILL: no chance to save anything
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
    assert not (wd / "summary.json").exists()
    done = subprocess.run(_cli(data_dir, wd), check=False, env=_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _read(wd / "metrics.jsonl") == _read(ref / "metrics.jsonl")
    a, b = json.loads(_read(wd / "summary.json")), json.loads(_read(ref / "summary.json"))
    assert 10 <= a["resumed_from"] < 24  # mid-run, after the first evaluation
    for key in ("test", "validation", "best", "weights", "test_raw", "test_ema", "validation_ema"):
        assert a[key] == b[key], key
    ema_a = saved_runs.restore(str(wd)).state.ema
    ema_b = saved_runs.restore(str(ref)).state.ema
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(ema_a), jax.device_get(ema_b))
    # the summary states the weights; test and best are the EMA's, both are reported
    assert a["weights"] == "ema" and a["best"]["weights"] == "ema" and a["test"] == a["test_ema"]
    assert a["test_raw"] != a["test_ema"]
    rows = [json.loads(line) for line in _read(wd / "metrics.jsonl").splitlines()]
    ema_vals = [r for r in rows if r["split"] == "validation_ema"]
    assert ema_vals and len(ema_vals) == len([r for r in rows if r["split"] == "validation"])
    assert a["best"]["validation_accuracy"] == max(r["accuracy"] for r in ema_vals)

    # cnn-jax evaluate --weights ema: the EMA weights of the saved run
    assert cli.main(["evaluate", "--workdir", str(wd), "--weights", "ema", "--json"]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["weights"] == "ema" and m["accuracy"] == a["test_ema"]["accuracy"]
    assert cli.main(["evaluate", "--workdir", str(wd), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] == a["test_raw"]["accuracy"]


def test_evaluate_weights_ema_of_a_run_without_one_is_a_one_line_error(data_dir, tmp_path, capsys):
    wd = tmp_path / "plain"
    argv = _cli(data_dir, wd)[3:]
    argv = [a for a in argv if not a.startswith(("--config.train.ema", "--config.train.select", "--config.train.steps"))]
    argv += ["--config.train.steps=2"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "--workdir", str(wd), "--weights", "ema"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.ema_decay=0" in err and "--weights raw" in err


# ----------------------------------------------------------------------------- accumulation

# Runs in a subprocess with 8 host devices: k = 4 micro-batches of a batch of 64 against
# the batch of 64 in one pass (k = 1, single device), an MLP (no BatchNorm), 3 steps; the
# moving average of the weights on in both.
MODES = r'''
import functools, json, os, sys
import jax, numpy as np
if os.environ.get("CNN_JAX_CACHE_DIR"):  # the tests' persistent compilation cache (conftest)
    jax.config.update("jax_compilation_cache_dir", os.environ["CNN_JAX_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
from cnn_jax import config as config_lib, losses, models, optim
from cnn_jax.errors import UserError
from cnn_jax.train import state as state_lib
from cnn_jax.train.parallel import Runner

model = models.create("mlp", 10)
c = config_lib.base_config().optim
c.name, c.learning_rate = "momentum", 0.05
tx = optim.build(c, 100, 10)
loss_fn = functools.partial(losses.softmax_cross_entropy, num_classes=10)
rng = np.random.default_rng(0)
batches = [{"image": rng.normal(size=(64, 8, 8, 1)).astype(np.float32),
            "label": rng.integers(0, 10, 64).astype(np.int32)} for _ in range(3)]

def run(mode, k):  # with a moving average of the weights too
    r = Runner(mode, loss_fn, loss_fn, ema_decay=0.5, **({"accum_steps": k} if k > 1 else {}))
    r.check_batch_size(64)
    st = r.put_state(state_lib.create(model, tx, (8, 8, 1), seed=0, ema=True))
    sums = []
    for b in batches:
        st, s = r.train_step(st, r.put_batch(b))
        sums.append({key: float(v) for key, v in jax.device_get(s).items()})
    host = jax.device_get(r.get_state(st))
    return {"params": host.params, "ema": host.ema}, sums, r.num_devices

ref, ref_sums, _ = run("single", 1)
rel = lambda a, b: float(np.max(np.abs(a - b) / (1e-6 + 1e-5 * np.abs(b))))
out = {}
for mode in ("single", "pmap", "sharded"):
    p, sums, n = run(mode, 4)
    out[mode] = {"devices": n, "params": max(jax.tree.leaves(jax.tree.map(rel, p["params"], ref["params"]))),
                 "ema": max(jax.tree.leaves(jax.tree.map(rel, p["ema"], ref["ema"]))),
                 "loss": max(abs(a["loss"] - b["loss"]) / (1e-6 + 1e-5 * abs(b["loss"]))
                             for a, b in zip(sums, ref_sums)),
                 "count": sums[-1]["count"]}
try:
    Runner("sharded", loss_fn, loss_fn, accum_steps=16).check_batch_size(64)
    out["error"] = None
except UserError as e:
    out["error"] = str(e)
print(json.dumps(out))
'''


def test_accumulated_steps_equal_the_large_batch_in_single_pmap_and_sharded_modes():
    env = {**_env(), "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    p = subprocess.run([sys.executable, "-c", MODES], check=False, env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=HANG_S)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for mode, devices in (("single", 1), ("pmap", 8), ("sharded", 8)):
        r = out[mode]
        assert r["devices"] == devices, (mode, r)
        # each figure is max |a - b| / (1e-6 + 1e-5 |b|): <= 1 means allclose(rtol=1e-5)
        assert r["params"] <= 1 and r["ema"] <= 1 and r["loss"] <= 1 and r["count"] == 64, (mode, r)
    # 64 over 8 devices is 8 per device, which does not split into 16 micro-batches
    assert "data.batch_size 64 (8 per device on 8 devices)" in out["error"]
    assert "train.grad_accum_steps=16" in out["error"] and "\n" not in out["error"]


def test_accumulated_steps_equal_the_large_batch_with_vmapped_seeds(data_dir, tmp_path):
    from cnn_jax.train import vmap

    def seeds(k):
        cfgs = []
        for seed in (0, 1):
            c = config_lib.base_config()
            c.seed, c.data.data_dir, c.data.name, c.model.name = seed, data_dir, "digits", "mlp"
            c.data.batch_size, c.train.grad_accum_steps, c.train.steps = 64, k, 4
            c.optim.name, c.optim.learning_rate = "momentum", 0.05
            c.train.ema_decay, c.train.select_weights = 0.5, "ema"
            cfgs.append(c)
        out = vmap.fit_seeds(cfgs, [str(tmp_path / f"k{k}-s{i}") for i in range(2)])
        return [o["result"] for o in out]

    one, four = seeds(1), seeds(4)
    for a, b in zip(four, one):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
                     jax.device_get(a.state.params), jax.device_get(b.state.params))
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
                     jax.device_get(a.state.ema), jax.device_get(b.state.ema))
        assert a.summary["train"]["loss"] == pytest.approx(b.summary["train"]["loss"], rel=1e-5)
        for key in ("validation_ema", "test_ema", "test_raw"):  # both weights evaluated, vmapped
            assert a.summary[key]["loss"] == pytest.approx(b.summary[key]["loss"], rel=1e-4), key
        assert a.summary["weights"] == "ema" and a.summary["test"] == a.summary["test_ema"]
    # the two seeds differ: each had its own initialisation and data order
    assert four[0].summary["train"]["loss"] != four[1].summary["train"]["loss"]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("override,words", [
    ("train.ema_decay=1.0", ["train.ema_decay must be in [0, 1)", "1.0"]),
    ("train.ema_decay=-0.1", ["train.ema_decay must be in [0, 1)", "-0.1"]),
    ("train.grad_accum_steps=0", ["train.grad_accum_steps must be a positive integer", "0"]),
    ("train.grad_accum_steps=4", ["data.batch_size 30", "train.grad_accum_steps=4", "28 or 32"]),
    ("train.select_weights=ema", ["train.select_weights='ema' needs", "train.ema_decay"]),
    ("train.select_weights=best", ["invalid train.select_weights 'best'", "raw, ema"]),
])
def test_bad_values_are_one_line_errors_with_exit_2(data_dir, tmp_path, capsys, override, words):
    wd = tmp_path / "run"
    code = cli.main(["train", "--config", EXP, "--workdir", str(wd), f"--config.data.data_dir={data_dir}",
                     "--config.data.name=digits", "--config.model.name=mlp",
                     "--config.data.batch_size=30", f"--config.{override}",
                     "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and all(w in err for w in words), err
    assert not wd.exists()  # nothing written


# ----------------------------------------------------------------------------- both off


def test_with_both_off_the_state_has_no_average_and_the_step_is_unchanged():
    cfg = config_lib.resolve(config_lib.base_config())
    assert assemble.step_options(cfg) == {}
    model, tx, loss_fn = _tiny()
    st = state_lib.create(model, tx, (8, 8, 1), seed=0)
    assert st.ema is None and "ema" not in state_lib.to_pytree(st)
    runner = assemble.make_runner(cfg, loss_fn, loss_fn)
    # the very partial of train_step the runner made before these options existed
    assert runner._train.__wrapped__.keywords == {"loss_fn": loss_fn, "skip_nonfinite": False}
    on = config_lib.resolve(config_lib.apply_overrides(config_lib.base_config(), [
        ("train.ema_decay", "0.99"), ("train.grad_accum_steps", "2")]))
    assert assemble.step_options(on) == {"accum_steps": 2, "ema_decay": 0.99, "ema_warmup": False}


def test_the_analyses_measure_the_selected_moving_average(tmp_path, data_dir):
    """With select_weights=ema the analyses measure the average: calibration's NLL on the
    final state is the summary's test loss, which is the average's."""
    from cnn_jax import analyses
    from cnn_jax import train as train_lib
    from cnn_jax.study.execution import measure

    c = config_lib.base_config()
    c.data.data_dir, c.data.name, c.model.name, c.data.batch_size = data_dir, "digits", "mlp", 32
    c.train.steps, c.train.ema_decay, c.train.select_weights = 20, 0.9, "ema"
    out = train_lib.fit(c, str(tmp_path / "run"), progress=False)
    rec = measure.run(analyses.resolve({"calibration": {"state": "final"}}), out,
                      str(tmp_path / "run"))["calibration"]
    assert rec["measured"] == {"state": "final", "step": 20, "weights": "ema"}
    assert rec["values"]["nll"] == pytest.approx(out.summary["test"]["loss"], rel=1e-5)
    assert out.summary["test"]["loss"] != out.summary["test_raw"]["loss"]
