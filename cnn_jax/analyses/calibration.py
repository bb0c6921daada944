"""Calibration as a per-trial analysis: expected calibration error, negative log-likelihood
and Brier score of a trial's predicted class probabilities on its test split.

Definitions (what uncertainty baselines report):

* ECE (Guo et al. 2017, "On Calibration of Modern Neural Networks"): the test images are
  put into ``bins`` equal-width bins of top-1 confidence ``max_k p_k`` (``(0, 1/B]``,
  ``(1/B, 2/B]``, ...; a confidence of exactly 0 joins the first bin), and
  ``ECE = sum_b (n_b / N) |accuracy_b - confidence_b|``.
* NLL: the mean of ``-log p_y`` (natural log), the cross-entropy the model is trained on.
* Brier score (Brier 1950): the mean over images of ``sum_k (p_k - [k = y])^2`` (0 to 2).

The probabilities come from the trial's own model in evaluation mode, one jitted program per
model (shared by every seed of a configuration in a worker).
"""

from __future__ import annotations

import numpy as np

from cnn_jax.analyses.base import DETAILS, Context, Measure, per_model, register

NAME = "calibration"


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over ``bins`` equal-width confidence bins (see the module
    docstring); 0 for no images."""
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    if confidence.size == 0:
        return 0.0
    # bin b holds (b/B, (b+1)/B]; 0 goes to the first bin
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total / confidence.size)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> dict:
    """A reliability diagram's bins (those :func:`ece` sums over): per bin its image count,
    the sum of its confidences and its number correct (sums, so that the diagrams of
    several trials add up), ``{"count": [...], "confidence": [...], "correct": [...]}``."""
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    return {
        "count": np.bincount(index, minlength=bins).astype(int).tolist(),
        "confidence": np.bincount(index, confidence, minlength=bins).tolist(),
        "correct": np.bincount(index, correct, minlength=bins).tolist(),
    }


def nll(log_probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of ``labels`` under ``log_probs`` (``[N, K]``)."""
    log_probs = np.asarray(log_probs, np.float64)
    return float(-log_probs[np.arange(len(labels)), np.asarray(labels)].mean())


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over images of the squared distance between ``probs`` and the one-hot label."""
    probs = np.asarray(probs, np.float64)
    onehot = np.eye(probs.shape[1])[np.asarray(labels)]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


@per_model
def _log_softmax_fn(model):
    import jax

    @jax.jit
    def fn(variables, x):
        logits = model.apply(variables, x, train=False)
        return jax.nn.log_softmax(logits.astype(np.float32), axis=-1)

    return fn


def log_probs(ctx: Context, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(log p [N, K], labels [N])`` of the trial's test split (its evaluation batches)."""
    from cnn_jax.data import eval_batches
    from cnn_jax.viz.shift import variables_of

    fn, variables = _log_softmax_fn(ctx.setup.model), variables_of(ctx.state)
    out, labels = [], []
    for batch in eval_batches(ctx.setup.test, batch_size):
        out.append(np.asarray(fn(variables, batch["image"]))[batch["mask"]])
        labels.append(np.asarray(batch["label"])[batch["mask"]])
    return np.concatenate(out), np.concatenate(labels)


def _check(options) -> None:
    if options["bins"] < 1:
        from cnn_jax.errors import UserError

        raise UserError(f"analysis 'calibration': option 'bins' is {options['bins']}; choose a "
                        "number of confidence bins of at least 1 (15 is the usual)")


def _describe(options) -> str:
    return (
        f"Calibration on the test split: expected calibration error (ECE, {options['bins']} "
        "equal-width bins of top-1 confidence; Guo et al. 2017), negative log-likelihood "
        "(NLL, nats) and Brier score (sum over classes of the squared difference from the "
        "one-hot label, 0 to 2). Lower is better for all three."
    )


@register(
    NAME,
    measures=[
        Measure("ece", "expected calibration error", short="ECE", higher_is_better=False,
                reference="Guo et al. 2017"),
        Measure("nll", "test NLL", short="NLL", higher_is_better=False, fraction=False),
        Measure("brier", "Brier score", short="Brier", higher_is_better=False, fraction=False,
                reference="Brier 1950"),
    ],
    options={"bins": 15},
    describe=_describe,
    check=_check,
)
def calibration(ctx: Context, bins: int) -> dict[str, float]:
    """ECE, NLL and Brier score of the trial's predicted probabilities on its test split;
    details: the reliability diagram's bins (:func:`reliability`)."""
    lp, labels = log_probs(ctx, ctx.batch_size)
    p = np.exp(lp.astype(np.float64))
    confidence, correct = p.max(axis=1), p.argmax(axis=1) == labels
    return {
        "ece": ece(confidence, correct, bins),
        "nll": nll(lp, labels),
        "brier": brier(p, labels),
        DETAILS: reliability(confidence, correct, bins),
    }
