"""The bookkeeping every training loop shares: when to log, evaluate and checkpoint; the
pending metric sums a checkpoint carries; the run's summary.

In the manner of big_vision's ``itstime``: the loop asks a few named predicates of a
:class:`Schedule` instead of testing step arithmetic inline, so ``fit`` and the vmapped
seeds (:mod:`cnn_jax.train.vmap`) log, evaluate and checkpoint at exactly the same steps.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections
import numpy as np

from cnn_jax import rundir


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The periodic points of one run of ``total`` steps."""

    total: int
    eval_every: int  # steps
    log_every: int
    checkpoint_every: int  # 0: at evaluations only

    @classmethod
    def of(cls, cfg: ml_collections.ConfigDict, steps_per_epoch: int, total: int) -> Schedule:
        return cls(
            total=int(total),
            eval_every=int(cfg.train.eval_every_epochs * steps_per_epoch),
            log_every=int(cfg.train.log_every_steps),
            checkpoint_every=int(cfg.train.checkpoint_every_steps),
        )

    def is_eval(self, step: int) -> bool:
        """Evaluate after this step (every ``eval_every`` steps and after the last one)."""
        return step % self.eval_every == 0 or step == self.total

    def is_log(self, step: int) -> bool:
        """Write the train metrics summed since the last log point."""
        return step % self.log_every == 0 or self.is_eval(step)

    def is_checkpoint(self, step: int, preempted: bool = False) -> bool:
        return (
            self.is_eval(step)
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


def best_of(run_dir: str, split: str) -> dict:
    """The logged evaluation of ``split`` with the highest accuracy: ``{"accuracy", "step"}``."""
    history = [r for r in rundir.read_metrics(run_dir) if r["split"] == split]
    if not history:
        return {"accuracy": None, "step": None}
    best = max(history, key=lambda r: r["accuracy"])
    return {"accuracy": best["accuracy"], "step": best["step"]}


def images_per_second(steps_timed: int, batch: int, t_first: float | None, now: float) -> float | None:
    """Training images per second from the first step's end (compilation excluded)."""
    if not t_first or not steps_timed or now <= t_first:
        return None
    return steps_timed * batch / (now - t_first)


def summary(
    run_dir: str,
    *,
    test: dict,
    train: dict,
    steps: int,
    steps_per_epoch: int,
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
    """The run's ``summary.json`` (written when ``write``) and its value."""
    out = {
        "test": test,
        "best": best_of(run_dir, "test"),
        "train": train,
        "steps": int(steps),
        "epochs": steps / steps_per_epoch,
        "params": params,
        "train_seconds": train_seconds,
        "images_per_second": images_per_second,
    }
    if first_step_at is not None or parallel.get("mode") != "vmap":
        out["first_step_at"] = first_step_at  # Unix time the first step of this run finished
    out.update(resumed_from=resumed_from, nonfinite_steps=nonfinite_steps, parallel=parallel, **extra)
    if write:
        rundir.write_json(os.path.join(run_dir, rundir.SUMMARY), out, sort_keys=False)
    return out
