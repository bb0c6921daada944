"""Running a study: plan the trials, skip finished ones, train the rest in worker processes.

``run(experiment, workdir)`` loads ``get_config()`` and ``get_sweep()`` from the experiment
file, plans every trial (resolving each config, so mistakes surface before anything runs),
writes ``sweep.json``, skips trials that are ``done`` or ``diverged`` (``failed`` ones are
retried), and hands the rest to an executor (:mod:`cnn_jax.study.execution.executors`: the local
worker pool by default, SLURM or Ray). Trials that differ only by seed form one task, one
job (they run one after another through ``cnn_jax.train.fit``, or together as one vmapped
program, see :mod:`cnn_jax.train.vmap`), so the compiled program is shared. Interrupted
trials resume from their checkpoints. A finished trial whose analyses were measured with
other options is analysed again (from its checkpoints), never retrained.

Trials are owned by leases in the trial store (:mod:`cnn_jax.study.lease`), so several
sweeps (any executors, any hosts) may run on one workdir at once: each trains the trials
nobody holds, waits for those another owner trains, and takes over the trials of dead
owners.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable

from cnn_jax import rundir
from cnn_jax.errors import UserError
from cnn_jax.study import planning, store, tuning
from cnn_jax.study.design import BUDGET_PHASE
from cnn_jax.study.execution import dispatch
from cnn_jax.study.execution import status as trial_status

Log = Callable[[str], None]


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


def _conv_env(workdir: str, pinned: str | None = None, log: Log = print) -> dict:
    """The study's convolution mode (``pinned``, :attr:`cnn_jax.study.Study.conv`) or else
    this process's, and the sweep's file of measured convolution choices
    (``WORKDIR/.cache/conv.json`` unless ``CNN_JAX_CONV_CACHE`` names one): every job uses
    the same formulations (:mod:`cnn_jax.conv_tuning`)."""
    from cnn_jax import conv_tuning

    file = os.environ.get(conv_tuning.CACHE_ENV) or os.path.join(os.path.abspath(workdir), ".cache", "conv.json")
    mode = conv_tuning.mode()
    if pinned is not None and pinned != mode:
        if os.environ.get(conv_tuning.ENV):
            log(f"the study pins its convolutions to {pinned!r} (Study.conv); "
                f"{conv_tuning.ENV}={mode} is not used for its trials")
        mode = pinned
    return {conv_tuning.ENV: mode, conv_tuning.CACHE_ENV: file}


# ----------------------------------------------------------------------------- running


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
    mlflow: str | None = None,
) -> dict:
    """Runs (or resumes) a study into ``workdir``; returns counts and the report paths.

    Args:
      experiment: ``FILE.py[:ARG]`` with ``get_config()`` and ``get_sweep()``.
      workdir: the sweep directory (created; must be empty or a sweep directory).
      overrides: ``[(dotted_key, text)]`` applied to the experiment's config (every trial).
      workers: worker processes; ``None``: :func:`cnn_jax.runtime.default_workers`; ``0``:
        run in this process.
      vmap: ``"on"``, ``"off"`` or ``"auto"`` (on for accelerators): train the seeds of a
        config as one vmapped program.
      dry_run: list the trials and what would run, write nothing.
      report: write ``results.csv``, ``report.md`` and ``timing.md`` at the end; ``"strict"``:
        unless the trials ran in several numeric environments (``--strict-numerics``).
      plots: and the plots. log: where progress lines go.
      executor: ``"local"`` (the worker pool, default), ``"slurm"`` (job arrays through
        submitit) or ``"ray"``: see :mod:`cnn_jax.study.execution.executors`.
      executor_options: the executor's options (local: ``workers``, ``trials_per_gpu``; slurm:
        ``partition``, ``time_min``, ``cpus``, ``gpus``, ``mem_gb``, ``array_parallelism``,
        ``sbatch``; ray: ``address``, ``cpus``, ``gpus``, ``mem_gb``).
      cache_dir: the jobs' shared compilation cache (default: ``WORKDIR/.cache/xla``, or
        the cache this process has configured; ``"off"``: none). mlflow: a tracking URI.
    """
    t_run, started = time.perf_counter(), time.time()
    _check_arguments(vmap, workers, executor, dry_run, mlflow)
    p = planning.plan(experiment, overrides, workdir)
    _check_workdir(workdir)
    states = planning.trial_states(workdir, p.trials)
    todo = to_run(p, states, workdir)
    result = _initial_counts(p, states, todo)
    if dry_run:
        _log_dry_run(p, states, todo, log)
        return result
    ex = _executor(executor, executor_options, workers)  # checks before anything is written
    phase = _Phase(experiment, overrides, workdir, ex, vmap, _cache(workdir, cache_dir), log)
    try:
        t0 = time.perf_counter()
        p, counts = phase.run_all(p, todo, preload=report)
    finally:
        ex.close()
    result.update(trials=len(p.trials), seconds=time.perf_counter() - t0,
                  **{k: result.get(k, 0) + counts[k] for k in ("done", "diverged")},
                  **{k: counts[k] for k in ("ran", "failed", "interrupted")})
    _finish(workdir, p, result, report, plots, started, time.perf_counter() - t_run, ex, log)
    return _tracked(result, mlflow, workdir, log)


def _tracked(result: dict, mlflow: str | None, workdir: str, log: Log) -> dict:
    if mlflow:  # the sweep written to MLflow once its own files are complete
        _tracking().log(mlflow, workdir, log)
    return result


def _tracking():
    from cnn_jax.study.execution import tracking  # imports MLflow only when used

    return tracking


def _check_arguments(vmap: str, workers: int | None, executor: str, dry_run: bool,
                     mlflow: str | None = None) -> None:
    if mlflow and not dry_run:  # an unreachable server: one line now, nothing trained
        _tracking().check(mlflow)
    if vmap not in ("on", "off", "auto"):
        raise UserError(f"invalid vmap {vmap!r}; choose on, off or auto")
    if workers is not None and workers < 0:
        raise UserError(f"--workers must be 0 (in this process) or more, got {workers}")
    from cnn_jax.study.execution import executors

    if dry_run and executor not in executors.names():
        raise UserError(f"unknown executor {executor!r}; choose one of: {', '.join(executors.names())}")


def _executor(name: str, executor_options: dict | None, workers: int | None):
    from cnn_jax.study.execution import executors

    options = dict(executor_options or {})
    if workers is not None:
        options["workers"] = workers  # an option of the local executor (others refuse it)
    return executors.create(name, options)


def _check_workdir(workdir: str) -> None:
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UserError(f"workdir {workdir!r} exists and is not a directory")
    # (a lock file or cache alone: another sweep is just creating it)
    own = {".lock", ".write-test", ".cache"}
    if os.path.isdir(workdir) and set(os.listdir(workdir)) - own and not store.is_sweep(workdir):
        raise UserError(
            f"workdir {workdir!r} is not empty and holds no {store.SWEEP_FILE}: it is not a sweep "
            "directory; use a new --workdir"
        )


def to_run(p: planning.Plan, states: dict[str, dict], workdir: str) -> list[store.Trial]:
    """The trials of ``p`` to run: those not finished, and the finished ones whose analyses
    are not those the study names now (they are analysed again, not retrained)."""
    spec = p.study.analysis_spec()
    return [t for t in p.trials if states[t.name]["status"] not in store.FINISHED
            or store.to_analyse_again(t.dir(workdir), states[t.name], spec)]


def _initial_counts(p: planning.Plan, states: dict, todo: list[store.Trial]) -> dict:
    again = {t.name for t in todo}
    return {
        "trials": len(p.trials),
        "skipped": len(p.trials) - len(todo),
        "ran": 0,
        "done": sum(states[t.name]["status"] == "done" and t.name not in again for t in p.trials),
        "diverged": sum(states[t.name]["status"] == "diverged" for t in p.trials),
        "failed": 0,
    }


def _log_dry_run(p: planning.Plan, states: dict, todo: list[store.Trial], log: Log) -> None:
    again = {t.name for t in todo}
    for t in p.trials:
        st = states[t.name]["status"]
        what = ("analyse" if st == "done" else "run ") if t.name in again else "skip"
        log(f"{what}  {t.name}  ({st})")
    log(
        f"{len(p.trials)} trials: {len(todo)} to run, {len(p.trials) - len(todo)} finished "
        f"(dry run: nothing written)"
    )


def _cache(workdir: str, cache_dir: str | None) -> str | None:
    if cache_dir is None and "jax" in sys.modules:
        import jax

        cache_dir = jax.config.jax_compilation_cache_dir or None  # this process's cache
    return cache_dir_for(workdir, cache_dir)


class _Phase:
    """Runs a planned sweep's trials: the tuning phase (if any), then the study trials."""

    def __init__(self, experiment, overrides, workdir, ex, vmap, cache_dir, log):
        self.experiment, self.overrides, self.workdir = experiment, overrides, workdir
        self.ex, self.vmap, self.cache_dir, self.log = ex, vmap, cache_dir, log

    def execute(self, p: planning.Plan, todo: list[store.Trial]) -> dict:
        with _sweep_lock(self.workdir):  # only while sweep.json is written
            _write_plan(self.workdir, p, todo, self.log)
        if self.cache_dir:
            os.makedirs(self.cache_dir, exist_ok=True)
        settings = {**_runtime_settings(self.cache_dir), "imports": p.record["imports"],
                    "cpus_per_trial": self.ex.options.get("cpus") or 1}
        settings["env"].update(_conv_env(self.workdir, p.study.conv, self.log))
        return dispatch.execute(todo, self.workdir, self.ex, self.vmap,
                                p.study.analysis_spec(), settings, self.log)

    def run_all(self, p: planning.Plan, todo: list[store.Trial], preload: bool):
        """``(the final plan, counts)``."""
        from cnn_jax.train import workdir as workdir_lib

        workdir_lib.create(self.workdir)
        if preload and todo:  # the report's imports while the workers start
            from cnn_jax.study.reporting import write as reporting

            threading.Thread(target=reporting.preload, name="cnn-jax-preload", daemon=True).start()
        counts = self.execute(p, todo)
        if not p.pending:
            return p, counts
        # the tuning phase has run: now each arm's study seeds, as chosen
        p = planning.plan(self.experiment, self.overrides, self.workdir)
        if p.pending:
            raise UserError(
                "tuning trials did not all finish (see `cnn-jax status`); re-run the sweep "
                "to retry them before the study trials start"
            )
        tuning.log_choices(p.record.get("tuning", {}), self.log)
        more = self.execute(p, to_run(p, planning.trial_states(self.workdir, p.trials), self.workdir))
        return p, {k: counts.get(k, 0) + more.get(k, 0) for k in set(counts) | set(more)}


def _finish(workdir, p, result, report, plots, started, elapsed, ex, log) -> None:
    """The report and the overhead line at the end of a sweep."""
    if report:
        from cnn_jax.study.reporting import write as report_lib

        result["report"] = report_lib.write(workdir, with_plots=plots,
                                            strict_numerics=report == "strict")
    if result["ran"]:
        from cnn_jax.study.execution import progress

        result.update(progress.overhead(workdir, p.trials, started, elapsed,
                                        workers=ex.concurrency))
        log(progress.overhead_line(result))


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


def _write_plan(workdir: str, p: planning.Plan, todo: list[store.Trial], log: Log) -> None:
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
    rundir.write_json(os.path.join(workdir, store.SWEEP_FILE), p.record)
    for t in todo:
        trial_status.mark(t.dir(workdir), "queued")  # not over a trial that another owner trains
    n_tune = sum(t.phase == tuning.TUNE_PHASE for t in p.trials)
    n_budget = sum(t.phase == BUDGET_PHASE for t in p.trials)
    n_study = len(p.trials) - n_tune - n_budget
    seeds = len(p.study.seed_list())
    what = (f"{n_tune} tuning trials ({len(p.study.tune_points())} values x "
            f"{len(p.study.tune_seed_list())} tuning seeds per arm; the study trials follow)"
            if p.pending else
            f"{n_study} trials ({n_study // seeds} configurations x {seeds} seeds)"
            + (f" after {n_tune} tuning trials" if n_tune else "")
            + (f", then {n_budget} budget-check trials" if n_budget else ""))
    log(f"{what} in {workdir}: {len(todo)} to run, {len(p.trials) - len(todo)} already finished")
