"""The text of a sweep report: ``report.md`` (results only) and ``timing.md``.

``report.md`` is a function of the trials' results only (no timings, dates or absolute
paths), so an interrupted-then-resumed sweep writes the same ``report.md`` as an
uninterrupted one; training time and images/s go to ``timing.md``. It states the protocol
(data sizes, budget, selection rule, plateau check, power), ranks and selects
configurations by mean validation accuracy and compares them with the baseline on the
study's metric (the test split, read once at the end of each trial).
"""

from __future__ import annotations

import os
from typing import Any

from cnn_jax import analyses, rundir
from cnn_jax.analyses import Measure
from cnn_jax.study import store
from cnn_jax.study.reporting import protocol
from cnn_jax.study.reporting.aggregate import (
    ALPHA,
    PLATEAU_TOLERANCE,
    is_fraction,
    panels,
    ranked,
    with_labels,
)
from cnn_jax.study.reporting.figures import relpath
from cnn_jax.study.reporting.rows import analyses_of, label, measure, short
from cnn_jax.study.reporting.tables import (
    aggregate_table,
    comparison_table,
    timing_table,
    tuning_table,
)
from cnn_jax.study.reporting.text import (
    MEASURED_STATE,
    bullet,
    capitalised,
    p_value,
    pct,
    seed_count,
    table,
    value_range,
)


def _significant(comp, factor, others, baseline, metric) -> list[str]:
    """The sentences on the comparisons ``comp`` of column ``metric`` with the baseline: the
    significant ones, and the power of the others."""
    m = measure(metric)
    scale, unit = m.difference_unit
    base = ", ".join(f"{short(k)}={label(v)}" for k, v in baseline.items())
    direction = "" if m.higher_is_better else " (lower is better)"
    what = f"{m.label}{direction}: " if metric != "test_accuracy" else ""
    sig = comp[comp["p_holm"] < ALPHA]
    lines = []
    if not len(sig):
        lines.append(
            bullet(
                f"{what}no configuration differs significantly from {base} "
                "(paired t-test, Holm-adjusted, α = 0.05)."
            )
        )
    else:
        parts = []
        for _, r in sig.iterrows():
            where = ", ".join(f"{short(k)}={r[k]}" for k in others)
            parts.append(
                f"{r[factor]}{f' ({where})' if where else ''}: Δ {scale * r['diff']:+.2f}{unit}, "
                f"p(Holm) {p_value(r['p_holm'])}"
            )
        lines.append(
            bullet(
                f"{what}significantly different from {base} (paired t-test, Holm-adjusted, "
                "α = 0.05): " + "; ".join(parts) + "."
            )
        )
    rest = comp[~(comp["p_holm"] < ALPHA) & (comp["n"] >= 2)]
    if len(rest):
        ns = value_range(rest["n"].tolist(), lambda v: str(int(v)))
        lines.append(
            f'  Not significant is not "equal": at n = {ns} only a true Δ of at least the '
            f"MDD, {value_range((scale * rest['mdd']).tolist(), lambda v: f'{v:.2f}')}{unit}, would "
            "be detected with 80 % power (α/m); detecting the observed Δ with 80 % power would "
            f"take {value_range(rest['seeds_needed'].tolist(), seed_count)} seeds."
        )
    return lines


def _answer(agg, comp, keys, baseline, metric, measure_comps=None) -> list[str]:
    """Plain sentences that follow from the tables. Rankings and the selected
    ("best") configuration are by mean validation accuracy; their test accuracy is reported,
    never used to choose. ``measure_comps``: ``{measure name: its comparisons}``."""
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
        head = f"- {where + ': ' if where else ''}"
        order = ranked(rs)
        if not order:
            lines.append(
                f"{head}no validation accuracy (no validation split): the configurations are "
                "not ranked, since ranking them on the test split would select on it."
            )
            continue
        lines.append(
            f"{head}ranking by mean validation accuracy: "
            + " > ".join(f"{r[factor]} ({pct(r['val_mean'])}, n = {int(r['n'])})" for r in order)
            + "."
        )
        best = order[0]
        lines.append(
            f"  Selected by validation accuracy: **{best[factor]}**, {pct(best['val_mean'])} % "
            f"(95 % CI [{pct(best['val_ci_lo'])}, {pct(best['val_ci_hi'])}] over "
            f"{best['n']} seeds); its test accuracy is {pct(best['test_mean'])} % (95 % CI "
            f"[{pct(best['test_ci_lo'])}, {pct(best['test_ci_hi'])}])."
        )
    if len(comp):
        lines += _significant(comp, factor, others, baseline, metric)
        for name, comp_m in (measure_comps or {}).items():
            if len(comp_m):
                lines += _significant(with_labels(comp_m, keys), factor, others, baseline, name)
        lines += _wilcoxon_floor(comp)
    return lines


def _wilcoxon_floor(comp) -> list[str]:
    """The smallest p the exact Wilcoxon test can reach in the comparison with the fewest
    non-zero paired differences (it drops zero differences), where that floor is high."""
    n_min = int(comp["n"].min())
    ranked = comp["n_nonzero"]
    k = int(ranked.min())
    if k > 5:
        return []
    zeros = "" if k == n_min else (
        f" (it drops zero differences: the fewest non-zero ones in a comparison are {k}"
        f" of {int(comp.loc[ranked.idxmin(), 'n'])} seeds)")
    floor = f"cannot go below p = {2 / 2**k:.4f}" if k else "has no non-zero difference to rank"
    return [f"- With {n_min} paired seeds the exact two-sided Wilcoxon test {floor}{zeros}; it "
            "is reported as a robustness check."]


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
        f"Metric: `{metric}` of the final state"
        + (f" on {int(test_n.iloc[0]):,} test images" if len(test_n) else "")
        + "; "
        "95 % confidence intervals use the t distribution over seeds; those of a difference Δ "
        "are per comparison (unadjusted), while the verdicts use Holm-adjusted p-values.",
        "",
    ]


def _tuning(rec: dict) -> list[str]:
    """Each arm's tuning trials (mean validation accuracy over the tuning seeds) and the
    value its study seeds then trained with."""
    opts = rec["study"]
    tuned = list(opts.get("tune") or {})
    seeds = ", ".join(str(s) for s in opts.get("tune_seeds", []))
    return [
        "## Tuning per arm",
        "",
        (f"Every arm trained each value of {', '.join(f'`{k}`' for k in tuned)} with the tuning "
         f"seeds ({seeds}; none of them a study seed); the value with the best mean validation "
         "accuracy (of the checkpoint selected by validation; the first listed on ties) is the "
         "one its study seeds trained with, except that a value with a failed or diverged "
         "tuning seed ranks below every value whose tuning seeds all finished (n below). The "
         "test split played no part."),
        "",
        tuning_table(rec),
        "",
    ]


def _comparison(comp, measure_comps, keys: list[str], baseline: dict, metric: str) -> list[str]:
    """The comparisons with the baseline: of the metric, then of each measure in
    ``measure_comps`` (``{name: its comparisons}``) in a subsection of its own."""
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
    for name, comp_m in (measure_comps or {}).items():
        if len(comp_m):
            m = measure(name)
            lines += [
                f"### {capitalised(m.label)} compared with the baseline ({base})",
                "",
                f"The same paired analysis for {m.label}.",
                "",
                comparison_table(comp_m, keys, name),
                "",
            ]
    return lines


def _results(rec: dict, agg, measures: list[Measure]) -> list[str]:
    """The results per configuration: the table, how to read it, and the paragraph of each
    analysis with a measure in ``measures``."""
    opts = rec["study"]
    keys, metric = opts["keys"], opts.get("metric", "test_accuracy")
    lines = [
        "## Results per configuration",
        "",
        aggregate_table(agg, keys, metric, measures),
        "",
        (
            "Validation and test: the final state of each trial (test read once, at the "
            "end); best checkpoint: the one selected by validation accuracy. Plateau: "
            '"yes" if in every seed the mean of its own last two validation evaluations is '
            f"within {100 * PLATEAU_TOLERANCE:.1f} pp of its own best (in brackets: that mean "
            "minus the best in pp, averaged over seeds, and how many seeds had not); with a "
            "learning rate decaying to zero it does not show that the budget suffices."
        ),
        "",
    ]
    shown = {m.name for m in measures}
    for name, options in analyses_of(rec).items():
        a = analyses.get(name)
        if a.describe is not None and any(m.name in shown for m in a.measures):
            lines += [a.describe(options) + " " + MEASURED_STATE[options.get("state", "final")], ""]
    return lines


def _plots(figs: dict[str, str], metric: str, measures: list[Measure]) -> list[str]:
    """The plots written (``figs``), each with its caption."""
    captions = {
        "accuracy": f"{metric} per configuration, mean with 95 % CI over seeds",
        "curves": (
            "learning curves: train accuracy (line), validation accuracy (dots, dashed) and "
            "train loss, mean over seeds"
        ),
        "acc_vs_params": f"{metric} against parameter count",
        "pareto": "accuracy against robustness and cost, with each Pareto front",
        "reliability": "reliability diagrams (accuracy per confidence bin, seeds summed)",
        "equivariance": "feature equivariance distance per pooling site",
    }
    for m in measures:
        captions.setdefault(m.name, f"{m.label} against accuracy")
    lines = ["## Plots", ""]
    for name, cap in captions.items():
        if name in figs:
            lines += [f"![{cap}]({figs[name]})", ""]
    return lines


def _unfinished(df) -> list[str]:
    bad = df[df.status.isin(["diverged", "failed"])]
    if not len(bad):
        return []
    return [
        "## Trials that did not finish",
        "",
        table(
            ["trial", "status", "error"],
            [
                [r["trial"], r["status"], str(r["error"]).replace("|", "/")]
                for _, r in bad.iterrows()
            ],
        ),
        "",
    ]


def report(
    workdir: str,
    rec: dict,
    df,
    agg,
    comp,
    figs: dict[str, str],
    measures: list[Measure] = (),
    measure_comps: dict | None = None,
    budget_check: list[str] = (),
    profile: list[str] = (),
) -> str:
    """The text of ``report.md``. ``workdir``: the sweep directory (the trials' configs are
    read for the protocol); ``rec``: the sweep record; ``df``, ``agg``, ``comp``: the
    trials, their aggregate and the comparisons of the metric with the baseline; ``figs``:
    the plots written; ``measures``: the measures to report (those with values);
    ``measure_comps``: ``{measure name: its comparisons with the baseline}`` (not the
    metric's); ``budget_check``, ``profile``: those sections (after the comparisons, the results)."""
    opts = rec["study"]
    keys, metric = opts["keys"], opts.get("metric", "test_accuracy")
    baseline = opts.get("baseline") or {}
    lines = (
        _header(rec, df, metric)
        + protocol.section(workdir, df, agg, comp, keys)
        + _results(rec, agg, list(measures))
        + list(profile)
    )
    if rec.get("tuning"):
        lines += _tuning(rec)
    if len(comp):
        lines += _comparison(comp, measure_comps, keys, baseline, metric)
    lines += list(budget_check)
    lines += (
        ["## What the numbers say", ""]
        + _answer(agg, comp, keys, baseline, metric, measure_comps)
        + [""]
    )
    if figs:
        lines += _plots(figs, metric, list(measures))
    lines += [
        (
            "Training time and throughput depend on the machine and its load; they are in "
            f"[{rundir.TIMING_MD}]({rundir.TIMING_MD}), the timing columns of "
            f"`{rundir.RESULTS_CSV}` and `{relpath('acc_vs_time')}`, and are kept out of this "
            "file so that it depends only on the results."
        ),
        "",
    ]
    return "\n".join(lines + _unfinished(df))


def timing(agg, keys: list[str], df=None) -> str:
    """The text of ``timing.md``: training throughput apart from the trials' wall time, and
    the time outside the training loop where the trials recorded their wall time."""
    with_wall = bool(agg["wall_seconds"].notna().any()) if "wall_seconds" in agg else False
    text = (
        "# Timing\n\nMeasured on the machine that ran each trial (it varies with its "
        "load). Trials that trained together (vmapped seeds) share their group's time.\n\n"
        "- Training images/s: `images_per_second` of each trial's `summary.json`, training "
        "images per second in the training steps (evaluations and checkpoints excluded; "
        "the first step only where it compiled nothing, i.e. a later seed of a "
        "configuration), as `fit` measures it.\n"
        "- Training loop s: `train_seconds`, the training loop (its steps, the first step's "
        "compilation, the periodic validation and the checkpoints; not the set-up before it "
        "nor the final test evaluation).\n"
    )
    if with_wall:
        text += (
            "- Trial wall s: `wall_seconds` of the trial's `status.json`, from the worker "
            "setting it running to done; outside the training loop: `1 − train_seconds / "
            "wall_seconds` (set-up, compilation outside the loop, final evaluation, "
            "analysis).\n"
        )
    text += "\n" + timing_table(agg, keys, with_wall) + "\n\n"
    if with_wall and df is not None:
        ok = df[(df.status == "done") & df["wall_seconds"].notna() & df["train_seconds"].notna()]
        wall, train = float(ok["wall_seconds"].sum()), float(ok["train_seconds"].sum())
        steps = float(ok["step_seconds"].sum()) if "step_seconds" in ok else 0.0
        if wall > 0:
            text += f"Sweep: {wall:.1f} s of trial wall time over {len(ok)} trials, of which "
        if wall > 0 and steps > 0:
            text += (
                f"{steps:.1f} s in training steps ({train:.1f} s in the training loops): "
                f"outside the training steps {100 * (1 - steps / wall):.0f} % of the trials' "
                "time. (The sweep's own start-up and report come on top: `cnn-jax sweep` "
                "prints the whole run's figure at its end.)\n\n"
            )
        elif wall > 0:
            text += f"{train:.1f} s in training loops: overhead {100 * (1 - train / wall):.0f} %.\n\n"
    else:
        text += (
            "The trials' wall time is not recorded (no `wall_seconds` in their "
            "`status.json`), so the sweep's overhead outside the training loops is not "
            "computed here.\n\n"
        )
    return text + f"![accuracy vs training time]({relpath('acc_vs_time')})\n"
