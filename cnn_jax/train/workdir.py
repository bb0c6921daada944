"""Run directories: one writer at a time, refusal to mix configs, explicit overwrite."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil

from cnn_jax import config as config_lib
from cnn_jax import rundir
from cnn_jax.errors import UserError

LOCK = rundir.LOCK


class WorkdirLock:
    """An exclusive ``flock`` on ``<workdir>/.lock`` holding the owner's pid.

    The kernel drops the lock when its process dies (even by ``kill -9``), so a lock file
    left behind by a dead run is stale and simply taken over.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK)
        self._fd: int | None = None
        self.stale_owner: int | None = None

    def acquire(self) -> WorkdirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                owner = _read_pid(self.path)
                raise UserError(
                    f"workdir {os.path.dirname(self.path)!r} is in use by another run "
                    f"(pid {owner if owner else 'unknown'}); wait for it to finish or use another --workdir"
                ) from None
            raise
        self.stale_owner = _read_pid(self.path)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def check(cfg, workdir: str, allow_config_change: bool, overwrite: bool) -> None:
    """Refuses a workdir holding a run with another config (reads only)."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UserError(f"workdir {workdir!r} exists and is not a directory")
    path = os.path.join(workdir, rundir.CONFIG)
    if os.path.exists(path) and not overwrite:
        try:
            with open(path) as f:
                old = config_lib.from_json(f.read())
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read {path} ({e}); pass --overwrite to start afresh") from None
        changes = config_lib.diff(old, cfg)
        if changes and not allow_config_change:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes[:4])
            more = f" (and {len(changes) - 4} more)" if len(changes) > 4 else ""
            raise UserError(
                f"workdir {workdir!r} holds a run with a different config ({shown}{more}); "
                "use a new --workdir, pass --allow-config-change to resume with the new config, "
                "or --overwrite to replace the run"
            )


def create(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create workdir {workdir!r}: {e.strerror}") from None
    probe = os.path.join(workdir, ".write-test")
    try:
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise UserError(f"workdir {workdir!r} is not writable: {e.strerror}") from None


def clear(workdir: str) -> None:
    """Removes a previous run's files (``--overwrite``), keeping the lock."""
    for name in os.listdir(workdir):
        if name == LOCK:
            continue
        path = os.path.join(workdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def write_config(cfg, workdir: str) -> None:
    rundir.write_text(os.path.join(workdir, rundir.CONFIG), config_lib.to_json(cfg))
