"""The results of a sweep directory: one row per trial (``results.csv``) and its curves.

Reads each trial's status, ``summary.json``, ``analysis.json`` and ``metrics.jsonl`` through
:mod:`cnn_jax.rundir`; imports neither JAX nor the training stack, so a report can be made
where nothing can train. Also the one spelling of swept values and keys in tables and plots
(:func:`label`, :func:`short`).
"""

from __future__ import annotations

import math
import os
from typing import Any

from cnn_jax import rundir
from cnn_jax.study import store

# Machine-dependent columns, kept out of report.md. ``wall_seconds``: the trial's wall time as
# its status.json records it (``wall_seconds``, from "running" to "done"), NaN where the
# worker did not record it.
# ``step_seconds``: the time in training steps (summary.json; the first step counts where it
# compiled nothing).
TIMING_COLUMNS = ("train_seconds", "step_seconds", "images_per_second", "wall_seconds")
# The columns read from a finished trial, in the order of ``results.csv``; NaN otherwise.
# ``validation_*`` and ``test_*``: the final state; ``best_*``: the checkpoint selected by
# validation accuracy (its test accuracy read once, at the end).
RESULT_COLUMNS = (
    "validation_accuracy",
    "validation_loss",
    "test_accuracy",
    "test_loss",
    "test_top5",
    "test_count",
    "best_step",
    "best_validation_accuracy",
    "best_test_accuracy",
    "stopped_early",
    "steps",
    "planned_steps",
    "train_n",
    "validation_n",
    "test_n",
    "train_loss",
    "train_accuracy",
    "shift_consistency",
    "params",
    "epochs",
    *TIMING_COLUMNS,
)


def label(v: Any) -> str:
    """A swept value as tables, plots and ``results.csv`` write it (``None`` is ``-``)."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(label(x) for x in v) + ")"
    return str(v)


def short(key: str) -> str:
    """A swept key's column title: its last part (``model.pool`` -> ``pool``), or the part
    before ``.name`` (``model.name`` -> ``model``)."""
    last = key.split(".")[-1]
    return last if last != "name" else key.split(".")[0]


def trial_dir(workdir: str, name: str) -> str:
    return os.path.join(workdir, rundir.TRIALS, name)


def _num(v) -> float:
    return math.nan if v is None else float(v)


def _measured(summary: dict, analysis: dict, status: dict) -> dict[str, Any]:
    """The :data:`RESULT_COLUMNS` of a finished trial."""
    test = summary.get("test") or {}
    validation = summary.get("validation") or {}
    best = summary.get("best") or {}
    train = summary.get("train") or {}
    sizes = summary.get("data") or {}
    stopped = summary.get("stopped_early")
    return {
        "validation_accuracy": _num(validation.get("accuracy")),
        "validation_loss": _num(validation.get("loss")),
        "test_accuracy": _num(test.get("accuracy")),
        "test_loss": _num(test.get("loss")),
        "test_top5": _num(test.get("top5")),
        "test_count": _num(test.get("count")),
        "best_step": _num(best.get("step")),
        "best_validation_accuracy": _num(best.get("validation_accuracy")),
        "best_test_accuracy": _num(best.get("test_accuracy")),
        "stopped_early": math.nan if stopped is None else bool(stopped),
        "steps": _num(summary.get("steps")),
        "planned_steps": _num(summary.get("planned_steps")),
        "train_n": _num(sizes.get("train")),
        "validation_n": _num(sizes.get("validation")),
        "test_n": _num(sizes.get("test")),
        "train_loss": _num(train.get("loss")),
        "train_accuracy": _num(train.get("accuracy")),
        "shift_consistency": _num(analysis.get("shift_consistency")),
        "params": _num(summary.get("params")),
        "epochs": _num(summary.get("epochs")),
        "train_seconds": _num(summary.get("train_seconds")),
        "step_seconds": _num(summary.get("step_seconds")),
        "images_per_second": _num(summary.get("images_per_second")),
        "wall_seconds": _num(status.get("wall_seconds")),
    }


def _row(workdir: str, trial: dict, keys: list[str]) -> dict:
    d = trial_dir(workdir, trial["name"])
    st = store.read_status(d)
    row: dict[str, Any] = {"trial": trial["name"], "status": st["status"]}
    for k in keys:
        row[k] = label(trial["point"].get(k)) if k in trial["point"] else ""
    row["seed"] = trial["seed"]
    summary = rundir.read_summary(d) if st["status"] == "done" else None
    if summary:
        analysis = rundir.read_json(rundir.path(d, rundir.ANALYSIS)) or {}
        row.update(_measured(summary, analysis, st))
    else:
        row.update(dict.fromkeys(RESULT_COLUMNS, math.nan))
    err = st.get("error", "") if st["status"] in ("failed", "diverged") else ""
    row["error"] = err.split("; the last good checkpoint")[0]
    return row


def collect(workdir: str):
    """One row per trial of the sweep in ``workdir``, in sweep order (a ``DataFrame``)."""
    import pandas as pd

    rec = store.load_sweep(workdir)
    keys = rec["study"]["keys"]
    tuned = list(rec["study"].get("tune") or {})
    # Tuning trials (``phase: tune``) only choose each arm's tuned values: the report lists
    # them in its tuning table, never among the study's results.
    rows = [_row(workdir, t, keys + tuned) for t in rec["trials"] if t.get("phase") != "tune"]
    return pd.DataFrame(rows)


def series(workdir: str, name: str) -> tuple[dict[int, float], dict[int, tuple[float, float]]]:
    """Trial ``name``'s logged metrics: ``({step: validation accuracy}, {step: (train
    accuracy, train loss)})``, the train values averaged over the steps since the previous
    log. (The test split is not a curve: it is evaluated once, at the end.)"""
    recs = rundir.read_metrics(trial_dir(workdir, name))
    val = {r["step"]: r["accuracy"] for r in recs if r["split"] == "validation"}
    train = {r["step"]: (r["accuracy"], r["loss"]) for r in recs if r["split"] == "train"}
    return val, train


def trial_config(workdir: str, name: str) -> dict | None:
    """Trial ``name``'s resolved config (its ``config.json``) as a nested dict, or ``None``."""
    return rundir.read_json(rundir.path(trial_dir(workdir, name), rundir.CONFIG))
