"""Single device, pmap and sharded jit give the same science; multi-host; portable checkpoints.

Run on CPU in subprocesses with forced host devices (XLA_FLAGS set before jax imports).
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)


def _env(devices: int, **extra) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env.pop("CNN_JAX_HOST_DEVICES", None)
    env.update(extra)
    return env


# A guard against a hung (e.g. deadlocked) process, never a statement about speed: a loaded
# machine may take long, a deadlock never ends.
HANG_S = 1800


def _py(args, devices, timeout=HANG_S, **extra):
    p = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                       env=_env(devices, **extra), cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


@pytest.mark.long  # .ci/run's long stage (8 host devices, three modes, two models)
def test_single_pmap_and_sharded_agree():
    cases = [
        # BatchNorm (global-batch statistics in every mode), average pooling
        ["simple_cnn", {"norm": "batch", "pool": "avg"}, [28, 28, 1], 16],
        # max pooling (its gradient routing), no BatchNorm
        ["lenet5", {"pool": "max"}, [28, 28, 1], 16],
    ]
    out = json.loads(_py([os.path.join(HERE, "helpers", "parallel_modes.py"), json.dumps(cases)], 8)
                     .strip().splitlines()[-1])
    assert out["devices"] == 8
    for case, result in zip(cases, out["cases"]):
        assert result["single_predictions_match_apply"], case  # Runner.predict = argmax of apply
        for mode in ("pmap", "sharded"):
            assert result[mode]["predictions"] == 1.0, (case, mode, result[mode])
            r = result[mode]
            assert r["n"] == 8 and r["step"] == 3
            # each figure is max |a - b| / (1e-6 + 1e-5 |b|): <= 1 means allclose(rtol=1e-5)
            assert r["params"] <= 1, (case, mode, r)
            assert r["batch_stats"] <= 1, (case, mode, r)
            assert r["metrics"] <= 1 and r["eval"] <= 1, (case, mode, r)


TRAIN = ["-m", "cnn_jax", "train", "--config", "experiments/lenet5_mnist.py", "--quiet",
         "--config.model.name=mlp", "--config.data.name=digits", "--config.data.batch_size=32",
         "--config.optim.name=momentum", "--config.optim.learning_rate=0.05"]


def _summary(workdir):
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)


def _close(a, b, rtol=1e-5):
    for k in ("loss", "accuracy", "top5"):
        assert abs(a[k] - b[k]) <= 1e-6 + rtol * abs(b[k]), (k, a, b)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_run_matches_one_process(data_dir, tmp_path):
    common = TRAIN + [f"--config.data.data_dir={data_dir}", "--config.train.steps=12",
                      "--config.parallel.mode=sharded"]
    _py(common + ["--workdir", str(tmp_path / "one")], 4)
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, *common, "--workdir", str(tmp_path / "two"),
             "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
            env=_env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=HANG_S) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    one, two = _summary(tmp_path / "one"), _summary(tmp_path / "two")
    assert two["parallel"] == {"mode": "sharded", "devices": 4}
    _close(two["test"], one["test"])
    assert "test accuracy" in outs[0][0] and "test accuracy" not in outs[1][0]  # only process 0 reports


@pytest.mark.long  # .ci/run's long stage (several trainings under 8, 1 and 2 devices)
def test_checkpoints_move_across_device_counts_and_modes(data_dir, tmp_path):
    common = TRAIN + [f"--config.data.data_dir={data_dir}", "--config.train.checkpoint_every_steps=5"]
    _py(common + ["--workdir", str(tmp_path / "straight"), "--config.train.steps=20",
                  "--config.parallel.mode=sharded"], 8)
    _py(common + ["--workdir", str(tmp_path / "half"), "--config.train.steps=10",
                  "--config.parallel.mode=sharded"], 8)
    straight = _summary(tmp_path / "straight")
    for name, devices, mode in (("on1", 1, "single"), ("on2", 2, "pmap"), ("on2s", 2, "sharded")):
        shutil.copytree(tmp_path / "half", tmp_path / name)
        out = _py(common + ["--workdir", str(tmp_path / name), "--config.train.steps=20",
                            f"--config.parallel.mode={mode}", "--allow-config-change"], devices)
        assert "test accuracy" in out
        s = _summary(tmp_path / name)
        assert s["resumed_from"] == 10 and s["parallel"]["devices"] == devices
        _close(s["test"], straight["test"])


@pytest.mark.parametrize("devices", [2, pytest.param(3, marks=pytest.mark.long)])
def test_callers_state_survives_a_donated_step_in_every_mode(devices):
    """put_state copies: the donating step deletes the runner's buffers, never the caller's."""
    out = json.loads(_py([os.path.join(HERE, "helpers", "donation.py")], devices).strip().splitlines()[-1])
    assert out["devices"] == devices
    results = out["results"]
    assert sorted({(r["mode"], r["placed"]) for r in results}) == sorted(
        (m, p) for m in ("single", "pmap", "sharded") for p in (False, True))
    for r in results:
        assert r["devices"] == (1 if r["mode"] == "single" else devices), r
        assert r["step"] == 1 and r["leaves"] > 30, r
        assert r["deleted"] == 0 and r["changed"] == 0, r
