"""Running a study: plan the trials, skip finished ones, train the rest in worker processes.

``run(experiment, workdir)`` loads ``get_config()`` and ``get_sweep()`` from the experiment
file, plans every trial (resolving each config, so mistakes surface before anything runs),
writes ``sweep.json``, skips trials that are ``done`` or ``diverged`` (``failed`` ones are
retried), and trains the rest in ``workers`` long-lived worker processes. Trials that differ
only by seed form one task (they run in the same worker, one after another through
``cnn_jax.train.fit``, or together as one vmapped program, see :mod:`cnn_jax.study.seeds`),
so the compiled program is shared. Interrupted trials resume from their checkpoints.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import inspect
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

from cnn_jax import config as config_lib
from cnn_jax.errors import UserError
from cnn_jax.study import store
from cnn_jax.study.sweep import Study, as_study

Log = Callable[[str], None]


# ----------------------------------------------------------------------------- experiments


def load_experiment(spec: str):
    """``(base_config, study)`` from ``FILE.py[:ARG]``: ``get_config([ARG])`` and
    ``get_sweep([ARG])``."""
    module, path, arg = config_lib.load_module(spec)
    get_config = getattr(module, "get_config", None)
    get_sweep = getattr(module, "get_sweep", None)
    if not callable(get_config):
        raise UserError(f"experiment file {path!r} defines no get_config() function")
    if not callable(get_sweep):
        raise UserError(
            f"experiment file {path!r} defines no get_sweep() function, so it is not a study "
            "(train it with `cnn-jax train --config`, or see experiments/pooling_study.py)"
        )

    def call(fn, what):
        takes_arg = bool(inspect.signature(fn).parameters)
        if arg and not takes_arg:
            raise UserError(f"{path}: {what}() takes no argument, but {spec!r} passes {arg!r}")
        try:
            return fn(arg) if arg else fn()
        except UserError as e:
            raise UserError(f"{path}: {e}") from None

    cfg = call(get_config, "get_config")
    if not isinstance(cfg, config_lib.ml_collections.ConfigDict):
        raise UserError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    return cfg, as_study(call(get_sweep, "get_sweep"))


@dataclasses.dataclass
class Plan:
    study: Study
    trials: list[store.Trial]
    record: dict  # what sweep.json holds


def plan(experiment: str, overrides: list[tuple[str, str]] = ()) -> Plan:
    """Loads the experiment, applies ``overrides`` to its config and plans every trial."""
    base, study = load_experiment(experiment)
    base = config_lib.apply_overrides(base, list(overrides))
    trials = store.plan(study, base)
    record = {
        "version": 1,
        "experiment": experiment,
        "overrides": [list(kv) for kv in overrides],
        "study": study.options(),
        "trials": [t.record() for t in trials],
    }
    return Plan(study, trials, record)


# ----------------------------------------------------------------------------- workers


def default_workers() -> int:
    """Worker processes that fit this machine.

    On CPU: one per two cores. On 2 shared cores (18 LeNet-5 trials of the pooling study,
    cold compilation cache, three pairs of runs alternating the order) one worker took
    110, 200 and 136 s and two took 155, 189 and 150 s (the last with single-threaded XLA):
    XLA already spreads one trial over both cores, and a second worker adds contention
    more than it overlaps compilation. With an accelerator: one (its memory is shared).
    """
    if _accelerator_installed():
        return 1
    return max(1, (os.cpu_count() or 1) // 2)


def _accelerator_installed() -> bool:
    return any(
        importlib.util.find_spec(m) is not None
        for m in ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "libtpu")
    )


def _runtime_settings(temp_cache: str | None) -> dict:
    """What workers need to behave like this process: JAX's compilation cache."""
    jax_settings = {}
    if "jax" in sys.modules:
        import jax

        cache = jax.config.jax_compilation_cache_dir
        if cache:
            jax_settings["jax_compilation_cache_dir"] = cache
            jax_settings["jax_persistent_cache_min_compile_time_secs"] = (
                jax.config.jax_persistent_cache_min_compile_time_secs
            )
    if not jax_settings.get("jax_compilation_cache_dir") and temp_cache:
        # No persistent cache: the seeds of one config would each compile again; a cache
        # for the duration of this sweep (deleted afterwards) shares one compilation.
        jax_settings["jax_compilation_cache_dir"] = temp_cache
        jax_settings["jax_persistent_cache_min_compile_time_secs"] = 0.2
    return {"jax": jax_settings, "env": {"TF_CPP_MIN_LOG_LEVEL": "3"}}


class _Worker:
    def __init__(self, ctx, settings: dict):
        from cnn_jax.study import worker

        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=worker.worker_main,
            args=(child, settings, os.getpid()),
            daemon=True,
            name="cnn-jax-sweep-worker",
        )
        self.proc.start()
        child.close()
        self.task: dict | None = None
        self.finished: set[str] = set()

    def send(self, task: dict) -> None:
        self.task = task
        self.finished = set()
        self.conn.send(task)

    def stop(self, interrupted: bool = False) -> None:
        """Ends the worker: after its task, or at once (SIGTERM: ``fit`` checkpoints first)."""
        if self.proc.is_alive():
            if interrupted and self.task is not None:
                self.proc.terminate()
                self.proc.join(60)
            else:
                try:
                    self.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
                self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# ----------------------------------------------------------------------------- running


def _tasks(trials: list[store.Trial], workdir: str, vmap: str, shift: int) -> list[dict]:
    groups: dict[str, list[store.Trial]] = collections.OrderedDict()
    for t in trials:
        groups.setdefault(t.group, []).append(t)
    return [
        {
            "trials": [
                {"name": t.name, "dir": t.dir(workdir), "config": config_lib.to_json(t.config)}
                for t in g
            ],
            "vmap": vmap,
            "shift": shift,
            "shift_seed": 0,
        }
        for g in groups.values()
    ]


def trial_states(workdir: str, trials: list[store.Trial]) -> dict[str, dict]:
    return {t.name: store.read_status(t.dir(workdir)) for t in trials}


def run(
    experiment: str,
    workdir: str,
    *,
    overrides: list[tuple[str, str]] = (),
    workers: int | None = None,
    vmap: str = "auto",
    dry_run: bool = False,
    report: bool = True,
    plots: bool = True,
    log: Log = print,
) -> dict:
    """Runs (or resumes) a study into ``workdir``; returns counts and the report paths.

    Args:
      experiment: ``FILE.py[:ARG]`` with ``get_config()`` and ``get_sweep()``.
      workdir: the sweep directory (created; must be empty or a sweep directory).
      overrides: ``[(dotted_key, text)]`` applied to the experiment's config (every trial).
      workers: worker processes; ``None``: :func:`default_workers`; ``0``: run in this process.
      vmap: ``"on"``, ``"off"`` or ``"auto"`` (on for accelerators): train the seeds of a
        config as one vmapped program.
      dry_run: list the trials and what would run, write nothing.
      report: write ``results.csv``, ``report.md`` and ``timing.md`` at the end.
      plots: and the plots.
      log: where progress lines go.
    """
    if vmap not in ("on", "off", "auto"):
        raise UserError(f"invalid vmap {vmap!r}; choose on, off or auto")
    if workers is not None and workers < 0:
        raise UserError(f"--workers must be 0 (in this process) or more, got {workers}")
    p = plan(experiment, overrides)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UserError(f"workdir {workdir!r} exists and is not a directory")
    if os.path.isdir(workdir) and os.listdir(workdir) and not store.is_sweep(workdir):
        raise UserError(
            f"workdir {workdir!r} is not empty and holds no {store.SWEEP_FILE}: it is not a sweep "
            "directory; use a new --workdir"
        )
    states = trial_states(workdir, p.trials)
    todo = [t for t in p.trials if states[t.name]["status"] not in store.FINISHED]
    n_done = sum(states[t.name]["status"] == "done" for t in p.trials)
    n_div = sum(states[t.name]["status"] == "diverged" for t in p.trials)
    result = {
        "trials": len(p.trials),
        "skipped": len(p.trials) - len(todo),
        "ran": 0,
        "done": n_done,
        "diverged": n_div,
        "failed": 0,
    }
    if dry_run:
        for t in p.trials:
            st = states[t.name]["status"]
            log(f"{'run ' if st not in store.FINISHED else 'skip'}  {t.name}  ({st})")
        log(
            f"{len(p.trials)} trials: {len(todo)} to run, {len(p.trials) - len(todo)} finished "
            f"(dry run: nothing written)"
        )
        return result

    from cnn_jax.train import workdir as workdir_lib

    workdir_lib.create(workdir)
    with workdir_lib.WorkdirLock(workdir):
        old = store.read_json(os.path.join(workdir, store.SWEEP_FILE))
        if old is not None and (old.get("experiment"), old.get("overrides")) != (
            p.record["experiment"],
            p.record["overrides"],
        ):
            log(
                f"note: {workdir} held the sweep of {old.get('experiment')} with overrides "
                f"{old.get('overrides')}; it now lists this one (earlier trials stay on disk and "
                "are reused where their configs match)"
            )
        store.write_json(os.path.join(workdir, store.SWEEP_FILE), p.record)
        for t in todo:
            store.write_status(t.dir(workdir), "queued")
        log(
            f"{len(p.trials)} trials ({len(p.trials) // len(p.study.seed_list())} configurations x "
            f"{len(p.study.seed_list())} seeds) in {workdir}: {len(todo)} to run, "
            f"{len(p.trials) - len(todo)} already finished"
        )
        t0 = time.perf_counter()
        counts = _execute(todo, workdir, workers, vmap, p.study.shift_consistency, log)
        result.update(
            ran=len(todo),
            failed=counts["failed"],
            done=n_done + counts["done"],
            diverged=n_div + counts["diverged"],
            seconds=time.perf_counter() - t0,
        )
    if report:
        from cnn_jax.study import reporting as report_lib

        result["report"] = report_lib.write(workdir, with_plots=plots)
    return result


def _execute(todo, workdir, workers, vmap, shift, log) -> dict:
    counts = {"done": 0, "failed": 0, "diverged": 0}
    if not todo:
        return counts
    tasks = _tasks(todo, workdir, vmap, shift)
    total = len(todo)
    width = len(str(total))
    finished = 0

    def handle(ev: dict) -> None:
        nonlocal finished
        kind = ev["event"]
        if kind not in counts:
            return
        counts[kind] += 1
        finished += 1
        head = f"[{finished:>{width}}/{total}] {kind:<8} {ev['name']}"
        if kind == "done":
            sc = ev.get("shift_consistency")
            extra = f"  acc {ev['accuracy']:.4f}" + (f"  shift {sc:.3f}" if sc is not None else "")
        else:
            extra = f"  {ev.get('error', '')}"
        log(head + extra)

    n = default_workers() if workers is None else workers
    if n == 0:
        from cnn_jax.study import worker

        with worker.cached_datasets():
            for task in tasks:
                if worker.run_task(task, handle):
                    raise KeyboardInterrupt  # SIGINT/SIGTERM: the trial was checkpointed
        return counts
    n = min(n, len(tasks))
    temp_cache = tempfile.mkdtemp(prefix="cnn-jax-sweep-xla-")
    try:
        _run_pool(tasks, n, _runtime_settings(temp_cache), workdir, handle)
    finally:
        shutil.rmtree(temp_cache, ignore_errors=True)
    return counts


def _run_pool(tasks: list[dict], n: int, settings: dict, workdir: str, handle) -> None:
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")  # JAX is not fork-safe
    queue = collections.deque(tasks)
    pool = [_Worker(ctx, settings) for _ in range(n)]
    interrupted = False
    try:
        while queue or any(w.task is not None for w in pool):
            for w in pool:
                if w.task is None and queue:
                    w.send(queue.popleft())
            busy = [w for w in pool if w.task is not None]
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy])
            for i, w in enumerate(pool):
                if w.task is None or (w.conn not in ready and w.proc.sentinel not in ready):
                    continue
                try:
                    while w.conn.poll():
                        ev = w.conn.recv()
                        if ev["event"] == "idle":
                            w.task = None
                            break
                        if ev["event"] in ("done", "failed", "diverged"):
                            w.finished.add(ev["name"])
                        handle(ev)
                except (EOFError, OSError):
                    pass
                if w.task is not None and not w.proc.is_alive():
                    # The worker died (killed, out of memory, a crash in native code): its
                    # unfinished trials fail, and a fresh worker takes its place.
                    code = w.proc.exitcode
                    for t in w.task["trials"]:
                        if t["name"] not in w.finished:
                            err = f"worker process died (exit code {code})"
                            store.write_status(t["dir"], "failed", error=err)
                            handle({"event": "failed", "name": t["name"], "error": err})
                    w.task = None
                    pool[i] = _Worker(ctx, settings) if queue else w
    except BaseException:
        interrupted = True
        raise
    finally:
        for w in pool:
            w.stop(interrupted)
