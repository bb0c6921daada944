"""cnn-jax bench, the host-device default of the CLI and parallel.mode=auto on CPU."""

import json
import os
import types

import pytest

from cnn_jax import cli, runtime
from cnn_jax.errors import UserError
from cnn_jax.train import assemble

FIELDS = {"images_per_second", "step_ms_median", "step_ms_p10", "step_ms_p90", "compile_s",
          "devices", "mode", "platform", "model", "batch_size", "input_shape", "steps"}


def test_bench_prints_one_json_line_for_fits_step(capsys):
    assert cli.main(["bench", "--model", "lenet5", "--batch-size", "8", "--steps", "3", "--warmup", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    r = json.loads(lines[0])
    assert FIELDS <= set(r)
    assert (r["model"], r["batch_size"], r["input_shape"], r["steps"]) == ("lenet5", 8, [28, 28, 1], 3)
    assert r["step_ms_p10"] <= r["step_ms_median"] <= r["step_ms_p90"]
    assert r["images_per_second"] == pytest.approx(8 / r["step_ms_median"] * 1e3, rel=1e-3)
    assert r["compile_s"] > 0 and r["devices"] >= 1 and r["platform"] == "cpu"


def test_bench_takes_configs_overrides_and_input_shapes(capsys):
    argv = ["bench", "--model", "simple_cnn", "--batch-size", "4", "--steps", "2", "--input-shape", "32,32,3",
            "--num-classes", "100", "--config.model.pool=avg", "--config.model.width=0.25"]
    assert cli.main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["input_shape"] == [32, 32, 3] and r["model"] == "simple_cnn"


@pytest.mark.parametrize("extra,message", [
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--warmup", "-1"], "--warmup must be at least 0, got -1"),
    (["--batch-size", "0"], "data.batch_size"),
    (["--model", "lenett5"], "unknown model 'lenett5'"),
    (["--input-shape", "28,28"], "invalid --input-shape '28,28'"),
    (["--num-classes", "0"], "--num-classes must be positive, got 0"),
])
def test_bench_user_mistakes(capsys, extra, message):
    argv = ["bench", "--model", "lenet5", "--batch-size", "4", "--steps", "2", *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.fixture
def no_jax(monkeypatch):
    """host_device_flags acts only before jax is imported: pretend it is not."""
    import sys

    monkeypatch.delitem(sys.modules, "jax")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("CNN_JAX_HOST_DEVICES", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    return monkeypatch


def test_host_devices_one_per_core_for_training_commands(no_jax):
    runtime.host_device_flags(["--debug", "train", "--config", "x.py"])
    flags = os.environ["XLA_FLAGS"]
    assert "--xla_force_host_platform_device_count=3" in flags
    assert "--xla_cpu_collective_timeout_seconds=600" in flags


@pytest.mark.parametrize("argv", [["sweep", "e.py"], ["summary", "--model", "lenet5"], []])
def test_host_devices_not_split_for_other_commands(no_jax, argv):
    runtime.host_device_flags(argv)
    assert "XLA_FLAGS" not in os.environ


def test_host_devices_from_the_environment(no_jax):
    no_jax.setenv("CNN_JAX_HOST_DEVICES", "2")
    runtime.host_device_flags(["sweep", "e.py"])
    assert "--xla_force_host_platform_device_count=2" in os.environ["XLA_FLAGS"]
    no_jax.setenv("CNN_JAX_HOST_DEVICES", "1")
    no_jax.delenv("XLA_FLAGS")
    runtime.host_device_flags(["train"])
    assert "XLA_FLAGS" not in os.environ
    no_jax.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=5")
    no_jax.setenv("CNN_JAX_HOST_DEVICES", "2")
    runtime.host_device_flags(["train"])
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=5"


def test_bad_host_device_count_is_a_user_error(no_jax):
    no_jax.setenv("CNN_JAX_HOST_DEVICES", "two")
    with pytest.raises(UserError, match="CNN_JAX_HOST_DEVICES must be a positive integer, got 'two'"):
        runtime.host_device_flags(["train"])


def _cpu_devices(monkeypatch, n):
    fake = [types.SimpleNamespace(platform="cpu", process_index=0) for _ in range(n)]
    monkeypatch.setattr(assemble.jax, "devices", lambda: fake)


@pytest.mark.parametrize("name,shape,batch,mode", [
    ("lenet5", (28, 28, 1), 128, "single"),  # 0.42 M MACs x 64 per device: too small
    ("simple_cnn", (32, 32, 3), 128, "sharded"),  # 4.5 M MACs x 64 per device
    ("simple_cnn", (32, 32, 3), 127, "single"),  # the batch does not divide
])
def test_auto_mode_on_cpu_host_devices_follows_the_step_size(monkeypatch, name, shape, batch, mode):
    from cnn_jax import models

    _cpu_devices(monkeypatch, 2)
    assert assemble.auto_mode(models.create(name, 10), shape, batch) == mode


def test_auto_mode_elsewhere_keeps_the_runner_rule(monkeypatch):
    from cnn_jax import models

    _cpu_devices(monkeypatch, 1)
    assert assemble.auto_mode(models.create("simple_cnn", 10), (32, 32, 3), 128) == "auto"
