"""The local executor: a pool of worker processes on this machine (one per GPU on a GPU
host), the default."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading

from cnn_jax import conv_tuning, runtime
from cnn_jax.errors import UserError
from cnn_jax.study import store
from cnn_jax.study.execution import status as trial_status
from cnn_jax.study.execution.executors.base import (
    FINAL_EVENTS,
    Executor,
    Handle,
    Log,
    check_positive,
    register,
)


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


def cpu_groups(n: int, size: int = 1) -> list[str]:
    """The CPUs of each of ``n`` CPU workers, ``size`` each (as ``"0,1"``), in order from this
    process's CPUs, cycling round where more workers than fit share them; ``[]`` without CPU
    affinity. One worker alone is pinned too: a trial's numbers depend on its number of CPUs
    (:func:`cnn_jax.runtime.pin_cpus`). Pinned, XLA sizes its thread pool to the worker's
    CPUs. On 2 cores (2026-12-01) the pooling study's 90 trials with two workers of one core
    spent 7 min 00 s of single-core step time against 4 min 30 s of two-core time for one
    unpinned worker, 8.6 against 9.8 min of CPU in all."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return []
    return [",".join(str(cpus[(j * size + k) % len(cpus)]) for k in range(size)) for j in range(n)]


@register
class Local(Executor):
    """Today's pool: ``workers`` long-lived worker subprocesses on this host.

    With G GPUs: one worker per GPU by default (``CUDA_VISIBLE_DEVICES`` of its own), or
    ``trials_per_gpu`` per GPU with the memory fraction set so that they fit. On CPU: one
    worker per core, pinned to it (see :func:`cnn_jax.runtime.default_workers`)."""

    name = "local"
    OPTIONS = ("workers", "trials_per_gpu", "cpus")
    JOB_PER_TRIAL = False

    def check(self) -> None:
        check_positive(self.options, "workers", allow_zero=True)
        check_positive(self.options, "trials_per_gpu")
        check_positive(self.options, "cpus")
        cpus, have = self.options.get("cpus"), runtime.usable_cpus()
        if cpus and cpus > have:
            raise UserError(f"--cpus-per-trial {cpus}: this machine offers the pool {have} "
                            f"CPU{'s' if have > 1 else ''}; choose 1 to {have}")

    def plan_workers(self, n_tasks: int) -> list[dict]:
        """One environment per worker process to start (at most ``n_tasks``)."""
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
            size = self.options.get("cpus") or 1
            envs = [{} for _ in range(runtime.default_workers(size) if n is None else n)]
        envs = envs[: max(1, min(len(envs), n_tasks))] if envs else []
        if not gpus:  # CPU workers: each pinned to CPUs of its own, the same number each
            for env, cpus in zip(envs, cpu_groups(len(envs), self.options.get("cpus") or 1)):
                env[store.WORKER_CPUS_ENV] = cpus
        return envs

    def run(self, tasks, settings, workdir, handle, log) -> None:
        # (a task whose seeds run one after another can be shared out between workers)
        envs = self.plan_workers(sum(len(t["trials"]) if splittable(t) else 1 for t in tasks))
        self.concurrency = max(self.concurrency or 1, len(envs))
        pinned = [e[store.WORKER_CPUS_ENV].split(",") for e in envs if store.WORKER_CPUS_ENV in e]
        if len({c for g in pinned for c in g}) < sum(map(len, pinned)):
            log(f"warning: {len(envs)} workers x {self.options.get('cpus') or 1} CPUs per trial "
                f"exceed this machine's {runtime.usable_cpus()} CPUs: workers share CPUs "
                "(the same numbers, more slowly)")
        if self.options.get("workers") == 0:
            from cnn_jax.data import SplitCache
            from cnn_jax.study.execution.task import run_task
            splits = SplitCache()
            with conv_tuning.sweep_settings(settings.get("env", {})):  # (workers: as their env)
                for task in tasks:
                    if run_task(task, handle, splits):
                        raise KeyboardInterrupt  # SIGINT/SIGTERM: the trial was checkpointed
            return
        _run_pool(tasks, envs, settings, handle, log)


class _Worker:
    """One ``python -m cnn_jax.study.execution.worker`` subprocess: tasks on stdin, events on a pipe,
    stderr forwarded to ours (its last lines kept, to say why it died)."""

    def __init__(self, settings: dict, env: dict, index: int):
        from cnn_jax.study.execution import worker

        r, w = os.pipe()
        full_env = {
            **os.environ,
            **{k: str(v) for k, v in env.items()},
            worker.EVENTS_FD: str(w),
            "CNN_JAX_EXECUTOR": "local",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cnn_jax.study.execution.worker"],
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
        self.reset()
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

    def reset(self) -> None:
        self.finished: set[str] = set()  # trials of its task that ended
        self.attempted: set[str] = set()  # ... it reported anything of (leased, or found taken)

    def send(self, task: dict) -> None:
        self.task = task
        self.reset()
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


def splittable(task: dict) -> bool:
    """Whether ``task``'s seeds run one after another (not vmapped together), so that the
    ones not started yet can go to another worker (:func:`split_off`)."""
    mode = task.get("vmap", "off")
    if mode == "auto":
        return not runtime.accelerator_installed()
    return mode == "off"


def split_off(pool: list, idle, ran: dict) -> dict | None:
    """For worker ``idle`` when no task is left: the trials of the busiest other worker's
    task that nobody has begun or been given yet, last first, as a task of their own (or
    ``None``). Both workers lease each trial just before it starts, one from the front and
    one from the back, and skip the ones they find taken: each trial runs once, and the two
    finish together. ``ran``: trial -> the worker that began it.

    Without it, the sweep's last task ran on one worker while the others idled: the seeds
    of one configuration are one task. The worker that takes them over loads the
    configuration's programs from the sweep's compilation cache instead of compiling them.
    The trial runs the same program with the same seed on either worker; its numbers are
    bitwise the same where the two workers have the same number of cores (an uneven split of
    the cores can change XLA:CPU's reductions; ``summary.json`` records each trial's CPUs).
    """
    offered = collections.Counter(
        t["name"] for w in pool if w.task is not None for t in w.task["trials"])
    best, left = None, []
    for w in pool:
        if w is idle or w.task is None or not splittable(w.task):
            continue
        rest = [t for t in w.task["trials"] if t["name"] not in w.attempted
                and t["name"] not in ran and offered[t["name"]] == 1]
        if len(rest) > len(left):
            best, left = w, rest
    if not left:
        return None
    return {**best.task, "trials": left[::-1]}


def _orphans(dead, pool: list, ran: dict, taken: dict) -> list[dict]:
    """The trials of worker ``dead``'s task that nobody will finish now: those it began and
    did not finish, and those it had not reached that no other worker has left to try and
    no other owner holds (``taken``)."""
    def pending(w, name):
        return w.task is not None and name not in w.attempted and any(
            t["name"] == name for t in w.task["trials"])

    out = []
    for t in dead.task["trials"]:
        name = t["name"]
        if name in dead.finished:
            continue
        if ran.get(name) == dead.index or (
            name not in dead.attempted and name not in ran and name not in taken
            and not any(pending(w, name) for w in pool if w is not dead)
        ):
            out.append(t)
    return out


def _run_pool(
    tasks: list[dict], envs: list[dict], settings: dict, handle: Handle, log: Log
) -> None:
    from multiprocessing.connection import wait

    pool = _Pool(tasks, [_Worker(settings, env, i) for i, env in enumerate(envs)], handle)
    interrupted = False
    try:
        while pool.queue or any(w.task is not None for w in pool.workers):
            pool.give_out()
            # Read only the workers with something to read: a read of another would block
            # until its trial ends, and an idle worker would wait for it (2-7 s per task).
            ready = wait([w for w in pool.workers if w.task is not None])
            for i, w in enumerate(pool.workers):
                if w in ready:
                    pool.read(w)
                    if w.task is not None and w.eof:
                        pool.replace_dead(i, settings, log)
        for name, ev in pool.taken.items():
            if name not in pool.ran:  # another sweep's, not this pool's
                handle(ev)
    except BaseException:
        interrupted = True
        raise
    finally:
        for w in pool.workers:
            w.stop(interrupted)


class _Pool:
    """The local pool's bookkeeping: tasks not yet given out, which worker began which
    trial, and the ``busy``/``finished`` reports held back until no worker of this pool can
    still begin the trial (a worker finds taken what another worker here has begun)."""

    def __init__(self, tasks: list[dict], workers: list, handle: Handle):
        self.queue = collections.deque(tasks)
        self.workers, self.handle = workers, handle
        self.ran: dict[str, int] = {}  # trial -> the worker that began it
        self.taken: dict[str, dict] = {}

    def give_out(self) -> None:
        for w in self.workers:
            if w.task is None and self.queue:
                w.send(self.queue.popleft())
            elif w.task is None and (part := split_off(self.workers, w, self.ran)) is not None:
                w.send(part)

    def read(self, w) -> None:
        for ev in w.events():
            if ev["event"] == "idle":
                w.task = None
                continue
            name = ev.get("name")
            w.attempted.add(name)
            if ev["event"] == "running":
                self.ran[name] = w.index
            if ev["event"] in ("busy", "finished"):
                self.taken.setdefault(name, ev)
                continue
            if ev["event"] in FINAL_EVENTS:
                w.finished.add(name)
            self.handle(ev)

    def replace_dead(self, i: int, settings: dict, log: Log) -> None:
        """The worker died (killed, out of memory, a crash in native code): its unfinished
        trials fail with its last error line, and a fresh worker takes its place."""
        w = self.workers[i]
        err = w.why()
        tail = list(w.tail)[-12:]
        for t in _orphans(w, self.workers, self.ran, self.taken):
            trial_status.mark(t["dir"], "failed", error=err, stderr_tail=tail)
            self.handle({"event": "failed", "name": t["name"], "error": err})
            self.ran.setdefault(t["name"], w.index)
        if tail:
            log("  last lines of the worker's stderr:\n" + "\n".join(f"    {x}" for x in tail))
        w.task = None
        w.stop()
        self.workers[i] = _Worker(settings, w.env, w.index) if self.queue else w
