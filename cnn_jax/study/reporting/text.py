"""The number formats and markdown pieces shared by the report's tables, protocol and text.

Every function returns a string; ``-`` stands for a value that is not finite (NaN, or a
statistic that cannot be computed)."""

from __future__ import annotations

import math


def pct(x: float, digits: int = 2) -> str:
    """A fraction in per cent (``0.9812`` -> ``98.12``)."""
    return "-" if not math.isfinite(x) else f"{100 * x:.{digits}f}"


def value(x: float, fraction: bool, digits: int = 2) -> str:
    """``x`` in per cent if it is a ``fraction``, else with four decimals."""
    return pct(x, digits) if fraction else ("-" if not math.isfinite(x) else f"{x:.4f}")


def p_value(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def fixed(x: float, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals; infinities spelled out."""
    if not math.isfinite(x):
        return "inf" if x == math.inf else "-inf" if x == -math.inf else "-"
    return f"{x:.{digits}f}"


def seed_count(x: float) -> str:
    """A number of seeds (``∞`` where no number would do)."""
    if not math.isfinite(x):
        return "∞" if x == math.inf else "-"
    return f"{int(x):,}"


def column_words(column: str) -> str:
    """A ``results.csv`` column in words (``test_accuracy`` -> ``test accuracy``)."""
    return column.replace("_", " ")


def capitalised(text: str) -> str:
    return f"{text[0].upper()}{text[1:]}"


def bullet(text: str) -> str:
    """A bullet point starting with a capital letter."""
    return f"- {capitalised(text)}"


def value_range(values, fmt) -> str:
    """``lo–hi`` of ``values`` (NaN left out) formatted by ``fmt``; one value if they agree."""
    vals = sorted(v for v in values if not (isinstance(v, float) and math.isnan(v)))
    if not vals:
        return "-"
    lo, hi = fmt(vals[0]), fmt(vals[-1])
    return lo if lo == hi else f"{lo}–{hi}"


def table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    """A markdown table; ``align``: ``l`` or ``r`` per column (default: all left)."""
    align = align or ["l"] * len(header)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# Which state of each trial an analysis measured (its option ``state``).
MEASURED_STATE = {
    "best": "Measured on each trial's checkpoint selected by validation accuracy (its final "
    "state where none was selected; each trial's `analysis.json` records the step).",
    "final": "Measured on each trial's final state (the one its test metrics are reported for).",
}
