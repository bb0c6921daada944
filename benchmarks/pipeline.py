"""``fit``'s input pipeline against device-resident batches: what does feeding cost?

Both sides run ``fit``'s inner loop for the same config (default: LeNet-5 on the embedded
MNIST digits, ``experiments/lenet5_mnist.py``): the jitted step, the metric accumulation
and a host read every ``train.log_every_steps``. The *pipeline* side takes its batches from
``fit``'s grain iterator (seeded shuffling, augmentation when configured, normalisation)
through the prefetching thread that puts them on the devices; the *resident* side reuses
one batch already on the devices. Rounds alternate in one process; the medians and the
slowdown are printed (goal: the pipeline at most 5 % slower).

  python benchmarks/pipeline.py [--config experiments/lenet5_mnist.py] [--steps 60] [--rounds 7]
      [--config.data.batch_size=128] [--config.data.crop_padding=4] ...
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from cnn_jax import experiment as experiment_lib


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="experiments/lenet5_mnist.py")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=7)
    from cnn_jax import config as config_lib

    overrides, rest = experiment_lib.parse_override_args(sys.argv[1:])
    args = p.parse_args(rest)
    from cnn_jax import cli

    cli.host_device_flags(["train"])  # the XLA host devices `cnn-jax train` would have
    import jax

    from cnn_jax import data
    from cnn_jax.train import assemble
    from cnn_jax.train import step as step_lib

    cfg = config_lib.resolve(config_lib.apply_overrides(experiment_lib.load_experiment(args.config), overrides))
    s = assemble.build(cfg)
    runner = assemble.make_runner(cfg, s.loss_fn, s.eval_loss_fn, s.model, s.test.spec.shape)
    it = data.train_iterator(s.train, cfg.data.batch_size, cfg.seed,
                             crop_padding=cfg.data.crop_padding, flip=cfg.data.flip)
    batches = runner.prefetch(it, cfg.data.prefetch)
    resident = next(batches)[0]
    state = [runner.put_state(s.state)]
    log_every = cfg.train.log_every_steps

    def run(source) -> None:
        st, acc = state[0], None
        for i in range(1, args.steps + 1):
            batch = next(batches)[0] if source == "pipeline" else resident
            st, sums = runner.train_step(st, batch)
            acc = step_lib.combine(acc, sums)
            if i % log_every == 0:
                jax.device_get(acc)
                acc = None
        jax.block_until_ready(st.params)
        state[0] = st

    run("resident")  # compile and warm up both paths
    run("pipeline")
    times = {"pipeline": [], "resident": []}
    for _ in range(args.rounds):
        for source, seconds in times.items():
            t = time.perf_counter()
            run(source)
            seconds.append(time.perf_counter() - t)
    batches.close()
    ms = {k: statistics.median(v) / args.steps * 1e3 for k, v in times.items()}
    print(f"{cfg.model.name} on {cfg.data.name}, batch {cfg.data.batch_size}, {runner.mode} on "
          f"{runner.num_devices} device(s), {args.rounds} rounds x {args.steps} steps")
    print(f"resident batches: {ms['resident']:.2f} ms/step ({cfg.data.batch_size / ms['resident'] * 1e3:.0f} img/s)")
    print(f"fit's pipeline:   {ms['pipeline']:.2f} ms/step ({cfg.data.batch_size / ms['pipeline'] * 1e3:.0f} img/s)")
    print(f"pipeline slowdown: {(ms['pipeline'] / ms['resident'] - 1) * 100:+.1f} %")


if __name__ == "__main__":
    main()
