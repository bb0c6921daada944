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
import os
from typing import Any

import ml_collections

from cnn_jax import rundir
from cnn_jax.errors import UserError
from cnn_jax.rundir import read_json
from cnn_jax.study import lease

# File names of a sweep directory (defined in cnn_jax.rundir).
SWEEP_FILE = rundir.SWEEP
STATUS_FILE = rundir.STATUS
ANALYSIS_FILE = rundir.ANALYSIS
TRIALS_DIR = rundir.TRIALS
STATUSES = ("queued", "running", "done", "failed", "diverged")
FINISHED = ("done", "diverged")  # failed trials are retried by the next sweep
HASH_IGNORE = ("data.data_dir",)  # where the data lives does not change a result
# Keys added after studies were run, left out of a trial's hash while they have the value
# that switches them off: a finished trial keeps its name (and is not retrained) until one
# of them is switched on.
HASH_NEUTRAL = {
    "train.ema_decay": 0.0,
    "train.ema_warmup": False,
    "train.grad_accum_steps": 1,
    "train.select_weights": "raw",
    "train.profile_steps": "",
    "data.mixup_alpha": 0.0,
    "data.cutmix_alpha": 0.0,
    "data.mix_prob": 1.0,
    "data.mix_switch_prob": 0.5,
    "data.randaugment_n": 0,
    "data.randaugment_m": 9,
}
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


# ----------------------------------------------------------------------------- files


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
    files written before the analyses registry held their values at the top level
    (``{"shift_consistency": x, "shift_max": 3, ...}``)."""
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


def to_analyse_again(trial_dir: str, status: dict, spec: dict) -> bool:
    """A ``done`` trial whose ``analysis.json`` does not hold the analyses ``spec`` with the
    same options: it is analysed again from its checkpoints, never retrained."""
    return status["status"] == "done" and not analyses_current(read_analysis(trial_dir), spec)
