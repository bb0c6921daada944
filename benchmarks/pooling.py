"""Pooling speed on this machine: every kind relative to ``avg``, and max vs avg train steps.

Usage::

    python benchmarks/pooling.py [--rounds 7] [--kinds max,avg,...] [--skip-kinds] [--skip-steps]

Prints, for a LeNet-sized (128×28×28×6) and a CIFAR-sized (128×30×30×32) activation, the
time of one jitted forward+backward pass of each registered pooling kind (2×2 window,
stride 2, VALID, training mode; value and gradient of ``0.5 * sum(y^2)`` with respect to
the input and the parameters, if any) divided by that of ``avg``; ``max (reduce_window)``
is plain ``lax.reduce_window`` max, the path that the reshape fast path replaces. Then the
full training step (``cnn_jax.train.train_step``, jitted as ``fit`` does) of ``lenet5``
(28×28×1) and ``simple_cnn`` (32×32×3) at batch 128 with ``max`` and with ``avg``
pooling (and, for reference, with plain ``lax.reduce_window`` max). Timings are medians
over interleaved rounds in one process (each round times every variant once), so slow
drifts of a shared machine hit all variants alike; both wall-clock and process CPU time
are shown (the latter is less disturbed by other jobs on the machine).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax import models, optim, pooling
from cnn_jax import train as train_lib
from cnn_jax.losses import LOSSES


def _time(fn, *args, reps: int) -> tuple[float, float]:
    """``(wall, cpu)`` seconds per call of ``fn(*args)`` (already compiled), averaged over
    ``reps`` calls. ``cpu`` is this process's CPU time (all threads): on a machine shared
    with other jobs it is less disturbed by them than the wall-clock time."""
    jax.block_until_ready(fn(*args))
    t, c = time.perf_counter(), time.process_time()
    for _ in range(reps):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / reps, (time.process_time() - c) / reps


def _medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return (statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples))


def _pool_fns(shape, kinds):
    """``{label: (jitted fwd+bwd fn, args)}`` for each kind on an input of ``shape``."""
    x = jax.random.uniform(jax.random.PRNGKey(0), shape, jnp.float32)
    x = jnp.maximum(x - 0.3, 0.0)  # ReLU-like: non-negative with exact zeros (ties)
    rng = jax.random.PRNGKey(1)
    out = {}
    for kind in kinds:
        layer = pooling.Pool(kind, (2, 2), None, "VALID")
        variables = layer.init({"params": jax.random.PRNGKey(2), "pool": rng}, x)
        params = variables.get("params", {})

        # 0.5 * sum(y^2): the cotangent is y itself, so neither the forward pass nor the
        # backward pass can be simplified away (the gradient of sum(avg_pool(x)) is a
        # constant XLA would fold).
        def loss(params, x, rng, layer=layer):
            y = layer.apply({"params": params}, x, train=True, rngs={"pool": rng})
            return 0.5 * jnp.sum(y * y)

        out[kind] = (jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), (params, x, rng))

    def rw_loss(x):
        y = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return 0.5 * jnp.sum(y * y)

    out["max (reduce_window)"] = (jax.jit(jax.value_and_grad(rw_loss)), (x,))
    return out


def bench_kinds(rounds: int, kinds) -> None:
    for shape in ((128, 28, 28, 6), (128, 30, 30, 32)):
        fns = _pool_fns(shape, kinds)
        for fn, args in fns.values():  # compile
            jax.block_until_ready(fn(*args))
        reps = max(1, int(0.02 / max(_time(fns["avg"][0], *fns["avg"][1], reps=3)[0], 1e-6)))
        times = {k: [] for k in fns}
        for _ in range(rounds):
            for k, (fn, args) in fns.items():
                times[k].append(_time(fn, *args, reps=reps))
        med = {k: _medians(v) for k, v in times.items()}
        wall0, cpu0 = med["avg"]
        print(f"\nforward+backward, input {'x'.join(map(str, shape))}, 2x2/2 VALID "
              f"(median of {rounds} rounds x {reps} calls)")
        print(f"{'kind':<22}{'wall ms':>9}{'vs avg':>8}{'cpu ms':>9}{'vs avg':>8}")
        for k in sorted(med, key=lambda k: med[k][1]):
            wall, cpu = med[k]
            print(f"{k:<22}{wall * 1e3:>9.3f}{wall / wall0:>8.2f}{cpu * 1e3:>9.3f}{cpu / cpu0:>8.2f}")
        sys.stdout.flush()


def _train_step(model_name: str, pool: str, input_shape, batch: int = 128):
    model = models.create(model_name, 10, pool=pool)
    tx = optim.build(optim_config(), 1000, 100)
    state = train_lib.create_train_state(model, tx, input_shape, 0)
    loss_fn = functools.partial(LOSSES.get("softmax_cross_entropy"), num_classes=10)
    step = jax.jit(functools.partial(train_lib.train_step, loss_fn=loss_fn))
    key = jax.random.PRNGKey(3)
    data = {
        "image": jax.random.uniform(key, (batch, *input_shape), jnp.float32),
        "label": jax.random.randint(key, (batch,), 0, 10),
    }
    return step, state, data


def optim_config():
    from cnn_jax.config import base_config

    return base_config().optim  # adam, constant learning rate


_RW = "_max_reduce_window"


def _register_reference_max() -> None:
    """Registers (in this process only) plain ``lax.reduce_window`` max pooling, the path
    that the library's reshape fast path replaces, to show what it costs in a train step."""
    if _RW in pooling.POOLS:
        return

    @pooling.register(_RW)
    def _max_rw(x, window, strides, pads, *, train=False, rng=None):
        return lax.reduce_window(
            x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0))
        )


def bench_steps(rounds: int) -> None:
    print()
    _register_reference_max()
    for model_name, input_shape in (("lenet5", (28, 28, 1)), ("simple_cnn", (32, 32, 3))):
        variants = {p: _train_step(model_name, p, input_shape) for p in ("max", "avg", _RW)}
        for step, state, data in variants.values():  # compile
            jax.block_until_ready(step(state, data))
        times = {p: [] for p in variants}
        reps = 20 if model_name == "lenet5" else 5
        for _ in range(rounds):
            for p, (step, state, data) in variants.items():
                # Steps are timed on the same state (not donated) so that every call does
                # the same work.
                times[p].append(_time(lambda s, d, step=step: step(s, d)[1], state, data,
                                      reps=reps))
        med = {p: _medians(v) for p, v in times.items()}
        print(f"train step {model_name} {'x'.join(map(str, input_shape))}, batch 128 "
              f"(median of {rounds} rounds x {reps} steps)")
        for i, what in ((0, "wall"), (1, "cpu ")):
            mx, av, rw = med["max"][i], med["avg"][i], med[_RW][i]
            print(f"  {what}: max {mx * 1e3:7.2f} ms  avg {av * 1e3:7.2f} ms  max/avg {mx / av:.3f}"
                  f"  | reduce_window max {rw * 1e3:7.2f} ms  reduce_window max/avg {rw / av:.3f}")
        sys.stdout.flush()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--kinds", default="", help="comma-separated kinds (default: all)")
    ap.add_argument("--skip-kinds", action="store_true")
    ap.add_argument("--skip-steps", action="store_true")
    args = ap.parse_args(argv)
    kinds = args.kinds.split(",") if args.kinds else pooling.names()
    if "avg" not in kinds:
        kinds = ["avg", *kinds]
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} CPUs")
    if not args.skip_kinds:
        bench_kinds(args.rounds, kinds)
    if not args.skip_steps:
        bench_steps(args.rounds)


if __name__ == "__main__":
    main()
