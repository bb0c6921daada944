"""The sweep directory: trial configs, readable names with a config hash, status files.

Layout of a sweep workdir::

    sweep.json              experiment, overrides, study options, the trial list
    trials/<name>/          one normal run directory per trial (config.json, metrics.jsonl,
                            summary.json, checkpoints/, tensorboard/) plus
                            status.json (queued | running | done | failed | diverged, error,
                            the cluster job), lease.json while an owner trains it (lease.py)
                            analysis.json (the study's per-trial analyses: per analysis
                            its options and values, see :func:`measured`)
    results.csv, report.md, timing.md, plots/*.png     written by the report

A trial's name is readable (its swept values and seed) and ends with the first 8 hex digits
of the SHA-256 of its resolved config (``data.data_dir`` excluded), so a changed setting is a
new trial and an unchanged one is found again and skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import socket
from typing import Any

import ml_collections

from cnn_jax import config as config_lib
from cnn_jax import rundir
from cnn_jax.errors import UserError
from cnn_jax.rundir import read_json, write_json
from cnn_jax.study import lease
from cnn_jax.study.design import Study

# File names of a sweep directory (defined in cnn_jax.rundir).
SWEEP_FILE = rundir.SWEEP
STATUS_FILE = rundir.STATUS
ANALYSIS_FILE = rundir.ANALYSIS
TRIALS_DIR = rundir.TRIALS
STATUSES = ("queued", "running", "done", "failed", "diverged")
FINISHED = ("done", "diverged")  # failed trials are retried by the next sweep
HASH_IGNORE = ("data.data_dir",)  # where the data lives does not change a result
# What a trial's status records of the device its process was given.
WORKER_CPUS_ENV = "CNN_JAX_WORKER_CPUS"  # the CPUs a local worker is pinned to ("0,1")
DEVICE_ENV = ("CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_PREALLOCATE",
              WORKER_CPUS_ENV)


@dataclasses.dataclass
class Trial:
    """One configuration and seed of a study."""

    name: str
    hash: str
    group: str  # hash of the config without its seed: trials that may train together
    point: dict[str, Any]
    seed: int
    config: ml_collections.ConfigDict  # resolved
    phase: str = ""  # "tune" for the trials that choose an arm's tuned values

    def dir(self, workdir: str) -> str:
        return os.path.join(workdir, TRIALS_DIR, self.name)

    def record(self) -> dict:
        return {
            "name": self.name,
            "hash": self.hash,
            "group": self.group,
            "point": _jsonable(self.point),
            "seed": self.seed,
            **({"phase": self.phase} if self.phase else {}),
        }


def jsonable(v):
    """``v`` with tuples as lists (as JSON holds it)."""
    return _jsonable(v)


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


# ----------------------------------------------------------------------------- configs


def trial_config(
    base: ml_collections.ConfigDict, point: dict, seed: int
) -> ml_collections.ConfigDict:
    """``base`` with the sweep ``point`` and ``seed`` applied, resolved and validated."""
    cfg = base
    if "model.name" in point:  # first, so that model options of the new model are known
        cfg = config_lib.apply_overrides(cfg, [("model.name", str(point["model.name"]))])
    else:
        import copy

        cfg = copy.deepcopy(cfg)
    for k, v in point.items():
        if k != "model.name":
            config_lib.set_value(cfg, k, v)
    cfg.seed = int(seed)
    return config_lib.resolve(cfg)


def config_hash(cfg: ml_collections.ConfigDict, *, without: tuple[str, ...] = ()) -> str:
    """SHA-256 (hex) of the resolved config, ignoring :data:`HASH_IGNORE` and ``without``."""
    flat = config_lib.flatten(json.loads(config_lib.to_json(cfg)))
    for k in (*HASH_IGNORE, *without):
        flat.pop(k, None)
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()


def _slug(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        s = "x".join(_slug(x) for x in v)
    elif isinstance(v, float):
        s = f"{v:g}"
    else:
        s = str(v)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", s).strip("-") or "none"


def trial_name(point: dict, seed: int, digest: str) -> str:
    """``lenet5_pool-max_seed0_1a2b3c4d``: swept values (``*.name`` keys by value alone),
    the seed and 8 hex digits of the config hash."""
    parts = []
    for k, v in point.items():
        last = k.split(".")[-1]
        parts.append(_slug(v) if last == "name" else f"{last}-{_slug(v)}")
    head = "_".join(parts + [f"seed{seed}"])
    if len(head) > 100:
        head = head[:100].rstrip("_-")
    return f"{head}_{digest[:8]}"


def plan(study: Study, base: ml_collections.ConfigDict, pairs=None, phase: str = "") -> list[Trial]:
    """The trials of ``study`` (or the ``(point, seed)`` ``pairs`` given) on top of ``base``
    (every config resolved: mistakes surface here, before anything runs); ``phase`` marks
    the trials of a tuning phase (``"tune"``)."""
    trials = []
    seen: dict[str, Trial] = {}
    for point, seed in study.trials() if pairs is None else pairs:
        try:
            cfg = trial_config(base, point, seed)
        except UserError as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise UserError(f"sweep point {{{shown}}}: {e}") from None
        digest = config_hash(cfg)
        t = Trial(
            trial_name(point, seed, digest),
            digest,
            config_hash(cfg, without=("seed",))[:12],
            dict(point),
            int(seed),
            cfg,
            phase,
        )
        if digest in seen:
            raise UserError(
                f"sweep points {seen[digest].point} and {point} give the same config "
                f"(seed {seed}); "
                "a swept value has no effect"
            )
        seen[digest] = t
        trials.append(t)
    return trials


# ----------------------------------------------------------------------------- files


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


def read_status(trial_dir: str) -> dict:
    """The trial's status record, with ``lease`` (its owner) while someone trains it.

    Liveness is the lease's (:mod:`cnn_jax.study.lease`), on any host: a ``running``
    trial without a living lease reads as ``interrupted``; a trial that a living owner
    holds reads as ``running`` whatever the file says; no file reads as ``missing``."""
    st = read_json(os.path.join(trial_dir, STATUS_FILE))
    rec = lease.read(trial_dir)
    live = lease.is_live(rec)
    if st is None:
        return {"status": "running", "lease": rec} if live else {"status": "missing"}
    if st.get("status") == "done" and not rundir.is_finished(trial_dir):
        st = {**st, "status": "interrupted"}
    if st.get("status") in FINISHED:
        return st
    if live:
        return {**st, "status": "running", "lease": rec}
    if st.get("status") == "running":
        return {**st, "status": "interrupted"}
    return st


is_sweep = rundir.is_sweep


def load_sweep(workdir: str) -> dict:
    """``sweep.json`` of ``workdir``; a :class:`UserError` if it is not a sweep directory."""
    if not os.path.isdir(workdir):
        raise UserError(
            f"{workdir!r} does not exist (run `cnn-jax sweep EXPERIMENT --workdir {workdir}` first)"
        )
    rec = read_json(os.path.join(workdir, SWEEP_FILE))
    if rec is None:
        hint = (
            " (it is a single run: use `cnn-jax evaluate` or `cnn-jax viz`)"
            if rundir.is_run(workdir)
            else ""
        )
        raise UserError(
            f"{workdir!r} is not a sweep directory (no {SWEEP_FILE}){hint}; give the --workdir "
            "of a `cnn-jax sweep`"
        )
    return rec


# ----------------------------------------------------------------------------- analyses


def read_analysis(trial_dir: str) -> dict:
    """``analysis.json`` of a trial: ``{analysis: {"options": {...}, "values": {...}}}``
    (``{}`` when absent)."""
    return read_json(os.path.join(trial_dir, ANALYSIS_FILE)) or {}


def measured(record: dict) -> dict[str, float]:
    """Every measure's value in an ``analysis.json`` record, flat (``{column: value}``);
    files written before the analyses registry held ``{"shift_consistency": x, ...}``."""
    out: dict[str, float] = {}
    for key, entry in record.items():
        if isinstance(entry, dict):
            out.update(entry.get("values") or {})
        elif key == "shift_consistency" and entry is not None:
            out[key] = entry
    return out


def analyses_current(record: dict, spec: dict) -> bool:
    """Whether ``record`` (``analysis.json``) holds every analysis of ``spec`` measured with
    the same options: otherwise a finished trial is analysed again (never retrained)."""
    return all(
        isinstance(record.get(name), dict) and record[name].get("options") == jsonable(options)
        for name, options in spec.items()
    )
