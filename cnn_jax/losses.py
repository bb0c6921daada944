"""Losses named in the seeds, as per-example functions ``loss(logits, labels, num_classes)``.

Each returns ``f32[B]``; the train step averages them over the (masked) batch. Targets are
one-hot ``labels`` or, when given, soft ``label_probs: f32[B, K]`` (a mixed batch's,
:mod:`cnn_jax.data.mixing`); label smoothing ε turns either into ``(1 - ε) t + ε / K``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from cnn_jax.registry import Registry

LOSSES: Registry[Callable[..., jax.Array]] = Registry("loss")


def _targets(labels, num_classes, label_smoothing=0.0, label_probs=None):
    t = jax.nn.one_hot(labels, num_classes) if label_probs is None else label_probs
    if label_smoothing:
        t = optax.smooth_labels(t, label_smoothing)
    return t


@LOSSES.register("softmax_cross_entropy")
def softmax_cross_entropy(logits, labels, num_classes, label_smoothing: float = 0.0, label_probs=None):
    """-Σ_k t_k log softmax(z)_k with one-hot or soft (optionally smoothed) targets t."""
    return optax.softmax_cross_entropy(logits, _targets(labels, num_classes, label_smoothing, label_probs))


@LOSSES.register("mse")
def mean_squared_error(logits, labels, num_classes, label_smoothing: float = 0.0, label_probs=None):
    """Mean over classes of (softmax(z)_k - t_k)² against one-hot or soft targets (the
    classic "MSE on probabilities" of early CNNs)."""
    p = jax.nn.softmax(logits)
    return jnp.mean((p - _targets(labels, num_classes, label_smoothing, label_probs)) ** 2, axis=-1)


@LOSSES.register("binary_cross_entropy")
def binary_cross_entropy(logits, labels, num_classes, label_smoothing: float = 0.0, label_probs=None):
    """Mean over classes of the sigmoid cross-entropy against one-hot or soft targets (one
    independent binary classifier per class)."""
    t = _targets(labels, num_classes, label_smoothing, label_probs)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, t), axis=-1)
