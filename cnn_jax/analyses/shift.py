"""Shift consistency (Zhang 2019) as a per-trial analysis: the first registered analysis.

Reference: R. Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019. The
measure itself (zero-fill translations, seeded shifts) is :mod:`cnn_jax.viz.shift`.
"""

from __future__ import annotations

from cnn_jax.analyses.base import Context, Measure, register

NAME = "shift_consistency"


def _describe(options) -> str:
    return (
        "Shift consistency: fraction of test images whose predicted class is the same "
        f"under two random translations of up to ±{options['max_shift']} pixels "
        "(zero fill; the same shifts for every trial), as in Zhang (2019), "
        "*Making Convolutional Networks Shift-Invariant Again*. Read it next to "
        "accuracy: a model that predicts few classes is consistent trivially."
    )


@register(
    NAME,
    measures=[Measure(NAME, "shift consistency", short="shift", reference="Zhang 2019")],
    options={"max_shift": 3, "seed": 0},
    describe=_describe,
)
def shift_consistency(ctx: Context, max_shift: int, seed: int) -> dict[str, float]:
    """Zhang's consistency of the trial's predictions on its test split under random
    translations of up to ``max_shift`` pixels (the same shifts for every trial)."""
    from cnn_jax.viz import shift

    value = shift.shift_consistency(
        ctx.predict, ctx.setup.test, max_shift=max_shift, seed=seed, batch_size=ctx.batch_size
    )
    return {NAME: value}
