"""The text of a sweep report: ``report.md`` (results only) and ``timing.md``.

``report.md`` is a function of the trials' results only (no timings, dates or absolute
paths), so an interrupted-then-resumed sweep writes the same ``report.md`` as an
uninterrupted one; training time and images/s go to ``timing.md``. It states the protocol
(data sizes, budget, selection rule, plateau check, power), ranks and selects
configurations by mean validation accuracy and compares them with the baseline on the
study's metric (the test split, read once at the end of each trial).
"""

from __future__ import annotations

import math
import os
from typing import Any

from cnn_jax import rundir
from cnn_jax.study import store
from cnn_jax.study.analysis import (
    ALPHA,
    PLATEAU_TOLERANCE,
    is_fraction,
    panels,
    ranked,
    verdict,
    with_labels,
)
from cnn_jax.study.figures import relpath
from cnn_jax.study.results import label, short, trial_config

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


def _judged(v) -> bool:
    """Whether a ``plateaued`` value is a verdict (numpy or Python bool), not ``None``/NaN."""
    return v is not None and v in (True, False)


def _plateau_cell(r) -> str:
    if not _judged(r.get("plateaued")):
        return "-"
    gap = 100 * r["plateau_gap"]
    return f"{'yes' if r['plateaued'] else 'no'} ({0.0 if abs(gap) < 5e-3 else gap:.2f})"


def aggregate_table(agg, keys: list[str], metric: str, shift: bool) -> str:
    """Per configuration: seeds done; mean ± sd and 95 % CI of the final validation and test
    accuracy (and of ``metric`` if it is neither); the best-by-validation checkpoint's
    validation / test accuracy; (shift consistency;) parameters; final train loss; the
    plateau check."""
    frac = is_fraction(metric)
    unit = " %" if frac else ""
    own = metric not in ("validation_accuracy", "test_accuracy")
    header = [
        "n",
        "validation % mean ± sd",
        "95 % CI (validation)",
        "test % mean ± sd",
        "95 % CI (test)",
    ]
    if own:
        header += [f"{_name(metric)}{unit} mean ± sd", f"95 % CI ({_name(metric)})"]
    header += ["best checkpoint: validation / test %"]
    if shift:
        header += ["shift consistency %", "95 % CI (shift)"]
    header += ["params", "final train loss", "plateau (last two − best, pp)"]

    def est(r, prefix, fr):
        return [
            f"{_val(r[prefix + 'mean'], fr)} ± {_val(r[prefix + 'std'], fr)}",
            f"[{_val(r[prefix + 'ci_lo'], fr)}, {_val(r[prefix + 'ci_hi'], fr)}]",
        ]

    def cells(r):
        n = (
            f"{r['n']}/{r['trials']}"
            + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
            + (f" ({r['failed']} failed)" if r["failed"] else "")
        )
        row = [n, *est(r, "val_", True), *est(r, "test_", True)]
        if own:
            row += est(r, "", frac)
        row.append(f"{_pct(r['best_val_mean'])} / {_pct(r['best_test_mean'])}")
        if shift:
            row += [
                _pct(r["shift_mean"], 1),
                f"[{_pct(r['shift_ci_lo'], 1)}, {_pct(r['shift_ci_hi'], 1)}]",
            ]
        return row + [
            "-" if not math.isfinite(r["params"]) else f"{int(r['params']):,}",
            _f(r["train_loss"], 4),
            _plateau_cell(r),
        ]

    return _keyed_table(agg, keys, header, cells, ["r"] * len(header))


def _seeds(x: float) -> str:
    if not math.isfinite(x):
        return "∞" if x == math.inf else "-"
    return f"{int(x):,}"


def comparison_table(comp, keys: list[str], metric: str) -> str:
    """Per configuration against the baseline: Δ with its CI, the tests, d_z, the power
    (minimum detectable difference at 80 % power, seeds needed for the observed Δ) and the
    verdict."""
    frac = is_fraction(metric)
    scale = 100 if frac else 1
    pp = " (pp)" if frac else ""
    header = [
        "n",
        f"Δ{pp}",
        "95 % CI of Δ",
        "t",
        "p (t-test)",
        "p (Wilcoxon)",
        "p (Holm)",
        "Cohen's d_z",
        f"MDD{pp}",
        "seeds for Δ",
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
            _f(scale * r["mdd"], 2),
            _seeds(r["seeds_needed"]),
            verdict(r, scale=scale, unit=" pp" if frac else ""),
        ]

    return _keyed_table(comp, keys, header, cells, ["r"] * 10 + ["l"])


def timing_table(agg, keys: list[str], with_wall: bool) -> str:
    """Per configuration: seeds done, training images/s, training-loop seconds, and (where
    recorded) the trials' wall seconds and the share of it outside the training loop."""
    header = ["n", "training images/s (mean)", "training loop s (mean)"]
    if with_wall:
        header += ["trial wall s (mean)", "outside the training loop"]

    def cells(r):
        row = [str(r["n"]), _f(r["images_per_second"], 0), _f(r["train_seconds"], 1)]
        if with_wall:
            w, t = r["wall_seconds"], r["train_seconds"]
            share = 1 - t / w if math.isfinite(w) and math.isfinite(t) and w > 0 else math.nan
            row += [_f(w, 1), "-" if not math.isfinite(share) else f"{100 * share:.0f} %"]
        return row

    return _keyed_table(agg, keys, header, cells, ["r"] * len(header))


# ----------------------------------------------------------------------------- sentences


def _range(values, fmt) -> str:
    vals = sorted(v for v in values if not (isinstance(v, float) and math.isnan(v)))
    if not vals:
        return "-"
    lo, hi = fmt(vals[0]), fmt(vals[-1])
    return lo if lo == hi else f"{lo}–{hi}"


def _significant(comp, factor, others, baseline, metric) -> list[str]:
    frac = is_fraction(metric)
    scale, unit = (100, " pp") if frac else (1, "")
    base = ", ".join(f"{short(k)}={label(v)}" for k, v in baseline.items())
    what = f"{_name(metric)}: " if metric != "test_accuracy" else ""
    sig = comp[comp["p_holm"] < ALPHA]
    lines = []
    if not len(sig):
        lines.append(
            _sentence(
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
                f"p(Holm) {_p(r['p_holm'])}"
            )
        lines.append(
            _sentence(
                f"{what}significantly different from {base} (paired t-test, Holm-adjusted, "
                "α = 0.05): " + "; ".join(parts) + "."
            )
        )
    rest = comp[~(comp["p_holm"] < ALPHA) & (comp["n"] >= 2)]
    if len(rest):
        ns = _range(rest["n"].tolist(), lambda v: str(int(v)))
        lines.append(
            f'  Not significant is not "equal": at n = {ns} only a true Δ of at least the '
            f"MDD, {_range((scale * rest['mdd']).tolist(), lambda v: f'{v:.2f}')}{unit}, would "
            "be detected with 80 % power (α/m); detecting the observed Δ with 80 % power would "
            f"take {_range(rest['seeds_needed'].tolist(), _seeds)} seeds."
        )
    return lines


def _answer(agg, comp, keys, baseline, metric, comp_shift=None) -> list[str]:
    """Plain sentences that follow from the tables. Rankings and the selected
    ("best") configuration are by mean validation accuracy; their test accuracy is reported,
    never used to choose."""
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
            + " > ".join(f"{r[factor]} ({_pct(r['val_mean'])})" for r in order)
            + "."
        )
        best = order[0]
        lines.append(
            f"  Selected by validation accuracy: **{best[factor]}**, {_pct(best['val_mean'])} % "
            f"(95 % CI [{_pct(best['val_ci_lo'])}, {_pct(best['val_ci_hi'])}] over "
            f"{best['n']} seeds); its test accuracy is {_pct(best['test_mean'])} % (95 % CI "
            f"[{_pct(best['test_ci_lo'])}, {_pct(best['test_ci_hi'])}])."
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
        f"Metric: `{metric}` of the final state"
        + (f" on {int(test_n.iloc[0]):,} test images" if len(test_n) else "")
        + "; "
        "95 % confidence intervals use the t distribution over seeds.",
        "",
    ]


def _get(cfg: dict, key: str):
    v: Any = cfg
    for part in key.split("."):
        if not isinstance(v, dict) or part not in v:
            return None
        v = v[part]
    return v


def _values(cfgs: list[dict], key: str) -> str:
    """The distinct values of ``key`` over the trials' configs, in order of appearance."""
    vals = list(dict.fromkeys(label(_get(c, key)) for c in cfgs))
    if len(vals) <= 4:
        return " / ".join(vals)
    return f"{len(vals)} values ({', '.join(vals[:3])}, …)"


def _count(x) -> str:
    return f"{int(x):,}" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def _protocol(workdir: str, df, agg, comp, keys: list[str]) -> list[str]:
    """The protocol statement: data sizes per split, budget, selection rule, plateau check
    and power."""
    done = df[df.status == "done"]
    lines = ["## Protocol", ""]
    if not len(done):
        return lines + ["No trial has finished yet.", ""]
    per_trial = [trial_config(workdir, t) for t in done["trial"]]
    cfgs = [c for c in per_trial if c is not None]
    # Data: the split sizes (summary.json "data") per dataset.
    sizes: dict[tuple, None] = {}
    for (_, r), c in zip(done.iterrows(), per_trial):
        name = _get(c, "data.name") if c else None
        sizes.setdefault(
            (label(name) if name else "-", r["train_n"], r["validation_n"], r["test_n"]), None
        )
    parts = [
        f"{name}: {_count(tr)} train / {_count(va)} validation / {_count(te)} test images"
        for name, tr, va, te in sizes
    ]
    has_val = bool((done["validation_n"].fillna(0) > 0).any())
    held = _values(cfgs, "data.validation") if cfgs else "-"
    lines.append(
        "- Data: "
        + "; ".join(parts)
        + (
            f". Validation is a stratified, seeded hold-out of the train split "
            f"(`data.validation` = {held}), the same for every seed; the test split is "
            "separate."
            if has_val
            else ". No validation split (`data.validation` = 0)."
        )
    )
    # Budget: planned and trained steps, batch size, optimizer.
    planned = done["planned_steps"]
    per_epoch = done["steps"] / done["epochs"]
    planned_epochs = (planned / per_epoch).round(4)
    early = int((done["stopped_early"] == True).sum())
    epochs = _values([{"v": float(v)} for v in planned_epochs.tolist()], "v")
    budget = (
        f"- Budget per trial: {_values([{'v': v} for v in planned.tolist()], 'v')} steps "
        f"({epochs} epoch{'' if epochs == '1' else 's'})"
    )
    if cfgs:
        budget += f" at batch size {_values(cfgs, 'data.batch_size')}"
    budget += (
        "; every trial trained all its planned steps."
        if not early
        else f"; {early} of {len(done)} trials stopped early (validation accuracy had not "
        f"improved for `train.early_stopping_patience` = "
        f"{_values(cfgs, 'train.early_stopping_patience') if cfgs else '-'} evaluations)."
    )
    lines.append(budget)
    if cfgs:
        optim = (
            f"- Optimizer {_values(cfgs, 'optim.name')}, learning rate "
            f"{_values(cfgs, 'optim.learning_rate')}, schedule {_values(cfgs, 'optim.schedule')}"
            f" (warm-up {_values(cfgs, 'optim.warmup_steps')} steps / "
            f"{_values(cfgs, 'optim.warmup_epochs')} epochs), weight decay "
            f"{_values(cfgs, 'optim.weight_decay')}; validation evaluated every "
            f"{_values(cfgs, 'train.eval_every_epochs')} epoch(s) and after the last step."
        )
        swept = [k for k in keys if k.startswith(("optim.", "data.batch_size", "train."))]
        if swept:
            optim += " Swept: " + ", ".join(f"`{k}`" for k in swept) + " (see the tables)."
        lines.append(optim)
    # Selection rule.
    if has_val:
        lines.append(
            "- Selection: each trial's best checkpoint, early stopping and every ranking or "
            '"best configuration" below use validation accuracy; the test split is evaluated '
            "once, at the end of training, for the final state and for the best-by-validation "
            "checkpoint. Tables and comparisons with the baseline report the final state's "
            "test metric; the test split never chooses anything."
        )
    else:
        lines.append(
            "- Selection: none. Without a validation split no checkpoint or configuration is "
            "selected (selecting on the test split would bias it); the test split is "
            "evaluated once, at the end."
        )
    lines.append(_plateau_line(agg, keys))
    if len(comp):
        lines.append(_power_line(comp))
    return lines + [""]


def _plateau_line(agg, keys: list[str]) -> str:
    judged = agg[agg["plateaued"].map(_judged)]
    not_judged = len(agg[agg.n > 0]) - len(judged)
    rule = (
        f"An arm has plateaued when the mean of its last two validation evaluations (mean "
        f"over seeds) is within {100 * PLATEAU_TOLERANCE:.1f} pp of its best mean (column "
        '"plateau").'
    )
    if not len(judged):
        return f"- Plateau check: not judged (fewer than two validation evaluations). {rule}"
    bad = with_labels(judged[~judged["plateaued"].astype(bool)], keys)
    if not len(bad):
        text = "every arm plateaued"
    else:
        text = (
            "not plateaued: "
            + ", ".join(
                f"{r['configuration']} ({100 * r['plateau_gap']:.2f} pp)" for _, r in bad.iterrows()
            )
            + "; longer training may change their results"
        )
    if not_judged:
        text += f"; {not_judged} arm(s) not judged (fewer than two evaluations)"
    return f"- Plateau check: {text}. {rule}"


def _power_line(comp) -> str:
    alphas = _range(comp["alpha_power"].tolist(), lambda v: f"{v:.4g}")
    m = _range(comp["family_size"].tolist(), lambda v: str(int(v)))
    return (
        "- Power: for each comparison with the baseline, the minimum detectable difference "
        "(MDD) is the true mean Δ that the two-sided paired t-test detects with 80 % power "
        "given the observed sd of the paired differences (noncentral t with n − 1 degrees of "
        'freedom), and "seeds for Δ" the number of seeds that would detect the observed Δ '
        f"with 80 % power. Both use α/m = {alphas} (α = 0.05; m = {m}, the number of "
        "comparisons in the Holm family): Holm's strictest step, so the MDD holds whatever a comparison's rank. A "
        'non-significant verdict reads "no difference detectable at n = … (MDD …)", not '
        '"no difference".'
    )


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


def report(
    workdir: str, rec: dict, df, agg, comp, comp_shift, figs: dict[str, str], shift: bool
) -> str:
    """The text of ``report.md``. ``workdir``: the sweep directory (the trials' configs are
    read for the protocol); ``rec``: the sweep record; ``df``, ``agg``, ``comp``,
    ``comp_shift``: the trials, their aggregate and the comparisons with the baseline (of
    the metric and of shift consistency, or ``None``); ``figs``: the plots written;
    ``shift``: whether to report shift consistency."""
    opts = rec["study"]
    keys, metric = opts["keys"], opts.get("metric", "test_accuracy")
    baseline = opts.get("baseline") or {}
    table = aggregate_table(agg, keys, metric, shift)
    lines = (
        _header(rec, df, metric)
        + _protocol(workdir, df, agg, comp, keys)
        + ["## Results per configuration", "", table, ""]
        + [
            (
                "Validation and test: the final state of each trial (test read once, at the "
                "end); best checkpoint: the one selected by validation accuracy. Plateau: "
                '"yes" if the mean validation curve\'s last two evaluations are within '
                f"{100 * PLATEAU_TOLERANCE:.1f} pp of its best (in brackets: their mean minus "
                "the best, in pp)."
            ),
            "",
        ]
    )
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
                "learning curves: train accuracy (line), validation accuracy (dots, dashed) and "
                "train loss, mean over seeds"
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


def timing(agg, keys: list[str], df=None) -> str:
    """The text of ``timing.md``: training throughput apart from the trials' wall time, and
    the time outside the training loop where the trials recorded their wall time."""
    with_wall = bool(agg["wall_seconds"].notna().any()) if "wall_seconds" in agg else False
    text = (
        "# Timing\n\nMeasured on the machine that ran each trial (it varies with its "
        "load). Trials that trained together (vmapped seeds) share their group's time.\n\n"
        "- Training images/s: `images_per_second` of each trial's `summary.json`, training "
        "images per second from the end of the first step (its compilation excluded) to the "
        "end of the run, as `fit` measures it.\n"
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
        if wall > 0:
            text += (
                f"Sweep: {wall:.1f} s of trial wall time over {len(ok)} trials, of which "
                f"{train:.1f} s in training loops: overhead {100 * (1 - train / wall):.0f} %."
                "\n\n"
            )
    else:
        text += (
            "The trials' wall time is not recorded (no `wall_seconds` in their "
            "`status.json`), so the sweep's overhead outside the training loops is not "
            "computed here.\n\n"
        )
    return text + f"![accuracy vs training time]({relpath('acc_vs_time')})\n"
