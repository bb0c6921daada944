"""The SLURM executor: one job-array task per trial through submitit; job states from
``squeue``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from cnn_jax.errors import UserError
from cnn_jax.study import store
from cnn_jax.study.execution.executors import Executor, _positive, register


def run_quiet(cmd: list[str], timeout: float = 15) -> subprocess.CompletedProcess:
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


class TrialJob:
    """The body of one SLURM array task: a submitit checkpointable callable.

    submitit sends USR2 before the time limit (and a pre-empting scheduler may): ``fit``
    hears it (:class:`cnn_jax.train.progress.Signals`), saves a checkpoint of the step it
    is at and stops; then submitit's own handler requeues the job, whose next run resumes
    the trial from that checkpoint. A SIGTERM (``scancel``) saves and ends the job: the
    next ``cnn-jax sweep`` resumes the trial."""

    def __init__(self, task: dict, settings: dict):
        self.task, self.settings = task, settings

    def __call__(self) -> dict:
        import signal

        from cnn_jax.study.execution import worker

        submitit_usr2 = signal.getsignal(signal.SIGUSR2)
        out = worker.job_main(self.task, self.settings)
        if out.get("signal") == "SIGUSR2" and callable(submitit_usr2):
            submitit_usr2(signal.SIGUSR2, None)  # checkpoint() below, requeue, exit
        return out

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(TrialJob(self.task, self.settings))


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


@register
class Slurm(Executor):
    """One SLURM job-array task per task, submitted through submitit."""

    name = "slurm"
    OPTIONS = ("partition", "time_min", "cpus", "gpus", "mem_gb", "array_parallelism", "sbatch")
    POLL_S = 2.0

    def check(self) -> None:
        for k in ("time_min", "cpus", "mem_gb", "array_parallelism"):
            _positive(self.options, k)
        _positive(self.options, "gpus", allow_zero=True)
        for kv in self.options.get("sbatch", ()):
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
            raise UserError(
                "--executor slurm needs submitit: pip install 'cnn-jax[slurm]'"
            ) from None
        r = run_quiet(["sinfo", "-h", "-o", "%P %G"])
        if r.returncode != 0:
            raise UserError(f"sinfo failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        gpus = self.options.get("gpus") or 0
        if gpus:
            part = self.options.get("partition")
            gres = [
                row[1] if len(row) > 1 else ""
                for row in (line.split() for line in r.stdout.splitlines())
                if row and (part is None or row[0].rstrip("*") == part)
            ]
            if not any("gpu" in g for g in gres):
                where = f" partition {part}" if part else ""
                raise UserError(
                    f"--gpus-per-trial {gpus}: the SLURM cluster{where} has no GPUs "
                    "(sinfo lists no gpu gres)"
                )

    def _executor(self, folder: str):
        submitit = import_submitit()

        o = self.options
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=100)
        params = job_parameters(o, "cnn-jax-trial", nodes=1, tasks_per_node=1)
        if o.get("array_parallelism"):
            params["slurm_array_parallelism"] = int(o["array_parallelism"])
        ex.update_parameters(**params)
        return ex

    def run(self, tasks, settings, workdir, handle, log) -> None:
        folder = os.path.join(
            workdir, ".submitit", f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        )
        ex = self._executor(folder)
        with ex.batch():
            jobs = [ex.submit(TrialJob(t, settings)) for t in tasks]
        ids = [j.job_id for j in jobs]
        log(
            f"submitted {len(jobs)} SLURM job{'s' if len(jobs) > 1 else ''} (array {ids[0].split('_')[0]}); logs in {folder}"
        )
        for j, t in zip(jobs, tasks):
            for tr in t["trials"]:
                store.mark(tr["dir"], "queued", job={"executor": "slurm", "id": j.job_id})
        pending = {j.job_id: (j, t) for j, t in zip(jobs, tasks)}
        reported: set[str] = set()
        try:
            while pending:
                time.sleep(self.POLL_S)
                states = squeue_states(list(pending))
                for jid, (job, task) in list(pending.items()):
                    state = states.get(jid)
                    ended = state is None or state in ENDED
                    for tr in task["trials"]:
                        if tr["name"] in reported:
                            continue
                        ev = _store_event(tr, jid, ended, state)
                        if ev is not None:
                            if ev["event"] in ("failed", "interrupted"):
                                ev["error"] = ev.get("error") or last_line(job.paths.stderr)
                            reported.add(tr["name"])
                            handle(ev)
                    if ended:
                        pending.pop(jid)
        except BaseException:
            if pending:
                log(f"cancelling {len(pending)} SLURM job(s) (their trials save a checkpoint)")
                run_quiet(["scancel", *pending])
            raise


def _store_event(trial: dict, job_id: str, ended: bool, state: str | None) -> dict | None:
    """The event a trial's store entry gives once its job reports or has ended."""
    st = store.read_status(trial["dir"])
    s = st["status"]
    mine = (st.get("job") or {}).get("id") == job_id
    if s in store.FINISHED:
        ev = {"event": s if mine else "finished", "name": trial["name"], "status": s}
        if s == "done":
            a = store.read_json(os.path.join(trial["dir"], store.ANALYSIS_FILE)) or {}
            summary = store.read_json(os.path.join(trial["dir"], "summary.json")) or {}
            ev.update(
                accuracy=(summary.get("test") or {}).get("accuracy", float("nan")),
                shift_consistency=a.get("shift_consistency"),
            )
        else:
            ev["error"] = st.get("error", "")
        return ev
    if s == "failed" and mine:
        return {"event": "failed", "name": trial["name"], "error": st.get("error", "")}
    if not ended:
        return None
    if s == "running":  # another owner holds it (another sweep)
        return {
            "event": "busy",
            "name": trial["name"],
            "owner": (st.get("lease") or {}).get("owner"),
        }
    return {
        "event": "interrupted",
        "name": trial["name"],
        "error": f"job {job_id} ended ({state or 'gone'}) before the trial finished; "
        "re-run the sweep to resume it",
    }


def last_line(path) -> str:
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
