"""Train-step time of the exact step ``fit`` uses, over 1 and 2 (or N) devices.

Each device count runs in its own subprocess (XLA_FLAGS must be set before jax is
imported); within a subprocess the step of each model is timed in interleaved rounds and
the median is printed. On CPU the devices are XLA host devices
(``--xla_force_host_platform_device_count``); on a GPU machine run with
``--platform gpu`` to use the real devices.

  python benchmarks/scaling.py [--devices 1,2] [--batch-size 128] [--steps 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time


def worker(args) -> None:
    import jax
    import numpy as np

    from cnn_jax import config as config_lib
    from cnn_jax import losses, models, optim
    from cnn_jax.train import state as state_lib
    from cnn_jax.train.parallel import Runner

    results = {}
    setups = {}
    for name, shape in (("lenet5", (28, 28, 1)), ("simple_cnn", (32, 32, 3))):
        model = models.create(name, 10)
        c = config_lib.base_config().optim
        tx = optim.build(c, 1000, 100)
        state = state_lib.create(model, tx, shape, seed=0)
        loss_fn = functools.partial(losses.softmax_cross_entropy, num_classes=10)
        runner = Runner(args.mode, loss_fn, loss_fn)
        rng = np.random.default_rng(0)
        batch = {"image": rng.normal(size=(args.batch_size, *shape)).astype(np.float32),
                 "label": rng.integers(0, 10, args.batch_size).astype(np.int32)}
        dev_batch = runner.put_batch(batch)
        st = runner.put_state(state)
        st, sums = runner.train_step(st, dev_batch)  # compile
        jax.block_until_ready(sums)
        setups[name] = [runner, st, dev_batch]
        results[name] = []
    for _ in range(args.rounds):
        for name, s in setups.items():
            runner, st, b = s
            t = time.perf_counter()
            for _ in range(args.steps):
                st, sums = runner.train_step(st, b)
            jax.block_until_ready(sums)
            results[name].append((time.perf_counter() - t) / args.steps * 1e3)
            s[1] = st
    print(json.dumps({
        "devices": jax.device_count(), "platform": jax.devices()[0].platform,
        "mode": setups["lenet5"][0].mode,
        "ms": {k: statistics.median(v) for k, v in results.items()},
    }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", default="1,2")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--platform", default="cpu")
    p.add_argument("--mode", default="auto")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for n in [int(x) for x in args.devices.split(",")]:
        env = dict(os.environ)
        if args.platform == "cpu":
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
            env["JAX_PLATFORMS"] = "cpu"
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(n))
        mode = "single" if n == 1 else args.mode
        out = subprocess.run(
            [sys.executable, __file__, "--worker", "--batch-size", str(args.batch_size),
             "--steps", str(args.steps), "--rounds", str(args.rounds), "--mode", mode],
            env=env, capture_output=True, text=True, check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["ms"]
    print(f"batch {args.batch_size}, median of {args.rounds} rounds x {args.steps} steps "
          f"({rows[0]['platform']})")
    print(f"{'devices':>7} {'mode':>8} {'lenet5 ms':>10} {'speed-up':>9} {'simple_cnn ms':>14} {'speed-up':>9}")
    for r in rows:
        m = r["ms"]
        print(f"{r['devices']:>7} {r['mode']:>8} {m['lenet5']:>10.2f} {base['lenet5'] / m['lenet5']:>8.2f}x "
              f"{m['simple_cnn']:>14.2f} {base['simple_cnn'] / m['simple_cnn']:>8.2f}x")


if __name__ == "__main__":
    main()
