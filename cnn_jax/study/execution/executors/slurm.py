"""The SLURM executor: one job-array task per trial through submitit; job states from
``squeue``. The SLURM plumbing it shares with ``cnn-jax train --executor slurm`` lives in
:mod:`cnn_jax.slurm`."""

from __future__ import annotations

import os
import time

from cnn_jax import slurm
from cnn_jax.slurm import (  # squeue_states and the rest: importable from here too
    ENDED,
    import_submitit,
    job_parameters,
    last_line,
    run_quiet,
    squeue_states,
)
from cnn_jax.study import store
from cnn_jax.study.execution import status as trial_status
from cnn_jax.study.execution.executors.base import FLAGS, Executor, register


class TrialJob:
    """The body of one SLURM array task: a submitit checkpointable callable.

    submitit sends USR2 before the time limit (and a pre-empting scheduler may): ``fit``
    hears it (:class:`cnn_jax.train.progress.Preemption`), saves a checkpoint of the step it
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


@register
class Slurm(Executor):
    """One SLURM job-array task per task, submitted through submitit."""

    name = "slurm"
    OPTIONS = ("partition", "time_min", "cpus", "gpus", "mem_gb", "array_parallelism", "sbatch")
    POLL_S = 2.0

    def check(self) -> None:
        slurm.check_options(self.options, FLAGS)

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
                trial_status.mark(tr["dir"], "queued", job={"executor": "slurm", "id": j.job_id})
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
            measured = store.measured(store.read_analysis(trial["dir"]))
            summary = store.read_json(os.path.join(trial["dir"], "summary.json")) or {}
            ev.update(
                accuracy=(summary.get("test") or {}).get("accuracy", float("nan")),
                measured=measured,
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
