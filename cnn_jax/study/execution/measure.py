"""The study's per-trial analyses, run in the worker on what a trial trained.

:func:`run` builds one :class:`cnn_jax.analyses.Context` per state measured from the trial's
:class:`cnn_jax.train.loop.FitResult` (its own compiled evaluation program predicts): the
checkpoint selected by validation accuracy (every analysis's ``state="best"``, the default)
or the final state (``"final"``), and runs every analysis the study names, in order; the
result is the trial's ``analysis.json``, which records for each analysis the state and step
it measured.
"""

from __future__ import annotations

import os
import time

from cnn_jax import analyses, rundir
from cnn_jax.study import store


def measured_state(result, trial_dir: str | None, which: str):
    """``(state, {"state": ..., "step": ...})``: the final state of ``result``, or for
    ``which == "best"`` the checkpoint selected by validation accuracy (read from
    ``trial_dir``'s checkpoints unless it is the final step). Without a selected step (no
    validation split) or its checkpoint (not kept), the final state, and the record says why."""
    summary, final = result.summary, int(result.summary.get("steps") or 0)
    best = (summary.get("best") or {}).get("step")
    if which == "final":
        return result.state, {"state": "final", "step": final}
    if best is None:
        return result.state, {"state": "final", "step": final, "why": "no validation split to select by"}
    if int(best) == final:
        return result.state, {"state": "best", "step": final}
    from cnn_jax.train.checkpoint import Checkpoints

    ckpt = Checkpoints(os.path.join(trial_dir or "", rundir.CHECKPOINTS), read_only=True)
    try:
        if int(best) not in ckpt.steps():
            return result.state, {"state": "final", "step": final,
                                  "why": f"the best checkpoint (step {best}) was not kept"}
        state, _, _ = ckpt.restore(result.setup.state, int(best))
    finally:
        ckpt.close()
    return state, {"state": "best", "step": int(best)}


def context(result, state=None) -> analyses.Context:
    """What the analyses may use of ``result`` (a ``FitResult``), measuring ``state``
    (default: its final state)."""
    import numpy as np

    from cnn_jax.train import assemble

    s = result.setup
    state = result.state if state is None else state
    runner = result.runner or assemble.make_runner(s.cfg, s.loss_fn, s.eval_loss_fn, s.model,
                                                   s.input_shape)
    on_device = runner.put_state(state)
    batch_size = assemble.eval_batch_size(s.cfg, runner)
    labels = np.zeros(batch_size, s.test.labels.dtype)
    mask = np.ones(batch_size, bool)

    def predict(images):
        return runner.predict(on_device, runner.put_batch({"image": images, "label": labels, "mask": mask}))

    return analyses.Context(setup=s, state=state, predict=predict,
                            batch_size=batch_size, summary=result.summary)


def run(spec: dict[str, dict], result, trial_dir: str | None = None) -> dict:
    """``{analysis: {"options": ..., "values": {measure: float}, "measured": {"state",
    "step"[, "why"][, "weights"]}, "seconds": its time (not the state's restore)[,
    "details": ...]}}`` of ``result`` for the resolved analyses ``spec`` (``{}`` for none);
    ``trial_dir`` holds the checkpoints the best state is read from. A trial trained with
    ``train.select_weights=ema`` is measured on the moving average of its weights."""
    out, contexts = {}, {}
    for name, options in spec.items():
        which = options.get(analyses.STATE, "final")
        if which not in contexts:
            state, measured = measured_state(result, trial_dir, which)
            weights = result.summary.get("weights", "raw")  # train.select_weights
            if weights != "raw":
                from cnn_jax.train.state import with_weights

                state, measured = with_weights(state, weights), {**measured, "weights": weights}
            contexts[which] = (context(result, state), measured)
        ctx, measured = contexts[which]
        start = time.perf_counter()
        values, details = analyses.get(name).run_with_details(ctx, options)
        out[name] = {"options": store.jsonable(options), "values": values, "measured": measured,
                     "seconds": round(time.perf_counter() - start, 3)}
        if details is not None:
            out[name][analyses.DETAILS] = store.jsonable(details)
    return out
