"""Study results: ``results.csv``, per-configuration statistics, paired comparisons with a
baseline, ``report.md``, ``timing.md`` and plots.

The entry point of the report; the work is done by

- :mod:`cnn_jax.study.reporting.rows`: one row per trial, read from the sweep directory, and
  the measures of the sweep's analyses (:mod:`cnn_jax.analyses`), a column each;
- :mod:`cnn_jax.study.reporting.aggregate`: statistics over seeds and comparisons with the baseline;
- :mod:`cnn_jax.study.reporting.budget`: the budget check (a longer budget's effect);
- :mod:`cnn_jax.study.reporting.figures`: the plots;
- :mod:`cnn_jax.study.reporting.markdown`: the text of ``report.md`` and ``timing.md``;
  :mod:`cnn_jax.study.reporting.protocol` its protocol section,
  :mod:`cnn_jax.study.reporting.tables` its tables, :mod:`cnn_jax.study.reporting.text` the
  number formats they share.

``report.md`` is a function of the trials' results only (no timings, dates or absolute
paths), so an interrupted-then-resumed sweep writes the same ``report.md`` as an
uninterrupted one. It states the protocol (split sizes, budget, selection rule, plateau
check, power), ranks and selects configurations by mean validation accuracy, and compares
them with the baseline on the study's metric (default ``test_accuracy``: the test split,
read once at the end of each trial). Everything that depends on the machine's speed
(training time, images/s, wall time) goes to ``timing.md``, the :data:`TIMING_COLUMNS` of ``results.csv``
and ``plots/acc_vs_time.png``.
"""

from __future__ import annotations

import os

from cnn_jax import rundir
from cnn_jax.study.design import BUDGET_PHASE
from cnn_jax.study.reporting import budget, markdown, profile, profile_plots, protocol, rows
from cnn_jax.study.reporting.aggregate import aggregate, comparisons
from cnn_jax.study.reporting.figures import plots
from cnn_jax.study.reporting.rows import TIMING_COLUMNS, collect
from cnn_jax.study.reporting.tables import aggregate_table, comparison_table

__all__ = [
    "TIMING_COLUMNS",
    "aggregate",
    "aggregate_table",
    "collect",
    "comparison_table",
    "comparisons",
    "plots",
    "preload",
    "write",
]


def preload() -> None:
    """Imports what writing the report needs (pandas, scipy.stats, matplotlib: 1.2 s
    measured in a fresh process), so that a sweep can do it while its workers start (one
    core idle) instead of after its last trial. Only a head start: errors are ignored."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
        import pandas  # noqa: F401
        import scipy.stats  # noqa: F401
    except Exception:  # noqa: BLE001  (the report imports them again and says what fails)
        pass


def write(workdir: str, *, with_plots: bool = True, strict_numerics: bool = False) -> dict:
    """Writes ``results.csv``, ``report.md``, ``timing.md`` and (unless ``with_plots`` is
    false) ``plots/*.png``; returns their paths and the two main tables as text.

    Besides accuracy the report covers the measures of the sweep's analyses
    (:func:`cnn_jax.study.reporting.rows.measures_of`; the experiment files its planner
    imported are imported first, so that analyses registered there are known): each is a
    column of ``results.csv`` and, where some trial has a value, a pair of columns of the
    results table, its own comparison with the baseline (unless it is the metric) and a
    plot against the metric. With a budget check (``Study(budget_check=...)``) its result,
    a row per model and re-run value (:func:`cnn_jax.study.reporting.budget.check`), goes
    to ``budget_check.csv`` and its section of ``report.md``.

    ``strict_numerics``: if the finished trials ran in more than one numeric environment
    (:func:`cnn_jax.study.reporting.protocol.numeric_environments`), a one-line
    :class:`UserError` before anything is written (the previous report stays)."""
    rec = rows.load_sweep(workdir)
    if strict_numerics:
        protocol.require_one_environment(workdir, [t["name"] for t in rec["trials"]])
    opts = rec["study"]
    keys, metric = opts["keys"], opts.get("metric", "test_accuracy")
    baseline = opts.get("baseline") or {}
    measures = rows.measures_of(rec)
    df = collect(workdir, rec)
    csv_path = rundir.path(workdir, rundir.RESULTS_CSV)
    df.to_csv(csv_path, index=False)
    agg = aggregate(df, keys, metric, workdir=workdir, measures=measures)
    comp = comparisons(df, keys, baseline, metric)
    shown = [m for m in measures if m.name in df and df[m.name].notna().any()]
    measure_comps = {
        m.name: comparisons(df, keys, baseline, m.name) for m in shown if m.name != metric
    }
    figs = plots(workdir, df, agg, keys, baseline, metric, measures) if with_plots else {}
    recs = profile.records(workdir, df)
    if with_plots:
        figs.update(profile_plots.all_of(workdir, df, agg, recs, keys, baseline))
    check = budget.check(rec, df, collect(workdir, rec, phase=BUDGET_PHASE), comp)
    if check is not None:
        check.frame.to_csv(rundir.path(workdir, rundir.BUDGET_CSV), index=False)
    report_path = rundir.path(workdir, rundir.REPORT_MD)
    rundir.write_text(
        report_path, markdown.report(workdir, rec, df, agg, comp, figs, shown, measure_comps,
                                     budget.section(rec, check),
                                     profile.section(df, agg, recs, keys, baseline, metric, shown)
                                     + profile.corruption_section(df, recs, keys, baseline))
    )
    timing_path = rundir.path(workdir, rundir.TIMING_MD)
    cost_fig = profile_plots.pareto_cost(workdir, df, agg, recs, keys, baseline) if with_plots else {}
    rundir.write_text(timing_path, markdown.timing(agg, keys, df)
                      + profile.cost_section(df, recs, keys, baseline, cost_fig.get("pareto_cost")))
    return {
        "results": csv_path,
        "report": report_path,
        "timing": timing_path,
        "budget": rundir.path(workdir, rundir.BUDGET_CSV) if check is not None else None,
        "plots": [os.path.join(workdir, p) for p in figs.values()],
        "table": aggregate_table(agg, keys, metric, shown),
        "comparison": comparison_table(comp, keys, metric) if len(comp) else "",
    }
