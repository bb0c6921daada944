"""Activation functions by name (``--config.model.activation=NAME``).

At the bottom of the house: it imports no other ``cnn_jax`` layer, so pooling kinds
(:class:`cnn_jax.pooling.learned.StridedConv`) and models can both use it.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.registry import Registry

ACTIVATIONS: Registry[Callable[[jax.Array], jax.Array]] = Registry("activation")

for _name, _fn in {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "swish": nn.swish,
    "elu": nn.elu,
    "selu": nn.selu,
    "leaky_relu": nn.leaky_relu,
    "softplus": nn.softplus,
    "mish": lambda x: x * jnp.tanh(nn.softplus(x)),
    "relu6": nn.relu6,
    "hard_swish": nn.hard_swish,
    "identity": lambda x: x,
}.items():
    ACTIVATIONS.add(_name, _fn)


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function registered as ``name``."""
    return ACTIVATIONS.get(name)
