"""``cnn-jax bench``: the speed of the exact training step ``fit`` runs, as one JSON line.

The step, state, optimizer and parallel mode are built from the same config as
``cnn-jax train`` (``--config`` and ``--config.a.b=V`` overrides work here too) on
synthetic device-resident batches, so the figure is the step's own speed, without the
input pipeline (``benchmarks/pipeline.py`` measures that). Fields:

* ``images_per_second``: ``batch_size / step_ms_median``;
* ``step_ms_median`` (and ``step_ms_p10`` / ``step_ms_p90``): wall time of one step,
  each step waited for, after ``--warmup`` steps;
* ``compile_s``: wall time of the first call (tracing, compilation or a persistent
  compilation-cache hit, and one step);
* ``devices``, ``mode``, ``platform``, the model, batch size and input shape.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cnn_jax import experiment as experiment_lib
from cnn_jax.errors import UserError


def add_commands(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "bench",
        help="time fit's training step (images/s, ms/step, compile time) as one JSON line",
        epilog="examples:\n  cnn-jax bench --model lenet5 --batch-size 128\n"
        "  cnn-jax bench --model resnet20 --batch-size 256 --input-shape 32,32,3 --steps 20\n"
        "  cnn-jax bench --config experiments/lenet5_mnist.py --config.model.pool=avg",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("--model", help="registered model name (default: the config's)")
    b.add_argument("--config", help="experiment file FILE.py[:ARG] (default: the base config)")
    b.add_argument("--batch-size", type=int, help="global batch size (default: the config's)")
    b.add_argument("--steps", type=int, default=50, help="timed steps (default 50)")
    b.add_argument("--warmup", type=int, default=3, help="untimed steps after compilation (default 3)")
    b.add_argument("--input-shape", help="H,W,C (default: the config's dataset's)")
    b.add_argument("--num-classes", type=int, help="classes (default: the config's dataset's)")
    b.add_argument("--profile", metavar="DIR", help="write a jax.profiler trace of the timed "
                   "steps under DIR (TensorBoard's profile plugin: tensorboard --logdir DIR)")
    b.set_defaults(func=cmd_bench)


def cmd_bench(args, overrides) -> int:
    if args.batch_size is not None:
        overrides = [("data.batch_size", str(args.batch_size)), *overrides]
    for name, value, least in (("--steps", args.steps, 1), ("--warmup", args.warmup, 0)):
        if value < least:
            raise UserError(f"{name} must be at least {least}, got {value}")
    cfg = experiment_lib.from_args(args.config, overrides, model=args.model)
    shape = experiment_lib.parse_shape(args.input_shape) if args.input_shape else None
    print(json.dumps(run(cfg, steps=args.steps, warmup=args.warmup, shape=shape,
                         num_classes=args.num_classes, profile=args.profile)))
    return 0


def setup(cfg, shape, num_classes: int, total_steps: int):
    """``fit``'s runner for ``cfg`` with the placed initial state and one synthetic batch
    (seeded by ``cfg.seed``) on the devices: ``(runner, state, batch)``."""
    from cnn_jax.train import assemble

    model, state, loss_fn, eval_loss_fn = assemble.training_parts(cfg, shape, num_classes, total_steps, total_steps)
    runner = assemble.make_runner(cfg, loss_fn, eval_loss_fn, model, shape)
    runner.check_batch_size(cfg.data.batch_size)
    rng = np.random.default_rng(cfg.seed)
    batch = {
        "image": rng.normal(size=(cfg.data.batch_size, *shape)).astype(np.float32),
        "label": rng.integers(0, num_classes, cfg.data.batch_size).astype(np.int32),
    }
    return runner, runner.put_state(state), runner.put_batch(batch)  # put_batch takes this process's rows


def run(cfg, *, steps: int = 50, warmup: int = 3, shape=None, num_classes: int | None = None,
        profile: str | None = None) -> dict:
    """Times ``fit``'s step for the resolved config ``cfg``; returns the JSON fields.
    ``profile``: a directory for a ``jax.profiler`` trace of the timed steps (their times
    then include the tracing)."""
    import jax

    from cnn_jax import data
    from cnn_jax.train import profiling

    spec = (data.DATASETS.get(cfg.data.name) if shape else
            data.batch_spec(cfg.data.name, cfg.data.data_dir or None, data.Options.of(cfg.data)))
    shape = tuple(shape or spec.shape)
    num_classes = spec.num_classes if num_classes is None else num_classes
    if num_classes < 1:
        raise UserError(f"--num-classes must be positive, got {num_classes}")
    batch_size = cfg.data.batch_size  # positive: config.resolve checked it
    runner, state, batch = setup(cfg, shape, num_classes, steps + warmup + 1)

    t = time.perf_counter()
    state, sums = runner.train_step(state, batch)
    jax.block_until_ready(sums)
    compile_s = time.perf_counter() - t
    for _ in range(warmup):
        state, sums = runner.train_step(state, batch)
    jax.block_until_ready(sums)
    times = []
    tracer = profiling.StepProfiler((1, steps) if profile else None, profile or "")
    for i in range(steps):
        t = time.perf_counter()
        with tracer.step(i + 1):
            state, sums = runner.train_step(state, batch)
            jax.block_until_ready(sums)
        times.append(time.perf_counter() - t)
    tracer.close()
    ms = np.asarray(times) * 1e3
    median = float(np.median(ms))
    return {
        "model": cfg.model.name,
        "batch_size": batch_size,
        "input_shape": list(shape),
        "images_per_second": round(batch_size / median * 1e3, 1),
        "step_ms_median": round(median, 3),
        "step_ms_p10": round(float(np.percentile(ms, 10)), 3),
        "step_ms_p90": round(float(np.percentile(ms, 90)), 3),
        "compile_s": round(compile_s, 3),
        "steps": steps,
        "devices": runner.num_devices,
        "mode": runner.mode,
        "platform": jax.devices()[0].platform,
        **({"profile": profile} if profile else {}),
    }
