"""The budget check of a study (``Study(budget_check=BudgetCheck(...))``): does a longer
budget change the study's answer?

Its trials (phase ``"budget"``) re-train the arms of the baseline key's re-run values at
``factor`` times the budget on the study's first K seeds. Per model (setting of the other
swept keys) and re-run value, over the seeds finished at both budgets: the mean of the
study's metric at both budgets and its change, paired by seed, with its 95 % t-interval
(n − 1 degrees of freedom); the mean validation accuracy at both; whether the ranking of the
re-run values by mean validation accuracy changes; and whether a verdict against the baseline
changes, by :func:`rule`. The paired statistics are those of the comparisons with the
baseline (:func:`~cnn_jax.study.reporting.aggregate.paired`,
:func:`~cnn_jax.study.reporting.aggregate.comparisons`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from cnn_jax.analyses import Measure
from cnn_jax.study.design import BUDGET_PHASE
from cnn_jax.study.reporting.aggregate import (
    ALPHA,
    comparisons,
    judged,
    level,
    paired,
    ranked,
    select,
    settings,
    verdict,
)
from cnn_jax.study.reporting.rows import label, measure, short
from cnn_jax.study.reporting.tables import keyed_table
from cnn_jax.study.reporting.text import fixed, pct, value

_TIMES = {2: "twice", 3: "three times", 4: "four times"}
BASELINE = "baseline"  # the verdict column of the baseline's own row


def times(factor: float) -> str:
    """``factor`` times in words: ``twice``, ``three times``, else ``2.5×``."""
    return _TIMES.get(factor, f"{factor:g}×") if float(factor).is_integer() else f"{factor:g}×"


def rule(factor: float, k: int) -> str:
    """The rule that flags a verdict, as the report states it."""
    return (
        f"a verdict is flagged when, at {times(factor)} the budget, the mean difference from "
        f"the baseline over the {k} seeds falls outside the study's (unadjusted) 95 % CI of "
        "that difference, or has the opposite sign of a significant difference"
    )


@dataclasses.dataclass
class Check:
    """The budget check of a sweep. ``frame``: a row per model and re-run value (the
    columns of :func:`check`); ``unfinished``: ``name (status)`` of each trial it needs that
    is not done; ``planned``: its trials in the sweep's record."""

    frame: Any  # a pandas DataFrame
    unfinished: list[str]
    planned: int


def _arm(a, b, metric: str) -> dict:
    """One arm at both budgets (``a``: its study trials on the check's seeds, ``b``: its
    budget trials), over the seeds done at both: means, and the change with its CI."""
    seeds, c = paired(b, a, metric)
    out: dict[str, Any] = {"n": c.n}
    for tag, frame in (("1x", a), ("fx", b)):
        done = frame[(frame.status == "done") & frame.seed.isin(seeds)]
        for col, name in ((metric, "mean"), ("validation_accuracy", "validation")):
            out[f"{name}_{tag}"] = float(done[col].mean()) if seeds else math.nan
    return {**out, "change": c.mean_diff, "change_ci_lo": c.diff_lo, "change_ci_hi": c.diff_hi}


def _first(frame, keys: list[str], config: tuple):
    """The row of ``frame`` at ``config`` of ``keys`` (``None`` if none)."""
    found = select(frame, keys, config) if len(frame) else frame
    return found.iloc[0] if len(found) else None


def _verdict(study_row, at_f, at_1, m: Measure) -> dict:
    """A re-run value's verdict against the baseline: the study's (all its seeds), Δ at 1×
    and at the factor on the check's seeds, and whether :func:`rule` flags it (``None``:
    not judged)."""
    scale, unit = m.difference_unit
    nan = math.nan
    out = {"diff_study": nan, "diff_study_ci_lo": nan, "diff_study_ci_hi": nan,
           "verdict_study": "-", "diff_1x_k": nan if at_1 is None else float(at_1["diff"]),
           "diff_fx_k": nan if at_f is None else float(at_f["diff"]), "verdict_flagged": None}
    if study_row is None:
        return out
    d, lo, hi = (float(study_row[c]) for c in ("diff", "diff_lo", "diff_hi"))
    out.update(diff_study=d, diff_study_ci_lo=lo, diff_study_ci_hi=hi,
               verdict_study=verdict(study_row, scale=scale, unit=unit,
                                     higher_is_better=m.higher_is_better))
    f = out["diff_fx_k"]
    if math.isfinite(f) and math.isfinite(lo) and math.isfinite(hi):
        significant = study_row["p_holm"] < ALPHA  # False for NaN
        out["verdict_flagged"] = bool(not lo <= f <= hi or (significant and f * d < 0))
    return out


def _ranking(rows: list[dict], key: str) -> dict:
    """Whether the ranking of one model's re-run values by mean validation accuracy (on the
    check's seeds) differs between the budgets; ``None`` where a value has none at both."""
    order = {tag: " > ".join(r[key] for r in ranked(rows, by=f"validation_{tag}"))
             for tag in ("1x", "fx")}
    whole = all(math.isfinite(r[f"validation_{t}"]) for r in rows for t in ("1x", "fx"))
    changed = order["1x"] != order["fx"] if whole and len(rows) > 1 else None
    return {"ranking_1x": order["1x"], "ranking_fx": order["fx"], "ranking_changed": changed}


def check(rec: dict, df, budget_df, comp) -> Check | None:
    """The budget check of sweep record ``rec`` from its study trials ``df``, its budget
    trials ``budget_df`` (:func:`~cnn_jax.study.reporting.rows.collect` with phase
    ``"budget"``) and the study's comparisons of its metric with the baseline ``comp``;
    ``None`` without a budget check.

    The frame's columns: the swept keys, ``factor``; ``n`` (seeds done at both budgets);
    over them ``mean_1x``/``mean_fx`` (the study's metric), ``validation_1x``/``_fx``, the
    ``change`` (fx − 1x) with ``change_ci_lo``/``_hi``; the study's Δ from the baseline
    ``diff_study`` with its CI and ``verdict_study``; Δ on the check's seeds at each budget
    (``diff_1x_k``, ``diff_fx_k``); ``verdict_flagged``; per model ``ranking_1x``/``_fx``
    and ``ranking_changed``."""
    import pandas as pd

    opts = rec["study"]
    bc, baseline = opts.get("budget_check"), dict(opts.get("baseline") or {})
    if not bc or len(baseline) != 1:
        return None
    keys, metric = opts["keys"], opts.get("metric", "test_accuracy")
    key = next(iter(baseline))
    others, at = [k for k in keys if k != key], [k for k in keys if k != key] + [key]
    values = [label(v) for v in bc["values"]]
    study_k = df[df.seed.isin(bc["seeds"]) & df[key].isin(values)] if len(df) else df
    unfinished = [f"{t.trial} ({t.status})" for t in
                  (*study_k.itertuples(), *budget_df.itertuples()) if t.status != "done"]
    if not len(budget_df) or not len(study_k):
        return Check(pd.DataFrame(), unfinished, len(budget_df))
    at_f = comparisons(budget_df, keys, baseline, metric)
    at_1 = comparisons(study_k, keys, baseline, metric)
    m, rows = measure(metric), []
    for g in settings(study_k, others):
        model = []
        for v in values:
            arm = _arm(level(study_k, key, v, others, g), level(budget_df, key, v, others, g),
                       metric)
            if v == label(baseline[key]):
                arm.update(_verdict(None, None, None, m), verdict_study=BASELINE)
            else:
                where = (*g, v)
                arm.update(_verdict(_first(comp, at, where), _first(at_f, at, where),
                                    _first(at_1, at, where), m))
            model.append({**dict(zip(others, g)), key: v, "factor": float(bc["factor"]), **arm})
        rows += [{**r, **_ranking(model, key)} for r in model]
    return Check(pd.DataFrame(rows), unfinished, len(budget_df))


# ----------------------------------------------------------------------------- text


def _budget_words(rec: dict, factor: float) -> str:
    """``train.epochs 8 → 16``, from the budget trials' points."""
    for t in rec["trials"]:
        for k in ("train.steps", "train.epochs"):
            if t.get("phase") == BUDGET_PHASE and k in t["point"]:
                n = t["point"][k]
                return f"`{k}` {round(n / factor)} → {n}"
    return "the budget"


def _table(frame, at: list[str], factor: float, m: Measure) -> str:
    """The check's rows: both budgets, the change and the verdicts."""
    scale = m.difference_unit[0]
    (unit, pc), f = ((" (pp)", " %") if m.fraction else ("", "")), f"{factor:g}×"
    header = ["seeds", f"{m.label}{pc} 1×", f"{m.label}{pc} {f}", f"change{unit}",
              "95 % CI of change", "validation % 1×", f"validation % {f}",
              f"study: Δ from the baseline{unit} [95 % CI, unadjusted]", "study verdict",
              f"Δ at 1×, same seeds{unit}", f"Δ at {f}, same seeds{unit}", "verdict flagged"]

    def interval(r, lo, hi):
        return f"[{fixed(scale * r[lo], 2)}, {fixed(scale * r[hi], 2)}]"

    def cells(r):
        base = r["verdict_study"] == BASELINE
        flag = r["verdict_flagged"]
        return [
            str(int(r["n"])), value(r["mean_1x"], m.fraction), value(r["mean_fx"], m.fraction),
            fixed(scale * r["change"], 2), interval(r, "change_ci_lo", "change_ci_hi"),
            pct(r["validation_1x"]), pct(r["validation_fx"]),
            "" if base else f"{fixed(scale * r['diff_study'], 2)} "
            + interval(r, "diff_study_ci_lo", "diff_study_ci_hi"),
            "(baseline)" if base else r["verdict_study"],
            "" if base else fixed(scale * r["diff_1x_k"], 2),
            "" if base else fixed(scale * r["diff_fx_k"], 2),
            "" if base else ("**yes**" if flag else "no") if judged(flag) else "not judged",
        ]

    return keyed_table(frame, at, header, cells, ["r"] * 8 + ["l", "r", "r", "l"])


def _verdict_words(rows: list[dict], key: str, base: str, factor: float, m: Measure) -> str:
    """What the re-run changes of the verdicts against the baseline ``base``."""
    scale, unit = m.difference_unit
    others = [r for r in rows if r["verdict_study"] != BASELINE]
    flagged = [r for r in others if judged(r["verdict_flagged"]) and r["verdict_flagged"]]
    if flagged:
        return "changes the verdict of " + "; ".join(
            f"{r[key]} against {base} (study: {r['verdict_study']}, Δ "
            f"{scale * r['diff_study']:+.2f}{unit} [{scale * r['diff_study_ci_lo']:.2f}, "
            f"{scale * r['diff_study_ci_hi']:.2f}]; at {times(factor)} the budget Δ "
            f"{scale * r['diff_fx_k']:+.2f}{unit} over {int(r['n'])} seeds)"
            for r in flagged)
    if any(judged(r["verdict_flagged"]) for r in others):
        return "changes no verdict"
    return "changes no verdict it could judge" if others else "has no verdict to change"


def _model_line(rows: list[dict], others: list[str], key: str, base: str, factor: float,
                m: Measure) -> str:
    """One model's sentence: verdicts, ranking, the largest change, what is not judged."""
    scale, unit = m.difference_unit
    where = ", ".join(f"{short(k)}={rows[0][k]}" for k in others)
    text = f"{times(factor)} the budget {_verdict_words(rows, key, base, factor, m)}"
    changed = rows[0]["ranking_changed"]
    if judged(changed) and changed:
        text += (f" and changes the ranking by validation ({rows[0]['ranking_1x']} at 1×, "
                 f"{rows[0]['ranking_fx']} at {times(factor)} the budget)")
    elif judged(changed):
        text += " and not the ranking by validation"
    else:
        text += "; the ranking by validation is not judged (a value lacks it at a budget)"
    finite = [r for r in rows if math.isfinite(r["change_ci_lo"])]  # two seeds or more
    if finite:
        r = max(finite, key=lambda r: abs(r["change"]))
        text += (f"; the largest change of a mean {m.label} is {scale * r['change']:+.2f}{unit} "
                 f"[{fixed(scale * r['change_ci_lo'], 2)}, {fixed(scale * r['change_ci_hi'], 2)}]"
                 f" ({r[key]})")
    missing = [r[key] for r in rows if r["n"] < 2]
    if missing:
        text += f"; fewer than two seeds finished at both budgets for {', '.join(missing)}"
    text = f"{where}: {text}" if where else text[0].upper() + text[1:]
    return f"- {text}."


def _limits(frame, check_seeds: list, values: list[str], m: Measure) -> str:
    """What the check cannot detect."""
    scale, unit = m.difference_unit
    half = [(hi - lo) / 2 for lo, hi in zip(frame["change_ci_lo"], frame["change_ci_hi"])
            if math.isfinite(lo) and math.isfinite(hi)]
    widest = f" (here up to {scale * max(half):.2f}{unit})" if half else ""
    return (f"- What it cannot detect: with {len(check_seeds)} seeds, a change smaller than the "
            f"half-width of its 95 % CI{widest} cannot be told from seed noise; only the re-run "
            f"values ({', '.join(values)}) are checked, on the study's seeds "
            f"{', '.join(str(s) for s in check_seeds)}.")


def section(rec: dict, result: Check | None) -> list[str]:
    """The report's section on the budget check (``[]`` without one)."""
    if result is None:
        return []
    opts = rec["study"]
    bc, metric = opts["budget_check"], opts.get("metric", "test_accuracy")
    factor, seeds = float(bc["factor"]), list(bc["seeds"])
    key, base = next(iter(opts["baseline"].items()))
    others, m = [k for k in opts["keys"] if k != key], measure(metric)
    values = [label(v) for v in bc["values"]]
    lines = [f"## Budget check: {times(factor)} the budget", "", (
        f"The trials with {short(key)} in {', '.join(values)} re-ran at {times(factor)} the "
        f"budget ({_budget_words(rec, factor)}: a cosine decay or fractional piecewise "
        "boundaries stretch over the longer run, a warm-up keeps its length) on the study's "
        f"first {len(seeds)} seeds ({', '.join(str(s) for s in seeds)}), each paired by seed "
        "with its study trial; these trials enter no other table, comparison or ranking. "
        f"Change: the mean {m.label} at {factor:g}× minus that at 1× over the seeds finished "
        "at both budgets, with its 95 % t-interval (n − 1 degrees of freedom); validation: "
        "the mean final validation accuracy over the same seeds, which ranks the re-run "
        f"values at each budget. Rule: {rule(factor, len(seeds))}."), ""]
    if not result.planned:
        return lines + [("No budget trial is in this sweep's record yet (with per-arm tuning "
                         "they are planned once the tuning phase has finished); re-run the "
                         "sweep to train them."), ""]
    if result.unfinished:
        lines += [(f"Not finished: {len(result.unfinished)} trial(s) the check needs "
                   f"({', '.join(result.unfinished)}); the rows use the seeds finished at both "
                   "budgets."), ""]
    if not len(result.frame):
        return lines + ["No trial the check needs has finished yet.", ""]
    frame = result.frame
    lines += [_table(frame, [*others, key], factor, m), ""]
    for g in settings(frame, others):
        rows = [r for _, r in select(frame, others, g).iterrows()]
        lines.append(_model_line(rows, others, key, label(base), factor, m))
    return lines + [_limits(frame, seeds, values, m), ""]
