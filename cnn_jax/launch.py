"""``cnn-jax train ... --executor slurm --nodes N --tasks-per-node T``: one SLURM job of N x T
JAX processes running ``cnn-jax train --distributed`` (JAX reads SLURM's environment)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import time

from cnn_jax.errors import UserError
from cnn_jax.study import store
from cnn_jax.study.execution.executors import Log, create
from cnn_jax.study.execution.executors.slurm import (
    ENDED,
    import_submitit,
    job_parameters,
    last_line,
    run_quiet,
    squeue_states,
)


class _Tee:
    """A text stream that keeps what is written to it (and passes it on)."""

    def __init__(self, stream):
        self.stream, self.text = stream, ""

    def write(self, text: str) -> int:
        self.text = (self.text + text)[-20000:]
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


class TrainJob:
    """The body of every task of a multi-host ``cnn-jax train`` job (``srun`` of N tasks):
    ``cnn-jax train ... --distributed`` (JAX reads SLURM's environment), then the task's
    exit status (75 after a pre-emption every process agreed on) in
    ``WORKDIR/.launch/<job>.<rank>.json`` and as its process's exit status."""

    def __init__(self, argv: list[str], outcome_dir: str):
        self.argv, self.outcome_dir = list(argv), outcome_dir

    def __call__(self) -> int:
        import submitit

        env = submitit.JobEnvironment()
        from cnn_jax import cli

        tee = _Tee(sys.stderr)
        sys.stderr = tee
        try:
            code = cli.main([*self.argv, "--distributed"])
        finally:
            sys.stderr = tee.stream
        m = re.search(r"saved a checkpoint at step (\d+)", tee.text)
        os.makedirs(self.outcome_dir, exist_ok=True)
        from cnn_jax import rundir

        rundir.write_json(
            os.path.join(self.outcome_dir, f"{env.job_id}.{env.global_rank}.json"),
            {
                "exit": code,
                "rank": env.global_rank,
                "host": socket.gethostname(),
                "saved_step": int(m.group(1)) if m else None,
            },
        )
        sys.stdout.flush()
        sys.stderr.flush()
        if "jax" in sys.modules:  # leave the distributed runtime together (a barrier)
            with contextlib.suppress(Exception):
                import jax

                jax.distributed.shutdown()
        os._exit(code)  # the exit status is the outcome; no interpreter teardown


TRAIN_OPTIONS = ("partition", "time_min", "cpus", "gpus", "mem_gb", "sbatch")


def submit_training(
    argv: list[str],
    workdir: str,
    *,
    nodes: int = 1,
    tasks_per_node: int = 1,
    wait: bool = True,
    log: Log = print,
    **options,
) -> int:
    """Submits ``cnn-jax train ARGV --distributed`` as one SLURM job of ``nodes`` x
    ``tasks_per_node`` tasks (one JAX process each) and, with ``wait``, waits for it.

    Returns the exit status: 0 when every task finished, 75 when they stopped at an agreed
    pre-emption step (re-run the same command to resume), 1 otherwise."""
    if nodes < 1 or tasks_per_node < 1:
        raise UserError(
            f"--nodes and --tasks-per-node must be positive, got {nodes} and {tasks_per_node}"
        )
    slurm = create("slurm", {k: v for k, v in options.items() if k in TRAIN_OPTIONS})
    submitit = import_submitit()
    workdir = os.path.abspath(workdir)
    folder = os.path.join(workdir, ".submitit", f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    outcome_dir = os.path.join(workdir, ".launch")
    o = slurm.options
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params = job_parameters(o, "cnn-jax-train", nodes=nodes, tasks_per_node=tasks_per_node)
    ex.update_parameters(**params)
    job = ex.submit(TrainJob(argv, outcome_dir))
    n = nodes * tasks_per_node
    log(
        f"submitted SLURM job {job.job_id}: {nodes} node(s) x {tasks_per_node} task(s); logs in {folder}"
    )
    if not wait:
        return 0
    try:
        while True:
            state = squeue_states([job.job_id]).get(job.job_id)
            if state is None or state in ENDED:
                break
            time.sleep(2)
    except BaseException:
        log(f"cancelling SLURM job {job.job_id} (its processes save a checkpoint)")
        run_quiet(["scancel", job.job_id])
        raise
    outcomes = [
        store.read_json(os.path.join(outcome_dir, f"{job.job_id}.{r}.json")) for r in range(n)
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
    err = last_line(job.paths.stderr)
    log(f"job {job.job_id} ({state}) failed: exit statuses {codes}{f'; {err}' if err else ''}")
    return 1
