"""The profile of each configuration across the study's measures, and what needs more than
one scalar per trial: mCE against the baseline, reliability diagrams, per-site
equivariance, cost.

Reads each finished trial's ``analysis.json`` details (:data:`cnn_jax.analyses.DETAILS`).
``report.md`` gets the profile table (results only); ``timing.md`` the cost table (timings
vary with the machine, so they stay out of ``report.md``).
"""

from __future__ import annotations

import math

import numpy as np

from cnn_jax.analyses import Measure
from cnn_jax.study import store
from cnn_jax.study.reporting import stats
from cnn_jax.study.reporting.aggregate import CONFIG, panels, select, with_labels
from cnn_jax.study.reporting.rows import label, short, trial_dir
from cnn_jax.study.reporting.text import pct, table


def records(workdir: str, df) -> dict[str, dict]:
    """``{trial: its analysis.json}`` of the finished trials of ``df``."""
    done = df[df.status == "done"] if len(df) else df
    return {name: store.read_analysis(trial_dir(workdir, name)) for name in done.get("trial", [])}


def details(recs: dict, trial: str, analysis: str):
    """Analysis ``analysis``'s details of ``trial`` (``None`` when absent)."""
    return ((recs.get(trial) or {}).get(analysis) or {}).get("details")


def _pairs(df, keys: list[str], baseline: dict):
    """``(config label, [(trial, baseline trial of the same seed), ...])`` per configuration,
    in the order of ``df`` (the baseline paired with itself)."""
    df = with_labels(df[df.status == "done"], keys)
    factor, others = panels(keys, baseline)
    if not len(df) or factor not in (baseline or {}):
        return []
    base = label(baseline[factor])
    out: dict[str, list] = {}
    for _, r in df.iterrows():
        group = tuple(r[k] for k in others)
        b = select(df[(df[factor] == base) & (df.seed == r.seed)], others, group)
        if len(b):
            out.setdefault(r[CONFIG], []).append((r.trial, b.trial.iloc[0]))
    return list(out.items())


def mce(df, recs: dict, keys: list[str], baseline: dict) -> dict[str, tuple]:
    """``{config: (mCE Estimate, relative mCE Estimate)}``: per seed against the baseline
    trial of the same seed and other swept values (:func:`cnn_jax.analyses.corruptions.mce`),
    then mean and t interval over seeds."""
    from cnn_jax.analyses import corruptions

    out = {}
    for config, pairs in _pairs(df, keys, baseline):
        per = [(details(recs, t, corruptions.NAME), details(recs, b, corruptions.NAME))
               for t, b in pairs]
        per = [(d, b) for d, b in per if d and b]
        if per:
            out[config] = (stats.mean_ci([corruptions.mce(d, b) for d, b in per]),
                           stats.mean_ci([corruptions.mce(d, b, relative=True) for d, b in per]))
    return out


def _cell(e, scale: float = 100, digits: int = 1) -> str:
    if e is None or not math.isfinite(e.mean):
        return "-"
    ci = f" [{scale * e.lo:.{digits}f}, {scale * e.hi:.{digits}f}]" if math.isfinite(e.lo) else ""
    return f"{scale * e.mean:.{digits}f}{ci}"


def _cost_of(recs: dict, df, config: str, keys: list[str]) -> dict:
    rows = with_labels(df[df.status == "done"], keys)
    for name in rows[rows[CONFIG] == config].trial:
        d = details(recs, name, "cost")
        if d:
            return d
    return {}


def _params_of(df, config: str, keys: list[str]) -> int:
    rows = with_labels(df[df.status == "done"], keys)
    values = rows[rows[CONFIG] == config]["params"].dropna()
    return int(values.iloc[0]) if len(values) else 0


def section(df, agg, recs: dict, keys: list[str], baseline: dict, metric: str,
            measures: list[Measure]) -> list[str]:
    """``report.md``'s profile: one row per configuration, the mean of every measure (and
    mCE, relative mCE, parameters and MACs where recorded); empty without measures."""
    if not measures or not len(agg):
        return []
    agg = with_labels(agg[agg.n > 0], keys)
    errors = mce(df, recs, keys, baseline)
    header = ["configuration", "n", f"{short(metric)} %"]
    header += [f"{m.short_label}{' %' if m.fraction else ''}" for m in measures]
    header += ["mCE %", "relative mCE %"] if errors else []
    header += ["params", "MACs"]
    lines = []
    for _, r in agg.iterrows():
        cells = [r[CONFIG], str(int(r.n)), pct(r["test_mean"])]
        for m in measures:
            v = r[f"{m.name}_mean"]
            cells.append(pct(v) if m.fraction else (f"{v:.4f}" if math.isfinite(v) else "-"))
        if errors:
            e = errors.get(r[CONFIG], (None, None))
            cells += [_cell(e[0]), _cell(e[1])]
        cost = _cost_of(recs, df, r[CONFIG], keys)
        params = cost.get("params", _params_of(df, r[CONFIG], keys))
        cells += [f"{params:,}" if params else "-", f"{cost['macs']:,}" if cost else "-"]
        lines.append(cells)
    text = [
        "## Profile per configuration",
        "",
        "Every measure's mean over seeds at each configuration (their CIs are in the results "
        "table, their paired comparisons with the baseline below). "
        + ("mCE: the mean over corruptions of the configuration's errors summed over "
           "severities divided by the baseline's (Hendrycks & Dietterich 2019, the baseline "
           "in AlexNet's place); relative mCE: the same with each error minus the clean error "
           "on the same images. Both are computed per seed against the baseline trial of the "
           "same seed, then averaged (95 % t CI over seeds in brackets, not adjusted for the "
           "number of comparisons: the Holm-adjusted test of robustness is that of the mean "
           "corruption accuracy below); the baseline is 100 by definition. " if errors else "")
        + "Parameters: the model's (a learned pooling kind's included); MACs: one forward "
        "pass of one image through the convolution and dense layers outside the pooling "
        "layers (the model summary's count, where the `cost` analysis ran: a pooling "
        "layer's own work, a strided convolution's included, is not counted; its cost shows "
        "in the timings of `timing.md`).",
        "",
        table(header, lines, ["l"] + ["r"] * (len(header) - 1)),
        "",
    ]
    return text


def cost_section(df, recs: dict, keys: list[str], baseline: dict, figure: str | None = None) -> str:
    """``timing.md``'s cost table: per configuration, the training step time and the
    inference time per image relative to the baseline, each paired by seed (the step time
    from the trials' own training images/s; the inference time measured side by side with
    the baseline's model in the trial's process by the ``cost`` analysis); empty where no
    baseline pairs the trials."""
    rows = []
    ips = df.set_index("trial")["images_per_second"] if len(df) else None
    for config, pairs in _pairs(df, keys, baseline):
        step = [float(ips[b]) / float(ips[t]) for t, b in pairs
                if ips[t] > 0 and math.isfinite(ips[t]) and math.isfinite(ips[b])]
        cost = [details(recs, t, "cost") or {} for t, _ in pairs]
        infer = [c["inference_us"] for c in cost if "inference_us" in c]
        ratio = [c["inference_ratio"] for c in cost if "inference_ratio" in c]
        rows.append([config, str(len(pairs)), _ratio(step),
                     f"{np.median(infer):.1f}" if infer else "-", _ratio(ratio)])
    if not rows:
        return ""
    return (
        "## Cost relative to the baseline\n\n"
        "Per configuration, paired by seed with the baseline trial of the same seed: the "
        "training step time relative to the baseline's (the ratio of their training images/s; "
        "trials that ran at the same time on other CPUs, so the ratio carries the machine's "
        "drift), and the inference time per image (median over seeds) with its ratio to the "
        "baseline's model, measured side by side in the trial's own process by the `cost` "
        "analysis (at the evaluation batch size, on the CPUs the trial was pinned to). Ratios: "
        "median over seeds [min, max].\n\n"
        + table(["configuration", "seeds", "train step time / baseline", "inference µs/image",
                 "inference time / baseline"], rows, ["l", "r", "r", "r", "r"])
        + "\n\n"
        + (f"![accuracy against inference time relative to the baseline]({figure})\n\n"
           if figure else "")
    )


def _ratio(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{np.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def corruption_means(df, recs: dict, keys: list[str]) -> tuple[list[str], dict[str, dict]]:
    """``(corruptions, {config: {corruption: mean accuracy over severities and seeds,
    "clean": mean clean accuracy on the same images}})`` from the corruptions details."""
    from cnn_jax.analyses import corruptions

    rows = with_labels(df[df.status == "done"], keys) if len(df) else df
    names: list[str] = []
    out: dict[str, dict] = {}
    for config in dict.fromkeys(rows[CONFIG]) if len(rows) else []:
        per = [details(recs, t, corruptions.NAME) for t in rows[rows[CONFIG] == config].trial]
        per = [d for d in per if d]
        if not per:
            continue
        names = names or list(per[0]["accuracy"])
        out[config] = {n: float(np.mean([np.mean(d["accuracy"][n]) for d in per])) for n in names}
        out[config]["clean"] = float(np.mean([d["clean"] for d in per]))
    return names, out


def _groups(df, keys: list[str], baseline: dict) -> dict[str, tuple]:
    """``{config: its values of the keys other than the compared one}`` (e.g. its model)."""
    _, others = panels(keys, baseline)
    rows = with_labels(df, keys)
    return {r[CONFIG]: tuple(r[k] for k in others) for _, r in rows.iterrows()}


def corruption_section(df, recs: dict, keys: list[str], baseline: dict) -> list[str]:
    """``report.md``'s accuracy per corruption: a row per configuration, a column per
    corruption (mean over severities and seeds), the clean accuracy on the same images
    first; the best configuration of each column in bold."""
    names, means = corruption_means(df, recs, keys)
    if not means:
        return []
    cols = ["clean", *names]
    group = _groups(df, keys, baseline)
    best = {(group[c], n): max(m[n] for c2, m in means.items() if group[c2] == group[c])
            for c in means for n in cols}
    rows = [[config] + [("**{}**" if abs(m[n] - best[group[config], n]) < 1e-12 else "{}")
                        .format(pct(m[n], 1)) for n in cols] for config, m in means.items()]
    header = ["configuration", "clean", *(n.replace("_", " ") for n in names)]
    return [
        "### Accuracy per corruption",
        "",
        ("Mean over severities and seeds, % (bold: the highest in its column among the "
         "configurations that share the other swept values, e.g. per model). Clean: the same "
         "test images uncorrupted."),
        "",
        table(header, rows, ["l"] + ["r"] * (len(header) - 1)),
        "",
    ]
