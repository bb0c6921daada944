"""Run and sweep directories on disk: file names, atomic JSON, JSON lines. No JAX here.

The ground floor of the house: every module that reads or writes a run directory or a
sweep directory takes its file names and its JSON helpers from here, so ``cnn-jax status``
and reports can read runs without importing the training stack.

A run directory::

    config.json        the resolved config
    metrics.jsonl      one JSON object per log point ({"step", "split", ...metrics})
    summary.json       written when training ends
    checkpoints/       Orbax (latest N and best N)
    tensorboard/       event files (tensorboardX)
    .lock              the writer's pid (an flock)

A sweep directory::

    sweep.json         experiment, overrides, study options, the trial list
    trials/<name>/     one run directory per trial, plus status.json and analysis.json
    results.csv, report.md, timing.md, plots/ (and budget_check.csv with a budget check)
"""

from __future__ import annotations

import json
import os
from typing import Any

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
LOCK = ".lock"

SWEEP = "sweep.json"
TRIALS = "trials"
STATUS = "status.json"
ANALYSIS = "analysis.json"
# The experiment files a run's process imported (what it registered: pooling kinds, models,
# analyses, datasets); evaluate, viz and report import them again.
IMPORTS = "imports.json"
RESULTS_CSV = "results.csv"
BUDGET_CSV = "budget_check.csv"  # the budget check's result per model and re-run value
REPORT_MD = "report.md"
TIMING_MD = "timing.md"
PLOTS = "plots"


def path(directory: str, name: str) -> str:
    """``directory/name`` (one spelling of every run-directory path)."""
    return os.path.join(directory, name)


def is_run(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, CONFIG))


def is_sweep(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, SWEEP))


def is_finished(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, SUMMARY))


def _default(o):
    if isinstance(o, tuple):
        return list(o)
    if hasattr(o, "item"):  # NumPy / JAX scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_json(file: str, obj: Any, *, sort_keys: bool = True) -> None:
    """Atomic write (a temporary file, then a rename): a kill never leaves half a file."""
    tmp = f"{file}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=sort_keys, default=_default)
        f.write("\n")
    os.replace(tmp, file)


def write_text(file: str, text: str) -> None:
    """Atomic write of a text file."""
    tmp = f"{file}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, file)


def read_json(file: str) -> Any | None:
    """The JSON in ``file``, or ``None`` if it is missing or torn."""
    try:
        with open(file) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_jsonl(file: str) -> list[dict]:
    """The records of a JSON-lines file; a torn last line (from a kill) is skipped."""
    out = []
    try:
        with open(file) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return out


def read_metrics(run_dir: str) -> list[dict]:
    return read_jsonl(os.path.join(run_dir, METRICS))


def read_summary(run_dir: str) -> dict | None:
    return read_json(os.path.join(run_dir, SUMMARY))
