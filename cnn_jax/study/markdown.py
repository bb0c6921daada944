"""The text of a sweep report: ``report.md`` (results only) and ``timing.md``.

``report.md`` is a function of the trials' results only (no timings, dates or absolute
paths), so an interrupted-then-resumed sweep writes the same ``report.md`` as an
uninterrupted one; training time and images/s go to ``timing.md``.
"""

from __future__ import annotations

import math
import os
from typing import Any

from cnn_jax import rundir
from cnn_jax.study import store
from cnn_jax.study.analysis import ALPHA, is_fraction, panels, verdict, with_labels
from cnn_jax.study.figures import relpath
from cnn_jax.study.results import label, short

# ----------------------------------------------------------------------------- numbers


def _pct(x: float, digits: int = 2) -> str:
    return "-" if not math.isfinite(x) else f"{100 * x:.{digits}f}"


def _val(x: float, frac: bool, digits: int = 2) -> str:
    return _pct(x, digits) if frac else ("-" if not math.isfinite(x) else f"{x:.4f}")


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _f(x: float, digits: int = 2) -> str:
    if not math.isfinite(x):
        return "inf" if x == math.inf else "-inf" if x == -math.inf else "-"
    return f"{x:.{digits}f}"


def _name(metric: str) -> str:
    return metric.replace("_", " ")


def _sentence(text: str) -> str:
    """A bullet point starting with a capital letter."""
    return f"- {text[0].upper()}{text[1:]}"


# ----------------------------------------------------------------------------- tables


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["l"] * len(header)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _keyed_table(frame, keys: list[str], header: list[str], cells, align: list[str]) -> str:
    """A table of ``frame``: a left-aligned column per swept key, then the columns
    ``header`` aligned as ``align``; ``cells(row)`` gives a row's cells after its keys."""
    return _table(
        [short(k) for k in keys] + header,
        [[str(r[k]) for k in keys] + cells(r) for _, r in frame.iterrows()],
        ["l"] * len(keys) + align,
    )


def aggregate_table(agg, keys: list[str], metric: str, shift: bool) -> str:
    """Per configuration: seeds done, mean ± sd and 95 % CI of ``metric``, best, (shift
    consistency,) parameters and final train loss."""
    frac = is_fraction(metric)
    unit = " %" if frac else ""
    header = ["n", f"{_name(metric)}{unit} mean ± sd", "95 % CI", f"best{unit}"]
    if shift:
        header += ["shift consistency %", "95 % CI (shift)"]
    header += ["params", "final train loss"]

    def cells(r):
        n = (
            f"{r['n']}/{r['trials']}"
            + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
            + (f" ({r['failed']} failed)" if r["failed"] else "")
        )
        row = [
            n,
            f"{_val(r['mean'], frac)} ± {_val(r['std'], frac)}",
            f"[{_val(r['ci_lo'], frac)}, {_val(r['ci_hi'], frac)}]",
            _val(r["best_mean"], frac),
        ]
        if shift:
            row += [
                _pct(r["shift_mean"], 1),
                f"[{_pct(r['shift_ci_lo'], 1)}, {_pct(r['shift_ci_hi'], 1)}]",
            ]
        return row + [
            "-" if not math.isfinite(r["params"]) else f"{int(r['params']):,}",
            _f(r["train_loss"], 4),
        ]

    return _keyed_table(agg, keys, header, cells, ["r"] * len(header))


def comparison_table(comp, keys: list[str], metric: str) -> str:
    """Per configuration against the baseline: Δ with its CI, the tests, d_z, verdict."""
    frac = is_fraction(metric)
    scale = 100 if frac else 1
    header = [
        "n",
        f"Δ{' (pp)' if frac else ''}",
        "95 % CI of Δ",
        "t",
        "p (t-test)",
        "p (Wilcoxon)",
        "p (Holm)",
        "Cohen's d_z",
        "verdict",
    ]

    def cells(r):
        return [
            str(r["n"]),
            f"{_f(scale * r['diff'], 2):>6}",
            f"[{_f(scale * r['diff_lo'], 2)}, {_f(scale * r['diff_hi'], 2)}]",
            _f(r["t"], 2),
            _p(r["p_t"]),
            _p(r["p_wilcoxon"]),
            _p(r["p_holm"]),
            _f(r["cohens_d"], 2),
            verdict(r),
        ]

    return _keyed_table(comp, keys, header, cells, ["r"] * 8 + ["l"])


def timing_table(agg, keys: list[str]) -> str:
    """Per configuration: seeds done, mean training time and images/s."""
    return _keyed_table(
        agg,
        keys,
        ["n", "train seconds (mean)", "images/s (mean)"],
        lambda r: [str(r["n"]), _f(r["train_seconds"], 1), _f(r["images_per_second"], 0)],
        ["r"] * 3,
    )


# ----------------------------------------------------------------------------- sentences


def _significant(comp, factor, others, baseline, metric) -> list[str]:
    frac = is_fraction(metric)
    base = ", ".join(f"{short(k)}={label(v)}" for k, v in baseline.items())
    what = f"{_name(metric)}: " if metric != "test_accuracy" else ""
    sig = comp[comp["p_holm"] < ALPHA]
    if not len(sig):
        return [
            _sentence(
                f"{what}no configuration differs significantly from {base} "
                "(paired t-test, Holm-adjusted, α = 0.05)."
            )
        ]
    parts = []
    for _, r in sig.iterrows():
        where = ", ".join(f"{short(k)}={r[k]}" for k in others)
        d = 100 * r["diff"] if frac else r["diff"]
        parts.append(
            f"{r[factor]}{f' ({where})' if where else ''}: Δ {d:+.2f}"
            f"{' pp' if frac else ''}, p(Holm) {_p(r['p_holm'])}"
        )
    return [
        _sentence(
            f"{what}significantly different from {base} (paired t-test, Holm-adjusted, "
            "α = 0.05): " + "; ".join(parts) + "."
        )
    ]


def _answer(agg, comp, keys, baseline, metric, comp_shift=None) -> list[str]:
    """Plain sentences that follow from the tables."""
    frac = is_fraction(metric)
    factor, others = panels(keys, baseline)
    agg, comp = with_labels(agg, keys), with_labels(comp, keys)
    lines = []
    done = agg[agg.n > 0]
    if not len(done):
        return ["No trial has finished yet."]
    groups: dict[tuple, Any] = {}
    for _, r in done.iterrows():
        groups.setdefault(tuple(r[k] for k in others), []).append(r)
    for g, rs in groups.items():
        where = ", ".join(f"{short(k)}={v}" for k, v in zip(others, g))
        ranked = sorted(rs, key=lambda r: (-r["mean"], str(r[factor])))
        order = " > ".join(f"{r[factor]} ({_val(r['mean'], frac)})" for r in ranked)
        lines.append(f"- {where + ': ' if where else ''}ranking by mean {_name(metric)}: {order}.")
        best = ranked[0]
        unit = " %" if frac else ""
        lines.append(
            f"  Best: **{best[factor]}**, "
            f"{_val(best['mean'], frac)}{unit} (95 % CI [{_val(best['ci_lo'], frac)}, "
            f"{_val(best['ci_hi'], frac)}] over {best['n']} seeds)."
        )
    if len(comp):
        lines += _significant(comp, factor, others, baseline, metric)
        if comp_shift is not None and len(comp_shift):
            lines += _significant(
                with_labels(comp_shift, keys), factor, others, baseline, "shift_consistency"
            )
        n_min = int(comp["n"].min())
        if n_min <= 5:
            lines.append(
                f"- With {n_min} paired seeds the exact two-sided Wilcoxon test cannot go "
                f"below p = {2 / 2**n_min:.4f}; it is reported as a robustness check."
            )
    return lines


# ----------------------------------------------------------------------------- files


def _header(rec: dict, df, metric: str) -> list[str]:
    """Title, question, and what was run: experiment, overrides, trials, seeds, metric."""
    opts = rec["study"]
    n = len(df)
    counts = {s: int((df.status == s).sum()) for s in ("done", "diverged", "failed")}
    unfinished = n - sum(counts.values())
    overrides = [
        f"`--config.{k}={v}`" for k, v in rec.get("overrides", []) if k not in store.HASH_IGNORE
    ]
    test_n = df["test_count"].dropna()
    lines = [f"# {opts.get('title') or 'Study: ' + os.path.basename(rec['experiment'])}", ""]
    if opts.get("question"):
        lines += [opts["question"].strip(), ""]
    seeds = opts["seeds"]
    return lines + [
        f"Experiment `{rec['experiment']}`"
        + (f" with {' '.join(overrides)}" if overrides else "")
        + ".",
        f"{n} trials ({n // max(len(seeds), 1)} configurations × {len(seeds)} seeds "
        f"{label(tuple(seeds))}): {counts['done']} done, {counts['diverged']} diverged, "
        f"{counts['failed']} failed" + (f", {unfinished} not finished" if unfinished else "") + ".",
        f"Metric: `{metric}` at the end of training"
        + (f" on {int(test_n.iloc[0])} test images" if len(test_n) else "")
        + "; "
        "95 % confidence intervals use the t distribution over seeds.",
        "",
    ]


def _comparison(comp, comp_shift, keys: list[str], baseline: dict, metric: str) -> list[str]:
    base = ", ".join(f"{k} = {label(v)}" for k, v in baseline.items())
    lines = [
        f"## Comparison with the baseline ({base})",
        "",
        "Paired by seed: trials with the same seed share the data order and the "
        "initialisation of every layer they have in common. Δ = configuration − baseline"
        + (" in percentage points" if is_fraction(metric) else "")
        + "; p-values are two-sided; "
        "Holm adjusts the t-test p-values for the number of comparisons made at the same "
        "values of the other swept keys (e.g. per model); the verdict uses it at α = 0.05; "
        "Cohen's d_z = mean(Δ) / sd(Δ).",
        "",
        comparison_table(comp, keys, metric),
        "",
    ]
    if comp_shift is not None and len(comp_shift):
        lines += [
            f"### Shift consistency compared with the baseline ({base})",
            "",
            "The same paired analysis for shift consistency.",
            "",
            comparison_table(comp_shift, keys, "shift_consistency"),
            "",
        ]
    return lines


def report(rec: dict, df, agg, comp, comp_shift, figs: dict[str, str], shift: bool) -> str:
    """The text of ``report.md``. ``rec``: the sweep record; ``df``, ``agg``, ``comp``,
    ``comp_shift``: the trials, their aggregate and the comparisons with the baseline (of
    the metric and of shift consistency, or ``None``); ``figs``: the plots written;
    ``shift``: whether to report shift consistency."""
    opts = rec["study"]
    keys, metric = opts["keys"], opts.get("metric", "test_accuracy")
    baseline = opts.get("baseline") or {}
    table = aggregate_table(agg, keys, metric, shift)
    lines = _header(rec, df, metric) + ["## Results per configuration", "", table, ""]
    if shift:
        lines += [
            (
                f"Shift consistency: fraction of test images whose predicted class is the same "
                f"under two random translations of up to ±{opts['shift_consistency']} pixels "
                "(zero fill; the same shifts for every trial), as in Zhang (2019), "
                "*Making Convolutional Networks Shift-Invariant Again*. Read it next to "
                "accuracy: a model that predicts few classes is consistent trivially."
            ),
            "",
        ]
    if len(comp):
        lines += _comparison(comp, comp_shift, keys, baseline, metric)
    lines += (
        ["## What the numbers say", ""]
        + _answer(agg, comp, keys, baseline, metric, comp_shift)
        + [""]
    )
    if figs:
        lines += ["## Plots", ""]
        captions = {
            "accuracy": f"{metric} per configuration, mean with 95 % CI over seeds",
            "curves": (
                "learning curves: train accuracy (line), test accuracy (dots) and train loss, "
                "mean over seeds"
            ),
            "acc_vs_params": f"{metric} against parameter count",
            "shift_consistency": "shift consistency against accuracy",
        }
        for name, cap in captions.items():
            if name in figs:
                lines += [f"![{cap}]({figs[name]})", ""]
    lines += [
        (
            "Training time and throughput depend on the machine and its load; they are in "
            f"[{rundir.TIMING_MD}]({rundir.TIMING_MD}), the timing columns of "
            f"`{rundir.RESULTS_CSV}` and `{relpath('acc_vs_time')}`, and are kept out of this "
            "file so that it depends only on the results."
        ),
        "",
    ]
    bad = df[df.status.isin(["diverged", "failed"])]
    if len(bad):
        lines += [
            "## Trials that did not finish",
            "",
            _table(
                ["trial", "status", "error"],
                [
                    [r["trial"], r["status"], str(r["error"]).replace("|", "/")]
                    for _, r in bad.iterrows()
                ],
            ),
            "",
        ]
    return "\n".join(lines)


def timing(agg, keys: list[str]) -> str:
    """The text of ``timing.md``."""
    return (
        "# Timing\n\nMeasured on the machine that ran each trial (it varies with its "
        "load). Trials that trained together (vmapped seeds) share their group's time.\n\n"
        + timing_table(agg, keys)
        + f"\n\n![accuracy vs training time]({relpath('acc_vs_time')})\n"
    )
