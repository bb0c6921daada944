"""Running one ``cnn-jax train``: here (:func:`train_here`, one process of a multi-host run
where asked), or as one SLURM job of N x T JAX processes (:func:`submit_training`, for
``cnn-jax train ... --executor slurm --nodes N --tasks-per-node T``) whose every task is a
:class:`TrainJob`.

The command line (:mod:`cnn_jax.cli`) parses a :class:`TrainRequest` and calls this module;
this module never calls the command line back: a SLURM task trains through
:func:`train_here` too and learns the step it saved from the typed
:class:`~cnn_jax.errors.Preempted` that ``fit`` raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
import time
from collections.abc import Callable

from cnn_jax import experiment, rundir
from cnn_jax import slurm as slurm_lib
from cnn_jax.errors import Preempted, UserError
from cnn_jax.runtime import host_device_flags, init_distributed, setup_runtime

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """One ``cnn-jax train``: the experiment file ``config`` with its ``--config.a.b=V``
    ``overrides`` (``(dotted key, text)`` pairs) into ``workdir``, and how this process
    joins a multi-host run (the fields :func:`cnn_jax.runtime.init_distributed` reads)."""

    config: str
    workdir: str
    overrides: tuple[tuple[str, str], ...] = ()
    quiet: bool = False
    allow_config_change: bool = False
    overwrite: bool = False
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    distributed: bool = False

    def resolved_config(self):
        """The resolved config of the request (a one-line UserError for a bad one)."""
        from cnn_jax import experiment

        return experiment.from_args(self.config, list(self.overrides))


def train_here(request: TrainRequest, cfg=None):
    """Trains ``request`` in this process (joining its multi-host run first, if it names
    one) and returns ``fit``'s :class:`~cnn_jax.train.FitResult`; ``cfg`` is the request's
    resolved config where the caller has it already.

    Raises what ``fit`` raises: :class:`UserError`, :class:`~cnn_jax.errors.Diverged`, and
    :class:`~cnn_jax.errors.Preempted` carrying the step it saved."""
    from cnn_jax import train

    if cfg is None:
        cfg = request.resolved_config()
    init_distributed(request)
    try:
        return train.fit(
            cfg,
            request.workdir,
            progress=False if request.quiet else None,
            allow_config_change=request.allow_config_change,
            overwrite=request.overwrite,
        )
    finally:  # what the experiment file registered, for evaluate and viz of this run
        if request.config and rundir.is_run(request.workdir):
            experiment.record_imports(request.workdir, [request.config.partition(":")[0]
                                                        if not os.path.exists(request.config)
                                                        else request.config])


def process_index() -> int:
    import jax

    return jax.process_index()


def result_line(result, workdir: str) -> str:
    """The one line ``cnn-jax train`` prints about a finished ``fit``."""
    t, b = result["test"], result["best"]
    chosen = (f"; best by validation: step {b['step']} (validation {b['validation_accuracy']:.4f}, "
              f"test {b['test_accuracy']:.4f})" if b.get("step") is not None else "")
    stopped = " (stopped early)" if result.summary.get("stopped_early") else ""
    return (
        f"test accuracy {t['accuracy']:.4f}, loss {t['loss']:.4f}, top-5 {t['top5']:.4f} "
        f"on {t['count']} images after {result['steps']} steps{stopped} "
        f"({result['train_seconds']:.1f} s){chosen}; run in {workdir}"
    )


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    """How one task of a multi-host job ended: its exit status (0; 75 after a pre-emption,
    with ``saved_step`` the step it saved; 2 or 3 for a UserError or divergence; 130 when
    interrupted)."""

    exit: int
    saved_step: int | None = None


def run_task(request: TrainRequest) -> TaskOutcome:
    """One process of a multi-host ``cnn-jax train`` (JAX detects the cluster): trains as the
    command line does, prints what it prints (process 0 the result; a one-line error on
    stderr) and returns the outcome. A bug keeps its traceback (it propagates)."""
    try:
        host_device_flags(["train"])
        setup_runtime(debug=False)
        result = train_here(dataclasses.replace(request, distributed=True))
        if process_index() == 0:
            print(result_line(result, request.workdir))
        return TaskOutcome(0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return TaskOutcome(e.exit_code)
    except Preempted as e:
        print(f"preempted: {e}", file=sys.stderr)
        return TaskOutcome(e.exit_code, saved_step=e.step)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return TaskOutcome(130)


class TrainJob:
    """The body of every task of a multi-host ``cnn-jax train`` job (``srun`` of N tasks):
    :func:`run_task` (JAX reads SLURM's environment), then the task's exit status (75 after
    a pre-emption every process agreed on) and the step it saved in
    ``WORKDIR/.launch/<job>.<rank>.json`` and as its process's exit status."""

    def __init__(self, request: TrainRequest, outcome_dir: str):
        self.request, self.outcome_dir = request, outcome_dir

    def __call__(self) -> int:
        import submitit

        env = submitit.JobEnvironment()
        outcome = run_task(self.request)
        os.makedirs(self.outcome_dir, exist_ok=True)
        rundir.write_json(
            os.path.join(self.outcome_dir, f"{env.job_id}.{env.global_rank}.json"),
            {
                "exit": outcome.exit,
                "rank": env.global_rank,
                "host": socket.gethostname(),
                "saved_step": outcome.saved_step,
            },
        )
        sys.stdout.flush()
        sys.stderr.flush()
        if "jax" in sys.modules:  # leave the distributed runtime together (a barrier)
            with contextlib.suppress(Exception):
                import jax

                jax.distributed.shutdown()
        os._exit(outcome.exit)  # the exit status is the outcome; no interpreter teardown


TRAIN_OPTIONS = ("partition", "time_min", "cpus", "gpus", "mem_gb", "sbatch")


def submit_training(
    request: TrainRequest,
    *,
    nodes: int = 1,
    tasks_per_node: int = 1,
    wait: bool = True,
    log: Log = print,
    **options,
) -> int:
    """Submits ``request`` as one SLURM job of ``nodes`` x ``tasks_per_node`` tasks (one JAX
    process each, :class:`TrainJob`) and, with ``wait``, waits for it. ``options``: those of
    :data:`TRAIN_OPTIONS` (others are ignored; ``None`` counts as not given), checked by
    :func:`cnn_jax.slurm.check_options` before anything is submitted.

    Returns the exit status: 0 when every task finished, 75 when they stopped at an agreed
    pre-emption step (re-run the same command to resume), 1 otherwise."""
    if nodes < 1 or tasks_per_node < 1:
        raise UserError(
            f"--nodes and --tasks-per-node must be positive, got {nodes} and {tasks_per_node}"
        )
    given = {k: v for k, v in options.items() if k in TRAIN_OPTIONS and v not in (None, (), [])}
    slurm_lib.check_options(given)
    submitit = slurm_lib.import_submitit()
    workdir = os.path.abspath(request.workdir)
    folder = os.path.join(workdir, ".submitit", f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    outcome_dir = os.path.join(workdir, ".launch")
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params = slurm_lib.job_parameters(given, "cnn-jax-train", nodes=nodes, tasks_per_node=tasks_per_node)
    ex.update_parameters(**params)
    job = ex.submit(TrainJob(request, outcome_dir))
    log(
        f"submitted SLURM job {job.job_id}: {nodes} node(s) x {tasks_per_node} task(s); logs in {folder}"
    )
    if not wait:
        return 0
    state = wait_for_job(job.job_id, log)
    return job_outcome(job, state, nodes * tasks_per_node, outcome_dir, workdir, log)


def wait_for_job(job_id: str, log: Log) -> str | None:
    """Waits until SLURM no longer runs job ``job_id``; returns its last state (``None``:
    no longer listed). Interrupted (Ctrl-C), it cancels the job and re-raises."""
    try:
        while True:
            state = slurm_lib.squeue_states([job_id]).get(job_id)
            if state is None or state in slurm_lib.ENDED:
                return state
            time.sleep(2)
    except BaseException:
        log(f"cancelling SLURM job {job_id} (its processes save a checkpoint)")
        slurm_lib.run_quiet(["scancel", job_id])
        raise


def job_outcome(job, state: str | None, n: int, outcome_dir: str, workdir: str, log: Log) -> int:
    """The exit status of an ended job of ``n`` tasks from its tasks' outcome files."""
    outcomes = [
        rundir.read_json(os.path.join(outcome_dir, f"{job.job_id}.{r}.json")) for r in range(n)
    ]
    codes = [o.get("exit") if o else None for o in outcomes]
    if all(c == 0 for c in codes):
        log(f"job {job.job_id} ({state}): all {n} processes finished; run in {workdir}")
        return 0
    if all(c == 75 for c in codes):
        steps = sorted({o.get("saved_step") for o in outcomes})
        log(
            f"job {job.job_id} was pre-empted: all {n} processes saved a checkpoint at step "
            f"{', '.join(map(str, steps))} and exited 75; re-run the same command to resume"
        )
        return 75
    err = slurm_lib.last_line(job.paths.stderr)
    log(f"job {job.job_id} ({state}) failed: exit statuses {codes}{f'; {err}' if err else ''}")
    return 1
