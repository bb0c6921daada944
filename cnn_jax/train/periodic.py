"""The training loop's bookkeeping: when to log, evaluate and checkpoint; the pending
metric sums a checkpoint carries; selection by validation accuracy; the clocks; the run's
summary.

In the manner of big_vision's ``itstime``: the loop asks a few named predicates of a
:class:`Schedule` instead of testing step arithmetic inline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import jax
import ml_collections
import numpy as np

from cnn_jax import conv as conv_ops
from cnn_jax import rundir, runtime


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The periodic points of one run of ``total`` steps."""

    total: int
    eval_every: int  # steps
    log_every: int
    checkpoint_every: int  # 0: at evaluations only
    checkpoint_evals: str = "all"  # "all" evaluations; "best": those that improve; "end": the last

    @classmethod
    def of(cls, cfg: ml_collections.ConfigDict, steps_per_epoch: int, total: int) -> Schedule:
        return cls(
            total=int(total),
            eval_every=int(cfg.train.eval_every_epochs * steps_per_epoch),
            log_every=int(cfg.train.log_every_steps),
            checkpoint_every=int(cfg.train.checkpoint_every_steps),
            checkpoint_evals=str(cfg.train.get("checkpoint_evals", "all")),
        )

    def is_eval(self, step: int) -> bool:
        """Evaluate after this step (every ``eval_every`` steps and after the last one)."""
        return step % self.eval_every == 0 or step == self.total

    def is_log(self, step: int) -> bool:
        """Write the train metrics summed since the last log point."""
        return step % self.log_every == 0 or self.is_eval(step)

    def is_checkpoint(self, step: int, preempted: bool = False, improved: bool | None = None) -> bool:
        """Save after this step: at evaluations (with ``checkpoint_evals="best"`` only those
        whose validation accuracy is the best so far, ``improved``, and the last step; with
        ``"end"`` the last step only), every ``checkpoint_every`` steps, and when preempted.
        A resume from any checkpoint is exact, so fewer of them cost recomputation after a
        kill, never a different result."""
        mode = self.checkpoint_evals
        at_eval = self.is_eval(step) and (
            step == self.total or mode == "all" or (mode == "best" and improved is not False))
        return (
            at_eval
            or bool(self.checkpoint_every and step % self.checkpoint_every == 0)
            or preempted
        )

    def needs_host(self, step: int, preempted: bool = False) -> bool:
        """The metric sums must come to the host (to log them or to checkpoint them)."""
        return self.is_log(step) or self.is_checkpoint(step, preempted)


def pending_to_json(pending, index: int | None = None) -> dict | None:
    """Train-metric sums since the last log point as JSON numbers (for a checkpoint);
    ``index`` picks one seed of stacked (vmapped) sums."""
    if pending is None:
        return None
    host = jax.device_get(pending)
    return {k: float(v if index is None else v[index]) for k, v in host.items()}


def pending_from_json(sums: dict | None):
    """The inverse of :func:`pending_to_json` (dtypes as the train step returns them)."""
    if sums is None:
        return None
    return {k: np.int32(v) if k.startswith("first_") else np.float32(v) for k, v in sums.items()}


def split_name(split: str, weights: str = "raw") -> str:
    """The ``split`` of ``metrics.jsonl`` rows (and the summary's key) of an evaluation of
    the raw weights (``"validation"``) or of their moving average (``"validation_ema"``)."""
    return split if weights == "raw" else f"{split}_{weights}"


class EarlyStopping:
    """Selection on the validation split: the best evaluation (the first of equal
    accuracies), evaluations since it, and whether ``patience`` of them have passed
    (``patience`` 0: never stops, still tracks the best). ``weights``: which weights'
    evaluations it selects on (their ``metrics.jsonl`` rows when it replays them)."""

    def __init__(self, patience: int, weights: str = "raw"):
        self.patience = int(patience)
        self.weights = weights
        self.best_step: int | None = None
        self.best_accuracy: float | None = None
        self.since_best = 0
        self.metrics_at: dict[int, dict] = {}

    @classmethod
    def of(cls, cfg: ml_collections.ConfigDict) -> EarlyStopping:
        """The selection ``cfg`` asks for (``train.early_stopping_patience``, ``train.select_weights``)."""
        return cls(cfg.train.early_stopping_patience, cfg.train.get("select_weights", "raw"))

    @property
    def stopped(self) -> bool:
        return bool(self.patience) and self.since_best >= self.patience

    def update(self, step: int, metrics: dict) -> bool:
        """Records the validation ``metrics`` of ``step``; ``True`` if they are the best."""
        self.metrics_at[int(step)] = metrics
        if self.best_accuracy is None or metrics["accuracy"] > self.best_accuracy:
            self.best_step, self.best_accuracy, self.since_best = int(step), metrics["accuracy"], 0
            return True
        self.since_best += 1
        return False

    def replay(self, records: list[dict], upto: int) -> None:
        """The validation rows of a resumed run's ``metrics.jsonl`` up to step ``upto``."""
        split = split_name("validation", self.weights)
        for r in records:
            if r.get("split") == split and r["step"] <= upto:
                self.update(r["step"], {k: v for k, v in r.items() if k not in ("step", "split")})


def images_per_second(steps_timed: int, batch: int, t_first: float | None, now: float) -> float | None:
    """Training images per second of ``steps_timed`` steps since ``t_first`` (the first
    step's end, or its start where it compiled nothing)."""
    if not t_first or not steps_timed or now <= t_first:
        return None
    return steps_timed * batch / (now - t_first)


class Clock:
    """The clocks of a run: its wall time, and the time of its training steps alone
    (without a first step that compiled, and without evaluations and checkpoints, which
    run in :meth:`side`).

    ``seeds`` runs trained together (vmapped) share the time: each is charged its part.
    ``vmapped`` keeps the vmapped seeds' accounting: their evaluations count as step
    time, and no ``first_step_at`` is reported."""

    def __init__(self, seeds: int = 1, vmapped: bool = False):
        self.seeds, self.vmapped = seeds, vmapped
        self.t_start = time.perf_counter()
        self.first_step_at = self.t_end = None
        self.begin_pass(None)

    def begin_pass(self, programs: int | None) -> None:
        """A (re)start of the step loop; ``programs``: how many training programs the runner
        had compiled before it (``None``: unknown, the first step is taken to compile)."""
        self.t_first, self.steps_timed, self.compiled, self.side_seconds = None, 0, None, 0.0
        self._programs, self._t_loop = programs, time.perf_counter()

    def stepped(self, sums, programs) -> None:
        """After a step whose output is ``sums``; ``programs()`` counts the compiled ones."""
        if self.t_first is not None:
            self.steps_timed += 1
            return
        jax.block_until_ready(sums)
        self.t_first = time.perf_counter()
        if not self.vmapped:
            self.first_step_at = self.first_step_at or time.time()
        self.compiled = self._programs is None or programs() != self._programs
        if not self.compiled:  # (a later seed of a config): timed like the others
            self.t_first, self.steps_timed = self._t_loop, 1

    @contextlib.contextmanager
    def side(self):
        """Time that is not the training steps' (evaluations, checkpoints)."""
        t = time.perf_counter()
        yield
        if not self.vmapped:
            self.side_seconds += time.perf_counter() - t

    def images_per_second(self, batch: int) -> float | None:
        """So far (the progress bar's)."""
        now = time.perf_counter() - self.side_seconds
        return images_per_second(self.steps_timed, batch, self.t_first, now)

    def stop(self) -> None:
        self.t_end = time.perf_counter()

    def fields(self, batch: int) -> dict:
        """The summary's ``train_seconds``, ``images_per_second``, ``first_step_at`` and
        ``step_seconds`` (seconds in training steps: a sweep's overhead is the rest)."""
        steps_end = self.t_end - self.side_seconds
        return {
            "train_seconds": (self.t_end - self.t_start) / self.seeds,
            "images_per_second": images_per_second(
                self.seeds * self.steps_timed, batch, self.t_first, steps_end),
            "first_step_at": self.first_step_at,
            "step_seconds": (steps_end - self.t_first) / self.seeds if self.t_first else 0.0,
        }


def write_summary(
    run_dir: str,
    *,
    test: dict,
    validation: dict | None,
    best: dict,
    train: dict,
    steps: int,
    planned_steps: int,
    steps_per_epoch: int,
    data_sizes: dict,
    params: int,
    train_seconds: float,
    images_per_second: float | None,
    resumed_from: int,
    nonfinite_steps: int,
    parallel: dict,
    first_step_at: float | None = None,
    write: bool = True,
    **extra,
) -> dict:
    """The run's ``summary.json`` (written when ``write``) and its value.

    ``test`` is the final state's test metrics, ``validation`` its validation metrics,
    ``best`` the checkpoint selected by validation accuracy (``step``,
    ``validation_accuracy``, ``test_accuracy``, ``selected_by``); ``steps`` were trained
    of ``planned_steps`` (fewer after early stopping); ``numerics`` the numeric environment
    (:func:`cnn_jax.runtime.numeric_environment`)."""
    out = {
        "test": test,
        "validation": validation,
        "best": best,
        "train": train,
        "data": data_sizes,
        "steps": int(steps),
        "planned_steps": int(planned_steps),
        "stopped_early": int(steps) < int(planned_steps),
        "epochs": steps / steps_per_epoch,
        "params": params,
        "train_seconds": train_seconds,
        "images_per_second": images_per_second,
    }
    if first_step_at is not None or parallel.get("mode") != "vmap":
        out["first_step_at"] = first_step_at  # Unix time the first step of this run finished
    out.update(resumed_from=resumed_from, nonfinite_steps=nonfinite_steps, parallel=parallel,
               numerics={**runtime.numeric_environment(), **conv_ops.environment()}, **extra)
    if write:
        rundir.write_json(os.path.join(run_dir, rundir.SUMMARY), out, sort_keys=False)
    return out
