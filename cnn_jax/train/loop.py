"""``fit`` and ``evaluate``: the training loop around the pure steps.

A workdir holds ``config.json`` (the resolved config), ``checkpoints/`` (Orbax),
``metrics.jsonl``, ``tensorboard/`` and, when training finishes, ``summary.json``.
Running ``fit`` again on the same workdir resumes from the newest checkpoint (train
state, data-iterator position and pending metric sums) and ends with exactly the metrics
of an uninterrupted run on CPU: per-step randomness is ``fold_in(rng, step)`` and the data
order is a function of the seed and the step.

Reliability: one writer per workdir (a pid lock); SIGTERM/SIGINT save a checkpoint and
raise :class:`~cnn_jax.errors.Preempted`; a non-finite loss is handled per
``train.on_nan``; nothing is written before the config, data and model have been
validated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import threading
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from cnn_jax import config as config_lib
from cnn_jax import data, losses, models, optim
from cnn_jax.errors import Diverged, Preempted, UserError
from cnn_jax.train import state as state_lib
from cnn_jax.train import step as step_lib
from cnn_jax.train import workdir as workdir_lib
from cnn_jax.train.checkpoint import Checkpoints
from cnn_jax.train.parallel import Runner
from cnn_jax.train.writer import MetricWriter, read_jsonl


@dataclasses.dataclass
class Setup:
    """Everything built from a resolved config."""

    cfg: ml_collections.ConfigDict
    model: Any
    train: data.Split | None
    test: data.Split
    state: state_lib.TrainState
    loss_fn: Any
    eval_loss_fn: Any
    steps_per_epoch: int
    total_steps: int


def model_options(cfg: ml_collections.ConfigDict) -> dict:
    opts = cfg.model.to_dict()
    opts.pop("name")
    return opts


def build(cfg: ml_collections.ConfigDict, *, with_train: bool = True) -> Setup:
    """Loads the data, creates the model, optimizer and initial state for ``cfg``."""
    data_dir = cfg.data.data_dir or data.default_data_dir()
    spec = data.DATASETS.get(cfg.data.name)
    test = data.load(cfg.data.name, cfg.data.test_split, data_dir)
    train = data.load(cfg.data.name, cfg.data.train_split, data_dir) if with_train else None
    n_train = len(train) if train is not None else cfg.data.batch_size
    if with_train and cfg.data.batch_size > n_train:
        raise UserError(
            f"data.batch_size {cfg.data.batch_size} is larger than the training split of "
            f"{cfg.data.name!r} ({n_train} examples); choose at most {n_train}"
        )
    spe = max(n_train // cfg.data.batch_size, 1)
    total = cfg.train.steps or cfg.train.epochs * spe
    model, state, loss_fn, eval_loss_fn = training_parts(cfg, spec.shape, spec.num_classes, total, spe)
    return Setup(cfg, model, train, test, state, loss_fn, eval_loss_fn, spe, total)


def training_parts(cfg: ml_collections.ConfigDict, shape, num_classes: int, total: int, spe: int):
    """``(model, state, loss_fn, eval_loss_fn)`` for ``cfg`` on inputs of ``shape`` without
    touching data (``build`` and ``cnn-jax bench``)."""
    model = models.create(cfg.model.name, num_classes, **model_options(cfg))
    tx = optim.build(cfg.optim, total, spe)
    if cfg.train.on_nan == "lower_lr":
        # A learning-rate multiplier that lives in (and is checkpointed with) opt_state.
        tx = optax.chain(tx, optax.inject_hyperparams(optax.scale)(step_size=1.0))
    state = state_lib.create(
        model, tx, shape, cfg.seed,
        dynamic_loss_scale=cfg.model.get("dtype") == "float16",
    )
    loss = losses.LOSSES.get(cfg.train.loss)
    loss_fn = functools.partial(loss, num_classes=num_classes, label_smoothing=cfg.train.label_smoothing)
    eval_loss_fn = functools.partial(loss, num_classes=num_classes)
    return model, state, loss_fn, eval_loss_fn


# ``parallel.mode=auto`` on CPU host devices shards the batch only when each device gets at
# least this many multiply-adds per step (forward): measured on 2 cores at batch 128,
# sharding over 2 host devices made the seeds' CIFAR net (290 M per device) 1.4-1.6x
# faster and LeNet-5 (27 M per device) 0.85x as fast (benchmarks/RESULTS.md).
AUTO_SHARD_MIN_MACS = 100_000_000


def auto_mode(model, shape, batch_size: int) -> str:
    """``parallel.mode=auto``: ``single`` or ``sharded`` over several CPU host devices (one
    process) by the size of the step; elsewhere the Runner's rule (sharded over >1 device)."""
    devices = jax.devices()
    if len(devices) < 2 or jax.process_count() > 1 or any(d.platform != "cpu" for d in devices):
        return "auto"
    if batch_size % len(devices):
        return "single"
    from cnn_jax import summary

    macs = summary.summarize(model, tuple(shape)).total_macs * batch_size // len(devices)
    return "sharded" if macs >= AUTO_SHARD_MIN_MACS else "single"


def make_runner(cfg: ml_collections.ConfigDict, loss_fn, eval_loss_fn, model=None, shape=None) -> Runner:
    """The step runner ``fit`` uses for ``cfg`` (``model`` and input ``shape`` let
    ``parallel.mode=auto`` choose by the size of the step, see :func:`auto_mode`)."""
    mode = cfg.parallel.mode
    if mode == "auto" and model is not None:
        mode = auto_mode(model, shape, cfg.data.batch_size)
    return Runner(mode, loss_fn, eval_loss_fn, skip_nonfinite=cfg.train.on_nan == "skip")


def num_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def run_eval(state, split: data.Split, batch_size: int, runner: Runner) -> dict:
    """Metrics over every example of ``split`` exactly once."""
    total = in_flight = None
    for batch in data.eval_batches(split, batch_size):
        sums = runner.eval_step(state, runner.put_batch(batch))
        total = step_lib.combine(total, sums)
        in_flight = _pace(in_flight, sums, runner.num_processes > 1)
    return step_lib.summarize(jax.device_get(total))


def _pace(in_flight, new, bounded: bool):
    """With several processes, dispatch runs at most two steps ahead of the devices: waits
    for the previous step's output and returns ``new`` to wait for next time.

    Unbounded, XLA:CPU's per-device limit on in-flight computations deadlocked 2-process
    CPU runs (2 of 48 runs of 12 steps with the CPU loaded, 2 of 30 runs of 100 steps):
    one process's launch of a step on its second device waited for a free in-flight slot
    while its first device and the other process's devices waited for it inside the
    step's all-gather (stack dumps of both processes). Bounded: none in 80 runs of 100
    steps (40 of them with the CPU loaded)."""
    if not bounded:
        return None
    if in_flight is not None:
        jax.block_until_ready(in_flight)
    return new


class _Signals:
    """SIGTERM/SIGINT set a flag that the loop checks after every step (a second signal
    falls through to the default behaviour)."""

    def __init__(self):
        self.received: str | None = None
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


class _Progress:
    """A tqdm bar on a terminal; evaluation lines always (unless quiet)."""

    def __init__(self, total: int, initial: int, spe: int, batch_size: int, mode: bool | None):
        self.quiet = mode is False
        show_bar = (sys.stderr.isatty() if mode is None else mode) and not self.quiet
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total, initial=initial, unit="step", dynamic_ncols=True, disable=not show_bar,
            leave=False, file=sys.stderr,
        )
        self.spe, self.batch_size = spe, batch_size

    def update(self, step: int, metrics: dict | None, ips: float | None) -> None:
        self.bar.update(1)
        if metrics is not None:
            self.bar.set_description(f"epoch {(step - 1) // self.spe + 1}")
            self.bar.set_postfix(
                loss=f"{metrics['loss']:.4f}", acc=f"{metrics['accuracy']:.4f}",
                img_s=f"{ips:.0f}" if ips else "-", refresh=False,
            )

    def line(self, text: str) -> None:
        if not self.quiet:
            self.bar.write(text, file=sys.stdout)

    def close(self) -> None:
        self.bar.close()


def fit(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    progress: bool | None = None,
    allow_config_change: bool = False,
    overwrite: bool = False,
) -> dict:
    """Trains ``config`` into ``workdir`` (resuming if it holds checkpoints).

    Args:
      config: an experiment config (see :func:`cnn_jax.config.base_config`).
      workdir: run directory.
      progress: ``True``/``False`` force the progress bar on/off (``False`` is quiet: no
        per-epoch lines either); ``None`` shows it on a terminal only.
      allow_config_change: resume a workdir whose saved config differs.
      overwrite: delete the workdir's previous run and start afresh.

    Returns:
      The final metrics: ``test`` (loss, accuracy, top5, count), ``best`` (accuracy and
      step), ``train`` (last logged), ``steps``, ``params``, ``train_seconds``,
      ``images_per_second``, ``resumed_from``, ``nonfinite_steps``.

    Raises:
      UserError: a mistake in the config, data or workdir (nothing is written).
      Diverged: a non-finite loss under ``train.on_nan="stop"`` (or after the retries of
        ``"lower_lr"``); the last good checkpoint is kept.
      Preempted: SIGTERM/SIGINT; a checkpoint of the current step was saved.
    """
    cfg = config_lib.resolve(config)
    workdir_lib.check(cfg, workdir, allow_config_change, overwrite)
    s = build(cfg)  # every user mistake in data, model or shapes surfaces before writing
    runner = make_runner(cfg, s.loss_fn, s.eval_loss_fn, s.model, s.test.spec.shape)
    runner.check_batch_size(cfg.data.batch_size)
    eval_batch = -(-cfg.data.eval_batch_size // runner.num_devices) * runner.num_devices
    primary = jax.process_index() == 0
    workdir_lib.create(workdir)
    # One writer per workdir; in a multi-host run process 0 holds the lock for all.
    lock = workdir_lib.WorkdirLock(workdir) if primary else contextlib.nullcontext()
    with lock, _Signals() as signals:
        if overwrite and primary:
            workdir_lib.clear(workdir)
        elif primary and lock.stale_owner and progress is not False:
            print(f"note: run {lock.stale_owner} ended without releasing {workdir}; taking over",
                  flush=True)
        if primary:
            workdir_lib.write_config(cfg, workdir)
        return _train(cfg, s, runner, workdir, eval_batch, progress, signals, primary)


def _train(cfg, s: Setup, runner: Runner, workdir: str, eval_batch: int, progress, signals, primary):
    ckpt = Checkpoints(os.path.join(workdir, "checkpoints"), cfg.train.keep_latest, cfg.train.keep_best)
    host_state = s.state
    start, data_state = 0, {}
    if ckpt.latest_step() is not None:
        host_state, data_state, start = ckpt.restore(host_state, "latest", sharding=runner.state_sharding())
        if start and progress is not False and primary:
            print(
                f"resuming from step {start} (epoch {start / s.steps_per_epoch:.2f}) of "
                f"{os.path.join(workdir, 'checkpoints')}",
                flush=True,
            )
    writer = MetricWriter(workdir, resume_step=start, enabled=primary)
    bar = _Progress(s.total_steps, start, s.steps_per_epoch, cfg.data.batch_size,
                    progress if primary else False)
    eval_every = cfg.train.eval_every_epochs * s.steps_per_epoch
    log_every = cfg.train.log_every_steps
    ckpt_every = cfg.train.checkpoint_every_steps
    retries = 0
    nonfinite_total = 0
    if cfg.train.on_nan == "lower_lr" and start == 0:
        ckpt.save(0, host_state, {"iterator": None, "pending": None})  # the last good state
    t_start = time.perf_counter()
    first_step_at = None
    try:
        while True:  # one pass per (re)start: lower_lr goes back to the last good checkpoint
            state = runner.put_state(host_state)
            it = data.train_iterator(
                s.train, cfg.data.batch_size, cfg.seed, state=data_state.get("iterator"),
                crop_padding=cfg.data.crop_padding, flip=cfg.data.flip,
            )
            batches = runner.prefetch(it, cfg.data.prefetch)
            # Train metrics are summed between log points; the pending sums are
            # checkpointed so that a resumed run logs exactly what an uninterrupted one does.
            acc = _from_json_sums(data_state.get("pending"))
            last_train, test_metrics = {}, None
            t_first, steps_timed = None, 0
            in_flight = None  # see _pace
            step = start
            diverged_at = None
            try:
                for step in range(start + 1, s.total_steps + 1):
                    batch, it_state = next(batches)
                    state, sums = runner.train_step(state, batch)
                    acc = step_lib.combine(acc, sums)
                    in_flight = _pace(in_flight, sums, runner.num_processes > 1)
                    if t_first is None:
                        jax.block_until_ready(sums)
                        t_first = time.perf_counter()
                        first_step_at = first_step_at or time.time()
                    else:
                        steps_timed += 1
                    is_eval = step % eval_every == 0 or step == s.total_steps
                    is_ckpt = is_eval or (ckpt_every and step % ckpt_every == 0) or signals.received
                    logged = ips = None
                    if step % log_every == 0 or is_eval or is_ckpt:
                        host_acc = jax.device_get(acc)
                        if int(host_acc["first_nonfinite"]) != step_lib.NO_STEP:
                            if cfg.train.on_nan != "skip":
                                diverged_at = int(host_acc["first_nonfinite"])
                                break
                        if step % log_every == 0 or is_eval:
                            logged = step_lib.summarize(host_acc)
                            nonfinite_total += int(host_acc["nonfinite"])
                            elapsed = time.perf_counter() - t_first
                            ips = steps_timed * cfg.data.batch_size / elapsed if elapsed > 0 and steps_timed else None
                            record = {k: v for k, v in logged.items() if k != "count"}
                            if cfg.train.on_nan == "skip":
                                record["skipped_steps"] = int(host_acc["nonfinite"])
                            writer.write(step, "train", record)
                            last_train, acc = logged, None
                    bar.update(step, logged, ips)
                    if is_eval:
                        test_metrics = run_eval(state, s.test, eval_batch, runner)
                        writer.write(step, "test", test_metrics)
                        bar.line(
                            f"epoch {step / s.steps_per_epoch:g} step {step}/{s.total_steps}: train loss "
                            f"{last_train['loss']:.4f} acc {last_train['accuracy']:.4f} | test loss "
                            f"{test_metrics['loss']:.4f} acc {test_metrics['accuracy']:.4f} "
                            f"({test_metrics['count']} images)"
                        )
                    if is_ckpt:
                        metrics = {"accuracy": test_metrics["accuracy"]} if is_eval else None
                        ckpt.save(step, runner.get_state(state), _data_state(it_state, acc), metrics)
                    if signals.received:
                        ckpt.wait()
                        raise Preempted(step, signals.received)
            finally:
                batches.close()
            if diverged_at is None:
                break
            # A non-finite loss: stop, or go back to the last good checkpoint with a lower lr.
            ckpt.wait()
            if cfg.train.on_nan == "stop" or retries >= cfg.train.nan_max_retries:
                good = ckpt.latest_step()
                raise Diverged(
                    diverged_at, float("nan"),
                    f"training diverged: the loss is not finite at step {diverged_at}"
                    + (f" (after {retries} learning-rate reductions)" if retries else "")
                    + (f"; the last good checkpoint (step {good}) is kept in {ckpt.directory}"
                       if good is not None else "; no checkpoint had been written yet")
                    + "; lower optim.learning_rate or set train.on_nan=skip or lower_lr",
                )
            retries += 1
            host_state, data_state, start = ckpt.restore(s.state, "latest", sharding=runner.state_sharding())
            host_state = _scale_lr(host_state, cfg.train.nan_lr_factor)
            bar.line(
                f"non-finite loss at step {diverged_at}: back to step {start} with the learning "
                f"rate times {cfg.train.nan_lr_factor} (retry {retries}/{cfg.train.nan_max_retries})"
            )
            writer.truncate(start)
        ckpt.wait()
    finally:
        bar.close()
        writer.close()
        ckpt.close()
    train_seconds = time.perf_counter() - t_start
    if test_metrics is None:  # nothing left to train: evaluate the restored state
        test_metrics = run_eval(state, s.test, eval_batch, runner)
    history = [r for r in _read_metrics(workdir) if r["split"] == "test"]
    best = max(history, key=lambda r: r["accuracy"]) if history else {"accuracy": None, "step": None}
    ips = steps_timed * cfg.data.batch_size / (time.perf_counter() - t_first) if t_first and steps_timed else None
    summary = {
        "test": test_metrics,
        "best": {"accuracy": best["accuracy"], "step": best["step"]},
        "train": last_train,
        "steps": int(s.total_steps),
        "epochs": s.total_steps / s.steps_per_epoch,
        "params": num_params(s.state.params),
        "train_seconds": train_seconds,
        "images_per_second": ips,
        "first_step_at": first_step_at,  # Unix time the first step of this run finished
        "resumed_from": start,
        "nonfinite_steps": nonfinite_total,
        "parallel": {"mode": runner.mode, "devices": runner.num_devices},
    }
    if primary:
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary


def _scale_lr(state, factor: float):
    """Multiplies the injected learning-rate scale (``on_nan="lower_lr"``) by ``factor``."""
    def injected(x):  # optax's Inject(Stateful)HyperparamsState
        return hasattr(x, "hyperparams") and hasattr(x, "_replace")

    def visit(x):
        if injected(x):
            return x._replace(hyperparams={**x.hyperparams, "step_size": x.hyperparams["step_size"] * factor})
        return x

    return state.replace(opt_state=jax.tree.map(visit, state.opt_state, is_leaf=injected))


def _data_state(it_state: dict, pending) -> dict:
    """What a checkpoint stores besides the train state: the grain iterator position after
    the last consumed batch and the train-metric sums since the last log point."""
    sums = None if pending is None else {k: float(v) for k, v in jax.device_get(pending).items()}
    return {"iterator": it_state, "pending": sums}


def _from_json_sums(sums: dict | None):
    if sums is None:
        return None
    return {k: np.int32(v) if k.startswith("first_") else np.float32(v) for k, v in sums.items()}


def _read_metrics(workdir: str) -> list[dict]:
    return read_jsonl(os.path.join(workdir, "metrics.jsonl"))


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise UserError(f"{workdir!r} is not a run directory (no config.json)")
    with open(path) as f:
        return config_lib.resolve(config_lib.from_json(f.read()))


def evaluate(workdir: str, checkpoint: str | int = "latest", split: str = "test") -> dict:
    """Restores checkpoint ``latest``, ``best`` or a step from ``workdir`` and evaluates it on
    ``split``; returns metrics plus the ``step`` evaluated."""
    cfg = load_run_config(workdir)
    s = build(cfg, with_train=False)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise UserError(f"no checkpoints in {workdir!r}")
    runner = Runner(cfg.parallel.mode, s.loss_fn, s.eval_loss_fn)
    ckpt = Checkpoints(ckpt_dir, cfg.train.keep_latest, cfg.train.keep_best, read_only=True)
    try:
        state, _, step = ckpt.restore(s.state, checkpoint, sharding=runner.state_sharding())
    finally:
        ckpt.close()
    if split in ("test", cfg.data.test_split):
        target = s.test
    else:
        target = data.load(cfg.data.name, split, cfg.data.data_dir or None)
    eval_batch = -(-cfg.data.eval_batch_size // runner.num_devices) * runner.num_devices
    metrics = run_eval(runner.put_state(state), target, eval_batch, runner)
    return {**metrics, "step": step, "split": split}
