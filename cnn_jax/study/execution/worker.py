"""Running trials: one task (a trial, or the seeds of one config) inside a worker process.

A worker is a long-lived ``python -m cnn_jax.study.execution.worker`` process that receives tasks on
stdin and sends back one event per trial; a cluster job runs :func:`job_main` instead. It writes each trial's ``status.json`` itself, so the files are
right even if the parent dies; it exits when the parent goes away. This module imports
nothing heavy at the top: the worker sets its environment before JAX is imported.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

from cnn_jax import rundir
from cnn_jax.study import lease, store

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
        analysis = measure.run(task.get("analyses") or {}, result)
        rundir.write_json(os.path.join(d, rundir.ANALYSIS), analysis)
        values = store.measured(analysis)
        if "point" in trial:  # TensorBoard HParams: compare trials by swept values
            from cnn_jax.study.execution import hparams

            hparams.write(d, trial["point"], trial["seed"], result.summary, values)
        # The trial's wall time from "running" to "done" (a vmapped group's shared by its
        # seeds): the report sets it against the time spent in training steps.
        store.write_status(d, "done", wall_seconds=(time.time() - clock[0]) / clock[1])
        emit({"event": "done", "name": trial["name"],
              "accuracy": result.summary["test"]["accuracy"], "measured": values})
    elif status == "diverged":
        store.write_status(d, "diverged", error=outcome["error"], step=outcome.get("step"))
        emit({"event": "diverged", "name": trial["name"], "error": outcome["error"]})
    else:
        store.write_status(
            d, "failed", error=outcome["error"], traceback=outcome.get("traceback", "")
        )
        emit({"event": "failed", "name": trial["name"], "error": outcome["error"]})


def _restored(d: str):
    """What a finished run directory trained (its status was not written: killed in between)."""
    from cnn_jax.train import loop

    r = loop.restore(d, "latest")
    return loop.FitResult(rundir.read_summary(d), r.state, r.setup)


def _fit_single(cfg, d) -> dict:
    """One trial through ``cnn_jax.train.fit`` (which resumes from the run's checkpoints)."""
    from cnn_jax import train
    from cnn_jax.errors import Diverged

    try:
        result = train.fit(cfg, d, progress=False)
    except Diverged as e:
        return {"status": "diverged", "error": str(e), "step": e.step, "loss": e.loss}
    # Until fit detects divergence itself: a non-finite final loss is a divergence.
    for split in ("train", "test"):
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


def run_task(task: dict, emit: Emit) -> bool:
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
    """
    if _vmapped(task):
        return _run_acquired(task, task["trials"], emit)
    for i, t in enumerate(task["trials"]):
        if _run_acquired(task, [t], emit):
            for rest in task["trials"][i + 1:]:
                emit({"event": "interrupted", "name": rest["name"],
                      "error": "not started: the worker was interrupted"})
            return True
    return False


def _vmapped(task: dict) -> bool:
    if len(task["trials"]) < 2 or task.get("vmap", "off") == "off":
        return False
    from cnn_jax import config as config_lib

    return _use_vmap(task, config_lib.from_json(task["trials"][0]["config"], resolved=True))


def _run_acquired(task: dict, candidates: list[dict], emit: Emit) -> bool:
    """Leases ``candidates`` and runs those it got (see :func:`run_task`)."""
    trials = []
    for t in candidates:
        rec = lease.acquire(t["dir"])
        if rec is None:
            owner = (lease.read(t["dir"]) or {}).get("owner", "?")
            emit({"event": "busy", "name": t["name"], "owner": owner})
            continue
        st = store.read_status(t["dir"])
        if st["status"] in store.FINISHED and not _stale(task, t, st):  # finished meanwhile
            lease.release(t["dir"])
            emit({"event": "finished", "name": t["name"], "status": st["status"]})
            continue
        trials.append(t)
    try:
        return _run_leased({**task, "trials": trials}, emit) if trials else False
    finally:
        for t in trials:
            lease.release(t["dir"])


def _stale(task: dict, trial: dict, status: dict) -> bool:
    """A finished trial whose analyses were measured with other options (or not at all): it
    is analysed again from its final checkpoint, never retrained."""
    return status["status"] == "done" and not store.analyses_current(
        store.read_analysis(trial["dir"]), task.get("analyses") or {}
    )


def _run_leased(task: dict, emit: Emit) -> bool:
    from cnn_jax import config as config_lib
    from cnn_jax.errors import Preempted

    trials = task["trials"]
    t0 = time.time()
    pending = {t["name"]: t for t in trials}
    clocks: dict[str, tuple[float, int]] = {}  # when each trial started, trained with how many

    def running(t, together=1):
        clocks[t["name"]] = (time.time(), together)
        store.write_status(t["dir"], "running", trained_together=together)
        emit({"event": "running", "name": t["name"]})

    def finish(t, outcome):
        _finish(task, t, outcome, emit, clocks.get(t["name"], (t0, 1)))

    try:
        # The store resolved every trial's config: it is handed down as is.
        cfgs = [config_lib.from_json(t["config"], resolved=True) for t in trials]
        # A finished run whose status was not yet written (killed in between): analyse only.
        for t in trials:
            if rundir.is_finished(t["dir"]):
                running(t)
                finish(t, {"status": "done", "result": _restored(t["dir"])})
                pending.pop(t["name"])
        rest = [(t, c) for t, c in zip(trials, cfgs) if t["name"] in pending]
        if len(rest) > 1:  # (run_task hands over several trials only to train them vmapped)
            from cnn_jax.train.vmap import fit_seeds

            def on_done(i, outcome):
                t = rest[i][0]
                pending.pop(t["name"], None)
                finish(t, outcome)

            for t, _ in rest:
                running(t, len(rest))
            if (
                fit_seeds([c for _, c in rest], [t["dir"] for t, _ in rest], on_done=on_done)
                is None
            ):
                pass  # checkpoints at different steps: resume them one by one below
            rest = [(t, c) for t, c in rest if t["name"] in pending]
        for t, cfg in rest:  # one after another; a failure does not stop the others
            running(t)
            try:
                outcome = _fit_single(cfg, t["dir"])
            except Preempted:
                raise
            except Exception as e:  # noqa: BLE001  (one trial's failure is recorded, not raised)
                outcome = {
                    "status": "failed",
                    "error": _error_text(e),
                    "traceback": traceback.format_exc(limit=-8),
                }
            pending.pop(t["name"])
            finish(t, outcome)
    except Preempted as e:
        for t in list(pending.values()):
            store.write_status(t["dir"], "queued", error=str(e))
            emit({"event": "interrupted", "name": t["name"], "error": str(e),
                  "signal": e.signal_name})
        return True
    except Exception as e:  # noqa: BLE001  (a failing trial never stops the sweep)
        err = _error_text(e)
        tb = traceback.format_exc(limit=-8)
        for t in list(pending.values()):
            finish(t, {"status": "failed", "error": err, "traceback": tb})
        pending.clear()
    return False


@contextlib.contextmanager
def cached_datasets():
    """Decoded dataset splits are kept for the next trial of this process.

    ``cnn_jax.data.load`` decodes every PNG of a split on each call: about 5 s per trial for
    mnist5k on 2 loaded cores, the same work again for every trial of a sweep. While this
    context is active, ``cnn_jax.data.load`` returns the split it decoded before (splits are
    read-only). The original function is restored on exit.
    """
    from cnn_jax import data

    original = data.load
    cache: dict = {}

    def load(name, split, data_dir=None, *args, **kwargs):
        key = (name, split, data_dir or data.default_data_dir(), repr(args), repr(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = original(name, split, data_dir, *args, **kwargs)
        return cache[key]

    load.__doc__ = original.__doc__
    data.load = load
    try:
        yield
    finally:
        data.load = original


# ----------------------------------------------------------------------------- worker process


def _watch_parent(parent: int) -> None:
    """Exit when the parent process is gone (it was killed): never train orphaned."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            from multiprocessing import util

            util._run_finalizers(0)  # release semaphores (no leak warnings)
            os._exit(1)


def apply_env(settings: dict) -> None:
    """The environment part of ``settings`` (before JAX is imported: XLA memory fraction,
    ``CUDA_VISIBLE_DEVICES``, log levels)."""
    for k, v in settings.get("env", {}).items():
        os.environ[k] = str(v)
    cpus = os.environ.get(store.WORKER_CPUS_ENV)  # the local pool's pinning (executors.local)
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})


def apply_runtime(settings: dict) -> None:
    """Logging and JAX settings of the parent (compilation cache), in this process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import absl.logging

        absl.logging.set_verbosity("error")
    except ImportError:  # pragma: no cover
        pass
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)
    import jax

    for k, v in settings.get("jax", {}).items():
        jax.config.update(k, v)
    try:
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def import_extensions(settings: dict) -> None:
    """Imports what the sweep's planner imported (its experiment file): pooling kinds,
    models, analyses and datasets registered there exist in this process too."""
    from cnn_jax import experiment

    experiment.import_files(settings.get("imports", []))


def job_main(task: dict, settings: dict) -> dict:
    """The body of one cluster job (a SLURM array task, a Ray task): ``task`` in this fresh
    process, with ``settings`` applied before JAX is imported. Returns ``{"events": [...],
    "interrupted": bool}``; the trial store holds the outcome either way."""
    if "jax" in sys.modules:  # pragma: no cover  (a reused process: settings may not apply)
        print("warning: jax was imported before the job's settings", file=sys.stderr)
    apply_env(settings)
    if settings.get("cwd") and os.path.isdir(settings["cwd"]):
        os.chdir(settings["cwd"])  # relative paths of the config mean what they meant
    apply_runtime(settings)
    import_extensions(settings)
    events: list[dict] = []

    def emit(ev: dict) -> None:
        events.append(ev)
        if ev["event"] in ("done", "failed", "diverged", "interrupted", "busy"):
            print(f"{ev['event']}: {ev['name']} {ev.get('error', '')}".rstrip(), flush=True)

    with cached_datasets():
        interrupted = run_task(task, emit)
    sig = next((e.get("signal") for e in events if e["event"] == "interrupted"), None)
    return {"events": events, "interrupted": interrupted, "signal": sig}


EVENTS_FD = "CNN_JAX_WORKER_EVENTS_FD"


def main() -> None:
    """``python -m cnn_jax.study.execution.worker``: the local pool's worker process.

    Started as a plain subprocess (never ``multiprocessing``'s spawn, which re-imports the
    parent's ``__main__``: a script calling ``study.run`` without an ``if __name__ ==
    "__main__":`` guard would run again in every worker). The first line on stdin is the
    settings (JSON), then one task per line; an empty line or ``null`` ends it. Events go
    as JSON lines to the file descriptor named by ``CNN_JAX_WORKER_EVENTS_FD`` (stdout
    stays free for libraries' output). Exits 75 after an interruption (the trial was
    checkpointed), 130 on SIGINT outside a trial.
    """
    import json

    events = os.fdopen(int(os.environ[EVENTS_FD]), "w", buffering=1)
    parent = os.getppid()
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    settings = json.loads(sys.stdin.readline() or "{}")
    apply_env(settings)
    apply_runtime(settings)
    import_extensions(settings)

    def emit(event):
        events.write(json.dumps(event) + "\n")

    code = 0
    stack = contextlib.ExitStack()
    stack.enter_context(cached_datasets())
    try:
        for line in sys.stdin:
            task = json.loads(line) if line.strip() else None
            if task is None:
                break
            interrupted = run_task(task, emit)
            emit({"event": "idle"})
            if interrupted:
                code = 75
                break
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 1
    lease.release_all()
    # Skip interpreter teardown (background threads of grain/Orbax can abort it noisily),
    # but first finalise what was closed: tensorboardX's multiprocessing queues hold
    # semaphores that would otherwise be reported as leaked.
    import gc

    gc.collect()
    from multiprocessing import util

    util._run_finalizers(0)
    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.suppress(OSError):
        events.flush()
    os._exit(code)


if __name__ == "__main__":
    from cnn_jax.study.execution import worker as _worker  # noqa: PLW0406  (the canonical module)

    _worker.main()
