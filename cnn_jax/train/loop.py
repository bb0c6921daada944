"""The training loop: ``fit``, and the one :class:`Loop` it and the vmapped seeds run.

A workdir holds ``config.json`` (the resolved config), ``checkpoints/`` (Orbax),
``metrics.jsonl``, ``tensorboard/`` and, when training finishes, ``summary.json``.
Running ``fit`` again on the same workdir resumes from the newest checkpoint (train
state, data-iterator position and pending metric sums) and ends with exactly the metrics
of an uninterrupted run on CPU: per-step randomness is ``fold_in(rng, step)`` and the data
order is a function of the seed and the step.

:class:`Loop` trains one or more run directories (:class:`Lane`) whose steps a mode runs
(:mod:`cnn_jax.train.modes`): ``fit``'s one seed through a parallel
:class:`~cnn_jax.train.parallel.Runner`, or K seeds of one config vmapped
(:func:`cnn_jax.train.vmap.fit_seeds`). Both log, evaluate, select, checkpoint, stop on a
preemption signal and write the summary through the same code.

Reliability: one writer per workdir (a pid lock); SIGTERM/SIGINT/SIGUSR2 save a checkpoint
and raise :class:`~cnn_jax.errors.Preempted`; a non-finite loss is handled per
``train.on_nan``; nothing is written before the config, data and model have been
validated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any

import jax
import ml_collections

from cnn_jax import config as config_lib
from cnn_jax import data, rundir
from cnn_jax.errors import Diverged, Preempted
from cnn_jax.train import periodic, profiling
from cnn_jax.train import state as state_lib
from cnn_jax.train import step as step_lib
from cnn_jax.train import workdir as workdir_lib
from cnn_jax.train.assemble import Setup, build, eval_batch_size, make_runner, num_params
from cnn_jax.train.checkpoint import BestState, Checkpoints, state_bytes
from cnn_jax.train.evaluation import final_evaluation, pace, run_eval
from cnn_jax.train.modes import RunnerMode
from cnn_jax.train.parallel import Runner
from cnn_jax.train.progress import Preemption, Progress
from cnn_jax.train.saved_runs import Restored, evaluate, load_run_config, restore, resume
from cnn_jax.train.writer import MetricWriter

# where they have always been imported from
__all__ = ["FitResult", "Lane", "Loop", "Restored", "evaluate", "final_evaluation", "fit",
           "load_run_config", "restore", "run_eval"]


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


def fit(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    progress: bool | None = None,
    allow_config_change: bool = False,
    overwrite: bool = False,
    load=None,
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
      load: reads the data splits, with the signature of :func:`cnn_jax.data.load` (e.g. a
        caching loader); ``None``: ``cnn_jax.data.load``.

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
      Preempted: SIGTERM/SIGINT/SIGUSR2; a checkpoint of the current step was saved.
    """
    cfg = config_lib.resolved(config)
    workdir_lib.check(cfg, workdir, allow_config_change, overwrite)
    s = build(cfg, load=load)  # every user mistake in data, model or shapes surfaces before writing
    runner = make_runner(cfg, s.loss_fn, s.eval_loss_fn, s.model, s.input_shape)
    runner.check_batch_size(cfg.data.batch_size)
    primary = jax.process_index() == 0
    workdir_lib.create(workdir)
    # One writer per workdir; in a multi-host run process 0 holds the lock for all.
    lock = workdir_lib.WorkdirLock(workdir) if primary else contextlib.nullcontext()
    with lock, Preemption() as preemption:
        if overwrite and primary:
            workdir_lib.clear(workdir)
        elif primary and lock.stale_owner and progress is not False:
            print(f"note: run {lock.stale_owner} ended without releasing {workdir}; taking over",
                  flush=True)
        if primary:
            workdir_lib.write_config(cfg, workdir)
        return _train(cfg, s, runner, workdir, progress, preemption, primary)


def _train(cfg, s: Setup, runner: Runner, workdir: str, progress, preemption, primary) -> FitResult:
    with contextlib.ExitStack() as stack:
        ckpt = stack.enter_context(contextlib.closing(Checkpoints(
            os.path.join(workdir, rundir.CHECKPOINTS), cfg.train.keep_latest, cfg.train.keep_best,
            state_bytes=state_bytes(s.state))))
        host_state, data_state, start, stopper = resume(
            cfg, s, ckpt, runner, workdir, announce=progress is not False and primary)
        writer = stack.enter_context(contextlib.closing(
            MetricWriter(workdir, resume_step=start, enabled=primary)))
        bar = stack.enter_context(contextlib.closing(Progress(
            s.total_steps, start, s.steps_per_epoch, cfg.data.batch_size, progress if primary else False)))
        if note := data.describe_line(train=s.train, validation=s.validation, test=s.test):
            bar.line(note)  # which splits stream, and why
        if cfg.train.on_nan == config_lib.ON_NAN_LOWER_LR and start == 0:
            ckpt.save(0, host_state, {"iterator": None, "pending": None})  # the last good state
        loop = Loop(cfg, s, RunnerMode(cfg, s, runner), [Lane(workdir, ckpt, writer, stopper)],
                    bar=bar, preemption=preemption, primary=primary)
        (outcome,) = loop.run(start, [host_state], [data_state])
        return outcome["result"]


@dataclasses.dataclass
class Lane:
    """One run directory the loop trains (``fit``: one; vmapped seeds: one per seed): its
    checkpoints, metric log and selection by validation accuracy."""

    workdir: str
    ckpt: Checkpoints
    writer: MetricWriter
    stopper: periodic.EarlyStopping
    best: BestState = dataclasses.field(default_factory=BestState)  # at the best validation
    last_train: dict = dataclasses.field(default_factory=dict)  # the train metrics last logged
    nonfinite: int = 0  # non-finite steps logged (skipped under train.on_nan=skip)
    diverged: dict | None = None  # the outcome once its loss is not finite


class Loop:
    """Trains ``lanes`` with the steps of ``mode`` (:mod:`cnn_jax.train.modes`): logs,
    evaluates, selects and checkpoints each at the points of the config's
    :class:`~cnn_jax.train.periodic.Schedule`, stops all of them on a preemption signal,
    and ends each with the final evaluation and its ``summary.json``.

    A non-finite loss: ``fit``'s one lane goes back to its last good checkpoint
    (``train.on_nan="lower_lr"``) or raises :class:`~cnn_jax.errors.Diverged`; a vmapped
    seed stops alone (its outcome goes to ``on_done`` at once) while the others go on.
    ``on_done(i, outcome)`` hears each lane's outcome as soon as it is known."""

    def __init__(self, cfg, s: Setup, mode, lanes: list[Lane], *, bar: Progress,
                 preemption: Preemption, primary: bool = True, on_done=None):
        self.cfg, self.s, self.mode, self.lanes = cfg, s, mode, lanes
        self.bar, self.preemption, self.primary, self.on_done = bar, preemption, primary, on_done
        self.when = periodic.Schedule.of(cfg, s.steps_per_epoch, s.total_steps)
        self.eval_batch = eval_batch_size(cfg, mode.runner)
        self.on_nan = cfg.train.on_nan
        self.weights = state_lib.WEIGHTS if cfg.train.ema_decay > 0 else ("raw",)  # evaluated
        self.retries = self.start = self.step = 0
        self.acc = None  # train-metric sums since the last log point
        self.clock = self._states = None

    def run(self, start: int, host_states: list, data_states: list[dict]) -> list[dict]:
        """Trains from step ``start`` (each lane's state and data state there; the list of
        states is emptied once the mode holds them) to the end. Returns one outcome per
        lane: ``{"status": "done", "result": FitResult}`` or ``{"status": "diverged",
        "step", "error"}``."""
        self.clock = periodic.Clock(self.mode.seeds, self.mode.vmapped)
        self.step, self._states = start, host_states
        while True:  # one pass per (re)start: lower_lr goes back to the last good checkpoint
            self.start = start
            self._pass(data_states)
            lane = self.lanes[0]
            if self.mode.vmapped or lane.diverged is None:
                break
            start, self._states, data_states = self._go_back(lane)
        for lane in self.lanes:
            lane.ckpt.wait()
        self.mode.block()
        self.clock.stop()
        return self._finish()

    def _alive(self):
        return [(i, lane) for i, lane in enumerate(self.lanes) if lane.diverged is None]

    def _pass(self, data_states: list[dict]) -> None:
        mode = self.mode
        mode.begin(self._states, data_states)
        self._states.clear()  # (the caller's list too): the mode's copies are all that is kept
        # Train metrics are summed between log points; the pending sums are checkpointed
        # so that a resumed run logs exactly what an uninterrupted one does.
        self.acc = mode.pending(data_states)
        for lane in self.lanes:
            lane.last_train = {}
        end = self.start if all(lane.stopper.stopped for lane in self.lanes) else self.s.total_steps
        self.clock.begin_pass(mode.programs())
        in_flight, bounded = None, mode.runner.num_processes > 1  # see evaluation.pace
        tracer = profiling.StepProfiler(profiling.parse_steps(self.cfg.train.profile_steps),
                                        os.path.join(self.lanes[0].workdir, profiling.PROFILE_DIR))
        try:
            for step in range(self.start + 1, end + 1):
                self.step = step
                with tracer.step(step, wait=lambda: jax.block_until_ready(self.acc)):
                    sums = mode.step()
                    self.acc = step_lib.combine(self.acc, sums)
                in_flight = pace(in_flight, sums, bounded)
                self.clock.stepped(sums, mode.programs)
                if not self._after_step(step):
                    break
        finally:
            tracer.close()
            mode.end()

    def _after_step(self, step: int) -> bool:
        """The log, evaluation and checkpoint points of ``step``; ``False``: training ends
        here (every lane diverged or stopped early)."""
        preempted = self.preemption.should_stop(step)
        logged = ips = None
        if self.when.needs_host(step, preempted):
            host_sums = jax.device_get(self.acc)
            if not self._check_finite(host_sums):
                return False
            if self.when.is_log(step):
                logged = self._log(step, host_sums)
                ips = self.clock.images_per_second(self.cfg.data.batch_size)
        self.bar.update(step, logged, ips)
        vals, improved = self._evaluate(step) if self.when.is_eval(step) else ({}, {})
        self._checkpoint(step, preempted, vals, improved)
        if preempted:
            for lane in self.lanes:
                lane.ckpt.wait()
            raise Preempted(step, self.preemption.received)
        return not self._stopped_early(step)

    def _check_finite(self, host_sums: dict) -> bool:
        """Marks the lanes whose loss is no longer finite (unless ``train.on_nan="skip"``);
        ``False`` when none is left."""
        if self.on_nan != config_lib.ON_NAN_SKIP:
            for i, lane in self._alive():
                first = int(self.mode.seed_sums(host_sums, i)["first_nonfinite"])
                if first != step_lib.NO_STEP:
                    lane.diverged = {"status": "diverged", "step": first}
                    if self.mode.vmapped:  # this seed stops here, the others go on
                        good = lane.ckpt.latest_step()
                        why = f"training diverged: the loss is not finite at step {first}"
                        lane.diverged.update(reason=why, error=f"{why}; the last good checkpoint (step {good}) is kept")
                        if self.on_done is not None:
                            self.on_done(i, {**lane.diverged})
        return bool(self._alive())

    def _log(self, step: int, host_sums: dict) -> dict:
        """Writes each lane's train metrics summed since the last log point."""
        for i, lane in self._alive():
            sums = self.mode.seed_sums(host_sums, i)
            logged = step_lib.summarize(sums)
            lane.nonfinite += int(sums["nonfinite"])
            record = {k: v for k, v in logged.items() if k != "count"}
            if self.on_nan == config_lib.ON_NAN_SKIP:
                record["skipped_steps"] = int(sums["nonfinite"])
            lane.writer.write(step, "train", record)
            lane.last_train = logged
        self.acc = None
        return logged

    def _evaluate(self, step: int) -> tuple[dict, dict]:
        """Each lane's validation metrics after ``step`` (written, and selected on: a better
        one's state is kept) and whether they improved, by lane index. With a moving average
        of the weights both are evaluated and written; ``train.select_weights`` selects."""
        s, vals, improved, metrics = self.s, {}, {}, {}
        if s.validation is not None:
            self.mode.block()  # the steps so far count as steps
            with self.clock.side():
                for w in self.weights:
                    metrics[w] = self.mode.validate(s.validation, self.eval_batch, w)
        for i, lane in self._alive():
            line = (f"epoch {step / s.steps_per_epoch:g} step {step}/{s.total_steps}: "
                    f"train loss {lane.last_train['loss']:.4f} acc {lane.last_train['accuracy']:.4f}")
            if s.validation is not None:
                for w in self.weights:
                    lane.writer.write(step, periodic.split_name("validation", w), metrics[w][i])
                vals[i] = val = metrics[lane.stopper.weights][i]
                line += (f" | validation loss {val['loss']:.4f} acc {val['accuracy']:.4f} "
                         f"({val['count']} images{', ' + lane.stopper.weights if len(self.weights) > 1 else ''})")
                improved[i] = lane.stopper.update(step, val)
                if improved[i]:
                    lane.best.update(step, self.mode.host_state(i), self.mode.data_state(i, self.acc),
                                     val["accuracy"])
            self.bar.line(line)
        return vals, improved

    def _checkpoint(self, step: int, preempted: bool, vals: dict, improved: dict) -> None:
        for i, lane in self._alive():
            if self.when.is_checkpoint(step, preempted, improved.get(i)) or lane.stopper.stopped:
                metrics = {"accuracy": vals[i]["accuracy"]} if i in vals else None
                with self.clock.side():
                    lane.best.save_before(lane.ckpt, step)
                    lane.ckpt.save(step, self.mode.host_state(i), self.mode.data_state(i, self.acc), metrics)

    def _stopped_early(self, step: int) -> bool:
        alive = [lane for _, lane in self._alive()]
        if not all(lane.stopper.stopped for lane in alive):
            return False
        for lane in alive:
            st = lane.stopper
            self.bar.line(
                f"early stopping at step {step}: validation accuracy has not improved for "
                f"{st.patience} evaluations (best {st.best_accuracy:.4f} at step {st.best_step})"
            )
        return True

    def _go_back(self, lane: Lane) -> tuple[int, list, list[dict]]:
        """``fit``'s non-finite loss: raises :class:`Diverged`, or (``train.on_nan=lower_lr``)
        returns the last good checkpoint's step, state (learning rate lowered) and data state."""
        cfg, at = self.cfg, lane.diverged["step"]
        lane.ckpt.wait()
        if self.on_nan == config_lib.ON_NAN_STOP or self.retries >= cfg.train.nan_max_retries:
            good = lane.ckpt.latest_step()
            reason = f"training diverged: the loss is not finite at step {at}" + (
                f" (after {self.retries} learning-rate reductions)" if self.retries else "")
            raise Diverged(at, float("nan"), reason
                           + (f"; the last good checkpoint (step {good}) is kept in {lane.ckpt.directory}"
                              if good is not None else "; no checkpoint had been written yet")
                           + "; lower optim.learning_rate or set train.on_nan=skip or lower_lr", reason)
        self.retries += 1
        host_state, data_state, start = lane.ckpt.restore(
            self.s.state, "latest", sharding=self.mode.runner.state_sharding())
        host_state = state_lib.scale_lr(host_state, cfg.train.nan_lr_factor)
        self.bar.line(
            f"non-finite loss at step {at}: back to step {start} with the learning rate times "
            f"{cfg.train.nan_lr_factor} (retry {self.retries}/{cfg.train.nan_max_retries})"
        )
        lane.writer.truncate(start)
        lane.stopper = periodic.EarlyStopping.of(cfg)
        lane.stopper.replay(rundir.read_metrics(lane.workdir), start)
        lane.best, lane.diverged = BestState(), None
        return start, [host_state], [data_state]

    def _finish(self) -> list[dict]:
        """Each lane's final evaluation and ``summary.json``; the outcomes."""
        runner, s, outcomes = self.mode.runner, self.s, []
        for i, lane in enumerate(self.lanes):
            if lane.diverged is not None:
                outcomes.append(lane.diverged)
                continue
            state = self.mode.final_state(i)
            final = final_evaluation(state, self.step, s, lane.stopper, lane.best.state, lane.ckpt,
                                     runner, self.eval_batch, lane.writer)
            summary = periodic.write_summary(lane.workdir, **final, **self._summary_fields(lane),
                                             write=self.primary)
            out = {"status": "done", "result": FitResult(summary, runner.get_state(state), s, runner)}
            if self.on_done is not None:
                self.on_done(i, out)
            outcomes.append(out)
        return outcomes

    def _summary_fields(self, lane: Lane) -> dict:
        s, clock = self.s, self.clock.fields(self.cfg.data.batch_size)
        return dict(
            train=lane.last_train, steps=self.step, steps_per_epoch=s.steps_per_epoch,
            planned_steps=s.total_steps, data_sizes=s.sizes(), params=num_params(s.state.params),
            **clock,  # train_seconds, images_per_second, first_step_at, step_seconds
            resumed_from=self.start, nonfinite_steps=lane.nonfinite,
            parallel=dict(self.mode.parallel), **self.mode.summary_extra(self.clock),
        )

