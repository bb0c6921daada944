"""Where a sweep's trials run: the local worker pool, SLURM (through submitit) or Ray.

Each executor takes the tasks that :func:`cnn_jax.study.runner._tasks` builds (one task =
one trial, or the seeds of one config trained together) and runs every task as one job in
a fresh process: a ``python -m cnn_jax.study.worker`` subprocess (local), a job-array task
(SLURM) or a Ray task on a fresh worker process (``max_calls=1``). Every job applies the
sweep's runtime settings before JAX is imported and calls
:func:`cnn_jax.study.worker.run_task`, which leases each trial in the trial store; the store
on the shared filesystem is the one source of truth, so the executors give the same results
and can be mixed across re-runs (start locally, finish on SLURM).

``create(name, options)`` checks everything that can be checked before the workdir is
written (the engine is installed, the cluster answers, the options belong to this
executor, the GPUs asked for exist) and raises a one-line :class:`UserError` otherwise.
submitit and ray are imported only by their executors (extras ``.[slurm]``, ``.[ray]``).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from cnn_jax.errors import UserError
from cnn_jax.study import store

Handle = Callable[[dict], None]
Log = Callable[[str], None]

FINAL_EVENTS = ("done", "failed", "diverged", "interrupted", "busy", "finished")

# Option names and the flags that set them (for error messages).
FLAGS = {
    "workers": "--workers",
    "trials_per_gpu": "--trials-per-gpu",
    "partition": "--partition",
    "time_min": "--time",
    "cpus": "--cpus-per-trial",
    "gpus": "--gpus-per-trial",
    "mem_gb": "--mem-gb",
    "array_parallelism": "--array-parallelism",
    "sbatch": "--sbatch",
    "address": "--ray-address",
}


class Executor:
    """Runs tasks as jobs; ``run`` returns when every job has ended."""

    name = ""
    OPTIONS: tuple[str, ...] = ()
    # Cluster jobs hold one trial each unless its seeds train together as one vmapped
    # program; the local pool keeps a config's seeds in one worker (one compilation).
    JOB_PER_TRIAL = True

    def job_per_trial(self, vmap: str) -> bool:
        """Whether each trial is its own job (else one job per config's seed group)."""
        if not self.JOB_PER_TRIAL or vmap == "on":
            return False
        return not (vmap == "auto" and self.options.get("gpus"))  # auto: vmapped on GPUs

    def __init__(self, **options):
        self.options = options

    def check(self) -> None:
        """Raises a :class:`UserError` if this executor cannot run here (writes nothing)."""

    def run(
        self, tasks: list[dict], settings: dict, workdir: str, handle: Handle, log: Log
    ) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


REGISTRY: dict[str, type[Executor]] = {}


def register(cls: type[Executor]) -> type[Executor]:
    REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    return list(REGISTRY)


def create(name: str, options: dict | None = None) -> Executor:
    """The executor ``name`` with ``options`` (``None`` values count as not given),
    checked (see the module docstring)."""
    if name not in REGISTRY:
        raise UserError(f"unknown executor {name!r}; choose one of: {', '.join(REGISTRY)}")
    cls = REGISTRY[name]
    given = {k: v for k, v in (options or {}).items() if v not in (None, (), [])}
    for k in given:
        if k not in cls.OPTIONS:
            owners = [n for n, c in REGISTRY.items() if k in c.OPTIONS]
            flag = FLAGS.get(k, k)
            raise UserError(
                f"{flag} is an option of the {' and '.join(owners) or 'no'} executor"
                f"{'s' if len(owners) > 1 else ''}, not of {name}"
            )
    ex = cls(**given)
    ex.check()
    return ex


def _positive(options: dict, key: str, allow_zero: bool = False) -> None:
    v = options.get(key)
    if v is not None and (v < 0 or (v == 0 and not allow_zero)):
        raise UserError(
            f"{FLAGS[key]} must be {'0 or more' if allow_zero else 'positive'}, got {v}"
        )


# ----------------------------------------------------------------------------- local


def visible_gpus() -> int:
    """GPUs this host offers to the local pool: ``CNN_JAX_GPUS`` if set (tests set it on
    CPU), else what ``nvidia-smi -L`` lists when a CUDA plugin of JAX is installed."""
    n = os.environ.get("CNN_JAX_GPUS")
    if n is not None:
        if not n.isdigit():
            raise UserError(f"CNN_JAX_GPUS must be a number of GPUs, got {n!r}")
        return int(n)
    import importlib.util

    if not any(
        importlib.util.find_spec(m) is not None for m in ("jax_cuda12_plugin", "jax_cuda13_plugin")
    ):
        return 0
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return len([d for d in cvd.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def gpu_worker_envs(gpus: int, per_gpu: int = 1) -> list[dict]:
    """The environment of each local worker on a host with ``gpus`` GPUs: ``per_gpu``
    workers per GPU, each seeing only its GPU; several on one GPU share it through JAX's
    memory fraction (JAX otherwise preallocates 75 % of the GPU per process)."""
    base = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in base.split(",")] if base else [str(i) for i in range(gpus)]
    envs = []
    for g in ids[:gpus]:
        for _ in range(per_gpu):
            env = {"CUDA_VISIBLE_DEVICES": g}
            if per_gpu > 1 and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ:
                env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / per_gpu:.3f}"
            envs.append(env)
    return envs


@register
class Local(Executor):
    """Today's pool: ``workers`` long-lived worker subprocesses on this host.

    With G GPUs: one worker per GPU by default (``CUDA_VISIBLE_DEVICES`` of its own), or
    ``trials_per_gpu`` per GPU with the memory fraction set so that they fit. On CPU: one
    worker per two cores (see :func:`cnn_jax.study.runner.default_workers`)."""

    name = "local"
    OPTIONS = ("workers", "trials_per_gpu")
    JOB_PER_TRIAL = False

    def check(self) -> None:
        _positive(self.options, "workers", allow_zero=True)
        _positive(self.options, "trials_per_gpu")

    def plan_workers(self, n_tasks: int) -> list[dict]:
        """One environment per worker process to start."""
        from cnn_jax.study import runner

        gpus = visible_gpus()
        per_gpu = self.options.get("trials_per_gpu") or 1
        if gpus:
            envs = gpu_worker_envs(gpus, per_gpu)
            n = self.options.get("workers")
            if n is not None:  # explicit: cycle over the GPUs
                envs = [envs[i % len(envs)] for i in range(n)]
        else:
            if self.options.get("trials_per_gpu"):
                raise UserError("--trials-per-gpu: this host has no GPU")
            n = self.options.get("workers")
            envs = [{} for _ in range(runner.default_workers() if n is None else n)]
        return envs[: max(1, min(len(envs), n_tasks))] if envs else []

    def run(self, tasks, settings, workdir, handle, log) -> None:
        envs = self.plan_workers(len(tasks))
        if self.options.get("workers") == 0:
            from cnn_jax.study import worker

            with worker.cached_datasets():
                for task in tasks:
                    if worker.run_task(task, handle):
                        raise KeyboardInterrupt  # SIGINT/SIGTERM: the trial was checkpointed
            return
        _run_pool(tasks, envs, settings, handle, log)


class _Worker:
    """One ``python -m cnn_jax.study.worker`` subprocess: tasks on stdin, events on a pipe,
    stderr forwarded to ours (its last lines kept, to say why it died)."""

    def __init__(self, settings: dict, env: dict, index: int):
        from cnn_jax.study import worker

        r, w = os.pipe()
        full_env = {
            **os.environ,
            **{k: str(v) for k, v in env.items()},
            worker.EVENTS_FD: str(w),
            "CNN_JAX_EXECUTOR": "local",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cnn_jax.study.worker"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(w,),
            env=full_env,
        )
        os.close(w)
        self.fd = r
        self.buf = b""
        self.eof = False
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self.env = env
        self.index = index
        self._err = threading.Thread(target=self._forward_stderr, daemon=True)
        self._err.start()
        self.task: dict | None = None
        self.finished: set[str] = set()
        self._write(json.dumps({**settings, "env": {**settings.get("env", {}), **env}}))

    def fileno(self) -> int:
        return self.fd

    def _forward_stderr(self) -> None:
        # To file descriptor 2 itself: sys.stderr may be replaced (and closed) meanwhile.
        for raw in iter(self.proc.stderr.readline, b""):
            with contextlib.suppress(OSError):
                os.write(2, raw)
            line = raw.decode(errors="replace").rstrip("\n")
            if line.strip():
                self.tail.append(line)

    def _write(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def send(self, task: dict) -> None:
        self.task = task
        self.finished = set()
        self._write(json.dumps(task))

    def events(self) -> list[dict]:
        """The events that have arrived (reads what is there; marks EOF)."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk
        out = []
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                out.append(json.loads(line))
        return out

    def died(self) -> bool:
        return self.eof and self.proc.poll() is not None

    def why(self) -> str:
        self.proc.wait()
        self._err.join(2)
        code = self.proc.returncode
        text = f"worker process died (exit code {code})"
        last = next((x for x in reversed(self.tail) if x.strip()), "")
        return f"{text}: {last.strip()}" if last else text

    def stop(self, interrupted: bool = False) -> None:
        """Ends the worker: after its task, or at once (SIGTERM: ``fit`` checkpoints first)."""
        if self.proc.poll() is None:
            if interrupted and self.task is not None:
                self.proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(60)
            else:
                with contextlib.suppress(BrokenPipeError, OSError):
                    self._write("")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(2)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.join(5)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with contextlib.suppress(OSError):
            self.proc.stdin.close()


def _run_pool(
    tasks: list[dict], envs: list[dict], settings: dict, handle: Handle, log: Log
) -> None:
    from multiprocessing.connection import wait

    queue = collections.deque(tasks)
    pool = [_Worker(settings, env, i) for i, env in enumerate(envs)]
    interrupted = False
    try:
        while queue or any(w.task is not None for w in pool):
            for w in pool:
                if w.task is None and queue:
                    w.send(queue.popleft())
            busy = [w for w in pool if w.task is not None]
            wait(busy)
            for i, w in enumerate(pool):
                if w not in busy:
                    continue
                for ev in w.events():
                    if ev["event"] == "idle":
                        w.task = None
                        continue
                    if ev["event"] in FINAL_EVENTS:
                        w.finished.add(ev["name"])
                    handle(ev)
                if w.task is not None and w.eof:
                    # The worker died (killed, out of memory, a crash in native code): its
                    # unfinished trials fail with its last error line, and a fresh worker
                    # takes its place.
                    err = w.why()
                    tail = list(w.tail)[-12:]
                    for t in w.task["trials"]:
                        if t["name"] not in w.finished:
                            store.mark(t["dir"], "failed", error=err, stderr_tail=tail)
                            handle({"event": "failed", "name": t["name"], "error": err})
                    if tail:
                        log(
                            "  last lines of the worker's stderr:\n"
                            + "\n".join(f"    {x}" for x in tail)
                        )
                    w.task = None
                    w.stop()
                    pool[i] = _Worker(settings, w.env, w.index) if queue else w
    except BaseException:
        interrupted = True
        raise
    finally:
        for w in pool:
            w.stop(interrupted)


# ----------------------------------------------------------------------------- SLURM


def _run_quiet(cmd: list[str], timeout: float = 15) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(
            f"`{' '.join(cmd)}` did not answer within {timeout:g} s: is slurmctld running?"
        ) from None


def _import_submitit():
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

        from cnn_jax.study import worker

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
    r = _run_quiet(["squeue", "-h", "-r", "-t", "all", "-o", "%i %T", "-j", ",".join(arrays)])
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
            _import_submitit()
        except ImportError:
            raise UserError(
                "--executor slurm needs submitit: pip install 'cnn-jax[slurm]'"
            ) from None
        r = _run_quiet(["sinfo", "-h", "-o", "%P %G"])
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
        submitit = _import_submitit()

        o = self.options
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=100)
        params = {
            "name": "cnn-jax-trial",
            "timeout_min": int(o.get("time_min") or 60),
            "cpus_per_task": int(o.get("cpus") or 1),
            "tasks_per_node": 1,
            "nodes": 1,
        }
        if o.get("partition"):
            params["slurm_partition"] = o["partition"]
        if o.get("gpus"):
            params["gpus_per_node"] = int(o["gpus"])
        if o.get("mem_gb"):
            params["mem_gb"] = float(o["mem_gb"])
        if o.get("array_parallelism"):
            params["slurm_array_parallelism"] = int(o["array_parallelism"])
        extra = dict(kv.split("=", 1) for kv in o.get("sbatch", ()))
        if extra:
            params["slurm_additional_parameters"] = {
                k.strip().lstrip("-").replace("-", "_"): v for k, v in extra.items()
            }
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
                                ev["error"] = ev.get("error") or _last_line(job.paths.stderr)
                            reported.add(tr["name"])
                            handle(ev)
                    if ended:
                        pending.pop(jid)
        except BaseException:
            if pending:
                log(f"cancelling {len(pending)} SLURM job(s) (their trials save a checkpoint)")
                _run_quiet(["scancel", *pending])
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


def _last_line(path) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [x for x in f.read().splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


# ----------------------------------------------------------------------------- Ray


def _ray_job(task: dict, settings: dict) -> dict:
    """A Ray task: a fresh worker process (``max_calls=1``), where Ray is already
    initialised and JAX not yet imported."""
    import ray

    ctx = ray.get_runtime_context()
    os.environ["CNN_JAX_EXECUTOR"] = "ray"
    os.environ["CNN_JAX_JOB_ID"] = f"{ctx.get_task_id()[:16]}@node-{ctx.get_node_id()[:8]}"
    from cnn_jax.study import worker

    return worker.job_main(task, settings)


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raises :class:`TimeoutError` in the main thread after ``seconds`` (SIGALRM);
    elsewhere does nothing."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise TimeoutError

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _is_loopback(host: str) -> bool:
    try:
        return socket.gethostbyname(host).startswith("127.")
    except OSError:
        return False


@register
class Ray(Executor):
    """One Ray task per task (``num_cpus``/``num_gpus`` of a trial, spread over the nodes,
    retried on another node when its node dies)."""

    name = "ray"
    OPTIONS = ("address", "cpus", "gpus", "mem_gb")
    CONNECT_TIMEOUT_S = 25

    def check(self) -> None:
        _positive(self.options, "cpus")
        _positive(self.options, "gpus", allow_zero=True)
        _positive(self.options, "mem_gb")
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs ray: pip install 'cnn-jax[ray]'") from None
        address = self.options.get("address") or os.environ.get("RAY_ADDRESS") or "auto"
        self.address = address
        if address != "auto":
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise UserError(f"--ray-address must be HOST:PORT or auto, got {address!r}")
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
            except OSError as e:
                raise UserError(
                    f"no Ray cluster at {address} ({e.strerror or e}); start one with `ray start "
                    "--head` (or scripts/local-ray up) and pass its address"
                ) from None
        self._connect()
        need_gpus = self.options.get("gpus") or 0
        if need_gpus:
            import ray

            have = ray.cluster_resources().get("GPU", 0)
            if have < need_gpus:
                self.close()
                raise UserError(
                    f"--gpus-per-trial {need_gpus}: the Ray cluster at {address} has {have:g} GPUs"
                )

    def _connect(self) -> None:
        import ray

        kwargs = {
            "address": self.address,
            "log_to_driver": False,
            "include_dashboard": False,
            "configure_logging": False,
            "namespace": "cnn-jax",
        }
        host = self.address.rpartition(":")[0] if self.address != "auto" else ""
        if host and _is_loopback(host):
            kwargs["_node_ip_address"] = "127.0.0.1"  # else it connects through another address
        try:
            with _deadline(self.CONNECT_TIMEOUT_S):
                ray.init(**kwargs)
        except TimeoutError:
            raise UserError(
                f"the Ray cluster at {self.address} did not answer within "
                f"{self.CONNECT_TIMEOUT_S} s; is it running (`ray status`)?"
            ) from None
        except Exception as e:  # noqa: BLE001  (reported as one line)
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise UserError(
                f"cannot connect to a Ray cluster at {self.address}: {type(e).__name__}: {first}"
            ) from None

    def run(self, tasks, settings, workdir, handle, log) -> None:
        import ray

        opts = {
            "num_cpus": float(self.options.get("cpus") or 1),
            "num_gpus": float(self.options.get("gpus") or 0),
            "max_calls": 1,  # a fresh process per task: JAX imported after the task's settings
            "max_retries": 3,  # on a dead node or worker: re-run elsewhere, from the checkpoint
            "retry_exceptions": False,
            "scheduling_strategy": "SPREAD",
        }
        if self.options.get("mem_gb"):
            opts["memory"] = int(self.options["mem_gb"] * 2**30)
        remote = ray.remote(**opts)(_ray_job)
        settings = {**settings, "env": {**settings.get("env", {})}}
        refs = {remote.remote(t, settings): t for t in tasks}
        log(f"submitted {len(refs)} Ray task{'s' if len(refs) > 1 else ''} to {self.address}")
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=5)
                for ref in ready:
                    task = refs.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as e:  # noqa: BLE001  (the task failed for good)
                        err = f"Ray task failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
                        for tr in task["trials"]:
                            st = store.read_status(tr["dir"])["status"]
                            if st not in store.FINISHED:
                                store.mark(tr["dir"], "failed", error=err)
                                handle({"event": "failed", "name": tr["name"], "error": err})
                        continue
                    for ev in out["events"]:
                        if ev["event"] in FINAL_EVENTS:
                            handle(ev)
        except BaseException:
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()


# ----------------------------------------------------------------------------- multi-host training


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
    submitit = _import_submitit()
    workdir = os.path.abspath(workdir)
    folder = os.path.join(workdir, ".submitit", f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    outcome_dir = os.path.join(workdir, ".launch")
    o = slurm.options
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params = {
        "name": "cnn-jax-train",
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
        _run_quiet(["scancel", job.job_id])
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
    err = _last_line(job.paths.stderr)
    log(f"job {job.job_id} ({state}) failed: exit statuses {codes}{f'; {err}' if err else ''}")
    return 1
