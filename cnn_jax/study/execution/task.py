"""Running one task (a trial, or the seeds of one config) in this process: leases, training
through ``cnn_jax.train``, the study's analyses, the trial's status file and its events.

Called by a worker process (:mod:`cnn_jax.study.execution.worker`), by a cluster job, or in
the sweep's own process (``--workers 0``). A trial's status is written here, so the files
are right even if the parent dies.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import traceback
from collections.abc import Callable

from cnn_jax import rundir
from cnn_jax.study import lease, store
from cnn_jax.study.execution import status as trial_status

Emit = Callable[[dict], None]


def _error_text(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def _finish(task: dict, trial: dict, outcome: dict, emit: Emit, clock: tuple[float, int]) -> None:
    """Records ``outcome`` of ``trial``: status, analyses, HParams and its event. ``clock``:
    when the trial started running and how many trials trained together (its wall time is
    their shared time over their number)."""
    d = trial["dir"]
    status = outcome["status"]
    if status == "done":
        from cnn_jax.study.execution import measure

        result = outcome["result"]
        analysis = measure.run(task.get("analyses") or {}, result, d)
        rundir.write_json(os.path.join(d, rundir.ANALYSIS), analysis)
        values = store.measured(analysis)
        if "point" in trial:  # TensorBoard HParams: compare trials by swept values
            from cnn_jax.study.execution import hparams

            hparams.write(d, trial["point"], trial["seed"], result.summary, values)
        # The trial's wall time from "running" to "done" (a vmapped group's shared by its
        # seeds): the report sets it against the time spent in training steps.
        trial_status.write_status(d, "done", wall_seconds=(time.time() - clock[0]) / clock[1])
        emit({"event": "done", "name": trial["name"],
              "accuracy": result.summary["test"]["accuracy"], "measured": values})
    elif status == "diverged":
        trial_status.write_status(d, "diverged", error=outcome["error"], step=outcome.get("step"),
                                  reason=outcome.get("reason", outcome["error"]))
        emit({"event": "diverged", "name": trial["name"], "error": outcome["error"]})
    else:
        trial_status.write_status(
            d, "failed", error=outcome["error"], traceback=outcome.get("traceback", "")
        )
        emit({"event": "failed", "name": trial["name"], "error": outcome["error"]})


def _restored(d: str, load=None):
    """What a finished run directory trained (its status not yet written, or re-analysed)."""
    from cnn_jax.train import loop

    r = loop.restore(d, "latest", load=load)
    return loop.FitResult(rundir.read_summary(d), r.state, r.setup)


def _fit_single(cfg, d, load=None) -> dict:
    """One trial through ``cnn_jax.train.fit`` (which resumes from the run's checkpoints);
    ``load``: how its splits are loaded (a :class:`cnn_jax.data.SplitCache`'s ``load``)."""
    from cnn_jax import train
    from cnn_jax.errors import Diverged

    try:
        result = train.fit(cfg, d, progress=False, load=load)
    except Diverged as e:
        return {"status": "diverged", "error": str(e), "reason": e.reason, "step": e.step,
                "loss": e.loss}
    # Until fit detects divergence itself: a non-finite final training or validation loss is
    # a divergence. Never the test loss: the test split must not decide which trials count.
    for split in ("train", "validation"):
        loss = (result.summary.get(split) or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            return {
                "status": "diverged",
                "step": result.summary["steps"],
                "loss": loss,
                "error": f"training diverged: final {split} loss is {loss}",
            }
    return {"status": "done", "result": result}


def _use_vmap(task: dict, cfg) -> bool:
    mode = task.get("vmap", "off")
    if mode == "off":
        return False
    from cnn_jax.train import vmap

    if not vmap.supported(cfg):
        return False
    if mode == "auto":
        import jax

        return jax.default_backend() != "cpu"
    return True


def run_task(task: dict, emit: Emit, splits=None) -> bool:
    """Runs ``task = {"trials": [{"name", "dir", "config"}], "vmap": "on"|"off"|"auto",
    "analyses": {name: options}}``: the trials (seeds of one config) one after another through
    ``cnn_jax.train.fit``, or together through :func:`cnn_jax.train.vmap.fit_seeds`.

    Each trial is leased (:mod:`cnn_jax.study.lease`) before it runs: one that a living
    owner holds (another sweep, another job, another worker of this pool) emits ``busy``
    and is left alone; one that turns out finished meanwhile emits ``finished``. Trials
    that run one after another are leased one at a time, just before each starts, so that
    the local pool can give the seeds not yet begun to a worker that has run out of tasks
    as well (:func:`cnn_jax.study.execution.executors.local.split_off`); seeds that train together
    (vmapped) lease all their trials first. Leases are renewed while the trials train and
    released when they end, however this returns.

    Emits ``{"event": "running"|"done"|"failed"|"diverged"|"interrupted"|"busy"|"finished",
    "name": ...}`` per trial. Never raises for a failing trial: the error goes to its status
    file and event. Returns ``True`` if a SIGTERM/SIGINT/SIGUSR2 interrupted it (the trial
    was checkpointed and is queued again; the trials not started emit ``interrupted``).

    ``splits``: a :class:`cnn_jax.data.SplitCache` the process keeps across its tasks (each
    split is decoded once per process: about 5 s per trial for mnist5k); ``None``: one for
    this task.
    """
    if splits is None:
        from cnn_jax.data import SplitCache

        splits = SplitCache()
    from cnn_jax import config as config_lib

    # The planner resolved every trial's config: read back once, handed down as is.
    configs = {t["name"]: config_lib.from_json(t["config"], resolved=True) for t in task["trials"]}
    run = _Run(task, emit, splits.load, configs)
    if _vmapped(task, configs):
        return _lease_and_run(run, task["trials"])
    for i, t in enumerate(task["trials"]):
        if _lease_and_run(run, [t]):
            for rest in task["trials"][i + 1:]:
                emit({"event": "interrupted", "name": rest["name"],
                      "error": "not started: the worker was interrupted"})
            return True
    return False


def _vmapped(task: dict, configs: dict) -> bool:
    if len(task["trials"]) < 2 or task.get("vmap", "off") == "off":
        return False
    return _use_vmap(task, configs[task["trials"][0]["name"]])


@dataclasses.dataclass(frozen=True)
class _Run:
    """What every part of one task needs: the task, where events go, how splits load and
    the trials' resolved configs (by name)."""

    task: dict
    emit: Emit
    load: Callable
    configs: dict


def _lease_and_run(run: _Run, candidates: list[dict]) -> bool:
    """Leases ``candidates`` and runs those it got (see :func:`run_task`)."""
    task, emit = run.task, run.emit
    trials = []
    for t in candidates:
        rec = lease.acquire(t["dir"])
        if rec is None:
            owner = (lease.read(t["dir"]) or {}).get("owner", "?")
            emit({"event": "busy", "name": t["name"], "owner": owner})
            continue
        st = store.read_status(t["dir"])
        again = store.to_analyse_again(t["dir"], st, task.get("analyses") or {})
        if st["status"] in store.FINISHED and not again:  # another sweep finished it meanwhile
            lease.release(t["dir"])
            emit({"event": "finished", "name": t["name"], "status": st["status"]})
            continue
        trials.append(t)
    try:
        return _Leased(run, trials).run() if trials else False
    finally:
        for t in trials:
            lease.release(t["dir"])


class _Leased:
    """The leased trials of one task: their clocks, what is pending, and how each ends."""

    def __init__(self, run: _Run, trials: list[dict]):
        self.task, self.emit, self.load, self.t0 = run.task, run.emit, run.load, time.time()
        self.trials, self.configs = trials, run.configs
        self.pending = {t["name"]: t for t in trials}
        self.clocks: dict[str, tuple[float, int]] = {}  # started when, trained with how many

    def running(self, t: dict, together: int = 1) -> None:
        from cnn_jax import experiment

        self.clocks[t["name"]] = (time.time(), together)
        trial_status.write_status(t["dir"], "running", trained_together=together)
        experiment.record_imports(t["dir"], self.task.get("imports") or [])
        self.emit({"event": "running", "name": t["name"]})

    def finish(self, t: dict, outcome: dict) -> None:
        """Records ``outcome``; if that fails (an analysis, the HParams writer), the trial is
        recorded as failed with that error and its traceback, never left ``running``, and
        the other trials of the task are not touched."""
        clock = self.clocks.get(t["name"], (self.t0, 1))
        try:
            _finish(self.task, t, outcome, self.emit, clock)
        except Exception as e:  # noqa: BLE001  (recorded in the trial's status, not raised)
            failure = {"status": "failed", "error": f"after training: {_error_text(e)}",
                       "traceback": traceback.format_exc(limit=-8)}
            _finish(self.task, t, failure, self.emit, clock)
        finally:
            self.pending.pop(t["name"], None)

    def run(self) -> bool:
        from cnn_jax.errors import Preempted

        trials = self.trials
        try:
            cfgs = [self.configs[t["name"]] for t in trials]
            for t in trials:  # a finished run (its status not yet written, or re-analysed)
                if rundir.is_finished(t["dir"]):
                    self.running(t)
                    self.finish(t, {"status": "done", "result": _restored(t["dir"], self.load)})
            rest = [(t, c) for t, c in zip(trials, cfgs) if t["name"] in self.pending]
            if len(rest) > 1:  # (run_task hands over several trials only to train them vmapped)
                self.vmapped(rest)
                rest = [(t, c) for t, c in rest if t["name"] in self.pending]
            for t, cfg in rest:  # one after another; a failure does not stop the others
                self.running(t)
                self.finish(t, _fit_or_failure(cfg, t["dir"], self.load))
        except Preempted as e:
            for t in list(self.pending.values()):
                trial_status.write_status(t["dir"], "queued", error=str(e))
                self.emit({"event": "interrupted", "name": t["name"], "error": str(e),
                           "signal": e.signal_name})
            return True
        except Exception as e:
            failure = {"status": "failed", "error": _error_text(e),
                       "traceback": traceback.format_exc(limit=-8)}
            for t in list(self.pending.values()):
                self.finish(t, failure)
        return False

    def vmapped(self, rest: list[tuple[dict, object]]) -> None:
        """The seeds together as one vmapped program; those it could not take (checkpoints
        at different steps) stay pending and resume one by one."""
        from cnn_jax.train.vmap import fit_seeds

        for t, _ in rest:
            self.running(t, len(rest))
        fit_seeds([c for _, c in rest], [t["dir"] for t, _ in rest], load=self.load,
                  on_done=lambda i, outcome: self.finish(rest[i][0], outcome))


def _fit_or_failure(cfg, d: str, load) -> dict:
    """:func:`_fit_single`, with any error but a pre-emption as a ``failed`` outcome."""
    from cnn_jax.errors import Preempted

    try:
        return _fit_single(cfg, d, load)
    except Preempted:
        raise
    except Exception as e:  # noqa: BLE001  (one trial's failure is recorded, not raised)
        return {"status": "failed", "error": _error_text(e),
                "traceback": traceback.format_exc(limit=-8)}
