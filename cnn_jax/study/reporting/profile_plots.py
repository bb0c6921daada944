"""The profile's plots: the Pareto plot of accuracy against robustness and cost, the
reliability diagrams, and feature equivariance per pooling site (``plots/*.png``).

Each reads the trials' analysis details (:mod:`cnn_jax.study.reporting.profile`) and draws
nothing (returns no entry) where the analysis it needs did not run.
"""

from __future__ import annotations

import math

import numpy as np

from cnn_jax.study.reporting.aggregate import CONFIG, panels, select, settings, with_labels
from cnn_jax.study.reporting.figures import save
from cnn_jax.study.reporting.profile import details
from cnn_jax.study.reporting.rows import short


def pareto_front(points: list[tuple[float, float]], lower_x: bool) -> list[int]:
    """Indices of ``points`` ``(x, y)`` not dominated by another (higher ``y`` is better;
    ``x`` lower is better when ``lower_x``, else higher), sorted by ``x``."""
    sign = -1 if lower_x else 1
    keep = []
    for i, (x, y) in enumerate(points):
        if not any((sign * x2 >= sign * x and y2 >= y) and (x2, y2) != (x, y)
                   for j, (x2, y2) in enumerate(points) if j != i):
            keep.append(i)
    return sorted(keep, key=lambda i: points[i][0])


def _inference_ratio(recs: dict, trials) -> float:
    values = [d["inference_ratio"] for d in (details(recs, t, "cost") for t in trials)
              if d and "inference_ratio" in d]
    return float(np.median(values)) if values else math.nan


def _pareto_panel(ax, rows: list, xs: list[float], colors: dict, lower_x: bool, xlabel: str) -> None:
    pts = [(x, 100 * r["test_mean"]) for r, x in zip(rows, xs)]
    ok = [i for i, (x, y) in enumerate(pts) if math.isfinite(x) and math.isfinite(y)]
    for i in ok:
        ax.plot(*pts[i], "o", color=colors[rows[i]["level"]], ms=6)
    front = [ok[i] for i in pareto_front([pts[i] for i in ok], lower_x)]
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-", color="0.4", lw=1)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)


def _pareto(workdir, agg, keys, baseline, x_of, lower_x: bool, xlabel: str, name: str) -> dict:
    """Test accuracy against ``x_of(row)`` per configuration, a panel per setting of the
    other keys, each panel's Pareto front drawn (``plots/<name>.png``)."""
    import matplotlib.pyplot as plt

    factor, others = panels(keys, baseline)
    agg = with_labels(agg[agg.n > 0], keys)
    if not len(agg) or factor == CONFIG:
        return {}
    xs = {r[CONFIG]: x_of(r) for _, r in agg.iterrows()}
    if not any(math.isfinite(v) for v in xs.values()):
        return {}
    groups, levels = settings(agg, others), list(dict.fromkeys(agg[factor]))
    colors = {lv: plt.get_cmap("tab10")(i % 10) for i, lv in enumerate(levels)}
    fig, axes = plt.subplots(1, len(groups), figsize=(4.8 * len(groups), 3.8), squeeze=False)
    for gi, g in enumerate(groups):
        rows = [dict(r, level=r[factor]) for _, r in select(agg, others, g).iterrows()]
        _pareto_panel(axes[0][gi], rows, [xs[r[CONFIG]] for r in rows], colors, lower_x, xlabel)
        axes[0][gi].set_title(", ".join(map(str, g)) or "all", fontsize=9)
    axes[0][0].set_ylabel("test accuracy (%)")
    for lv, c in colors.items():
        axes[0][-1].plot([], [], "o", color=c, label=str(lv))
    axes[0][-1].legend(fontsize=7, title=short(factor))
    fig.suptitle(f"Accuracy against {xlabel} (means over seeds; line: Pareto front)", fontsize=10)
    out: dict = {}
    save(fig, workdir, name, out)
    return out


def pareto(workdir: str, agg, keys: list[str], baseline: dict) -> dict:
    """``pareto.png`` (``report.md``): test accuracy against mean corruption accuracy."""
    if "corruption_accuracy_mean" not in agg:
        return {}
    return _pareto(workdir, agg, keys, baseline, lambda r: 100 * r["corruption_accuracy_mean"],
                   False, "mean corruption accuracy (%)", "pareto")


def pareto_cost(workdir: str, df, agg, recs: dict, keys: list[str], baseline: dict) -> dict:
    """``pareto_cost.png`` (``timing.md``: it depends on timings): test accuracy against the
    inference time relative to the baseline's model (the ``cost`` analysis's ratio, median
    over seeds)."""
    if not len(df):
        return {}
    dfl = with_labels(df[df.status == "done"], keys)
    if not len(dfl):
        return {}
    return _pareto(workdir, agg, keys, baseline,
                   lambda r: _inference_ratio(recs, dfl[dfl[CONFIG] == r[CONFIG]].trial), True,
                   "inference time / baseline", "pareto_cost")


def _summed_bins(recs: dict, trials) -> dict | None:
    total = None
    for t in trials:
        d = details(recs, t, "calibration")
        if not d:
            continue
        arr = {k: np.asarray(v, float) for k, v in d.items()}
        total = arr if total is None else {k: total[k] + arr[k] for k in total}
    return total


def reliability(workdir: str, df, keys: list[str], baseline: dict, recs: dict) -> dict:
    """``reliability.png``: a reliability diagram per configuration (the seeds' bins summed:
    accuracy per confidence bin against the diagonal)."""
    import matplotlib.pyplot as plt

    factor, others = panels(keys, baseline)
    dfl = with_labels(df[df.status == "done"], keys)
    if factor == CONFIG or not len(dfl) or not any(details(recs, t, "calibration") for t in dfl.trial):
        return {}
    groups, levels = settings(dfl, others), list(dict.fromkeys(dfl[factor]))
    fig, axes = plt.subplots(len(groups), len(levels), figsize=(1.9 * len(levels), 2.0 * len(groups)),
                             squeeze=False, sharex=True, sharey=True)
    for gi, g in enumerate(groups):
        for li, lv in enumerate(levels):
            ax, sub = axes[gi][li], select(dfl[dfl[factor] == lv], others, g)
            bins = _summed_bins(recs, sub.trial)
            ax.plot([0, 1], [0, 1], "--", color="0.6", lw=0.8)
            if bins is not None:
                n = bins["count"]
                edges = np.linspace(0, 1, len(n) + 1)
                acc = np.divide(bins["correct"], n, out=np.zeros_like(n), where=n > 0)
                ax.bar(edges[:-1], acc, width=np.diff(edges), align="edge", color="C0",
                       alpha=0.8, edgecolor="white", lw=0.3)
            ax.set_title(f"{lv}" + (f"\n{', '.join(map(str, g))}" if g and li == 0 else ""),
                         fontsize=7)
            ax.tick_params(labelsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("confidence (top-1)", fontsize=7)
    for row in axes:
        row[0].set_ylabel("accuracy", fontsize=7)
    fig.tight_layout()
    save(fig, workdir, "reliability", out := {})
    return out


def equivariance(workdir: str, df, keys: list[str], baseline: dict, recs: dict) -> dict:
    """``equivariance.png``: feature equivariance distance per pooling site, mean over seeds,
    one line per level of the compared factor, a panel per setting of the other keys."""
    import matplotlib.pyplot as plt

    factor, others = panels(keys, baseline)
    dfl = with_labels(df[df.status == "done"], keys)
    if factor == CONFIG or not len(dfl) or not any(details(recs, t, "equivariance") for t in dfl.trial):
        return {}
    groups, levels = settings(dfl, others), list(dict.fromkeys(dfl[factor]))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.0 * len(groups), 3.6), squeeze=False)
    for gi, g in enumerate(groups):
        ax = axes[0][gi]
        for li, lv in enumerate(levels):
            sub = select(dfl[dfl[factor] == lv], others, g)
            sites = [details(recs, t, "equivariance") for t in sub.trial]
            sites = [[s["distance"] for s in d["sites"]] for d in sites if d]
            if sites and len({len(s) for s in sites}) == 1:
                mean = np.mean(sites, axis=0)
                ax.plot(range(1, len(mean) + 1), mean, "o-", color=f"C{li % 10}", label=str(lv), ms=4)
        ax.set_xlabel("pooling site")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_ylabel("feature distance (0: equivariant)")
        ax.set_title(", ".join(map(str, g)) or "all", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, title=short(factor))
    fig.suptitle("Shift equivariance after each pooling site (Zhang 2019), mean over seeds")
    save(fig, workdir, "equivariance", out := {})
    return out


def all_of(workdir: str, df, agg, recs: dict, keys: list[str], baseline: dict) -> dict:
    """The profile's plots for ``report.md`` (``{name: path}``; not the cost plot, which
    depends on timings and goes to ``timing.md``)."""
    out = pareto(workdir, agg, keys, baseline)
    out.update(reliability(workdir, df, keys, baseline, recs))
    out.update(equivariance(workdir, df, keys, baseline, recs))
    return out
