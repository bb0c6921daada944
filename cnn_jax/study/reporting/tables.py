"""The tables of a sweep report (markdown): per-configuration aggregates, comparisons with
the baseline (with power), timings, tuning; their number formats are
:mod:`cnn_jax.study.reporting.text`."""

from __future__ import annotations

import math

from cnn_jax.analyses import Measure
from cnn_jax.study.reporting.aggregate import is_fraction, judged, verdict
from cnn_jax.study.reporting.rows import label, measure, short
from cnn_jax.study.reporting.text import (
    column_words,
    fixed,
    p_value,
    pct,
    seed_count,
    table,
    value,
)


def keyed_table(frame, keys: list[str], header: list[str], cells, align: list[str]) -> str:
    """A table of ``frame``: a left-aligned column per swept key, then the columns
    ``header`` aligned as ``align``; ``cells(row)`` gives a row's cells after its keys."""
    return table(
        [short(k) for k in keys] + header,
        [[str(r[k]) for k in keys] + cells(r) for _, r in frame.iterrows()],
        ["l"] * len(keys) + align,
    )


def _plateau_cell(r) -> str:
    """``yes (-0.05)``, or ``no (-0.40; 2 of 8 seeds)`` with the seeds that had not."""
    if not judged(r.get("plateaued")):
        return "-"
    gap = 100 * r["plateau_gap"]
    shown = f"{0.0 if abs(gap) < 5e-3 else gap:.2f}"
    if r["plateaued"]:
        return f"yes ({shown})"
    return f"no ({shown}; {int(r['plateau_not'])} of {int(r['plateau_seeds'])} seeds)"


def measure_header(m: Measure) -> list[str]:
    """The aggregate table's pair of columns for measure ``m``: its mean and 95 % CI."""
    return [f"{m.label} %" if m.fraction else m.label, f"95 % CI ({m.short_label})"]


def _measure_cells(r, m: Measure) -> list[str]:
    lo, hi = r[f"{m.name}_ci_lo"], r[f"{m.name}_ci_hi"]
    return [
        value(r[f"{m.name}_mean"], m.fraction, 1),
        f"[{value(lo, m.fraction, 1)}, {value(hi, m.fraction, 1)}]",
    ]


def aggregate_table(agg, keys: list[str], metric: str, measures: list[Measure] = ()) -> str:
    """Per configuration: seeds done; mean ± sd and 95 % CI of the final validation and test
    accuracy (and of ``metric`` if it is neither); the best-by-validation checkpoint's
    validation / test accuracy; mean and 95 % CI of each of ``measures`` (columns of
    :func:`~cnn_jax.study.reporting.aggregate.aggregate`); parameters; final train loss; the
    plateau check."""
    frac = is_fraction(metric)
    unit = " %" if frac else ""
    own = metric not in ("validation_accuracy", "test_accuracy")
    header = [
        "n",
        "validation % mean ± sd",
        "95 % CI (validation)",
        "test % mean ± sd",
        "95 % CI (test)",
    ]
    if own:
        header += [f"{column_words(metric)}{unit} mean ± sd", f"95 % CI ({column_words(metric)})"]
    header += ["best checkpoint: validation / test %"]
    for m in measures:
        header += measure_header(m)
    header += ["params", "final train loss", "plateau (last two − best, pp, mean over seeds)"]

    def est(r, prefix, fr):
        return [
            f"{value(r[prefix + 'mean'], fr)} ± {value(r[prefix + 'std'], fr)}",
            f"[{value(r[prefix + 'ci_lo'], fr)}, {value(r[prefix + 'ci_hi'], fr)}]",
        ]

    def cells(r):
        n = (
            f"{r['n']}/{r['trials']}"
            + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
            + (f" ({r['failed']} failed)" if r["failed"] else "")
        )
        row = [n, *est(r, "val_", True), *est(r, "test_", True)]
        if own:
            row += est(r, "", frac)
        row.append(f"{pct(r['best_val_mean'])} / {pct(r['best_test_mean'])}")
        for m in measures:
            row += _measure_cells(r, m)
        return row + [
            "-" if not math.isfinite(r["params"]) else f"{int(r['params']):,}",
            fixed(r["train_loss"], 4),
            _plateau_cell(r),
        ]

    return keyed_table(agg, keys, header, cells, ["r"] * len(header))


def comparison_table(comp, keys: list[str], metric: str) -> str:
    """Per configuration against the baseline: Δ with its CI, the tests, d_z, the power
    (minimum detectable difference at 80 % power, seeds needed for the observed Δ) and the
    verdict (``metric``: the column compared, shown and judged as
    :func:`~cnn_jax.study.reporting.rows.measure` says)."""
    m = measure(metric)
    scale = 100 if m.fraction else 1
    pp = " (pp)" if m.fraction else ""
    header = [
        "n",
        f"Δ{pp}",
        "95 % CI of Δ (unadjusted)",
        "t",
        "p (t-test)",
        "p (Wilcoxon)",
        "p (Holm)",
        "Cohen's d_z",
        f"MDD{pp}",
        "seeds for Δ",
        "verdict",
    ]

    def cells(r):
        return [
            f"{r['n']} of {r['seeds']}" if "seeds" in r else str(r["n"]),
            f"{fixed(scale * r['diff'], 2):>6}",
            f"[{fixed(scale * r['diff_lo'], 2)}, {fixed(scale * r['diff_hi'], 2)}]",
            fixed(r["t"], 2),
            p_value(r["p_t"]),
            p_value(r["p_wilcoxon"]),
            p_value(r["p_holm"]),
            fixed(r["cohens_d"], 2),
            fixed(scale * r["mdd"], 2),
            seed_count(r["seeds_needed"]),
            verdict(
                r,
                scale=scale,
                unit=" pp" if m.fraction else "",
                higher_is_better=m.higher_is_better,
            ),
        ]

    return keyed_table(comp, keys, header, cells, ["r"] * 10 + ["l"])


def timing_table(agg, keys: list[str], with_wall: bool) -> str:
    """Per configuration: seeds done, training images/s, training-loop seconds, and (where
    recorded) the trials' wall seconds and the share of it outside the training loop."""
    header = ["n", "training images/s (mean)", "training loop s (mean)"]
    if with_wall:
        header += ["trial wall s (mean)", "outside the training loop"]

    def cells(r):
        row = [str(r["n"]), fixed(r["images_per_second"], 0), fixed(r["train_seconds"], 1)]
        if with_wall:
            w, t = r["wall_seconds"], r["train_seconds"]
            share = 1 - t / w if math.isfinite(w) and math.isfinite(t) and w > 0 else math.nan
            row += [fixed(w, 1), "-" if not math.isfinite(share) else f"{100 * share:.0f} %"]
        return row

    return keyed_table(agg, keys, header, cells, ["r"] * len(header))


def tuning_table(rec: dict) -> str:
    """Each arm's tuning trials: the tuned values, their mean validation accuracy over the
    tuning seeds, and which value was chosen."""
    opts = rec["study"]
    keys, tuned = opts["keys"], list(opts.get("tune") or {})
    rows = [
        [*(label(r["arm"].get(k)) for k in keys), *(label(r["tuned"].get(k)) for k in tuned),
         f"{r['n']} of {r['seeds']}" if "seeds" in r else str(r["n"]),
         pct(r["mean_validation_accuracy"]) if r["mean_validation_accuracy"] is not None else "-",
         "**chosen**" if r["chosen"] else ""]
        for r in rec["tuning"]["table"]
    ]
    header = [*(short(k) for k in keys), *(f"{short(k)} (tuned)" for k in tuned), "seeds finished",
              "validation % (mean)", ""]
    return table(header, rows)
