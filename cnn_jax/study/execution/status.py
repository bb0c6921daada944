"""The trial store's write side: a trial's ``status.json``, written by the process that owns
the trial's lease (:func:`write_status`) or, for a trial nobody holds, through :func:`mark`.
The reporting wing never imports this module."""

from __future__ import annotations

import os
import socket
from typing import Any

from cnn_jax import rundir
from cnn_jax.rundir import read_json, write_json
from cnn_jax.study import lease
from cnn_jax.study.store import DEVICE_ENV, STATUS_FILE, STATUSES


def write_status(trial_dir: str, status: str, **extra: Any) -> None:
    """Writes ``status.json`` (with the writer's pid, host and cluster job). Callers that do
    not own the trial's lease go through :func:`mark` instead."""
    assert status in STATUSES, status
    os.makedirs(trial_dir, exist_ok=True)
    write_json(
        os.path.join(trial_dir, STATUS_FILE),
        {
            "status": status,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "job": lease.job_info(),
            "env": {k: os.environ[k] for k in DEVICE_ENV if k in os.environ},
            **extra,
        },
    )


def mark(trial_dir: str, status: str, **extra: Any) -> bool:
    """Writes ``status`` unless a living owner (another sweep, a cluster job) holds the
    trial's lease or the trial has finished meanwhile (another sweep finished it after this
    one planned); returns whether it was written."""
    written = False

    def write():
        nonlocal written
        old = read_json(os.path.join(trial_dir, STATUS_FILE)) or {}
        if old.get("status") == "diverged" or (
            old.get("status") == "done" and rundir.is_finished(trial_dir)
        ):
            return
        write_status(trial_dir, status, **extra)
        written = True

    lease.if_free(trial_dir, write)
    return written
