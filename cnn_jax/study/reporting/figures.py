"""The plots of a sweep report (``plots/*.png``, matplotlib with the Agg backend).

Each plot compares the levels of one factor (see :func:`cnn_jax.study.reporting.aggregate.panels`),
one series or panel per setting of the other swept keys. The PNGs carry no software or date
metadata, so the same results give the same files.
"""

from __future__ import annotations

import dataclasses
import math
import os

from cnn_jax import rundir
from cnn_jax.analyses import Measure
from cnn_jax.study.reporting.aggregate import (
    CONFIG,
    is_fraction,
    level,
    mean_curves,
    panels,
    select,
    settings,
    with_labels,
)
from cnn_jax.study.reporting.rows import measures_in, short

MARKERS = "osD^vP*X"


def relpath(name: str) -> str:
    """The path of plot ``name`` (without ``.png``) relative to the sweep directory."""
    return os.path.join(rundir.PLOTS, f"{name}.png")


def save(fig, workdir: str, name: str, out: dict) -> None:
    """Writes ``fig`` as plot ``name`` of ``workdir`` (no software or date metadata, so the
    same results give the same file), closes it and records its path in ``out[name]``."""
    import matplotlib.pyplot as plt

    path = relpath(name)
    os.makedirs(os.path.join(workdir, rundir.PLOTS), exist_ok=True)
    fig.savefig(os.path.join(workdir, path), dpi=110, bbox_inches="tight",
                metadata={"Software": None})
    plt.close(fig)
    out[name] = path


def _ci_err(r, scale: float) -> tuple[float, float]:
    """The error bar below and above ``r``'s mean: its 95 % CI (0 where it is undefined)."""
    lo = scale * (r["mean"] - r["ci_lo"]) if math.isfinite(r["ci_lo"]) else 0
    hi = scale * (r["ci_hi"] - r["mean"]) if math.isfinite(r["ci_hi"]) else 0
    return lo, hi


def _dodged(xs: list[float], log: bool, spread: float = 0.012) -> list[float]:
    """``xs`` with equal values moved apart symmetrically by ``spread`` of the axis span
    (in log space on a log axis), in their order; distinct values stay where they are."""
    import numpy as np

    t = np.log10(np.maximum(xs, 1e-12)) if log else np.asarray(xs, float)
    span = (np.nanmax(t) - np.nanmin(t)) or 1.0
    out = t.copy()
    for v in dict.fromkeys(t.tolist()):
        same = np.flatnonzero(t == v)
        out[same] = v + spread * span * (np.arange(len(same)) - (len(same) - 1) / 2)
    return (10**out if log else out).tolist()


def _level_legend(ax, colors: dict, title: str) -> None:
    """A legend naming each level by its colour (markers name the other settings)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="s", linestyle="", color=c, label=str(lv))
               for lv, c in colors.items()]
    first = ax.legend(handles=handles, title=title, fontsize=7, title_fontsize=7,
                      loc="lower right", ncol=2 if len(handles) > 4 else 1)
    ax.add_artist(first)  # kept when finish() adds the legend of the other settings


@dataclasses.dataclass
class _Figures:
    """What every plot of a report shares: the trials (``df``) and configurations (``agg``,
    those with a done trial) with their labels, the factor compared and the settings of the
    other keys (``groups``), a colour per level, how the metric is shown, and the plots
    written so far (``out``: ``{name: path relative to workdir}``)."""

    workdir: str
    df: object
    agg: object
    metric: str
    factor: str
    others: list[str]
    levels: list
    groups: list[tuple]
    colors: dict
    scale: float
    unit: str
    out: dict[str, str] = dataclasses.field(default_factory=dict)

    @staticmethod
    def glabel(g) -> str:
        return ", ".join(str(v) for v in g) or "all"

    @staticmethod
    def marker(gi: int) -> str:
        return MARKERS[gi % len(MARKERS)]

    def save(self, fig, name: str) -> None:
        save(fig, self.workdir, name, self.out)

    def means(self, ax):
        """Yields ``(group index, row, level)`` for each configuration of ``agg`` to draw
        on ``ax``, group by group, and adds each group's legend entry."""
        for gi, g in enumerate(self.groups):
            for _, r in select(self.agg, self.others, g).iterrows():
                yield gi, r, r[self.factor]
            ax.plot([], [], self.marker(gi), color="0.3", label=self.glabel(g))

    def finish(self, ax, xlabel: str, ylabel: str, title: str) -> None:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(self.groups) > 1:
            ax.legend(fontsize=8)
        ax.set_title(title)


def plots(
    workdir: str,
    df,
    agg,
    keys: list[str],
    baseline: dict,
    metric: str,
    measures: list[Measure] | None = None,
) -> dict[str, str]:
    """Writes the PNGs: the metric per configuration, the learning curves, the metric
    against parameters and against training time, and each of ``measures`` (default: the
    registered measures among the columns of ``df``) that has a value against the metric.
    Returns ``{name: path relative to workdir}``."""
    measures = measures_in(df.columns) if measures is None else measures
    df, agg = with_labels(df, keys), with_labels(agg, keys)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.join(workdir, rundir.PLOTS), exist_ok=True)
    frac = is_fraction(metric)
    factor, others = panels(keys, baseline)
    agg = agg[agg.n > 0]
    if not len(agg):
        return {}
    levels = list(dict.fromkeys(agg[factor]))
    cmap = plt.get_cmap("tab10")
    f = _Figures(
        workdir, df, agg, metric, factor, others, levels, settings(agg, others),
        {lv: cmap(i % 10) for i, lv in enumerate(levels)},
        100 if frac else 1, f"{metric} (%)" if frac else metric,
    )
    _metric_plot(f)
    _curves_plot(f)
    for col, name, xlabel in (
        ("params", "acc_vs_params", "parameters"),
        ("train_seconds", "acc_vs_time", "training time per trial (s)"),
    ):
        _against_plot(f, col, name, xlabel)
    for m in measures:
        if agg[f"{m.name}_mean"].notna().any():
            _measure_plot(f, m)
    return f.out


def _metric_plot(f: _Figures) -> None:
    """The metric per level of the factor, with 95 % CI error bars and the seeds as dots."""
    import matplotlib.pyplot as plt

    levels, groups, scale = f.levels, f.groups, f.scale
    fig, ax = plt.subplots(
        figsize=(max(6, 0.8 * len(levels) * max(1, len(groups)) ** 0.5 + 2), 4.2)
    )
    width = 0.8 / max(1, len(groups))
    for gi, g in enumerate(groups):
        xs, ys, lo, hi = [], [], [], []
        for li, lv in enumerate(levels):
            rows = level(f.agg, f.factor, lv, f.others, g)
            if not len(rows):
                continue
            r = rows.iloc[0]
            x = li + (gi - (len(groups) - 1) / 2) * width
            xs.append(x)
            ys.append(scale * r["mean"])
            err = _ci_err(r, scale)
            lo.append(err[0])
            hi.append(err[1])
            seeds = level(f.df, f.factor, lv, f.others, g)
            seeds = seeds[seeds.status == "done"][f.metric] * scale
            ax.scatter([x] * len(seeds), seeds, s=9, color="0.6", zorder=1)
        ax.errorbar(
            xs, ys, yerr=[lo, hi], fmt=f.marker(gi), capsize=4, ms=6, label=f.glabel(g), zorder=2
        )
    ax.set_xticks(range(len(levels)))
    tilt = len(levels) > 5 or f.factor == CONFIG
    ax.set_xticklabels(
        [str(lv) for lv in levels], rotation=30 if tilt else 0, ha="right" if tilt else "center"
    )
    ax.set_xlabel(short(f.factor))
    ax.set_ylabel(f.unit)
    ax.set_title(f"{f.metric}: mean and 95 % CI over seeds (grey: single seeds)")
    if len(groups) > 1 or groups[0]:
        ax.legend(title=", ".join(short(k) for k in f.others) or None)
    ax.grid(axis="y", alpha=0.3)
    f.save(fig, "accuracy")


def _curves_plot(f: _Figures) -> None:
    """Learning curves: accuracy (train line, validation markers) and train loss per step.
    Validation, not test: the test split is read once, at the end of training."""
    import matplotlib.pyplot as plt

    groups, colors = f.groups, f.colors
    fig, axes = plt.subplots(2, len(groups), figsize=(4.6 * len(groups), 6.5), squeeze=False)
    for gi, g in enumerate(groups):
        for lv in f.levels:
            c = mean_curves(f.workdir, level(f.df, f.factor, lv, f.others, g))
            if c is None:
                continue
            steps, val_acc, tsteps, train_acc, train_loss = c
            axes[0, gi].plot(tsteps, 100 * train_acc, color=colors[lv], lw=1, label=str(lv))
            axes[0, gi].plot(steps, 100 * val_acc, "o--", color=colors[lv], ms=5, lw=0.8)
            axes[1, gi].plot(tsteps, train_loss, color=colors[lv], lw=1, label=str(lv))
        axes[0, gi].set_title(f.glabel(g))
        axes[0, gi].set_ylabel("accuracy (%): train line, validation dots")
        axes[1, gi].set_ylabel("train loss")
        axes[1, gi].set_xlabel("step")
        axes[1, gi].set_yscale("log")
        lo = axes[0, gi].get_ylim()
        axes[0, gi].set_ylim(max(lo[0], 50), min(lo[1], 100.5))
        for a in axes[:, gi]:
            a.grid(alpha=0.3)
    axes[1, -1].legend(fontsize=7, title=short(f.factor), ncol=1 if f.factor == CONFIG else 2)
    fig.suptitle("learning curves (mean over seeds)")
    fig.tight_layout()
    f.save(fig, "curves")


def _against_plot(f: _Figures, col: str, name: str, xlabel: str) -> None:
    """The metric against ``col`` (parameters, training time). Configurations with the same
    x (pooling kinds without parameters share a count) are spread sideways a little, so
    their error bars do not hide each other, and named by colour in the legend rather than
    by labels that would stack."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    rows = list(f.means(ax))
    agg = f.agg
    logx = col == "params" and np.nanmax(agg[col]) / max(np.nanmin(agg[col]), 1) > 20
    xs = _dodged([r[col] for _, r, _ in rows], logx)
    for (gi, r, lv), x in zip(rows, xs):
        lo, hi = _ci_err(r, f.scale)
        ax.errorbar([x], [f.scale * r["mean"]], yerr=[[lo], [hi]], fmt=f.marker(gi),
                    color=f.colors[lv], capsize=3, ms=6)
    if logx:
        ax.set_xscale("log")
    _level_legend(ax, f.colors, short(f.factor))
    f.finish(ax, xlabel, f.unit, f"{f.metric} vs {xlabel.split(' (')[0]}")
    f.save(fig, name)


def _measure_plot(f: _Figures, m: Measure) -> None:
    """Measure ``m`` against the metric, both with their 95 % CIs over seeds (file
    ``m.name``)."""
    import matplotlib.pyplot as plt

    yscale = 100 if m.fraction else 1
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for gi, r, lv in f.means(ax):
        xlo, xhi = _ci_err(r, f.scale)
        mean = r[f"{m.name}_mean"]
        ylo, yhi = _ci_err({"mean": mean, "ci_lo": r[f"{m.name}_ci_lo"],
                            "ci_hi": r[f"{m.name}_ci_hi"]}, yscale)
        ax.errorbar([f.scale * r["mean"]], [yscale * mean], xerr=[[xlo], [xhi]],
                    yerr=[[ylo], [yhi]], fmt=f.marker(gi), color=f.colors[lv], capsize=3, ms=6)
    _level_legend(ax, f.colors, short(f.factor))
    reference = f" ({m.reference})" if m.reference else ""
    f.finish(
        ax,
        f.unit,
        f"{m.label} (%)" if m.fraction else m.label,
        f"{m.label}{reference} vs accuracy: means and 95 % CIs over seeds",
    )
    f.save(fig, m.name)
