"""Statistics of a sweep's results over seeds: per-configuration estimates, paired
comparisons with the baseline, mean learning curves, and which factor the report and the
plots compare.

The tests themselves (t intervals, paired t, exact Wilcoxon, Holm, d_z) are in
:mod:`cnn_jax.study.stats`; this module applies them to the ``DataFrame`` of
:func:`cnn_jax.study.results.collect`.
"""

from __future__ import annotations

import math

from cnn_jax.study import stats
from cnn_jax.study.results import label, series, short

CONFIG = "configuration"  # a column labelling each configuration by all its swept values
ALPHA = 0.05  # the significance level of the verdicts


def is_fraction(metric: str) -> bool:
    """Whether ``metric`` is a fraction in [0, 1] (shown in per cent)."""
    return "accuracy" in metric or "consistency" in metric or "top5" in metric


def configs(df, keys: list[str]) -> list[tuple]:
    """Configurations (tuples of key labels) in order of first appearance."""
    seen: dict[tuple, None] = {}
    for _, r in df.iterrows():
        seen.setdefault(tuple(r[k] for k in keys), None)
    return list(seen)


def select(df, keys, config):
    """The rows of ``df`` whose ``keys`` have the values ``config``."""
    mask = None
    for k, v in zip(keys, config):
        m = df[k] == v
        mask = m if mask is None else mask & m
    return df if mask is None else df[mask]


def _mean(done, col: str) -> float:
    return float(done[col].mean()) if len(done) else math.nan


def aggregate(df, keys: list[str], metric: str = "test_accuracy"):
    """Per configuration over seeds: counts, mean/std/95 % CI of ``metric``, of the best
    accuracy, of shift consistency; parameters; mean training time and images/s."""
    import pandas as pd

    rows = []
    for config in configs(df, keys):
        sub = select(df, keys, config)
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
                "train_loss": _mean(done, "train_loss"),
                "train_seconds": _mean(done, "train_seconds"),
                "images_per_second": _mean(done, "images_per_second"),
            }
        )
    return pd.DataFrame(rows)


def comparisons(df, keys: list[str], baseline: dict, metric: str = "test_accuracy"):
    """Every configuration against the baseline value(s) at equal other keys, paired by
    seed: mean difference with 95 % CI, paired t-test, Wilcoxon, Holm-adjusted p, d_z."""
    import pandas as pd

    if not baseline:
        return pd.DataFrame()
    base_labels = {k: label(v) for k, v in baseline.items()}
    idx = {k: keys.index(k) for k in base_labels}
    rows = []
    for config in configs(df, keys):
        if all(config[idx[k]] == v for k, v in base_labels.items()):
            continue
        ref = list(config)
        for k, v in base_labels.items():
            ref[idx[k]] = v
        a = select(df, keys, config)
        b = select(df, keys, tuple(ref))
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


def verdict(r, alpha: float = ALPHA) -> str:
    """A comparison row's verdict from its Holm-adjusted p-value."""
    if r["n"] < 2 or not math.isfinite(r["p_holm"]):
        return "too few seeds"
    if r["p_holm"] < alpha:
        return "better" if r["diff"] > 0 else "worse"
    return "no significant difference"


def panels(keys: list[str], baseline: dict) -> tuple[str, list[str]]:
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
        parts.append(str(v) if k.endswith(".name") else f"{short(k)}={v}")
    return " ".join(parts)


def with_labels(frame, keys: list[str]):
    """``frame`` with a :data:`CONFIG` column (a copy, if it had none)."""
    if len(frame) and CONFIG not in frame:
        frame = frame.copy()
        frame[CONFIG] = [_config_label(r, keys) for _, r in frame.iterrows()]
    return frame


def settings(frame, others: list[str]) -> list[tuple]:
    """The settings of ``others`` in ``frame``, in order of first appearance."""
    return list(dict.fromkeys(tuple(r[k] for k in others) for _, r in frame.iterrows()))


def level(frame, factor: str, lv, others: list[str], group: tuple):
    """The rows of ``frame`` at ``factor == lv`` and ``others == group``."""
    return select(frame[frame[factor] == lv], others, group)


def mean_curves(workdir: str, sub):
    """Mean over the done trials in ``sub``: test accuracy per evaluation step, train
    accuracy and loss per log step (each averaged over the steps since the last log);
    ``None`` if none is done."""
    import numpy as np

    runs = [series(workdir, name) for name in sub[sub.status == "done"]["trial"]]
    if not runs:
        return None
    steps = sorted(set.intersection(*(set(t) for t, _ in runs)))
    tsteps = sorted(set.intersection(*(set(t) for _, t in runs)))
    test_acc = np.array([[t[s] for s in steps] for t, _ in runs]).mean(0)
    train = np.array([[t[s] for s in tsteps] for _, t in runs])  # [runs, steps, 2]
    return steps, test_acc, tsteps, train[..., 0].mean(0), train[..., 1].mean(0)
