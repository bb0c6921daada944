"""Running a study: plan the trials, skip finished ones, train the rest in worker processes.

``run(experiment, workdir)`` loads ``get_config()`` and ``get_sweep()`` from the experiment
file, plans every trial (resolving each config, so mistakes surface before anything runs),
writes ``sweep.json``, skips trials that are ``done`` or ``diverged`` (``failed`` ones are
retried), and hands the rest to an executor (:mod:`cnn_jax.study.execution.executors`: the local
worker pool by default, SLURM or Ray). Trials that differ only by seed form one task, one
job (they run one after another through ``cnn_jax.train.fit``, or together as one vmapped
program, see :mod:`cnn_jax.train.vmap`), so the compiled program is shared. Interrupted
trials resume from their checkpoints; trials are owned through leases in the trial store.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import inspect
import os
import sys
import threading
import time
from collections.abc import Callable

from cnn_jax import config as config_lib
from cnn_jax import experiment as experiment_lib
from cnn_jax.errors import UserError
from cnn_jax.study import store, tuning
from cnn_jax.study.sweep import Study, as_study

Log = Callable[[str], None]


# ----------------------------------------------------------------------------- experiments


def load_experiment(spec: str):
    """``(base_config, study)`` from ``FILE.py[:ARG]``: ``get_config([ARG])`` and
    ``get_sweep([ARG])``."""
    module, path, arg = experiment_lib.load_module(spec)
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
    pending: bool = False  # a tuning phase must finish before the study trials are known


def plan(experiment: str, overrides: list[tuple[str, str]] = (), workdir: str | None = None) -> Plan:
    """Loads the experiment, applies ``overrides`` to its config and plans every trial.

    With per-arm tuning (``Study(tune=...)``) the tuning trials come first; the study
    trials follow once every tuning trial in ``workdir`` has finished (each arm with its
    value chosen on validation, :mod:`cnn_jax.study.tuning`), else ``pending`` is true."""
    base, study = load_experiment(experiment)
    base = config_lib.apply_overrides(base, list(overrides))
    extra, pending = {}, False
    if study.tune:
        tune = store.plan(study, base, study.tuning_trials(), phase=tuning.TUNE_PHASE)
        states = trial_states(workdir, tune) if workdir and os.path.isdir(workdir) else {}
        status = {name: st["status"] for name, st in states.items()}
        if tune and all(status.get(t.name) in store.FINISHED for t in tune):
            chosen, table = tuning.choose(study, tuning.scores_of(study, tune, workdir, status))
            trials = tune + store.plan(study, base, study.trials(chosen))
            extra["tuning"] = tuning.record(chosen, table)
        else:
            trials, pending = tune, True
    else:
        trials = store.plan(study, base)
    record = {
        "version": 1,
        "experiment": experiment,
        "overrides": [list(kv) for kv in overrides],
        "study": study.options(),
        "trials": [t.record() for t in trials],
        **extra,
    }
    return Plan(study, trials, record, pending)


# ----------------------------------------------------------------------------- workers


CACHE_SUBDIR = os.path.join(".cache", "xla")


def cache_dir_for(workdir: str, cache_dir: str | None = None) -> str | None:
    """The compilation cache a sweep's jobs share: ``cache_dir`` if given (``"off"``:
    none), else ``WORKDIR/.cache/xla`` on the sweep's (shared) filesystem, so every node
    reuses what one compiled."""
    if cache_dir is not None:
        return None if cache_dir.lower() in ("0", "off", "none", "") else os.path.abspath(cache_dir)
    return os.path.join(os.path.abspath(workdir), CACHE_SUBDIR)


def _runtime_settings(cache_dir: str | None) -> dict:
    """What every job needs to behave like this process: JAX's compilation cache (shared
    by the sweep's jobs), log levels and the working directory."""
    jax_settings = {}
    if cache_dir:
        jax_settings["jax_compilation_cache_dir"] = cache_dir
        min_secs = 0.2
        if "jax" in sys.modules:
            import jax

            if jax.config.jax_compilation_cache_dir:
                min_secs = jax.config.jax_persistent_cache_min_compile_time_secs
        jax_settings["jax_persistent_cache_min_compile_time_secs"] = min_secs
    return {"jax": jax_settings, "env": {"TF_CPP_MIN_LOG_LEVEL": "3"}, "cwd": os.getcwd()}


# ----------------------------------------------------------------------------- running


def _tasks(
    trials: list[store.Trial], workdir: str, vmap: str, shift: int, per_trial: bool = False
) -> list[dict]:
    """One task per config (its seeds together) or, with ``per_trial``, per trial."""
    groups: dict[str, list[store.Trial]] = collections.OrderedDict()
    for t in trials:
        groups.setdefault(t.name if per_trial else t.group, []).append(t)
    return [
        {
            "trials": [
                {"name": t.name, "dir": t.dir(workdir), "config": config_lib.to_json(t.config),
                 "point": store.jsonable(t.point), "seed": t.seed}
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
    executor: str = "local",
    executor_options: dict | None = None,
    cache_dir: str | None = None,
) -> dict:
    """Runs (or resumes) a study into ``workdir``; returns counts and the report paths.

    Args:
      experiment: ``FILE.py[:ARG]`` with ``get_config()`` and ``get_sweep()``.
      workdir: the sweep directory (created; must be empty or a sweep directory).
      overrides: ``[(dotted_key, text)]`` applied to the experiment's config (every trial).
      workers: worker processes; ``None``: :func:`cnn_jax.runtime.default_workers`; ``0``: run in this process.
      vmap: ``"on"``, ``"off"`` or ``"auto"`` (on for accelerators): train the seeds of a
        config as one vmapped program.
      dry_run: list the trials and what would run, write nothing.
      report: write ``results.csv``, ``report.md`` and ``timing.md`` at the end.
      plots: and the plots.
      log: where progress lines go.
      executor: ``"local"`` (the worker pool, default), ``"slurm"`` (job arrays through
        submitit) or ``"ray"``: see :mod:`cnn_jax.study.execution.executors`.
      executor_options: the executor's options (local: ``workers``, ``trials_per_gpu``;
        slurm: ``partition``, ``time_min``, ``cpus``, ``gpus``, ``mem_gb``,
        ``array_parallelism``, ``sbatch``; ray: ``address``, ``cpus``, ``gpus``, ``mem_gb``).
      cache_dir: the jobs' shared compilation cache (default: ``WORKDIR/.cache/xla``, or
        the cache this process has configured; ``"off"``: none).

    Trials are owned by leases in the trial store (:mod:`cnn_jax.study.lease`), so several
    sweeps (any executors, any hosts) may run on one workdir at once: each trains the
    trials nobody holds, waits for those another owner trains, and takes over the trials of
    dead owners.
    """
    t_run, started = time.perf_counter(), time.time()
    if vmap not in ("on", "off", "auto"):
        raise UserError(f"invalid vmap {vmap!r}; choose on, off or auto")
    if workers is not None and workers < 0:
        raise UserError(f"--workers must be 0 (in this process) or more, got {workers}")
    from cnn_jax.study.execution import executors

    options = dict(executor_options or {})
    if workers is not None:
        options["workers"] = workers  # an option of the local executor (others refuse it)
    p = plan(experiment, overrides, workdir)
    if dry_run and executor not in executors.names():
        raise UserError(f"unknown executor {executor!r}; choose one of: {', '.join(executors.names())}")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UserError(f"workdir {workdir!r} exists and is not a directory")
    # (a lock file or cache alone: another sweep is just creating it)
    own = {".lock", ".write-test", ".cache"}
    if os.path.isdir(workdir) and set(os.listdir(workdir)) - own and not store.is_sweep(workdir):
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

    ex = executors.create(executor, options)  # checks before anything is written
    if cache_dir is None and "jax" in sys.modules:
        import jax

        cache_dir = jax.config.jax_compilation_cache_dir or None  # this process's cache
    from cnn_jax.train import workdir as workdir_lib

    try:
        workdir_lib.create(workdir)
        with _sweep_lock(workdir):  # only while sweep.json is written
            _write_plan(workdir, p, todo, log)
        t0 = time.perf_counter()
        if report and todo:  # the report's imports while the workers start
            from cnn_jax.study.reporting import write as reporting

            threading.Thread(target=reporting.preload, name="cnn-jax-preload", daemon=True).start()
        counts = _execute(
            todo, workdir, ex, vmap, p.study.shift_consistency, cache_dir_for(workdir, cache_dir), log
        )
        if p.pending:  # the tuning phase has run: now each arm's study seeds, as chosen
            p = plan(experiment, overrides, workdir)
            if p.pending:
                raise UserError(
                    "tuning trials did not all finish (see `cnn-jax status`); re-run the sweep "
                    "to retry them before the study trials start"
                )
            tuning.log_choices(p.record.get("tuning", {}), log)
            states = trial_states(workdir, p.trials)
            todo = [t for t in p.trials if states[t.name]["status"] not in store.FINISHED]
            with _sweep_lock(workdir):
                _write_plan(workdir, p, todo, log)
            more = _execute(todo, workdir, ex, vmap, p.study.shift_consistency,
                            cache_dir_for(workdir, cache_dir), log)
            counts = {k: counts.get(k, 0) + more.get(k, 0) for k in set(counts) | set(more)}
            result["trials"] = len(p.trials)
    finally:
        ex.close()
    result.update(
        ran=counts["ran"],
        failed=counts["failed"],
        interrupted=counts["interrupted"],
        done=n_done + counts["done"],
        diverged=n_div + counts["diverged"],
        seconds=time.perf_counter() - t0,
    )
    if report:
        from cnn_jax.study.reporting import write as report_lib

        result["report"] = report_lib.write(workdir, with_plots=plots)
    if result["ran"]:
        from cnn_jax.study.execution import progress

        result.update(progress.overhead(workdir, p.trials, started, time.perf_counter() - t_run,
                                        workers=ex.concurrency))
        log(progress.overhead_line(result))
    return result


@contextlib.contextmanager
def _sweep_lock(workdir: str, timeout: float = 60.0):
    """The sweep directory's lock, waited for: another sweep holds it only while it writes
    ``sweep.json`` (trials are owned by their leases, not by this lock)."""
    from cnn_jax.train import workdir as workdir_lib

    lock = workdir_lib.WorkdirLock(workdir)
    deadline = time.time() + timeout
    while True:
        try:
            lock.acquire()
            break
        except UserError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield
    finally:
        lock.release()


def _write_plan(workdir: str, p: Plan, todo: list[store.Trial], log: Log) -> None:
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
        store.mark(t.dir(workdir), "queued")  # not over a trial that another owner trains
    n_tune = sum(bool(t.phase) for t in p.trials)
    n_study = len(p.trials) - n_tune
    seeds = len(p.study.seed_list())
    what = (f"{n_tune} tuning trials ({len(p.study.tune_points())} values x "
            f"{len(p.study.tune_seed_list())} tuning seeds per arm; the study trials follow)"
            if p.pending else
            f"{n_study} trials ({n_study // seeds} configurations x {seeds} seeds)"
            + (f" after {n_tune} tuning trials" if n_tune else ""))
    log(f"{what} in {workdir}: {len(todo)} to run, {len(p.trials) - len(todo)} already finished")


def _execute(todo, workdir, ex, vmap, shift, cache_dir, log) -> dict:
    """Runs the tasks of ``todo`` on executor ``ex``; then waits for the trials that another
    owner was training (``busy``) and runs those it left unfinished, until none is left."""
    counts = {"done": 0, "failed": 0, "diverged": 0, "interrupted": 0, "ran": 0}
    if not todo:
        return counts
    total = len(todo)
    width = len(str(total))
    finished = 0
    busy: dict[str, store.Trial] = {}
    by_name = {t.name: t for t in todo}
    from cnn_jax.study.execution.progress import SweepProgress

    progress = SweepProgress(total, log)

    def handle(ev: dict) -> None:
        nonlocal finished
        kind = ev["event"]
        if kind == "busy":
            busy[ev["name"]] = by_name[ev["name"]]
            return
        if kind == "finished":  # another sweep finished it meanwhile
            kind = ev.get("status", "done")
            if kind not in counts:
                return
            counts[kind] += 1
            finished += 1
            progress.line(f"[{finished:>{width}}/{total}] {kind:<8} {ev['name']}  (by another sweep)")
            return
        if kind not in counts:
            return
        counts[kind] += 1
        counts["ran"] += kind != "interrupted"
        finished += 1
        head = f"[{finished:>{width}}/{total}] {kind:<8} {ev['name']}"
        if kind == "done":
            sc = ev.get("shift_consistency")
            extra = f"  acc {ev['accuracy']:.4f}" + (f"  shift {sc:.3f}" if sc is not None else "")
        else:
            extra = f"  {ev.get('error', '')}"
        progress.line(head + extra)

    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
    settings = _runtime_settings(cache_dir)
    workdir = os.path.abspath(workdir)  # jobs may start in other directories
    per_trial = ex.job_per_trial(vmap)
    tasks = _tasks(todo, workdir, vmap, shift, per_trial)
    while tasks:
        busy.clear()
        ex.run(tasks, settings, workdir, handle, log)
        if not busy:
            break
        log(f"waiting for {len(busy)} trial(s) that another owner is training")
        left = _wait_for_owners(workdir, list(busy.values()))
        for t, st in left:
            if st in store.FINISHED:
                handle({"event": "finished", "name": t.name, "status": st})
        rest = [t for t, st in left if st not in store.FINISHED]
        tasks = _tasks(rest, workdir, vmap, shift, per_trial)
    progress.close()
    return counts


def _wait_for_owners(workdir: str, trials: list[store.Trial], poll: float = 1.0) -> list:
    """Waits until no living owner holds ``trials``; returns ``[(trial, status)]``."""
    while True:
        states = [(t, store.read_status(t.dir(workdir))["status"]) for t in trials]
        if all(st != "running" for _, st in states):
            return states
        time.sleep(poll)
