"""The accelerator path: checks that only mean something on a GPU (marker ``gpu``).

Deselected by default (``addopts`` has ``-m 'not slow and not gpu'``); on the GPU machine
``benchmarks/gpu_check.py`` runs them with ``pytest -m gpu tests/test_gpu.py``. They run
on the platform ``CNN_JAX_TEST_PLATFORM`` names (default ``gpu``) and fail, never skip,
when JAX's backend is another one; ``CNN_JAX_TEST_PLATFORM=cpu`` runs the same tests on
CPU, which is how the CPU rehearsal (``gpu_check.py --platform cpu --quick``) exercises
them. Every step is ``fit``'s own (``cnn_jax.bench.setup``) on synthetic batches.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

PLATFORM = os.environ.get("CNN_JAX_TEST_PLATFORM", "gpu")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module", autouse=True)
def backend():
    import jax

    got = jax.default_backend()
    if got != PLATFORM:
        pytest.fail(
            f"these tests must run on {PLATFORM!r} but JAX's backend is {got!r} "
            f"({jax.devices()}); CNN_JAX_TEST_PLATFORM=cpu rehearses them on CPU"
        )
    return got


def _setup(
    *,
    mode="auto",
    dtype="float32",
    model="lenet5",
    batch=32,
    shape=(28, 28, 1),
    optim="momentum",
    extra=(),
):
    """``fit``'s runner, placed state and one synthetic batch for a BatchNorm + max
    pooling model (momentum SGD: an update linear in the gradient, so rounding noise in
    near-zero gradients is not amplified as Adam's normalisation would)."""
    from cnn_jax import bench
    from cnn_jax import experiment as experiment_lib

    cfg = experiment_lib.from_args(
        None,
        [
            ("model.name", model),
            ("model.norm", "batch"),
            ("model.pool", "max"),
            ("model.dtype", dtype),
            ("data.batch_size", str(batch)),
            ("parallel.mode", mode),
            ("optim.name", optim),
            ("optim.learning_rate", "0.05"),
            *extra,
        ],
    )
    return bench.setup(cfg, shape, 10, 100)


def _train(runner, state, batch, steps: int):
    """``steps`` steps on ``batch``: the host state and each step's metric sums."""
    import jax

    metrics = []
    for _ in range(steps):
        state, sums = runner.train_step(state, batch)
        metrics.append({k: float(v) for k, v in jax.device_get(sums).items()})
    return jax.device_get(runner.get_state(state)), metrics


def _leaves(tree) -> list[np.ndarray]:
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_single_equals_sharded_on_one_device_with_batchnorm_and_max_pooling():
    import jax

    out = {}
    for mode in ("single", "sharded"):
        runner, state, batch = _setup(mode=mode)
        assert runner.mode == mode
        out[mode] = _train(runner, state, batch, 3)
    (s1, m1), (s2, m2) = out["single"], out["sharded"]
    assert int(s1.step) == int(s2.step) == 3
    assert jax.device_count() >= 1
    for name, a, b in (
        ("params", s1.params, s2.params),
        ("batch_stats", s1.batch_stats, s2.batch_stats),
    ):
        assert _leaves(a), name
        for x, y in zip(_leaves(a), _leaves(b), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=name)
    for a, b in zip(m1, m2, strict=True):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


# Measured on CPU (jax 0.10.2), one step from the same initialisation, LeNet-5 and the
# simple CNN with BatchNorm at batch 32 and 128: the mean loss differs from float32's by at
# most 6.4e-4 (bfloat16) / 6.1e-5 (float16) relative; the parameter update (the global norm
# of its difference over the float32 update's) by 0.09-0.14 / 0.02-0.09, BatchNorm's
# backward pass in low precision being most of it. The bounds leave room for the GPU's
# float32 reference, which XLA computes with TF32 by default; a wrong loss scale or a
# float16 overflow is orders of magnitude beyond them.
TOLERANCE = {"bfloat16": {"loss": 1e-2, "update": 0.35}, "float16": {"loss": 2e-3, "update": 0.25}}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_step_is_finite_and_close_to_float32(dtype):
    ref_runner, ref_state, batch = _setup(dtype="float32")
    init = _leaves(ref_runner.get_state(ref_state).params)
    ref, ref_m = _train(ref_runner, ref_state, batch, 1)
    runner, state, batch = _setup(dtype=dtype)
    for a, b in zip(_leaves(runner.get_state(state).params), init, strict=True):
        np.testing.assert_array_equal(a, b)  # same initialisation: parameters stay float32
    low, low_m = _train(runner, state, batch, 1)
    for x in _leaves(low.params) + _leaves(low.batch_stats) + list(low_m[0].values()):
        assert np.all(np.isfinite(x)), dtype
    assert low_m[0]["count"] == ref_m[0]["count"] > 0
    loss, ref_loss = low_m[0]["loss"] / low_m[0]["count"], ref_m[0]["loss"] / ref_m[0]["count"]
    assert abs(loss - ref_loss) <= TOLERANCE[dtype]["loss"] * abs(ref_loss), (loss, ref_loss)
    d_low = np.concatenate([(a - b).ravel() for a, b in zip(_leaves(low.params), init)])
    d_ref = np.concatenate([(a - b).ravel() for a, b in zip(_leaves(ref.params), init)])
    assert np.linalg.norm(d_ref) > 0
    rel = np.linalg.norm(d_low - d_ref) / np.linalg.norm(d_ref)
    assert rel <= TOLERANCE[dtype]["update"], (dtype, rel)
    if dtype == "float16":  # dynamic loss scaling: the first step was finite, so not skipped
        assert low.loss_scale is not None
        assert float(low.loss_scale[0]) == 2.0**15


def _run_hashes() -> list[str]:
    """:func:`_hashes_of_steps` in a fresh process with ``--xla_gpu_deterministic_ops=true``."""
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true"
    env = dict(
        os.environ,
        XLA_FLAGS=flags.strip(),
        PYTHONPATH=os.pathsep.join(
            [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
    )
    p = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "hashes"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_deterministic_ops_give_bitwise_repeatable_steps():
    first, second = _run_hashes(), _run_hashes()
    assert len(first) == 2
    assert first[0] == first[1] == second[0] == second[1], (first, second)


def _hashes_of_steps() -> list[str]:
    """The same 3 steps twice from one compiled step, each from a fresh copy of the
    initial state, hashed (parameters, BatchNorm statistics, optimizer state, metrics)."""
    import jax

    # On the GPU the simple CNN (its larger convolutions and reductions are where atomics and
    # autotuned cuDNN algorithms would differ); the CPU rehearsal takes LeNet-5, cheaper to
    # compile, since CPU steps are deterministic anyway and only the mechanism is rehearsed.
    model, shape = ("simple_cnn", (32, 32, 3)) if PLATFORM == "gpu" else ("lenet5", (28, 28, 1))
    runner, state, batch = _setup(model=model, batch=64, shape=shape, optim="adam")
    assert jax.default_backend() == PLATFORM
    out = []
    for _ in range(2):
        host, metrics = _train(runner, runner.put_state(state), batch, 3)  # put_state copies
        h = hashlib.sha256()
        for x in _leaves((host.params, host.batch_stats, host.opt_state)):
            h.update(np.ascontiguousarray(x).tobytes())
        h.update(json.dumps(metrics, sort_keys=True).encode())
        out.append(h.hexdigest())
    return out


if __name__ == "__main__" and sys.argv[1:] == ["hashes"]:
    assert "--xla_gpu_deterministic_ops=true" in os.environ.get("XLA_FLAGS", "")
    if PLATFORM == "cpu" and os.environ.get("CNN_JAX_CACHE_DIR"):
        # The rehearsal: the second process may load the first one's program (on the GPU
        # each process compiles and autotunes for itself).
        import jax

        jax.config.update("jax_compilation_cache_dir", os.environ["CNN_JAX_CACHE_DIR"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    print(json.dumps(_hashes_of_steps()))


def test_the_programs_run_here_hold_the_cpu_convolutions_only_on_cpu():
    """``fit``'s LeNet-5 steps as lowered for this backend: the CPU formulations of
    ``cnn_jax.conv`` (chosen per platform when lowering) are in them on CPU and nowhere
    else; and nothing in them is CPU-only elsewhere (``cnn_jax.lowering``)."""
    from cnn_jax import conv, lowering

    runner, state, batch = _setup()
    for name, program in runner.programs().items():
        text = program.lower(state, batch).as_text(debug_info=True)
        assert (conv.CPU_ONLY_SCOPE in text) == (PLATFORM == "cpu"), name
        if PLATFORM != "cpu":
            assert lowering.problems_of(text) == [], name
