"""Gradient accumulation: a ``lax.scan`` over micro-batches inside the step against
``optax.MultiSteps``.

* **scan** (``train.grad_accum_steps``, what ``cnn_jax.train.step`` does): one program
  per optimizer step, the scan unrolled (``step.ACCUM_UNROLL``), micro-batch j after
  j - 1;
* **scan, rolled**: the scan as an XLA while loop;
* **optax.MultiSteps**: the optimizer applies the mean of k micro-steps' gradients every
  k-th call: k dispatches of the one-micro-batch step per optimizer step;
* **no accumulation**: the whole batch in one pass (what accumulating costs).

One device, the batches already on it (no host transfer timed), interleaved rounds; each
figure is the median over rounds of the time of one optimizer step (a batch of B images,
k micro-batches of B/k), with each variant's first call (compilation, no persistent cache)
and its largest parameter difference from no accumulation after one optimizer step (the
same update: float rounding).

  python benchmarks/grad_accum.py [--model lenet5] [--shape 28,28,1] [--batch 64] [--k 4]
      [--steps 10] [--rounds 9]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lenet5")
    p.add_argument("--shape", default="28,28,1")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--steps", type=int, default=10, help="optimizer steps per round")
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args()
    import jax
    import numpy as np
    import optax

    from cnn_jax import config as config_lib
    from cnn_jax import conv as conv_ops
    from cnn_jax import losses, models, optim, runtime
    from cnn_jax.train import state as state_lib
    from cnn_jax.train import step as step_lib
    from cnn_jax.train.parallel import Runner

    shape, b, k = tuple(int(x) for x in args.shape.split(",")), args.batch, args.k
    model = models.create(args.model, 10)
    c = config_lib.base_config().optim
    c.name, c.learning_rate = "momentum", 0.05
    tx = optim.build(c, 1000, 100)
    loss_fn = functools.partial(losses.softmax_cross_entropy, num_classes=10)
    usual = conv_ops.compiler_options()

    def step(**kw):  # a new function each time: jit's trace cache keys on the function
        return functools.partial(step_lib.train_step, loss_fn=loss_fn, **kw)

    # name: (step, its compile options, scan unrolled, optimizer)
    variants = {
        "scan": (step(accum_steps=k), usual, True, tx),
        "scan, rolled": (step(accum_steps=k), usual, False, tx),
        "optax.MultiSteps": (step(), usual, True, optax.MultiSteps(tx, every_k_schedule=k)),
        "no accumulation": (step(), usual, True, tx),
    }
    placer = Runner("single", loss_fn, loss_fn)
    fns = {name: jax.jit(f, donate_argnums=0, compiler_options=o) for name, (f, o, _, _) in variants.items()}
    states = {name: placer.put_state(state_lib.create(model, v[3], shape, seed=0)) for name, v in variants.items()}

    rng = np.random.default_rng(0)
    batches = [{"image": rng.normal(size=(b, *shape)).astype(np.float32),
                "label": rng.integers(0, 10, b).astype(np.int32)} for _ in range(args.steps)]
    whole = [placer.put_batch(x) for x in batches]
    micro = [[placer.put_batch({key: v[j::k] for key, v in x.items()}) for j in range(k)] for x in batches]

    def one_round(name):
        f, st = fns[name], states[name]
        t = time.perf_counter()
        for i in range(args.steps):
            for mb in micro[i] if name == "optax.MultiSteps" else [whole[i]]:
                st, sums = f(st, mb)
        jax.block_until_ready((st, sums))
        states[name] = st
        return (time.perf_counter() - t) / args.steps

    first, after_one = {}, {}
    for name in variants:  # compile (the flag is read when the step is traced) and check
        step_lib.ACCUM_UNROLL = variants[name][2]
        t = time.perf_counter()
        for mb in micro[0] if name == "optax.MultiSteps" else [whole[0]]:
            states[name], sums = fns[name](states[name], mb)
        jax.block_until_ready(sums)
        first[name] = time.perf_counter() - t
        after_one[name] = jax.device_get(states[name].params)
    step_lib.ACCUM_UNROLL = True
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in variants:
            times[name].append(one_round(name))

    print(f"CPU: {runtime.cpu_model()[0]} ({os.cpu_count()} logical CPUs visible), jax {jax.__version__}, "
          f"{jax.devices()[0].platform}")
    print(f"{args.model} {shape}, batch {b} = {k} micro-batches of {b // k}, momentum SGD; "
          f"median of {args.rounds} rounds of {args.steps} optimizer steps")
    for name in variants:
        ms = statistics.median(times[name]) * 1e3
        spread = f"{min(times[name]) * 1e3:.2f}-{max(times[name]) * 1e3:.2f}"
        print(f"  {name:18s} {ms:8.2f} ms per optimizer step (range {spread}); "
              f"first call {first[name]:.2f} s")

    def diff(a, b):
        return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    ref = after_one["no accumulation"]
    print("  largest parameter difference from no accumulation after one optimizer step: "
          + ", ".join(f"{name} {diff(after_one[name], ref):.1e}" for name in variants if after_one[name] is not ref))


if __name__ == "__main__":
    main()
