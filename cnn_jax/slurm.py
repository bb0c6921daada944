"""SLURM plumbing shared by the sweep's SLURM executor
(:mod:`cnn_jax.study.execution.executors.slurm`) and ``cnn-jax train --executor slurm``
(:mod:`cnn_jax.launch`): quiet ``squeue``/``sinfo``/``scancel`` calls, submitit imported
without its logging set-up, job parameters from options, and the checks that run before
anything is submitted.

A bottom-floor module: it imports the standard library and :mod:`cnn_jax.errors` only
(submitit lazily).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from cnn_jax.errors import UserError

# Job states after which SLURM runs nothing more of a job.
ENDED = {
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "SPECIAL_EXIT",
    "REVOKED",
}

# Option names and the flags that set them (for error messages): the sweep's flags.
FLAGS = {
    "partition": "--partition",
    "time_min": "--time",
    "cpus": "--cpus-per-trial",
    "gpus": "--gpus-per-trial",
    "mem_gb": "--mem-gb",
    "array_parallelism": "--array-parallelism",
    "sbatch": "--sbatch",
}


def run_quiet(cmd: list[str], timeout: float = 15) -> subprocess.CompletedProcess:
    """Runs a SLURM client command, its output captured; a one-line error if it hangs."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(
            f"`{' '.join(cmd)}` did not answer within {timeout:g} s: is slurmctld running?"
        ) from None


def import_submitit():
    """submitit, imported without its logging configuration in this process (it binds
    handlers to the sys.stdout of the moment, which may be replaced and closed later);
    its jobs configure it as usual."""
    if "submitit" in sys.modules:
        return sys.modules["submitit"]
    old = os.environ.get("SUBMITIT_LOG_LEVEL")
    os.environ["SUBMITIT_LOG_LEVEL"] = "NOCONFIG"
    try:
        import submitit
    finally:
        if old is None:
            os.environ.pop("SUBMITIT_LOG_LEVEL", None)
        else:
            os.environ["SUBMITIT_LOG_LEVEL"] = old
    return submitit


def squeue_states(job_ids: list[str]) -> dict[str, str]:
    """``{job id: state}`` of the jobs (array tasks expanded) that SLURM still lists."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    r = run_quiet(["squeue", "-h", "-r", "-t", "all", "-o", "%i %T", "-j", ",".join(arrays)])
    states = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def last_line(path) -> str:
    """The last non-blank line of a (log) file, or ``""``."""
    try:
        with open(path, errors="replace") as f:
            lines = [x for x in f.read().splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def job_parameters(o: dict, name: str, *, nodes: int, tasks_per_node: int) -> dict:
    """submitit's SLURM parameters from the executor's options (time limit, CPUs and GPUs,
    memory, partition, extra ``sbatch`` flags as ``KEY=VALUE``)."""
    params = {
        "name": name,
        "timeout_min": int(o.get("time_min") or 60),
        "cpus_per_task": int(o.get("cpus") or 1),
        "tasks_per_node": tasks_per_node,
        "nodes": nodes,
    }
    if o.get("partition"):
        params["slurm_partition"] = o["partition"]
    if o.get("gpus"):
        params["gpus_per_node"] = int(o["gpus"])
    if o.get("mem_gb"):
        params["mem_gb"] = float(o["mem_gb"])
    extra = dict(kv.split("=", 1) for kv in o.get("sbatch", ()))
    if extra:
        params["slurm_additional_parameters"] = {
            k.strip().lstrip("-").replace("-", "_"): v for k, v in extra.items()
        }
    return params


def check_positive(options: dict, key: str, allow_zero: bool = False, flags=FLAGS) -> None:
    """A one-line error unless option ``key`` is unset or positive (or 0 with ``allow_zero``)."""
    v = options.get(key)
    if v is not None and (v < 0 or (v == 0 and not allow_zero)):
        raise UserError(
            f"{flags[key]} must be {'0 or more' if allow_zero else 'positive'}, got {v}"
        )


def check_options(options: dict, flags=FLAGS) -> None:
    """Raises a one-line :class:`UserError` unless jobs with ``options`` can be submitted
    from here: the values' forms, ``sbatch`` on PATH, submitit installed, ``sinfo``
    answering and, where GPUs are asked for, a partition with GPUs. Writes nothing."""
    for k in ("time_min", "cpus", "mem_gb", "array_parallelism"):
        check_positive(options, k, flags=flags)
    check_positive(options, "gpus", allow_zero=True, flags=flags)
    for kv in options.get("sbatch", ()):
        if "=" not in kv or not kv.split("=", 1)[0].strip():
            raise UserError(
                f"--sbatch takes KEY=VALUE (an sbatch option without its dashes), got {kv!r}"
            )
    if shutil.which("sbatch") is None:
        raise UserError(
            "--executor slurm: sbatch is not on PATH (run the sweep on a SLURM login node, "
            "or start a local cluster with scripts/local-slurm up)"
        )
    try:
        import_submitit()
    except ImportError:
        raise UserError("--executor slurm needs submitit: pip install 'cnn-jax[slurm]'") from None
    r = run_quiet(["sinfo", "-h", "-o", "%P %G"])
    if r.returncode != 0:
        raise UserError(f"sinfo failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    _check_gpus(options, r.stdout, flags)


def _check_gpus(options: dict, sinfo: str, flags) -> None:
    """GPUs asked for must exist: a gpu gres in ``sinfo``'s ``%P %G`` lines (of the partition)."""
    gpus = options.get("gpus") or 0
    if not gpus:
        return
    part = options.get("partition")
    gres = [
        row[1] if len(row) > 1 else ""
        for row in (line.split() for line in sinfo.splitlines())
        if row and (part is None or row[0].rstrip("*") == part)
    ]
    if not any("gpu" in g for g in gres):
        where = f" partition {part}" if part else ""
        raise UserError(
            f"{flags['gpus']} {gpus}: the SLURM cluster{where} has no GPUs "
            "(sinfo lists no gpu gres)"
        )
