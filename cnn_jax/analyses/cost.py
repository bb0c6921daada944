"""Cost as a per-trial analysis: parameters, multiply-accumulates and inference time.

Parameters and MACs (one forward pass of one image) come from the model summary
(:func:`cnn_jax.summary.summarize_model`); they are the same for every seed. Inference time
per image is measured side by side in the trial's own process (so on the CPUs that trained
it): the trial's model and the baseline's model (the trial's config with the study's
baseline values, e.g. max pooling in place of the trial's kind) are timed alternately,
``repeats`` rounds of ``batches`` evaluation batches each, and the ratio of their medians is
what the study reports (absolute times drift with the machine and its load; a ratio
measured in one process does much less). Nothing here is a :class:`Measure`: timings differ
from run to run, and ``report.md`` holds only what the results determine; the cost table
is in ``timing.md`` (:mod:`cnn_jax.study.reporting.profile`).

The option ``baseline`` (the baseline's config values) left ``None`` is filled in with the
study's baseline when the study is planned.
"""

from __future__ import annotations

import time

import numpy as np

from cnn_jax.analyses.base import DETAILS, Context, per_model, register


@per_model
def _predictor(model):
    from cnn_jax.viz.shift import predictor

    return predictor(model)

NAME = "cost"


def _time(fn, x, batches: int) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        np.asarray(fn(x))
    return time.perf_counter() - start


def side_by_side(fns: list, x, repeats: int, batches: int) -> list[float]:
    """Median seconds per image of each of ``fns`` (``x -> predictions``) on ``x``, timed in
    alternation (``repeats`` rounds of ``batches`` calls each, after one warm-up call; the
    order reversed every other round, so that neither is always timed first)."""
    for fn in fns:
        np.asarray(fn(x))
    times = [[] for _ in fns]
    for r in range(repeats):
        order = list(enumerate(fns))
        for i, fn in order if r % 2 == 0 else order[::-1]:
            times[i].append(_time(fn, x, batches))
    return [float(np.median(t)) / (batches * len(x)) for t in times]


def _baseline_predict(cfg, values: dict, num_classes: int, input_shape):
    """``x -> classes`` of the baseline's model (``cfg`` with ``values``), at its initial
    parameters (the time of a forward pass does not depend on their values)."""
    from cnn_jax import config as config_lib
    from cnn_jax import models
    from cnn_jax.train import assemble
    from cnn_jax.train import state as state_lib
    from cnn_jax.viz.shift import variables_of

    base = config_lib.with_values(cfg, dict(values))
    model = models.create(base.model.name, num_classes, **assemble.model_options(base))
    import optax

    state = state_lib.create(model, optax.sgd(0.0), input_shape, int(base.seed))
    fn, variables = _predictor(model), variables_of(state)
    return lambda x: fn(variables, x)


@register(NAME, measures=[], options={"baseline": None, "repeats": 5, "batches": 3})
def cost(ctx: Context, baseline, repeats: int, batches: int):
    """Parameters, MACs and inference time per image (and relative to the baseline's model,
    measured side by side) of the trial's model; all in the analysis's details."""
    from cnn_jax.data import eval_batches
    from cnn_jax.summary import summarize_model
    from cnn_jax.viz.shift import variables_of

    s = ctx.setup
    summary = summarize_model(s.model, tuple(s.input_shape))
    x = next(iter(eval_batches(s.test, ctx.batch_size)))["image"]
    fn, variables = _predictor(s.model), variables_of(ctx.state)
    fns = [lambda v: fn(variables, v)]
    if baseline:
        fns.append(_baseline_predict(s.cfg, baseline, s.test.spec.num_classes,
                                     tuple(s.input_shape)))
    per_image = side_by_side(fns, x, repeats, batches)
    details = {"params": int(summary.total_params), "macs": int(summary.total_macs),
               "inference_us": 1e6 * per_image[0], "batch": len(x)}
    if baseline:
        details["baseline_inference_us"] = 1e6 * per_image[1]
        details["inference_ratio"] = per_image[0] / per_image[1]
    return {DETAILS: details}
