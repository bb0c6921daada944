"""The tables of a sweep report (markdown): per-configuration aggregates, comparisons with
the baseline (with power), timings; and the number formats they share with the text."""

from __future__ import annotations

import math

from cnn_jax.study.reporting.aggregate import is_fraction, verdict
from cnn_jax.study.reporting.rows import short

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
