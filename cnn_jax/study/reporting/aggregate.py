"""Statistics of a sweep's results over seeds: per-configuration estimates, the plateau
check, paired comparisons with the baseline (with their power), mean learning curves, and
which factor the report and the plots compare.

The protocol: configurations are ranked and selected by their mean *validation* accuracy
(:func:`ranked`); the test split, read once at the end of each trial, is what the
comparisons with the baseline test (the study's metric, ``test_accuracy`` by default) and
what a selected configuration reports, never what selects it.

The tests themselves (t intervals, paired t, exact Wilcoxon, Holm, d_z, power) are in
:mod:`cnn_jax.study.reporting.stats`; this module applies them to the ``DataFrame`` of
:func:`cnn_jax.study.reporting.rows.collect`.
"""

from __future__ import annotations

import dataclasses
import math

from cnn_jax.analyses import Measure
from cnn_jax.study.reporting import stats
from cnn_jax.study.reporting.rows import label, measure, measures_in, series, short

CONFIG = "configuration"  # a column labelling each configuration by all its swept values
ALPHA = 0.05  # the significance level of the verdicts
SELECT_BY = "validation_accuracy"  # what ranks and selects configurations
# A seed has plateaued when the mean of its own last two validation evaluations is within
# this much (0.3 percentage points) of its own best one; an arm, when every seed has.
PLATEAU_TOLERANCE = 0.003


def is_fraction(metric: str) -> bool:
    """Whether ``metric`` is a fraction in [0, 1] (shown in per cent): an accuracy, a top-5
    rate or a measure registered as a fraction."""
    return measure(metric).fraction


def judged(v) -> bool:
    """Whether a ``plateaued`` value is a verdict (numpy or Python bool), not ``None``/NaN."""
    return v is not None and v in (True, False)


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
    return float(done[col].mean()) if len(done) and col in done else math.nan


@dataclasses.dataclass(frozen=True)
class Plateau:
    """The plateau check of one validation curve (a seed), or of an arm from its seeds' own
    curves (:func:`plateau_of_seeds`).

    Attributes:
      evaluations: the curve's evaluations (an arm: the fewest of a judged seed).
      seeds: the curves judged (with at least two evaluations).
      not_plateaued: how many of them had not plateaued.
      best: the best validation accuracy (an arm: the mean over its seeds of each one's).
      best_step: where a single curve had its best (NaN for an arm).
      last_two: the mean of the last two evaluations (an arm: the mean over its seeds).
      plateaued: ``last_two >= best - tolerance`` (an arm: in every judged seed);
        ``None`` where no curve has two evaluations.
    """

    evaluations: int
    best: float = math.nan
    best_step: float = math.nan
    last_two: float = math.nan
    plateaued: bool | None = None
    seeds: int = 0
    not_plateaued: int = 0

    @property
    def gap(self) -> float:
        """``last_two - best`` (<= 0; an arm: the mean over its seeds)."""
        return self.last_two - self.best


def plateau_of(steps: list[int], accuracy, tolerance: float = PLATEAU_TOLERANCE) -> Plateau:
    """The plateau check of one validation curve (``accuracy[i]`` at ``steps[i]``):
    plateaued if the mean of its last two evaluations is within ``tolerance`` of its best."""
    vals = [float(v) for v in accuracy]
    if len(vals) < 2:
        return Plateau(len(vals))
    i = max(range(len(vals)), key=lambda j: (vals[j], -j))  # the first of equal bests
    best, last_two = vals[i], (vals[-1] + vals[-2]) / 2
    ok = last_two >= best - tolerance - 1e-12
    return Plateau(len(vals), best, steps[i], last_two, ok, 1, int(not ok))


def plateau_of_seeds(curves: list[Plateau]) -> Plateau:
    """An arm's plateau check from its seeds' own (:func:`plateau_of`): plateaued when every
    seed with two evaluations plateaued; best and last two are means over those seeds."""
    seen = [c for c in curves if c.plateaued is not None]
    if not seen:
        return Plateau(min((c.evaluations for c in curves), default=0))
    n_not = sum(c.not_plateaued for c in seen)
    return Plateau(
        min(c.evaluations for c in seen),
        sum(c.best for c in seen) / len(seen),
        math.nan,
        sum(c.last_two for c in seen) / len(seen),
        n_not == 0,
        len(seen),
        n_not,
    )


def plateau(workdir: str, sub, tolerance: float = PLATEAU_TOLERANCE) -> Plateau:
    """The plateau check of the done trials in ``sub`` (one arm), each seed on its own
    validation curve from ``metrics.jsonl`` (with early stopping the seeds' curves may end
    at different steps: each is read to its own end)."""
    curves = []
    for name in sub[sub.status == "done"]["trial"]:
        val = series(workdir, name)[0]
        steps = sorted(val)
        curves.append(plateau_of(steps, [val[s] for s in steps], tolerance))
    return plateau_of_seeds(curves)


def _estimate(prefix: str, e: stats.Estimate) -> dict[str, float]:
    return {
        f"{prefix}mean": e.mean,
        f"{prefix}std": e.std,
        f"{prefix}ci_lo": e.lo,
        f"{prefix}ci_hi": e.hi,
    }


def _measure_estimates(done, measures: list[Measure]) -> dict[str, float]:
    out = {}
    for m in measures:
        e = stats.mean_ci(done[m.name])
        out.update({f"{m.name}_mean": e.mean, f"{m.name}_ci_lo": e.lo, f"{m.name}_ci_hi": e.hi})
    return out


def aggregate(
    df,
    keys: list[str],
    metric: str = "test_accuracy",
    workdir: str | None = None,
    measures: list[Measure] | None = None,
):
    """Per configuration over seeds: counts; mean/std/95 % CI of ``metric`` (``mean``,
    ``std``, ``ci_lo``, ``ci_hi``), of the final validation accuracy (``val_*``) and the
    final test accuracy (``test_*``); the means of the best-by-validation checkpoint's
    validation and test accuracy; mean and 95 % CI of each of ``measures`` (``NAME_mean``,
    ``NAME_ci_lo``, ``NAME_ci_hi``; default: the registered measures among the columns of
    ``df``); parameters; final train loss; mean training time and images/s; and, given the
    sweep's ``workdir``, the plateau check (``plateau_*``)."""
    import pandas as pd

    measures = measures_in(df.columns) if measures is None else measures
    rows = []
    for config in configs(df, keys):
        sub = select(df, keys, config)
        done = sub[sub.status == "done"]
        e = stats.mean_ci(done[metric])
        val = stats.mean_ci(done["validation_accuracy"])
        test = stats.mean_ci(done["test_accuracy"])
        pl = plateau(workdir, sub) if workdir is not None else Plateau(0)
        rows.append(
            {
                **dict(zip(keys, config)),
                "n": len(done),
                "trials": len(sub),
                "diverged": int((sub.status == "diverged").sum()),
                "failed": int((sub.status == "failed").sum()),
                **_estimate("", e),
                **_estimate("val_", val),
                **_estimate("test_", test),
                "best_val_mean": _mean(done, "best_validation_accuracy"),
                "best_test_mean": _mean(done, "best_test_accuracy"),
                "stopped_early": int((done["stopped_early"] == True).sum()),
                **_measure_estimates(done, measures),
                "params": float(done["params"].iloc[0]) if len(done) else math.nan,
                "train_loss": _mean(done, "train_loss"),
                "plateau_evaluations": pl.evaluations,
                "plateau_best": pl.best,
                "plateau_last_two": pl.last_two,
                "plateau_gap": pl.gap,
                "plateaued": pl.plateaued,
                "plateau_seeds": pl.seeds,
                "plateau_not": pl.not_plateaued,
                "train_seconds": _mean(done, "train_seconds"),
                "images_per_second": _mean(done, "images_per_second"),
                "wall_seconds": _mean(done, "wall_seconds"),
            }
        )
    return pd.DataFrame(rows)


def ranked(rows: list, by: str = "val_mean") -> list:
    """Aggregate rows best first by ``by`` (mean validation accuracy): the selection rule of
    every ranking and "best configuration" in the report. Rows without a finite value are
    left out; ties keep their order of appearance."""
    ok = [r for r in rows if math.isfinite(r[by])]
    return sorted(ok, key=lambda r: -r[by])


def paired(a, b, column: str) -> tuple[list, stats.Paired]:
    """The done trials of ``a`` against those of ``b`` on ``column``, paired by seed:
    ``(the seeds both have, their paired comparison a - b)``."""
    a = a[a.status == "done"].set_index("seed")[column]
    b = b[b.status == "done"].set_index("seed")[column]
    seeds = sorted(set(a.index) & set(b.index))
    return seeds, stats.compare([a[s] for s in seeds], [b[s] for s in seeds])


def comparisons(df, keys: list[str], baseline: dict, metric: str = "test_accuracy"):
    """Every configuration against the baseline value(s) at equal other keys, paired by
    seed: mean difference with 95 % CI, paired t-test, Wilcoxon, Holm-adjusted p, d_z, and
    the power of each comparison (:func:`_holm_and_power`)."""
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
        b = select(df, keys, tuple(ref))
        if not len(b):
            continue
        c = paired(select(df, keys, config), b, metric)[1]
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
                "sd_diff": c.sd_diff,
                "n_nonzero": c.n_nonzero,
            }
        )
    out = pd.DataFrame(rows)
    if len(out):
        _holm_and_power(out, [k for k in keys if k not in base_labels])
    return out


def _holm_and_power(out, others: list[str]) -> None:
    """Adds to the comparisons ``out`` the Holm-adjusted p-values (``p_holm``, one family
    per setting of the ``others`` keys: ``family_size``) and the power of each comparison
    (``alpha_power``, ``mdd``, ``seeds_needed``)."""
    import pandas as pd

    # One family of comparisons per setting of the other keys (e.g. per model): Holm
    # adjusts each configuration's p-value for the comparisons made at that setting.
    families = (
        out[others].astype(str).agg("|".join, axis=1) if others else pd.Series([""] * len(out))
    )
    out["p_holm"] = float("nan")
    out["family_size"] = 0
    for fam in dict.fromkeys(families):
        idx_f = out.index[families == fam]
        pvals = out.loc[idx_f, "p_t"].tolist()
        out.loc[idx_f, "p_holm"] = stats.holm(pvals)
        out.loc[idx_f, "family_size"] = max(1, sum(math.isfinite(p) for p in pvals))
    # Power at the strictest level of the Holm family, alpha / m (Holm's first step):
    # an upper bound on the detectable difference whatever a comparison's rank.
    out["alpha_power"] = ALPHA / out["family_size"]
    out["mdd"] = [
        stats.min_detectable_difference(r["sd_diff"], int(r["n"]), r["alpha_power"])
        for _, r in out.iterrows()
    ]
    out["seeds_needed"] = [
        stats.seeds_needed(r["diff"], r["sd_diff"], r["alpha_power"]) for _, r in out.iterrows()
    ]


def verdict(
    r, alpha: float = ALPHA, scale: float = 100, unit: str = " pp", higher_is_better: bool = True
) -> str:
    """A comparison row's verdict: ``significantly better`` / ``significantly worse`` from
    its Holm-adjusted p-value (better: a positive Δ if ``higher_is_better``, else a negative
    one), else ``no difference detectable at n = N (MDD x pp)`` with its minimum detectable
    difference at 80 % power (``scale``/``unit``: how Δ is shown); ``identical in all N
    seeds`` where every paired difference is exactly 0 (no test is defined there)."""
    if r["n"] >= 2 and r["diff"] == 0 and r.get("sd_diff") == 0:
        return f"identical in all {int(r['n'])} seeds (Δ = 0)"
    if r["n"] < 2 or not math.isfinite(r["p_holm"]):
        return "too few seeds"
    if r["p_holm"] < alpha:
        better = r["diff"] > 0 if higher_is_better else r["diff"] < 0
        return "significantly better" if better else "significantly worse"
    mdd = r.get("mdd", math.nan)
    where = f" (MDD {scale * mdd:.2f}{unit})" if math.isfinite(mdd) else ""
    return f"no difference detectable at n = {int(r['n'])}{where}"


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
    """Mean over the done trials in ``sub``: validation accuracy per evaluation step (the
    steps every trial has), train accuracy and loss per log step (each averaged over the
    steps since the last log); ``None`` if none is done."""
    import numpy as np

    runs = [series(workdir, name) for name in sub[sub.status == "done"]["trial"]]
    if not runs:
        return None
    steps = sorted(set.intersection(*(set(v) for v, _ in runs)))
    tsteps = sorted(set.intersection(*(set(t) for _, t in runs)))
    val_acc = np.array([[v[s] for s in steps] for v, _ in runs]).reshape(len(runs), -1).mean(0)
    train = np.array([[t[s] for s in tsteps] for _, t in runs]).reshape(len(runs), -1, 2)
    return steps, val_acc, tsteps, train[..., 0].mean(0), train[..., 1].mean(0)
