"""Per-arm tuning: every arm of a study gets the tuned value that suits it, chosen on
validation, before its study seeds run.

With ``Study(..., tune={"optim.learning_rate": [1e-3, 3e-3]}, tune_seeds=2)`` a sweep runs
in two phases: first every arm (combination of the swept keys) trains every tuned value
with the tuning seeds (never the study's seeds); then each arm's value with the best mean
*validation* accuracy (of the checkpoint selected by validation; ties: the first value
listed) is the one its study seeds train with. The test split plays no part in the choice.
Both phases are ordinary trials of the sweep directory, so a re-run skips what finished
and resumes the rest. Nothing here imports JAX.
"""

from __future__ import annotations

import math
from typing import Any

from cnn_jax import rundir
from cnn_jax.errors import UserError
from cnn_jax.study.design import Study
from cnn_jax.study.sweep import Point

TUNE_PHASE, STUDY_PHASE = "tune", "study"


def _score(summary: dict | None) -> float | None:
    """What tuning compares: the validation accuracy of the checkpoint selected by it."""
    if not summary:
        return None
    best = summary.get("best") or {}
    v = best.get("validation_accuracy")
    if v is None:
        v = (summary.get("validation") or {}).get("accuracy")
    return None if v is None or not math.isfinite(v) else float(v)


def choose(study: Study, scores: dict[tuple, list[float]]) -> tuple[list[Point], list[dict]]:
    """Each arm's tuned values from ``scores[(arm index, tune point index)]`` (the finished
    tuning seeds' validation accuracies): ``(chosen per arm, table rows)``.

    A value whose tuning seeds did not all finish (one failed or diverged) ranks below
    every value whose seeds all did, whatever its mean: a learning rate that diverges on one
    seed is not chosen on the strength of another. Among values with equally complete
    seeds the best mean validation accuracy wins (the first listed on ties).

    Raises a :class:`UserError` when an arm has no finished tuning trial at all."""
    arms, options = study.sweep.points(), study.tune_points()
    k = len(study.tune_seed_list())
    chosen, table = [], []
    for i, arm in enumerate(arms):
        rows = []
        for j, t in enumerate(options):
            vals = scores.get((i, j), [])
            mean = sum(vals) / len(vals) if vals else None
            rows.append({"arm": dict(arm), "tuned": dict(t), "n": len(vals), "seeds": k,
                         "mean_validation_accuracy": mean, "chosen": False})
        finished = [r for r in rows if r["mean_validation_accuracy"] is not None]
        if not finished:
            shown = ", ".join(f"{k}={v!r}" for k, v in arm.items()) or "the only arm"
            raise UserError(
                f"tuning of {shown}: no tuning trial finished (all failed or diverged); see "
                "`cnn-jax status` for their errors"
            )
        # all seeds finished first, then the mean (max keeps the first on ties)
        best = max(finished, key=lambda r: (r["n"] == k, r["mean_validation_accuracy"]))
        best["chosen"] = True
        chosen.append(dict(best["tuned"]))
        table.extend(rows)
    return chosen, table


def scores_of(study: Study, trials, workdir: str, statuses: dict[str, str]) -> dict[tuple, list[float]]:
    """The validation scores of the finished tuning ``trials`` (planned from
    ``study.tuning_trials()``, in that order) by ``(arm index, tune point index)``."""
    per_arm = len(study.tune_points()) * len(study.tune_seed_list())
    k = len(study.tune_seed_list())
    out: dict[tuple, list[float]] = {}
    for n, t in enumerate(trials):
        if statuses.get(t.name) != "done":
            continue
        score = _score(rundir.read_summary(t.dir(workdir)))
        if score is not None:
            out.setdefault((n // per_arm, (n % per_arm) // k), []).append(score)
    return out


def record(chosen: list[Point], table: list[dict]) -> dict[str, Any]:
    """What ``sweep.json`` keeps of the tuning (for the report)."""
    return {"chosen": chosen, "table": table}


def log_choices(tuning: dict, log) -> None:
    """One line per arm: the tuned values chosen on validation."""
    for row in tuning.get("table", []):
        if row["chosen"]:
            arm = ", ".join(f"{k}={v}" for k, v in row["arm"].items()) or "all"
            tuned = ", ".join(f"{k}={v}" for k, v in row["tuned"].items())
            log(f"tuned {arm}: {tuned} (validation accuracy {row['mean_validation_accuracy']:.4f} "
                f"over {row['n']} tuning seeds)")
