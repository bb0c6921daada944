"""Shift consistency (Zhang 2019) as a per-trial analysis: the first registered analysis.

Reference: R. Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019. The
measure itself (zero-fill translations, seeded shifts) is :mod:`cnn_jax.viz.shift`.
"""

from __future__ import annotations

from cnn_jax.analyses.base import Context, Measure, register

NAME = "shift_consistency"


def _check(options) -> None:
    from cnn_jax.errors import UserError
    from cnn_jax.viz.shift import FILLS

    if options["fill"] not in FILLS:
        raise UserError(f"analysis {NAME!r}: option 'fill' is {options['fill']!r}; choose one "
                        f"of: {', '.join(FILLS)}")
    if options["max_shift"] < 0:
        raise UserError(f"analysis {NAME!r}: option 'max_shift' is {options['max_shift']}; "
                        "choose 0 or more pixels")


_FILL_WORDS = {"zero": "zero fill", "circular": "circular shifts, wrapping round"}


def _describe(options) -> str:
    along = " along the diagonal only" if options.get("diagonal") else ""
    return (
        "Shift consistency: fraction of test images whose predicted class is the same "
        f"under two random translations of up to ±{options['max_shift']} pixels{along} "
        f"({_FILL_WORDS[options.get('fill', 'zero')]}; the same shifts for every trial), "
        "as in Zhang (2019), "
        "*Making Convolutional Networks Shift-Invariant Again*. Read it next to "
        "accuracy: a model that predicts few classes is consistent trivially."
    )


@register(
    NAME,
    measures=[Measure(NAME, "shift consistency", short="shift", reference="Zhang 2019")],
    options={"max_shift": 3, "seed": 0, "fill": "zero", "diagonal": False},
    describe=_describe,
    check=_check,
)
def shift_consistency(ctx: Context, max_shift: int, seed: int, fill: str,
                      diagonal: bool) -> dict[str, float]:
    """Zhang's consistency of the trial's predictions on its test split under random
    translations of up to ``max_shift`` pixels (the same shifts for every trial), with the
    shift protocol ``fill`` (``zero`` or ``circular``) and ``diagonal``."""
    from cnn_jax.viz import shift

    value = shift.shift_consistency(
        ctx.predict, ctx.setup.test, max_shift=max_shift, seed=seed, batch_size=ctx.batch_size,
        fill=fill, diagonal=diagonal,
    )
    return {NAME: value}
