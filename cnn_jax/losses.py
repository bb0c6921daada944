"""Losses named in the seeds, as per-example functions ``loss(logits, labels, num_classes)``.

Each returns ``f32[B]``; the train step averages them over the (masked) batch.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from cnn_jax.registry import Registry

LOSSES: Registry[Callable[..., jax.Array]] = Registry("loss")


def _onehot(labels, num_classes, label_smoothing=0.0):
    t = jax.nn.one_hot(labels, num_classes)
    if label_smoothing:
        t = optax.smooth_labels(t, label_smoothing)
    return t


@LOSSES.register("softmax_cross_entropy")
def softmax_cross_entropy(logits, labels, num_classes, label_smoothing: float = 0.0):
    """-Σ_k t_k log softmax(z)_k with one-hot (optionally smoothed) targets t."""
    return optax.softmax_cross_entropy(logits, _onehot(labels, num_classes, label_smoothing))


@LOSSES.register("mse")
def mean_squared_error(logits, labels, num_classes, label_smoothing: float = 0.0):
    """Mean over classes of (softmax(z)_k - t_k)² against one-hot targets (the classic
    "MSE on probabilities" of early CNNs)."""
    p = jax.nn.softmax(logits)
    return jnp.mean((p - _onehot(labels, num_classes, label_smoothing)) ** 2, axis=-1)


@LOSSES.register("binary_cross_entropy")
def binary_cross_entropy(logits, labels, num_classes, label_smoothing: float = 0.0):
    """Mean over classes of the sigmoid cross-entropy against one-hot targets (one
    independent binary classifier per class)."""
    t = _onehot(labels, num_classes, label_smoothing)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, t), axis=-1)
