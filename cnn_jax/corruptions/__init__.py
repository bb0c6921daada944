"""Seeded image corruptions at five severities (a registry): MNIST-C style for grey digits
(:mod:`cnn_jax.corruptions.grey`) and CIFAR-10-C style for colour images
(:mod:`cnn_jax.corruptions.colour`). See :mod:`cnn_jax.corruptions.base` for the contract.
Importing this package imports no JAX."""

from cnn_jax.corruptions import colour as _colour  # noqa: F401  (registers the colour family)
from cnn_jax.corruptions import grey as _grey  # noqa: F401  (registers the grey family)
from cnn_jax.corruptions.base import (
    CORRUPTIONS,
    FAMILIES,
    SEVERITIES,
    Corruption,
    apply,
    check,
    family_of,
    get,
    names,
    register,
    rng_for,
    to_u8,
)

__all__ = [
    "CORRUPTIONS",
    "FAMILIES",
    "SEVERITIES",
    "Corruption",
    "apply",
    "check",
    "family_of",
    "get",
    "names",
    "register",
    "rng_for",
    "to_u8",
]
