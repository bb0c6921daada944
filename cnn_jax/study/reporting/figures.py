"""The plots of a sweep report (``plots/*.png``, matplotlib with the Agg backend).

Each plot compares the levels of one factor (see :func:`cnn_jax.study.reporting.aggregate.panels`),
one series or panel per setting of the other swept keys. The PNGs carry no software or date
metadata, so the same results give the same files.
"""

from __future__ import annotations

import math
import os

from cnn_jax import rundir
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
from cnn_jax.study.reporting.rows import short

MARKERS = "osD^vP*X"


def relpath(name: str) -> str:
    """The path of plot ``name`` (without ``.png``) relative to the sweep directory."""
    return os.path.join(rundir.PLOTS, f"{name}.png")


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


def plots(workdir: str, df, agg, keys: list[str], baseline: dict, metric: str) -> dict[str, str]:
    """Writes the PNGs; returns ``{name: path relative to workdir}``."""
    df, agg = with_labels(df, keys), with_labels(agg, keys)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    os.makedirs(os.path.join(workdir, rundir.PLOTS), exist_ok=True)
    frac = is_fraction(metric)
    scale = 100 if frac else 1
    unit = f"{metric} (%)" if frac else metric
    factor, others = panels(keys, baseline)
    agg = agg[agg.n > 0]
    out: dict[str, str] = {}
    if not len(agg):
        return out
    levels = list(dict.fromkeys(agg[factor]))
    groups = settings(agg, others)

    def glabel(g):
        return ", ".join(str(v) for v in g) or "all"

    cmap = plt.get_cmap("tab10")
    colors = {lv: cmap(i % 10) for i, lv in enumerate(levels)}

    def marker(gi):
        return MARKERS[gi % len(MARKERS)]

    def save(fig, name):
        path = relpath(name)
        fig.savefig(
            os.path.join(workdir, path), dpi=110, bbox_inches="tight", metadata={"Software": None}
        )
        plt.close(fig)
        out[name] = path

    def means(ax):
        """Yields ``(group index, row, level)`` for each configuration of ``agg`` to draw
        on ``ax``, group by group, and adds each group's legend entry."""
        for gi, g in enumerate(groups):
            for _, r in select(agg, others, g).iterrows():
                yield gi, r, r[factor]
            ax.plot([], [], marker(gi), color="0.3", label=glabel(g))

    def finish(ax, xlabel, ylabel, title):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(groups) > 1:
            ax.legend(fontsize=8)
        ax.set_title(title)

    # 1. Metric per level of the factor, with 95 % CI error bars and the seeds as dots.
    fig, ax = plt.subplots(
        figsize=(max(6, 0.8 * len(levels) * max(1, len(groups)) ** 0.5 + 2), 4.2)
    )
    width = 0.8 / max(1, len(groups))
    for gi, g in enumerate(groups):
        xs, ys, lo, hi = [], [], [], []
        for li, lv in enumerate(levels):
            rows = level(agg, factor, lv, others, g)
            if not len(rows):
                continue
            r = rows.iloc[0]
            x = li + (gi - (len(groups) - 1) / 2) * width
            xs.append(x)
            ys.append(scale * r["mean"])
            err = _ci_err(r, scale)
            lo.append(err[0])
            hi.append(err[1])
            seeds = level(df, factor, lv, others, g)
            seeds = seeds[seeds.status == "done"][metric] * scale
            ax.scatter([x] * len(seeds), seeds, s=9, color="0.6", zorder=1)
        ax.errorbar(
            xs, ys, yerr=[lo, hi], fmt=marker(gi), capsize=4, ms=6, label=glabel(g), zorder=2
        )
    ax.set_xticks(range(len(levels)))
    tilt = len(levels) > 5 or factor == CONFIG
    ax.set_xticklabels(
        [str(lv) for lv in levels], rotation=30 if tilt else 0, ha="right" if tilt else "center"
    )
    ax.set_xlabel(short(factor))
    ax.set_ylabel(unit)
    ax.set_title(f"{metric}: mean and 95 % CI over seeds (grey: single seeds)")
    if len(groups) > 1 or groups[0]:
        ax.legend(title=", ".join(short(k) for k in others) or None)
    ax.grid(axis="y", alpha=0.3)
    save(fig, "accuracy")

    # 2. Learning curves: accuracy (train line, validation markers) and train loss per step.
    # Validation, not test: the test split is read once, at the end of training.
    fig, axes = plt.subplots(2, len(groups), figsize=(4.6 * len(groups), 6.5), squeeze=False)
    for gi, g in enumerate(groups):
        for lv in levels:
            c = mean_curves(workdir, level(df, factor, lv, others, g))
            if c is None:
                continue
            steps, val_acc, tsteps, train_acc, train_loss = c
            axes[0, gi].plot(tsteps, 100 * train_acc, color=colors[lv], lw=1, label=str(lv))
            axes[0, gi].plot(steps, 100 * val_acc, "o--", color=colors[lv], ms=5, lw=0.8)
            axes[1, gi].plot(tsteps, train_loss, color=colors[lv], lw=1, label=str(lv))
        axes[0, gi].set_title(glabel(g))
        axes[0, gi].set_ylabel("accuracy (%): train line, validation dots")
        axes[1, gi].set_ylabel("train loss")
        axes[1, gi].set_xlabel("step")
        axes[1, gi].set_yscale("log")
        lo = axes[0, gi].get_ylim()
        axes[0, gi].set_ylim(max(lo[0], 50), min(lo[1], 100.5))
        for a in axes[:, gi]:
            a.grid(alpha=0.3)
    axes[1, -1].legend(fontsize=7, title=short(factor), ncol=1 if factor == CONFIG else 2)
    fig.suptitle("learning curves (mean over seeds)")
    fig.tight_layout()
    save(fig, "curves")

    # 3./4. Metric against parameters and against training time. Configurations with the
    # same x (pooling kinds without parameters share a count) are spread sideways a little,
    # so their error bars do not hide each other, and named by colour in the legend rather
    # than by labels that would stack.
    for col, name, xlabel in (
        ("params", "acc_vs_params", "parameters"),
        ("train_seconds", "acc_vs_time", "training time per trial (s)"),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        rows = list(means(ax))
        logx = col == "params" and np.nanmax(agg[col]) / max(np.nanmin(agg[col]), 1) > 20
        xs = _dodged([r[col] for _, r, _ in rows], logx)
        for (gi, r, lv), x in zip(rows, xs):
            lo, hi = _ci_err(r, scale)
            ax.errorbar([x], [scale * r["mean"]], yerr=[[lo], [hi]], fmt=marker(gi),
                        color=colors[lv], capsize=3, ms=6)
        if logx:
            ax.set_xscale("log")
        _level_legend(ax, colors, short(factor))
        finish(ax, xlabel, unit, f"{metric} vs {xlabel.split(' (')[0]}")
        save(fig, name)

    # 5. Shift consistency against accuracy, both with their 95 % CIs over seeds.
    if agg["shift_mean"].notna().any():
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for gi, r, lv in means(ax):
            xlo, xhi = _ci_err(r, scale)
            ylo, yhi = _ci_err({"mean": r["shift_mean"], "ci_lo": r["shift_ci_lo"],
                                "ci_hi": r["shift_ci_hi"]}, 100)
            ax.errorbar([scale * r["mean"]], [100 * r["shift_mean"]], xerr=[[xlo], [xhi]],
                        yerr=[[ylo], [yhi]], fmt=marker(gi), color=colors[lv], capsize=3, ms=6)
        _level_legend(ax, colors, short(factor))
        finish(
            ax,
            unit,
            "shift consistency (%)",
            "shift consistency (Zhang 2019) vs accuracy: means and 95 % CIs over seeds",
        )
        save(fig, "shift_consistency")
    return out
    return out
