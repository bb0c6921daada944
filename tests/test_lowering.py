"""The training and evaluation steps lower for GPU and TPU without either device
(``jax.export``, ``cnn_jax.lowering``): one model per family, in every parallel mode, in
float32 and bfloat16, with none of the CPU-only formulations or CPU libraries in the
program; and the check itself fails on a CPU-only path or primitive."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from jax import lax

from cnn_jax import conv, lowering
from cnn_jax import experiment as experiment_lib

# One model per family: LeNet-5 (the CPU tap and col2im convolutions), the simple CNN,
# a ResNet with BatchNorm, VGG with dropout.
FAMILIES = {
    "lenet5": ((28, 28, 1), []),
    "simple_cnn": ((28, 28, 1), []),
    "resnet20": ((32, 32, 3), [("model.norm", "batch")]),
    "vgg11": ((32, 32, 3), [("model.dropout", "0.5"), ("model.width", "0.25"), ("model.hidden", "[256, 256]")]),
}
# (VGG's widths are cut: lowering does not depend on them, and the state the check builds
# would otherwise hold VGG-11's 128.8 M parameters (10 classes, 32x32) in every mode.)
MODES = ("single", "pmap", "sharded")
DTYPES = ("float32", "bfloat16")

# Each family in a process of its own with two host devices (pmap and sharded need more
# than one); it prints {mode/dtype: {program: problems}}.
_CHILD = """
import json, sys
from cnn_jax import experiment, lowering
model, shape, extra = json.loads(sys.argv[1])
out = {}
for mode in %r:
    for dtype in %r:
        cfg = experiment.from_args(None, [("model.name", model), ("parallel.mode", mode),
            ("model.dtype", dtype), ("data.batch_size", "4"), *map(tuple, extra)])
        out[mode + "/" + dtype] = lowering.check(cfg, tuple(shape), 10)
print(json.dumps(out))
""" % (MODES, DTYPES)


def _cfg(model="lenet5", **extra):
    return experiment_lib.from_args(
        None, [("model.name", model), ("data.batch_size", "4"), *extra.items()])


# ResNet and VGG (28 and 18 s of the default suite's 10-minute budget) run in the long stage.
LONG_FAMILIES = ("resnet20", "vgg11")


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.long) if m in LONG_FAMILIES else m
                                   for m in FAMILIES])
def test_every_step_lowers_for_cuda_and_tpu_without_cpu_only_code(model):
    shape, extra = FAMILIES[model]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([model, shape, extra])],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(found) == sorted(f"{m}/{d}" for m in MODES for d in DTYPES)
    for case, programs in found.items():
        assert set(programs) == {"train", "eval"}
        assert programs == {"train": [], "eval": []}, (model, case, programs)


def test_the_cpu_program_has_the_cpu_formulations_the_check_looks_for():
    """The control: lowered for the CPU, LeNet-5's steps do hold the CPU-only scope (in the
    forward and in the custom gradient), so its absence for cuda/tpu means something."""
    found = lowering.check(_cfg(), (28, 28, 1), 10, platforms=("cpu",))
    assert found == {"train": [f"a CPU-only formulation ({conv.CPU_ONLY_SCOPE})"]} | {
        "eval": [f"a CPU-only formulation ({conv.CPU_ONLY_SCOPE})"]}


def test_a_cpu_path_traced_for_accelerators_fails_the_check(monkeypatch):
    """Deliberately broken: the CPU formulation taken whatever the platform (what choosing
    it by ``jax.default_backend()`` at trace time did)."""
    monkeypatch.setattr(conv.lax, "platform_dependent", lambda *a, cpu, default: cpu(*a))
    jax.clear_caches()  # no step traced with the real selection is reused
    try:
        found = lowering.check(_cfg(), (28, 28, 1), 10)
    finally:
        monkeypatch.undo()
        jax.clear_caches()
    assert found["train"] == [f"a CPU-only formulation ({conv.CPU_ONLY_SCOPE})"]


def test_a_cpu_only_primitive_or_library_fails_the_check():
    x = jnp.eye(3)
    schur = lowering.check_programs({"f": jax.jit(lambda x: lax.linalg.schur(x)[0])}, (x,))["f"]
    assert len(schur) == 2 and all("'schur' not found" in p for p in schur)
    assert [p[:8] for p in schur] == ["for cuda", "for tpu:"]
    eigh = jax.jit(lambda x: jnp.linalg.eigh(x)[0])
    assert lowering.check_programs({"f": eigh}, (x,))["f"] == []  # cusolver / TPU kernels
    on_cpu = lowering.check_programs({"f": eigh}, (x,), ("cpu",))["f"]
    assert len(on_cpu) == 1 and on_cpu[0].startswith("the CPU custom call lapack_")
