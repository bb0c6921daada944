"""Who trains a trial: a lease on the shared filesystem, not a pid on some host.

A trial directory holds ``lease.json`` while someone trains it::

    {"owner": "<host>/<pid>/<token>", "host", "pid", "pidns", "job": {...},
     "acquired": <unix time>, "renewed": <unix time>, "ttl": <seconds>}

The owner renews ``renewed`` from a heartbeat thread (every ``ttl / 4`` seconds) while it
trains, and deletes the file when it is done. A lease is *live* while ``renewed + ttl`` lies
in the future; an expired lease belongs to a dead owner (its host went down, its job was
killed) and the next sweep takes the trial over. On the owner's own host (same hostname and
PID namespace) a lease whose process is gone is dead at once, so a killed local worker's
trial does not wait out the TTL; a lease of *this* process that it no longer holds is dead
too. Elsewhere only the clock decides, so hosts' clocks must agree to well within the TTL
(``CNN_JAX_LEASE_TTL``, default 60 s).

Taking, renewing and releasing happen under a POSIX record lock (``fcntl.lockf``) on
``.lease.lock`` next to it: local filesystems and NFS (through its lock manager) grant it
to one process at a time on any host, so two sweeps never both own a trial. A heartbeat
that finds its lease taken over (its process was frozen past the TTL) ends the process
without writing anything more (exit status 70): another owner is training the trial.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import threading
import time
import uuid

from cnn_jax import rundir

LEASE = "lease.json"
LOCK = ".lease.lock"
LOST_EXIT_CODE = 70  # EX_SOFTWARE: this process no longer owns what it was writing

_held: dict[str, dict] = {}  # trial directory -> the lease record this process holds
_guard = threading.Lock()
_identity: dict | None = None
_heartbeat: threading.Thread | None = None


def ttl() -> float:
    """Seconds a lease lives without renewal (``CNN_JAX_LEASE_TTL``, default 60)."""
    try:
        return max(1.0, float(os.environ.get("CNN_JAX_LEASE_TTL", "60")))
    except ValueError:
        return 60.0


def _pidns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def identity() -> dict:
    """This process as an owner: host, pid, PID namespace and a random token."""
    global _identity
    if _identity is None or _identity["pid"] != os.getpid():
        host, pid = socket.gethostname(), os.getpid()
        _identity = {
            "owner": f"{host}/{pid}/{uuid.uuid4().hex[:12]}",
            "host": host,
            "pid": pid,
            "pidns": _pidns(),
        }
    return _identity


def job_info() -> dict:
    """The cluster job this process runs in: ``{"executor", "id"}`` (SLURM from its
    environment; Ray and the local pool through ``CNN_JAX_EXECUTOR`` / ``CNN_JAX_JOB_ID``)."""
    env = os.environ
    if env.get("CNN_JAX_EXECUTOR"):
        return {
            "executor": env["CNN_JAX_EXECUTOR"],
            "id": env.get("CNN_JAX_JOB_ID") or str(os.getpid()),
        }
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return {
            "executor": "slurm",
            "id": f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}",
        }
    if env.get("SLURM_JOB_ID"):
        return {"executor": "slurm", "id": env["SLURM_JOB_ID"]}
    return {"executor": "local", "id": str(os.getpid())}


def path(directory: str) -> str:
    return os.path.join(directory, LEASE)


def read(directory: str) -> dict | None:
    return rundir.read_json(path(directory))


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_live(rec: dict | None, now: float | None = None) -> bool:
    """Whether the lease ``rec`` still belongs to a living owner."""
    if not rec:
        return False
    now = time.time() if now is None else now
    try:
        if now > float(rec["renewed"]) + float(rec["ttl"]):
            return False
    except (KeyError, TypeError, ValueError):
        return False
    me = identity()
    if rec.get("host") == me["host"] and rec.get("pidns") == me["pidns"]:
        if rec.get("pid") == me["pid"]:
            with _guard:
                return any(r["owner"] == rec.get("owner") for r in _held.values())
        return _pid_alive(rec.get("pid"))
    return True


@contextlib.contextmanager
def _locked(directory: str):
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def acquire(directory: str, *, seconds: float | None = None) -> dict | None:
    """Takes the trial in ``directory`` for this process: returns the new lease, or
    ``None`` if a living owner holds it. A dead owner's (expired) lease is taken over."""
    me = identity()
    with _locked(directory):
        old = read(directory)
        if old is not None and old.get("owner") != me["owner"] and is_live(old):
            return None
        now = time.time()
        rec = {
            **me,
            "job": job_info(),
            "acquired": now,
            "renewed": now,
            "ttl": float(seconds or ttl()),
            "previous_owner": old.get("owner") if old else None,
        }
        rundir.write_json(path(directory), rec)
        with _guard:
            _held[os.path.abspath(directory)] = rec
    _start_heartbeat()
    return rec


def held_by_me(directory: str) -> bool:
    with _guard:
        return os.path.abspath(directory) in _held


def renew(directory: str) -> bool:
    """Renews this process's lease on ``directory``; ``False`` if it was taken over."""
    key = os.path.abspath(directory)
    with _guard:
        mine = _held.get(key)
    if mine is None:
        return False
    with _locked(directory):
        with _guard:
            if key not in _held:
                return True  # released meanwhile: nothing was lost
        rec = read(directory)
        if rec is None or rec.get("owner") != mine["owner"]:
            with _guard:
                _held.pop(key, None)
            return False
        rec["renewed"] = time.time()
        rundir.write_json(path(directory), rec)
    return True


def release(directory: str) -> None:
    """Gives the trial up (its files are final or checkpointed)."""
    key = os.path.abspath(directory)
    with _guard:
        mine = _held.pop(key, None)
    if mine is None:
        return
    with contextlib.suppress(OSError), _locked(directory):
        rec = read(directory)
        if rec is not None and rec.get("owner") == mine["owner"]:
            os.remove(path(directory))


def release_all() -> None:
    with _guard:
        dirs = list(_held)
    for d in dirs:
        release(d)


def if_free(directory: str, fn) -> bool:
    """Calls ``fn()`` under the lease lock if no living owner (other than this process)
    holds ``directory``: how a non-owner writes a trial's status without racing its owner."""
    me = identity()
    with _locked(directory):
        rec = read(directory)
        if rec is not None and rec.get("owner") != me["owner"] and is_live(rec):
            return False
        fn()
    return True


def _start_heartbeat() -> None:
    global _heartbeat
    with _guard:
        if _heartbeat is not None and _heartbeat.is_alive():
            return
        _heartbeat = threading.Thread(target=_beat, name="cnn-jax-lease", daemon=True)
        _heartbeat.start()


def _beat() -> None:
    while True:
        with _guard:
            held = dict(_held)
        if held:
            period = min(r["ttl"] for r in held.values()) / 4
        else:
            period = 1.0
        time.sleep(max(0.2, period))
        for d in held:
            if not held_by_me(d):
                continue  # released meanwhile
            try:
                ok = renew(d)
            except OSError:
                continue  # the filesystem hiccuped: try again next beat, the TTL allows it
            if not ok:
                print(
                    f"error: the lease on {d} was taken over by another owner (this process "
                    "did not renew it in time); stopping without writing more",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(LOST_EXIT_CODE)
