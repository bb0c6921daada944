"""Study results: ``results.csv``, per-configuration statistics, paired comparisons with a
baseline, ``report.md`` and plots.

``report.md`` is a function of the trials' results only (no timings, dates or absolute
paths), so an interrupted-then-resumed sweep writes the same ``report.md`` as an
uninterrupted one. Everything that depends on the machine's speed (training time,
images/s) goes to ``timing.md``, the ``train_seconds``/``images_per_second`` columns of
``results.csv`` and ``plots/acc_vs_time.png``.
"""

from __future__ import annotations

import math
import os
from typing import Any

from cnn_jax.study import stats, store
from cnn_jax.study.store import read_jsonl

TIMING_COLUMNS = ("train_seconds", "images_per_second")
PLOTS_DIR = "plots"


# ----------------------------------------------------------------------------- results


def _label(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_label(x) for x in v) + ")"
    return str(v)


def _row(workdir: str, trial: dict, keys: list[str]) -> dict:
    d = os.path.join(workdir, store.TRIALS_DIR, trial["name"])
    st = store.read_status(d)
    row: dict[str, Any] = {"trial": trial["name"], "status": st["status"]}
    for k in keys:
        row[k] = _label(trial["point"].get(k)) if k in trial["point"] else ""
    row["seed"] = trial["seed"]
    summary = store.read_json(os.path.join(d, "summary.json")) if st["status"] == "done" else None
    analysis = store.read_json(os.path.join(d, store.ANALYSIS_FILE)) or {}
    nan = math.nan
    if summary:
        test, best, train = (
            summary.get("test", {}),
            summary.get("best", {}),
            summary.get("train") or {},
        )
        row.update(
            test_accuracy=test.get("accuracy", nan),
            test_loss=test.get("loss", nan),
            test_top5=test.get("top5", nan),
            test_count=test.get("count", nan),
            best_accuracy=_num(best.get("accuracy")),
            best_step=_num(best.get("step")),
            train_loss=_num(train.get("loss")),
            train_accuracy=_num(train.get("accuracy")),
            shift_consistency=_num(analysis.get("shift_consistency")),
            params=summary.get("params", nan),
            steps=summary.get("steps", nan),
            epochs=summary.get("epochs", nan),
            train_seconds=_num(summary.get("train_seconds")),
            images_per_second=_num(summary.get("images_per_second")),
        )
    else:
        for c in (
            "test_accuracy",
            "test_loss",
            "test_top5",
            "test_count",
            "best_accuracy",
            "best_step",
            "train_loss",
            "train_accuracy",
            "shift_consistency",
            "params",
            "steps",
            "epochs",
            *TIMING_COLUMNS,
        ):
            row[c] = nan
    err = st.get("error", "") if st["status"] in ("failed", "diverged") else ""
    row["error"] = err.split("; the last good checkpoint")[0]
    return row


def _num(v) -> float:
    return math.nan if v is None else float(v)


def collect(workdir: str):
    """One row per trial of the sweep in ``workdir``, in sweep order (a ``DataFrame``)."""
    import pandas as pd

    rec = store.load_sweep(workdir)
    keys = rec["study"]["keys"]
    rows = [_row(workdir, t, keys) for t in rec["trials"]]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- statistics


def _configs(df, keys: list[str]) -> list[tuple]:
    """Configurations (tuples of key labels) in order of first appearance."""
    seen: dict[tuple, None] = {}
    for _, r in df.iterrows():
        seen.setdefault(tuple(r[k] for k in keys), None)
    return list(seen)


def _select(df, keys, config):
    mask = None
    for k, v in zip(keys, config):
        m = df[k] == v
        mask = m if mask is None else mask & m
    return df if mask is None else df[mask]


def aggregate(df, keys: list[str], metric: str = "test_accuracy"):
    """Per configuration over seeds: counts, mean/std/95 % CI of ``metric``, of the best
    accuracy, of shift consistency; parameters; mean training time and images/s."""
    import pandas as pd

    rows = []
    for config in _configs(df, keys):
        sub = _select(df, keys, config)
        done = sub[sub.status == "done"]
        e = stats.mean_ci(done[metric])
        sc = stats.mean_ci(done["shift_consistency"])
        best = stats.mean_ci(done["best_accuracy"])
        rows.append(
            {
                **dict(zip(keys, config)),
                "n": len(done),
                "trials": len(sub),
                "diverged": int((sub.status == "diverged").sum()),
                "failed": int((sub.status == "failed").sum()),
                "mean": e.mean,
                "std": e.std,
                "ci_lo": e.lo,
                "ci_hi": e.hi,
                "best_mean": best.mean,
                "shift_mean": sc.mean,
                "shift_ci_lo": sc.lo,
                "shift_ci_hi": sc.hi,
                "params": float(done["params"].iloc[0]) if len(done) else math.nan,
                "train_loss": float(done["train_loss"].mean()) if len(done) else math.nan,
                "train_seconds": float(done["train_seconds"].mean()) if len(done) else math.nan,
                "images_per_second": float(done["images_per_second"].mean())
                if len(done)
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


def comparisons(df, keys: list[str], baseline: dict, metric: str = "test_accuracy"):
    """Every configuration against the baseline value(s) at equal other keys, paired by
    seed: mean difference with 95 % CI, paired t-test, Wilcoxon, Holm-adjusted p, d_z."""
    import pandas as pd

    if not baseline:
        return pd.DataFrame()
    base_labels = {k: _label(v) for k, v in baseline.items()}
    idx = {k: keys.index(k) for k in base_labels}
    rows = []
    for config in _configs(df, keys):
        if all(config[idx[k]] == v for k, v in base_labels.items()):
            continue
        ref = list(config)
        for k, v in base_labels.items():
            ref[idx[k]] = v
        ref = tuple(ref)
        a = _select(df, keys, config)
        b = _select(df, keys, ref)
        if not len(b):
            continue
        a = a[a.status == "done"].set_index("seed")[metric]
        b = b[b.status == "done"].set_index("seed")[metric]
        seeds = sorted(set(a.index) & set(b.index))
        c = stats.compare([a[s] for s in seeds], [b[s] for s in seeds])
        rows.append(
            {
                **dict(zip(keys, config)),
                "n": c.n,
                "diff": c.mean_diff,
                "diff_lo": c.diff_lo,
                "diff_hi": c.diff_hi,
                "t": c.t,
                "p_t": c.p_t,
                "p_wilcoxon": c.p_wilcoxon,
                "cohens_d": c.cohens_d,
            }
        )
    out = pd.DataFrame(rows)
    if len(out):
        # One family of comparisons per setting of the other keys (e.g. per model): Holm
        # adjusts each configuration's p-value for the comparisons made at that setting.
        others = [k for k in keys if k not in base_labels]
        families = (
            out[others].astype(str).agg("|".join, axis=1) if others else pd.Series([""] * len(out))
        )
        out["p_holm"] = float("nan")
        for fam in dict.fromkeys(families):
            idx_f = out.index[families == fam]
            out.loc[idx_f, "p_holm"] = stats.holm(out.loc[idx_f, "p_t"].tolist())
    return out


# ----------------------------------------------------------------------------- formatting


def _is_fraction(metric: str) -> bool:
    return "accuracy" in metric or "consistency" in metric or "top5" in metric


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


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["l"] * len(header)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _name(metric: str) -> str:
    return metric.replace("_", " ")


def _short(k: str) -> str:
    return k.split(".")[-1] if k.split(".")[-1] != "name" else k.split(".")[0]


def aggregate_table(agg, keys: list[str], metric: str, shift: bool) -> str:
    frac = _is_fraction(metric)
    unit = " %" if frac else ""
    header = [_short(k) for k in keys] + [
        "n",
        f"{_name(metric)}{unit} mean ± sd",
        "95 % CI",
        f"best{unit}",
    ]
    if shift:
        header += ["shift consistency %", "95 % CI (shift)"]
    header += ["params", "final train loss"]
    rows = []
    for _, r in agg.iterrows():
        n = (
            f"{r['n']}/{r['trials']}"
            + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
            + (f" ({r['failed']} failed)" if r["failed"] else "")
        )
        row = [str(r[k]) for k in keys] + [
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
        row += [
            "-" if not math.isfinite(r["params"]) else f"{int(r['params']):,}",
            _f(r["train_loss"], 4),
        ]
        rows.append(row)
    align = ["l"] * len(keys) + ["r"] * (len(header) - len(keys))
    return _table(header, rows, align)


def _verdict(r, alpha: float = 0.05) -> str:
    if r["n"] < 2 or not math.isfinite(r["p_holm"]):
        return "too few seeds"
    if r["p_holm"] < alpha:
        return "better" if r["diff"] > 0 else "worse"
    return "no significant difference"


def comparison_table(comp, keys: list[str], metric: str) -> str:
    frac = _is_fraction(metric)
    d_unit = " (pp)" if frac else ""
    header = [_short(k) for k in keys] + [
        "n",
        f"Δ{d_unit}",
        "95 % CI of Δ",
        "t",
        "p (t-test)",
        "p (Wilcoxon)",
        "p (Holm)",
        "Cohen's d_z",
        "verdict",
    ]
    rows = []
    scale = 100 if frac else 1
    for _, r in comp.iterrows():
        rows.append(
            [str(r[k]) for k in keys]
            + [
                str(r["n"]),
                f"{_f(scale * r['diff'], 2):>6}",
                f"[{_f(scale * r['diff_lo'], 2)}, {_f(scale * r['diff_hi'], 2)}]",
                _f(r["t"], 2),
                _p(r["p_t"]),
                _p(r["p_wilcoxon"]),
                _p(r["p_holm"]),
                _f(r["cohens_d"], 2),
                _verdict(r),
            ]
        )
    align = ["l"] * len(keys) + ["r"] * 8 + ["l"]
    return _table(header, rows, align)


def timing_table(agg, keys: list[str]) -> str:
    header = [_short(k) for k in keys] + ["n", "train seconds (mean)", "images/s (mean)"]
    rows = [
        [str(r[k]) for k in keys]
        + [str(r["n"]), _f(r["train_seconds"], 1), _f(r["images_per_second"], 0)]
        for _, r in agg.iterrows()
    ]
    return _table(header, rows, ["l"] * len(keys) + ["r"] * 3)


CONFIG = "configuration"  # a column labelling each configuration by all its swept values


def _panels(keys: list[str], baseline: dict) -> tuple[str, list[str]]:
    """The factor compared along the x axis, and the keys that split it into series.

    With a baseline on some keys: the first baseline key, split by the keys outside the
    baseline (e.g. pool, per model). With one swept key: that key. Otherwise (a random
    search, or a baseline that fixes every key): each configuration is a level of its own,
    labelled by the :data:`CONFIG` column.
    """
    if baseline and not set(keys) <= set(baseline):
        return next(iter(baseline)), [k for k in keys if k not in baseline]
    if len(keys) == 1:
        return keys[0], []
    return CONFIG, []


def _config_label(row, keys: list[str]) -> str:
    parts = []
    for k in keys:
        v = row[k]
        if v == "":
            continue
        parts.append(str(v) if k.endswith(".name") else f"{_short(k)}={v}")
    return " ".join(parts)


def _with_labels(frame, keys: list[str]):
    if len(frame) and CONFIG not in frame:
        frame = frame.copy()
        frame[CONFIG] = [_config_label(r, keys) for _, r in frame.iterrows()]
    return frame


def _significant(comp, factor, others, baseline, metric) -> list[str]:
    frac = _is_fraction(metric)
    base = ", ".join(f"{_short(k)}={_label(v)}" for k, v in baseline.items())
    what = f"{_name(metric)}: " if metric != "test_accuracy" else ""
    sig = comp[comp["p_holm"] < 0.05]
    if not len(sig):
        text = (
            f"{what}no configuration differs significantly from {base} "
            "(paired t-test, Holm-adjusted, α = 0.05)."
        )
        return [f"- {text[0].upper()}{text[1:]}"]
    parts = []
    for _, r in sig.iterrows():
        where = ", ".join(f"{_short(k)}={r[k]}" for k in others)
        d = 100 * r["diff"] if frac else r["diff"]
        parts.append(
            f"{r[factor]}{f' ({where})' if where else ''}: Δ {d:+.2f}"
            f"{' pp' if frac else ''}, p(Holm) {_p(r['p_holm'])}"
        )
    text = (
        f"{what}significantly different from {base} (paired t-test, Holm-adjusted, "
        "α = 0.05): " + "; ".join(parts) + "."
    )
    return [f"- {text[0].upper()}{text[1:]}"]


def _answer(agg, comp, keys, baseline, metric, comp_shift=None) -> list[str]:
    """Plain sentences that follow from the tables."""
    frac = _is_fraction(metric)
    factor, others = _panels(keys, baseline)
    agg, comp = _with_labels(agg, keys), _with_labels(comp, keys)
    lines = []
    done = agg[agg.n > 0]
    if not len(done):
        return ["No trial has finished yet."]
    groups: dict[tuple, Any] = {}
    for _, r in done.iterrows():
        groups.setdefault(tuple(r[k] for k in others), []).append(r)
    for g, rs in groups.items():
        where = ", ".join(f"{_short(k)}={v}" for k, v in zip(others, g))
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
                _with_labels(comp_shift, keys), factor, others, baseline, "shift_consistency"
            )
        n_min = int(comp["n"].min())
        if n_min <= 5:
            lines.append(
                f"- With {n_min} paired seeds the exact two-sided Wilcoxon test cannot go "
                f"below p = {2 / 2**n_min:.4f}; it is reported as a robustness check."
            )
    return lines


# ----------------------------------------------------------------------------- plots


def _level(frame, factor: str, level, others: list[str], group: tuple):
    """The rows of ``frame`` at ``factor == level`` and ``others == group``."""
    rows = frame[frame[factor] == level]
    for k, v in zip(others, group):
        rows = rows[rows[k] == v]
    return rows


def _curves(workdir: str, sub):
    """Mean over the done trials in ``sub``: test accuracy per evaluation step, train
    accuracy and loss per log step (each averaged over the steps since the last log)."""
    import numpy as np

    runs = []
    for name in sub[sub.status == "done"]["trial"]:
        recs = read_jsonl(os.path.join(workdir, store.TRIALS_DIR, name, "metrics.jsonl"))
        runs.append(
            (
                {r["step"]: r["accuracy"] for r in recs if r["split"] == "test"},
                {r["step"]: (r["accuracy"], r["loss"]) for r in recs if r["split"] == "train"},
            )
        )
    if not runs:
        return None
    steps = sorted(set.intersection(*(set(t) for t, _ in runs)))
    tsteps = sorted(set.intersection(*(set(t) for _, t in runs)))
    test_acc = np.array([[t[s] for s in steps] for t, _ in runs]).mean(0)
    train = np.array([[t[s] for s in tsteps] for _, t in runs])  # [runs, steps, 2]
    return steps, test_acc, tsteps, train[..., 0].mean(0), train[..., 1].mean(0)


def plots(workdir: str, df, agg, keys: list[str], baseline: dict, metric: str) -> dict[str, str]:
    """Writes the PNGs; returns ``{name: path relative to workdir}``."""
    df, agg = _with_labels(df, keys), _with_labels(agg, keys)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    os.makedirs(os.path.join(workdir, PLOTS_DIR), exist_ok=True)
    frac = _is_fraction(metric)
    scale = 100 if frac else 1
    unit = f"{metric} (%)" if frac else metric
    factor, others = _panels(keys, baseline)
    agg = agg[agg.n > 0]
    out: dict[str, str] = {}
    if not len(agg):
        return out
    levels = list(dict.fromkeys(agg[factor]))
    groups = list(dict.fromkeys(tuple(r[k] for k in others) for _, r in agg.iterrows()))

    def glabel(g):
        return ", ".join(str(v) for v in g) or "all"

    cmap = plt.get_cmap("tab10")
    colors = {lv: cmap(i % 10) for i, lv in enumerate(levels)}
    markers = "osD^vP*X"

    def save(fig, name):
        path = os.path.join(PLOTS_DIR, name)
        fig.savefig(
            os.path.join(workdir, path), dpi=110, bbox_inches="tight", metadata={"Software": None}
        )
        plt.close(fig)
        out[name.removesuffix(".png")] = path

    # 1. Metric per level of the factor, with 95 % CI error bars and the seeds as dots.
    fig, ax = plt.subplots(
        figsize=(max(6, 0.8 * len(levels) * max(1, len(groups)) ** 0.5 + 2), 4.2)
    )
    width = 0.8 / max(1, len(groups))
    for gi, g in enumerate(groups):
        xs, ys, lo, hi = [], [], [], []
        for li, lv in enumerate(levels):
            rows = _level(agg, factor, lv, others, g)
            if not len(rows):
                continue
            r = rows.iloc[0]
            x = li + (gi - (len(groups) - 1) / 2) * width
            xs.append(x)
            ys.append(scale * r["mean"])
            lo.append(scale * (r["mean"] - r["ci_lo"]) if math.isfinite(r["ci_lo"]) else 0)
            hi.append(scale * (r["ci_hi"] - r["mean"]) if math.isfinite(r["ci_hi"]) else 0)
            seeds = _level(df, factor, lv, others, g)
            seeds = seeds[seeds.status == "done"][metric] * scale
            ax.scatter([x] * len(seeds), seeds, s=9, color="0.6", zorder=1)
        ax.errorbar(
            xs,
            ys,
            yerr=[lo, hi],
            fmt=markers[gi % len(markers)],
            capsize=4,
            ms=6,
            label=glabel(g),
            zorder=2,
        )
    ax.set_xticks(range(len(levels)))
    tilt = len(levels) > 5 or factor == CONFIG
    ax.set_xticklabels(
        [str(lv) for lv in levels], rotation=30 if tilt else 0, ha="right" if tilt else "center"
    )
    ax.set_xlabel(_short(factor))
    ax.set_ylabel(unit)
    ax.set_title(f"{metric}: mean and 95 % CI over seeds (grey: single seeds)")
    if len(groups) > 1 or groups[0]:
        ax.legend(title=", ".join(_short(k) for k in others) or None)
    ax.grid(axis="y", alpha=0.3)
    save(fig, "accuracy.png")

    # 2. Learning curves: accuracy (train line, test markers) and train loss per step.
    fig, axes = plt.subplots(2, len(groups), figsize=(4.6 * len(groups), 6.5), squeeze=False)
    for gi, g in enumerate(groups):
        for lv in levels:
            c = _curves(workdir, _level(df, factor, lv, others, g))
            if c is None:
                continue
            steps, test_acc, tsteps, train_acc, train_loss = c
            axes[0, gi].plot(tsteps, 100 * train_acc, color=colors[lv], lw=1, label=str(lv))
            axes[0, gi].plot(steps, 100 * test_acc, "o", color=colors[lv], ms=5)
            axes[1, gi].plot(tsteps, train_loss, color=colors[lv], lw=1, label=str(lv))
        axes[0, gi].set_title(glabel(g))
        axes[0, gi].set_ylabel("accuracy (%): train line, test dots")
        axes[1, gi].set_ylabel("train loss")
        axes[1, gi].set_xlabel("step")
        axes[1, gi].set_yscale("log")
        lo = axes[0, gi].get_ylim()
        axes[0, gi].set_ylim(max(lo[0], 50), min(lo[1], 100.5))
        for a in axes[:, gi]:
            a.grid(alpha=0.3)
    axes[1, -1].legend(fontsize=7, title=_short(factor), ncol=1 if factor == CONFIG else 2)
    fig.suptitle("learning curves (mean over seeds)")
    fig.tight_layout()
    save(fig, "curves.png")

    # 3./4. Metric against parameters and against training time.
    for col, name, xlabel in (
        ("params", "acc_vs_params.png", "parameters"),
        ("train_seconds", "acc_vs_time.png", "training time per trial (s)"),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for gi, g in enumerate(groups):
            for _, r in _select(agg, others, g).iterrows():
                lv = r[factor]
                ax.errorbar(
                    [r[col]],
                    [scale * r["mean"]],
                    yerr=[
                        [scale * (r["mean"] - r["ci_lo"]) if math.isfinite(r["ci_lo"]) else 0],
                        [scale * (r["ci_hi"] - r["mean"]) if math.isfinite(r["ci_hi"]) else 0],
                    ],
                    fmt=markers[gi % len(markers)],
                    color=colors[lv],
                    capsize=3,
                    ms=6,
                )
                ax.annotate(
                    str(lv),
                    (r[col], scale * r["mean"]),
                    fontsize=7,
                    xytext=(4, 2),
                    textcoords="offset points",
                )
        for gi, g in enumerate(groups):
            ax.plot([], [], markers[gi % len(markers)], color="0.3", label=glabel(g))
        if col == "params" and np.nanmax(agg[col]) / max(np.nanmin(agg[col]), 1) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        if len(groups) > 1:
            ax.legend(fontsize=8)
        ax.set_title(f"{metric} vs {xlabel.split(' (')[0]}")
        save(fig, name)

    # 5. Shift consistency against accuracy.
    if agg["shift_mean"].notna().any():
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for gi, g in enumerate(groups):
            for _, r in _select(agg, others, g).iterrows():
                lv = r[factor]
                ax.plot(
                    scale * r["mean"],
                    100 * r["shift_mean"],
                    markers[gi % len(markers)],
                    color=colors[lv],
                    ms=7,
                )
                ax.annotate(
                    str(lv),
                    (scale * r["mean"], 100 * r["shift_mean"]),
                    fontsize=7,
                    xytext=(4, 2),
                    textcoords="offset points",
                )
            ax.plot([], [], markers[gi % len(markers)], color="0.3", label=glabel(g))
        ax.set_xlabel(unit)
        ax.set_ylabel("shift consistency (%)")
        ax.set_title("shift consistency (Zhang 2019) vs accuracy, means over seeds")
        ax.grid(alpha=0.3)
        if len(groups) > 1:
            ax.legend(fontsize=8)
        save(fig, "shift_consistency.png")
    return out


# ----------------------------------------------------------------------------- report


def write(workdir: str, *, with_plots: bool = True) -> dict:
    """Writes ``results.csv``, ``report.md``, ``timing.md`` and (unless ``with_plots`` is
    false) ``plots/*.png``; returns their paths and the two main tables as text."""
    rec = store.load_sweep(workdir)
    opts = rec["study"]
    keys, metric, baseline = (
        opts["keys"],
        opts.get("metric", "test_accuracy"),
        opts.get("baseline") or {},
    )
    df = collect(workdir)
    csv_path = os.path.join(workdir, "results.csv")
    df.to_csv(csv_path, index=False)
    agg = aggregate(df, keys, metric)
    comp = comparisons(df, keys, baseline, metric)
    shift = bool(opts.get("shift_consistency")) and df["shift_consistency"].notna().any()
    comp_shift = (
        comparisons(df, keys, baseline, "shift_consistency")
        if shift and metric != "shift_consistency"
        else None
    )
    figs = plots(workdir, df, agg, keys, baseline, metric) if with_plots else {}

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
    lines += [
        f"Experiment `{rec['experiment']}`"
        + (f" with {' '.join(overrides)}" if overrides else "")
        + ".",
        f"{n} trials ({n // max(len(seeds), 1)} configurations × {len(seeds)} seeds "
        f"{_label(tuple(seeds))}): {counts['done']} done, {counts['diverged']} diverged, "
        f"{counts['failed']} failed" + (f", {unfinished} not finished" if unfinished else "") + ".",
        f"Metric: `{metric}` at the end of training"
        + (f" on {int(test_n.iloc[0])} test images" if len(test_n) else "")
        + "; "
        "95 % confidence intervals use the t distribution over seeds.",
        "",
        "## Results per configuration",
        "",
        aggregate_table(agg, keys, metric, shift),
        "",
    ]
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
        base = ", ".join(f"{k} = {_label(v)}" for k, v in baseline.items())
        lines += [
            f"## Comparison with the baseline ({base})",
            "",
            "Paired by seed: trials with the same seed share the data order and the "
            "initialisation of every layer they have in common. Δ = configuration − baseline"
            + (" in percentage points" if _is_fraction(metric) else "")
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
            "[timing.md](timing.md), the timing columns of `results.csv` "
            "and `plots/acc_vs_time.png`, and are kept out of this file so that it depends "
            "only on the results."
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
    report_path = os.path.join(workdir, "report.md")
    with open(report_path, "w") as f:
        f.write("\n".join(lines))
    timing_path = os.path.join(workdir, "timing.md")
    with open(timing_path, "w") as f:
        f.write(
            "# Timing\n\nMeasured on the machine that ran each trial (it varies with its "
            "load). Trials that trained together (vmapped seeds) share their group's time.\n\n"
            + timing_table(agg, keys)
            + "\n\n![accuracy vs training time](plots/acc_vs_time.png)\n"
        )
    return {
        "results": csv_path,
        "report": report_path,
        "timing": timing_path,
        "plots": [os.path.join(workdir, p) for p in figs.values()],
        "table": aggregate_table(agg, keys, metric, shift),
        "comparison": comparison_table(comp, keys, metric) if len(comp) else "",
    }
