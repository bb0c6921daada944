"""cnn_jax: a JAX/Flax research codebase for convolutional networks and pooling studies.

Submodules load on first use (``cnn_jax.models``, ``cnn_jax.pooling``, ``cnn_jax.data``,
``cnn_jax.train``, ``cnn_jax.config``, ``cnn_jax.summary``), so ``import cnn_jax`` is cheap.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "activations",
    "bench",
    "config",
    "conv",
    "data",
    "errors",
    "experiment",
    "layers",
    "losses",
    "models",
    "optim",
    "pooling",
    "registry",
    "rundir",
    "runtime",
    "study",
    "summary",
    "train",
    "viz",
}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"cnn_jax.{name}")
    raise AttributeError(f"module 'cnn_jax' has no attribute {name!r}")
