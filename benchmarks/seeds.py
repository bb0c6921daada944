"""K seeds as one vmapped program (``cnn_jax.train.vmap``) against K sequential runs.

Two figures, one process, the compilation cache of ``cnn-jax`` enabled:

* **step**: the vmapped training step over K stacked states and batches against K
  single-seed steps one after another (each the step ``fit`` runs), interleaved rounds;
* **runs**: ``train.vmap.fit_seeds`` on K configs differing only by ``seed`` against K
  ``train.fit`` calls one after another, each into a fresh run directory: what a sweep's
  seeds cost either way, evaluation, checkpoints and logs included.

Default: LeNet-5 on the embedded MNIST digits (``experiments/lenet5_mnist.py``), K = 8,
2 epochs. Goal on CPU: the vmapped runs at least 1.5x faster.

  python benchmarks/seeds.py [--k 8] [--config experiments/lenet5_mnist.py] [--epochs 2]
      [--rounds 5] [--steps 10]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time

from cnn_jax import experiment as experiment_lib


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--config", default="experiments/lenet5_mnist.py")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    from cnn_jax import runtime

    runtime.setup_runtime(False)  # the persistent compilation cache, as `cnn-jax` has it
    import jax
    import jax.numpy as jnp
    import numpy as np

    from cnn_jax import config as config_lib
    from cnn_jax import conv as conv_ops
    from cnn_jax.train import assemble
    from cnn_jax.train import state as state_lib
    from cnn_jax.train import step as step_lib
    from cnn_jax.train import vmap as seeds

    base = experiment_lib.load_experiment(args.config)
    base.train.epochs = args.epochs
    cfgs = [config_lib.resolve(config_lib.apply_overrides(base, [("seed", str(i))])) for i in range(args.k)]
    s = assemble.build(cfgs[0])
    shape, b = s.test.spec.shape, cfgs[0].data.batch_size
    print(f"{cfgs[0].model.name} on {cfgs[0].data.name}, batch {b}, K = {args.k}, {jax.devices()[0].platform}")

    # -- step ----------------------------------------------------------------------------
    states = [state_lib.create(s.model, s.state.tx, shape, c.seed) for c in cfgs]
    stack = lambda trees: jax.tree.map(lambda *a: jnp.stack(a), *trees)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(args.k, b, *shape)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, s.test.spec.num_classes, (args.k, b)), jnp.int32)
    opts = conv_ops.compiler_options()
    step = functools.partial(step_lib.train_step, loss_fn=s.loss_fn)
    vstep = jax.jit(jax.vmap(step), donate_argnums=0, compiler_options=opts)
    one = jax.jit(step, donate_argnums=0, compiler_options=opts)
    held = {"vmap": stack(states), "sequential": states}

    def run(kind: str) -> None:
        if kind == "vmap":
            st = held["vmap"]
            for _ in range(args.steps):
                st, m = vstep(st, {"image": images, "label": labels})
            held["vmap"] = st
        else:
            sts = held["sequential"]
            for _ in range(args.steps):
                for i in range(args.k):
                    sts[i], m = one(sts[i], {"image": images[i], "label": labels[i]})
        jax.block_until_ready(m)

    for kind in held:
        run(kind)
    times = {k: [] for k in held}
    for _ in range(args.rounds):
        for kind in held:
            t = time.perf_counter()
            run(kind)
            times[kind].append(time.perf_counter() - t)
    ms = {k: statistics.median(v) / args.steps * 1e3 for k, v in times.items()}
    print(f"step of all {args.k} seeds: vmapped {ms['vmap']:.1f} ms | sequential {ms['sequential']:.1f} ms"
          f" | vmapped speed-up {ms['sequential'] / ms['vmap']:.2f}x")

    # -- runs ----------------------------------------------------------------------------
    from cnn_jax import train

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        for i, c in enumerate(cfgs):
            train.fit(c, os.path.join(tmp, f"seq{i}"), progress=False)
        seq = time.perf_counter() - t
        t = time.perf_counter()
        seeds.fit_seeds(cfgs, [os.path.join(tmp, f"vmap{i}") for i in range(args.k)])
        vm = time.perf_counter() - t
    print(f"{args.k} runs of {args.epochs} epoch(s) ({s.total_steps} steps each): vmapped {vm:.1f} s | "
          f"sequential {seq:.1f} s | vmapped speed-up {seq / vm:.2f}x")


if __name__ == "__main__":
    main()
