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
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from cnn_jax import config as config_lib
from cnn_jax import data, rundir
from cnn_jax.errors import Diverged, Preempted, UserError
from cnn_jax.train import periodic
from cnn_jax.train import state as state_lib
from cnn_jax.train import step as step_lib
from cnn_jax.train import workdir as workdir_lib
from cnn_jax.train.assemble import Setup, build, data_options, eval_batch_size, make_runner, num_params
from cnn_jax.train.checkpoint import BestState, Checkpoints, state_bytes
from cnn_jax.train.parallel import Prefetcher, Runner, normalizing
from cnn_jax.train.progress import Progress, Signals
from cnn_jax.train.writer import MetricWriter


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` trained: the summary (also ``summary.json``), the final train state
    (on the host), the :class:`~cnn_jax.train.assemble.Setup` it was built from (model,
    splits, loss functions) and the :class:`Runner` whose compiled programs it ran (``None``
    for a state restored from disk), so no caller has to rebuild, re-restore or recompile.

    ``result["test"]`` reads the summary (``result.summary["test"]``)."""

    summary: dict
    state: state_lib.TrainState
    setup: Setup
    runner: Runner | None = None

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]

    @property
    def model(self):
        return self.setup.model


def run_eval(state, split: data.Split, batch_size: int, runner: Runner) -> dict:
    """Metrics over every example of ``split`` exactly once."""
    total = in_flight = None
    put = _put(runner, split)
    for batch in data.eval_batches(split, batch_size, normalized=False):
        sums = runner.eval_step(state, put(batch))
        total = step_lib.combine(total, sums)
        in_flight = _pace(in_flight, sums, runner.num_processes > 1)
    return step_lib.summarize(jax.device_get(total))


def _put(runner: Runner, split):
    """How ``split``'s host batches go onto the devices. A streamed split of a multi-process
    run holds only this process's rows of each global batch (it never decodes the others):
    they are placed at their rows of a zero global batch, which ``runner.put_batch`` slices
    back (the zeros are never touched, so the OS never backs them with memory). Streamed
    images arrive as ``u8`` and are normalised on the devices."""
    if not split.streaming:
        return runner.put_batch
    if runner.num_processes == 1:
        return normalizing(runner.put_batch, split.spec)
    p, k = jax.process_index(), runner.num_processes

    def put(local: dict):
        whole = {}
        for key, v in local.items():
            g = np.zeros((k * len(v), *v.shape[1:]), v.dtype)
            g[p * len(v):(p + 1) * len(v)] = v
            whole[key] = g
        return runner.put_batch(whole)

    return normalizing(put, split.spec)


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


def fit(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    progress: bool | None = None,
    allow_config_change: bool = False,
    overwrite: bool = False,
) -> FitResult:
    """Trains ``config`` into ``workdir`` (resuming if it holds checkpoints).

    Args:
      config: an experiment config (see :func:`cnn_jax.config.base_config`); resolved here
        unless it already is (:func:`cnn_jax.config.resolve` output is handed down as is).
      workdir: run directory.
      progress: ``True``/``False`` force the progress bar on/off (``False`` is quiet: no
        per-epoch lines either); ``None`` shows it on a terminal only.
      allow_config_change: resume a workdir whose saved config differs.
      overwrite: delete the workdir's previous run and start afresh.

    Returns:
      A :class:`FitResult`: ``summary`` (``test`` loss/accuracy/top5/count, ``best``
      accuracy and step, ``train`` (last logged), ``steps``, ``params``, ``train_seconds``,
      ``images_per_second`` (of the training steps alone: evaluations and checkpoints
      excluded), ``resumed_from``, ``nonfinite_steps``), the final ``state``
      and the ``setup``.

    Raises:
      UserError: a mistake in the config, data or workdir (nothing is written).
      Diverged: a non-finite loss under ``train.on_nan="stop"`` (or after the retries of
        ``"lower_lr"``); the last good checkpoint is kept.
      Preempted: SIGTERM/SIGINT; a checkpoint of the current step was saved.
    """
    cfg = config_lib.resolved(config)
    workdir_lib.check(cfg, workdir, allow_config_change, overwrite)
    s = build(cfg)  # every user mistake in data, model or shapes surfaces before writing
    runner = make_runner(cfg, s.loss_fn, s.eval_loss_fn, s.model, s.input_shape)
    runner.check_batch_size(cfg.data.batch_size)
    primary = jax.process_index() == 0
    workdir_lib.create(workdir)
    # One writer per workdir; in a multi-host run process 0 holds the lock for all.
    lock = workdir_lib.WorkdirLock(workdir) if primary else contextlib.nullcontext()
    with lock, Signals() as signals:
        if overwrite and primary:
            workdir_lib.clear(workdir)
        elif primary and lock.stale_owner and progress is not False:
            print(f"note: run {lock.stale_owner} ended without releasing {workdir}; taking over",
                  flush=True)
        if primary:
            workdir_lib.write_config(cfg, workdir)
        return _train(cfg, s, runner, workdir, progress, signals, primary)


def _train(cfg, s: Setup, runner: Runner, workdir: str, progress, signals, primary) -> FitResult:
    eval_batch = eval_batch_size(cfg, runner)
    ckpt = Checkpoints(os.path.join(workdir, rundir.CHECKPOINTS), cfg.train.keep_latest,
                       cfg.train.keep_best, state_bytes=state_bytes(s.state))
    host_state = s.state
    start, data_state = 0, {}
    stopper = periodic.EarlyStopping(cfg.train.early_stopping_patience)
    if ckpt.latest_step() is not None:
        host_state, data_state, start = ckpt.restore(host_state, "latest", sharding=runner.state_sharding())
        stopper.replay(rundir.read_metrics(workdir), start)
        if start and progress is not False and primary:
            if (start >= s.total_steps or stopper.stopped) and rundir.is_finished(workdir):
                print(
                    f"already finished at step {start} ({start / s.steps_per_epoch:g} epochs"
                    f"{', stopped early' if stopper.stopped else ''}) in {workdir}; to train "
                    "longer, raise train.epochs or train.steps and pass --allow-config-change",
                    flush=True,
                )
            else:
                print(
                    f"resuming from step {start} (epoch {start / s.steps_per_epoch:.2f}) of "
                    f"{os.path.join(workdir, rundir.CHECKPOINTS)}",
                    flush=True,
                )
    writer = MetricWriter(workdir, resume_step=start, enabled=primary)
    bar = Progress(s.total_steps, start, s.steps_per_epoch, cfg.data.batch_size,
                   progress if primary else False)
    if note := data.describe_line(train=s.train, validation=s.validation, test=s.test):
        bar.line(note)  # which splits stream, and why
    when = periodic.Schedule.of(cfg, s.steps_per_epoch, s.total_steps)
    on_nan = cfg.train.on_nan
    retries = 0
    nonfinite_total = 0
    if on_nan == config_lib.ON_NAN_LOWER_LR and start == 0:
        ckpt.save(0, host_state, {"iterator": None, "pending": None})  # the last good state
    t_start = time.perf_counter()
    first_step_at = None
    best = BestState()  # the state at the best validation accuracy of this run
    step = start
    try:
        while True:  # one pass per (re)start: lower_lr goes back to the last good checkpoint
            state = runner.put_state(host_state)
            it = data.train_iterator(
                s.train, cfg.data.batch_size, cfg.seed, state=data_state.get("iterator"),
                crop_padding=cfg.data.crop_padding, flip=cfg.data.flip, normalized=False,
            )
            batches = Prefetcher(it, _put(runner, s.train), cfg.data.prefetch)
            # Train metrics are summed between log points; the pending sums are
            # checkpointed so that a resumed run logs exactly what an uninterrupted one does.
            acc = periodic.pending_from_json(data_state.get("pending"))
            last_train = {}
            t_first, steps_timed, compiled = None, 0, None
            side = 0.0  # seconds of evaluations and checkpoints after the first step
            in_flight = None  # see _pace
            diverged_at = None
            end = start if stopper.stopped else s.total_steps
            programs, t_loop = runner.train_programs(), time.perf_counter()
            try:
                for step in range(start + 1, end + 1):
                    batch, it_state = next(batches)
                    state, sums = runner.train_step(state, batch)
                    acc = step_lib.combine(acc, sums)
                    in_flight = _pace(in_flight, sums, runner.num_processes > 1)
                    if t_first is None:
                        jax.block_until_ready(sums)
                        t_first = time.perf_counter()
                        first_step_at = first_step_at or time.time()
                        compiled = programs is None or runner.train_programs() != programs
                        if not compiled:  # (a later seed of a config): timed like the others
                            t_first, steps_timed = t_loop, 1
                    else:
                        steps_timed += 1
                    preempted = signals.should_stop(step)
                    logged = ips = None
                    if when.needs_host(step, preempted):
                        host_acc = jax.device_get(acc)
                        if int(host_acc["first_nonfinite"]) != step_lib.NO_STEP:
                            if on_nan != config_lib.ON_NAN_SKIP:
                                diverged_at = int(host_acc["first_nonfinite"])
                                break
                        if when.is_log(step):
                            logged = step_lib.summarize(host_acc)
                            nonfinite_total += int(host_acc["nonfinite"])
                            ips = periodic.images_per_second(
                                steps_timed, cfg.data.batch_size, t_first, time.perf_counter() - side)
                            record = {k: v for k, v in logged.items() if k != "count"}
                            if on_nan == config_lib.ON_NAN_SKIP:
                                record["skipped_steps"] = int(host_acc["nonfinite"])
                            writer.write(step, "train", record)
                            last_train, acc = logged, None
                    bar.update(step, logged, ips)
                    val = improved = None
                    if when.is_eval(step):
                        line = (f"epoch {step / s.steps_per_epoch:g} step {step}/{s.total_steps}: "
                                f"train loss {last_train['loss']:.4f} acc {last_train['accuracy']:.4f}")
                        if s.validation is not None:
                            jax.block_until_ready(state.step)  # the steps so far count as steps
                            t_side = time.perf_counter()
                            val = run_eval(state, s.validation, eval_batch, runner)
                            side += time.perf_counter() - t_side
                            writer.write(step, "validation", val)
                            line += (f" | validation loss {val['loss']:.4f} acc {val['accuracy']:.4f} "
                                     f"({val['count']} images)")
                            improved = stopper.update(step, val)
                            if improved:
                                best.update(step, runner.get_state(state), _data_state(it_state, acc),
                                            val["accuracy"])
                        bar.line(line)
                    stop = stopper.stopped
                    if when.is_checkpoint(step, preempted, improved) or stop:
                        metrics = {"accuracy": val["accuracy"]} if val is not None else None
                        t_side = time.perf_counter()
                        best.save_before(ckpt, step)
                        ckpt.save(step, runner.get_state(state), _data_state(it_state, acc), metrics)
                        side += time.perf_counter() - t_side
                    if preempted:
                        ckpt.wait()
                        raise Preempted(step, signals.received)
                    if stop:
                        bar.line(
                            f"early stopping at step {step}: validation accuracy has not improved "
                            f"for {stopper.patience} evaluations (best "
                            f"{stopper.best_accuracy:.4f} at step {stopper.best_step})"
                        )
                        break
            finally:
                batches.close()
                getattr(it, "close", lambda: None)()  # a streamed split's worker processes
            if diverged_at is None:
                break
            # A non-finite loss: stop, or go back to the last good checkpoint with a lower lr.
            ckpt.wait()
            if on_nan == config_lib.ON_NAN_STOP or retries >= cfg.train.nan_max_retries:
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
            stopper = periodic.EarlyStopping(cfg.train.early_stopping_patience)
            stopper.replay(rundir.read_metrics(workdir), start)
            best = BestState()
        ckpt.wait()
        jax.block_until_ready(state.step)
        train_seconds = time.perf_counter() - t_start
        steps_end = time.perf_counter() - side  # the training steps' clock, without the rest
        final = final_evaluation(
            state, step, s, stopper, best.state, ckpt, runner, eval_batch, writer)
    finally:
        bar.close()
        writer.close()
        ckpt.close()
    summary = periodic.summary(
        workdir,
        **final,
        train=last_train,
        steps=step,
        steps_per_epoch=s.steps_per_epoch,
        planned_steps=s.total_steps,
        data_sizes=s.sizes(),
        params=num_params(s.state.params),
        train_seconds=train_seconds,
        images_per_second=periodic.images_per_second(
            steps_timed, cfg.data.batch_size, t_first, steps_end),
        first_step_at=first_step_at,
        # seconds in training steps (the first if it compiled nothing): a sweep's overhead
        step_seconds=(steps_end - t_first) if t_first else 0.0,
        first_step_compiled=compiled,
        resumed_from=start,
        nonfinite_steps=nonfinite_total,
        parallel={"mode": runner.mode, "devices": runner.num_devices},
        pipeline=data.describe_all(train=s.train, validation=s.validation, test=s.test),
        write=primary,
    )
    return FitResult(summary, runner.get_state(state), s, runner)


def final_evaluation(state, step: int, s: Setup, stopper, best_state, ckpt: Checkpoints,
                     runner: Runner, eval_batch: int, writer: MetricWriter) -> dict:
    """The end of a run: the test split, read once, for the final state and for the
    checkpoint selected by validation accuracy (``stopper``'s best step), plus the final
    validation metrics. Writes the ``test`` rows of ``metrics.jsonl``; returns the
    summary's ``test``, ``validation`` and ``best`` entries."""
    test = run_eval(state, s.test, eval_batch, runner)
    writer.write(step, "test", test)
    validation = None
    if s.validation is not None:
        validation = stopper.metrics_at.get(step) or run_eval(state, s.validation, eval_batch, runner)
    best = {"step": stopper.best_step, "validation_accuracy": stopper.best_accuracy,
            "test_accuracy": None, "selected_by": "validation"}
    if stopper.best_step is not None:
        if stopper.best_step == step:
            best_test = test
        else:
            if best_state is None:  # selected before this process started: from its checkpoint
                which = stopper.best_step if stopper.best_step in ckpt.steps() else "best"
                best_state, _, _ = ckpt.restore(s.state, which, sharding=runner.state_sharding())
            best_test = run_eval(runner.put_state(best_state), s.test, eval_batch, runner)
            writer.write(stopper.best_step, "test", {**best_test, "checkpoint": "best"})
        best["test_accuracy"] = best_test["accuracy"]
        best["test"] = best_test
    return {"test": test, "validation": validation, "best": best}


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
    return {"iterator": it_state, "pending": periodic.pending_to_json(pending)}


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config saved in run directory ``workdir``."""
    path = os.path.join(workdir, rundir.CONFIG)
    if not os.path.exists(path):
        raise UserError(f"{workdir!r} is not a run directory (no {rundir.CONFIG})")
    with open(path) as f:
        return config_lib.resolve(config_lib.from_json(f.read()))


@dataclasses.dataclass
class Restored:
    """A run directory brought back: its config, setup (test split, model), the restored
    train state (on the host) and the step it was saved at."""

    cfg: ml_collections.ConfigDict
    setup: Setup
    state: state_lib.TrainState
    step: int


def restore(workdir: str, checkpoint: str | int = "latest") -> Restored:
    """The one way back into a run directory: restores checkpoint ``latest``, ``best`` or a
    step of ``workdir`` (its model and test split built from its saved config)."""
    cfg = load_run_config(workdir)
    s = build(cfg, with_train=False)
    ckpt_dir = os.path.join(workdir, rundir.CHECKPOINTS)
    if not os.path.isdir(ckpt_dir):
        raise UserError(f"no checkpoints in {workdir!r}")
    ckpt = Checkpoints(ckpt_dir, cfg.train.keep_latest, cfg.train.keep_best, read_only=True)
    try:
        # onto this process's first device, whatever the devices (or processes) it was saved from
        one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        state, _, step = ckpt.restore(s.state, checkpoint, sharding=one)
    finally:
        ckpt.close()
    return Restored(cfg, s, state, step)


def evaluate(workdir: str, checkpoint: str | int = "latest", split: str = "test") -> dict:
    """Restores checkpoint ``latest``, ``best`` or a step from ``workdir`` and evaluates it on
    ``split``; returns metrics plus the ``step`` evaluated."""
    r = restore(workdir, checkpoint)
    cfg = r.cfg
    runner = Runner(cfg.parallel.mode, r.setup.loss_fn, r.setup.eval_loss_fn)
    if split in ("test", cfg.data.test_split):
        target = r.setup.test
    else:
        target = data.load(cfg.data.name, split, cfg.data.data_dir or None, data_options(cfg))
    metrics = run_eval(runner.put_state(r.state), target, eval_batch_size(cfg, runner), runner)
    return {**metrics, "step": r.step, "split": split}
