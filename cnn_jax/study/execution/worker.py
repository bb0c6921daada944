"""The worker process: a long-lived ``python -m cnn_jax.study.execution.worker`` that
receives tasks on stdin and sends back one event per trial (a cluster job runs
:func:`job_main` instead); each task runs through :func:`cnn_jax.study.execution.task.
run_task`. It exits when the parent goes away. This module imports nothing heavy at the
top: the worker sets its environment before JAX is imported.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

from cnn_jax.study import lease, store
from cnn_jax.study.execution.task import run_task

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
    cpus = os.environ.get(store.WORKER_CPUS_ENV)  # the local pool's group (executors.local)
    if cpus:  # that many CPUs, those first unless another process holds them (another sweep)
        from cnn_jax import runtime

        group = [int(c) for c in cpus.split(",")]
        chosen = runtime.pin_cpus(len(set(group)), "--cpus-per-trial", prefer=group, quiet=True)
        if chosen:
            os.environ[store.WORKER_CPUS_ENV] = ",".join(map(str, chosen))  # (status.json)


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
    from cnn_jax import runtime

    if not runtime.accelerator_installed():  # every trial on the same number of CPUs
        runtime.pin_cpus(int(settings.get("cpus_per_trial") or 1), "--cpus-per-trial")
    if settings.get("cwd") and os.path.isdir(settings["cwd"]):
        os.chdir(settings["cwd"])  # relative paths of the config mean what they meant
    apply_runtime(settings)
    import_extensions(settings)
    events: list[dict] = []

    def emit(ev: dict) -> None:
        events.append(ev)
        if ev["event"] in ("done", "failed", "diverged", "interrupted", "busy"):
            print(f"{ev['event']}: {ev['name']} {ev.get('error', '')}".rstrip(), flush=True)

    from cnn_jax.data import SplitCache

    interrupted = run_task(task, emit, SplitCache())
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
    from cnn_jax.data import SplitCache

    splits = SplitCache()  # each split decoded once per worker, for all its trials
    try:
        for line in sys.stdin:
            task = json.loads(line) if line.strip() else None
            if task is None:
                break
            interrupted = run_task(task, emit, splits)
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
    from cnn_jax.study.execution import worker as _worker

    _worker.main()
