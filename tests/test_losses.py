"""Losses against closed forms, iterating the registry."""

import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import losses


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


LOGITS = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
LABELS = np.array([0, 1])


def _reference(name, z, y, k, ls=0.0):
    t = np.eye(k)[y] * (1 - ls) + ls / k
    if name == "softmax_cross_entropy":
        return -(t * np.log(_softmax(z))).sum(-1)
    if name == "mse":
        return ((_softmax(z) - t) ** 2).mean(-1)
    if name == "binary_cross_entropy":
        p = 1 / (1 + np.exp(-z))
        return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(-1)
    raise AssertionError(f"no reference for loss {name}: add one")


@pytest.mark.parametrize("name", losses.LOSSES.names())
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_loss_matches_closed_form(name, ls):
    got = losses.LOSSES.get(name)(jnp.asarray(LOGITS), jnp.asarray(LABELS), 3, label_smoothing=ls)
    np.testing.assert_allclose(got, _reference(name, LOGITS, LABELS, 3, ls), rtol=1e-5)


def test_cross_entropy_of_uniform_logits_is_log_k():
    got = losses.softmax_cross_entropy(jnp.zeros((4, 10)), jnp.arange(4), 10)
    np.testing.assert_allclose(got, np.log(10), rtol=1e-6)
