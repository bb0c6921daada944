"""The results of a sweep directory: one row per trial (``results.csv``) and its curves.

Reads each trial's status, ``summary.json``, ``analysis.json`` and ``metrics.jsonl`` through
:mod:`cnn_jax.rundir`; imports neither JAX nor the training stack, so a report can be made
where nothing can train. Also the one spelling of swept values and keys in tables and plots
(:func:`label`, :func:`short`), and what a sweep measured besides accuracy: the analyses of
its record (:func:`analyses_of`) and their measures (:func:`measures_of`, :func:`measure`),
each a ``results.csv`` column.
"""

from __future__ import annotations

import math
import os
from typing import Any

from cnn_jax import analyses, experiment, rundir
from cnn_jax.analyses import Measure
from cnn_jax.study import store
from cnn_jax.study.reporting.text import column_words

# Machine-dependent columns, kept out of report.md. ``wall_seconds``: the trial's wall time as
# its status.json records it (``wall_seconds``, from "running" to "done"), NaN where the
# worker did not record it.
# ``step_seconds``: the time in training steps (summary.json; the first step counts where it
# compiled nothing).
TIMING_COLUMNS = ("train_seconds", "step_seconds", "images_per_second", "wall_seconds")
# The columns read from a finished trial, in the order of ``results.csv`` (the columns of
# the sweep's measures come between these two parts, see :func:`result_columns`); NaN
# otherwise. ``validation_*`` and ``test_*``: the final state; ``best_*``: the checkpoint
# selected by validation accuracy (its test accuracy read once, at the end).
SUMMARY_COLUMNS = (
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
)
LATER_COLUMNS = ("params", "epochs", *TIMING_COLUMNS)


def result_columns(measures: list[Measure]) -> tuple[str, ...]:
    """The columns read from a finished trial, in the order of ``results.csv``."""
    return (*SUMMARY_COLUMNS, *(m.name for m in measures), *LATER_COLUMNS)


# ----------------------------------------------------------------------------- measures


def analyses_of(rec: dict) -> dict[str, dict]:
    """The resolved analyses ``{name: {option: value}}`` of sweep record ``rec``, in order:
    its ``study.analyses`` (a list of ``{"name": ..., "options": {...}}``, or a dict); in a
    record written before the analyses registry, the shift consistency its
    ``study.shift_consistency`` (maximum shift, 0 for off) asked for. The one place that
    reads a sweep's analyses."""
    study = rec["study"]
    if "analyses" in study:
        entries = study["analyses"] or []
        if isinstance(entries, dict):  # {name: options} (key order not kept by sweep.json)
            return {name: dict(options) for name, options in entries.items()}
        return {e["name"]: dict(e["options"]) for e in entries}
    if study.get("shift_consistency"):
        return {"shift_consistency": {"max_shift": study["shift_consistency"], "seed": 0}}
    return {}


def measures_of(rec: dict) -> list[Measure]:
    """The measures of sweep record ``rec`` (of its analyses, in order): its extra columns."""
    return analyses.measures_of(analyses_of(rec))


def load_sweep(workdir: str) -> dict:
    """The sweep record of ``workdir`` (``sweep.json``), after importing the experiment files
    its planner imported, so that the analyses registered there are known."""
    rec = store.load_sweep(workdir)
    experiment.import_files(rec.get("imports", []))
    return rec


def _registered() -> dict[str, Measure]:
    return {m.name: m for a in analyses.names() for m in analyses.get(a).measures}


def measure(column: str) -> Measure:
    """How to show and compare ``column`` of ``results.csv``: the registered measure of that
    name, else a measure made from the name (a fraction if it is an accuracy or top-5 rate,
    higher is better)."""
    found = _registered().get(column)
    if found is not None:
        return found
    fraction = "accuracy" in column or "top5" in column
    return Measure(column, column_words(column), fraction=fraction)


def measures_in(columns) -> list[Measure]:
    """The registered measures among ``columns``, in their order."""
    known = _registered()
    return [known[c] for c in columns if c in known]


def measured(record: dict, spec: dict[str, dict]) -> dict[str, float]:
    """The value of each measure of the analyses ``spec`` in ``record`` (a trial's
    ``analysis.json``, read by :func:`cnn_jax.study.store.measured`); NaN where absent."""
    values = store.measured(record)
    return {m.name: _num(values.get(m.name)) for m in analyses.measures_of(spec)}


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


def _measured(summary: dict, values: dict[str, float], status: dict) -> dict[str, Any]:
    """The :func:`result_columns` of a finished trial (``values``: its measures)."""
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
        **values,
        "params": _num(summary.get("params")),
        "epochs": _num(summary.get("epochs")),
        "train_seconds": _num(summary.get("train_seconds")),
        "step_seconds": _num(summary.get("step_seconds")),
        "images_per_second": _num(summary.get("images_per_second")),
        "wall_seconds": _num(status.get("wall_seconds")),
    }


def _row(workdir: str, trial: dict, keys: list[str], spec: dict[str, dict]) -> dict:
    d = trial_dir(workdir, trial["name"])
    st = store.read_status(d)
    row: dict[str, Any] = {"trial": trial["name"], "status": st["status"]}
    for k in keys:
        row[k] = label(trial["point"].get(k)) if k in trial["point"] else ""
    row["seed"] = trial["seed"]
    summary = rundir.read_summary(d) if st["status"] == "done" else None
    if summary:
        row.update(_measured(summary, measured(store.read_analysis(d), spec), st))
    else:
        row.update(dict.fromkeys(result_columns(analyses.measures_of(spec)), math.nan))
    err = st.get("error", "") if st["status"] in ("failed", "diverged") else ""
    # what happened, without the advice (status.json's "reason"; older files: the error)
    row["error"] = st.get("reason", err) if st["status"] == "diverged" else err
    return row


def collect(workdir: str, rec: dict | None = None, phase: str = ""):
    """One row per study trial of the sweep in ``workdir``, in sweep order (a
    ``DataFrame``); ``rec``: its sweep record, if already read by :func:`load_sweep`;
    ``phase``: the trials of another phase instead (``"budget"``: the budget check's)."""
    import pandas as pd

    rec = rec if rec is not None else load_sweep(workdir)
    keys = rec["study"]["keys"]
    tuned = list(rec["study"].get("tune") or {})
    spec = analyses_of(rec)
    # Tuning trials (``phase: tune``) only choose each arm's tuned values and the budget
    # check's (``phase: budget``) re-run arms at a longer budget: the report shows them in
    # sections of their own, never among the study's results.
    rows = [
        _row(workdir, t, keys + tuned, spec)
        for t in rec["trials"] if t.get("phase", "") == phase
    ]
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
