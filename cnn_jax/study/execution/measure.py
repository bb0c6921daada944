"""The study's per-trial analyses, run in the worker on what a trial trained.

:func:`run` builds one :class:`cnn_jax.analyses.Context` from the trial's
:class:`cnn_jax.train.loop.FitResult` (its own compiled evaluation program predicts) and
runs every analysis the study names, in order; the result is the trial's ``analysis.json``.
"""

from __future__ import annotations

from cnn_jax import analyses
from cnn_jax.study import store


def context(result) -> analyses.Context:
    """What the analyses may use of ``result`` (a ``FitResult``)."""
    import numpy as np

    from cnn_jax.train import assemble

    s = result.setup
    runner = result.runner or assemble.make_runner(s.cfg, s.loss_fn, s.eval_loss_fn, s.model,
                                                   s.input_shape)
    state = runner.put_state(result.state)
    batch_size = assemble.eval_batch_size(s.cfg, runner)
    labels = np.zeros(batch_size, s.test.labels.dtype)
    mask = np.ones(batch_size, bool)

    def predict(images):
        return runner.predict(state, runner.put_batch({"image": images, "label": labels, "mask": mask}))

    return analyses.Context(setup=s, state=result.state, predict=predict,
                            batch_size=batch_size, summary=result.summary)


def run(spec: dict[str, dict], result) -> dict:
    """``{analysis: {"options": ..., "values": {measure: float}}}`` of ``result`` for the
    resolved analyses ``spec`` (``{}`` for none)."""
    if not spec:
        return {}
    ctx = context(result)
    return {
        name: {"options": store.jsonable(options), "values": analyses.get(name).run(ctx, options)}
        for name, options in spec.items()
    }
