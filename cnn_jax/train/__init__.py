"""Training: state, pure steps, assembly, checkpoints and the one training loop.

``fit`` (and its vmapped-seeds mode, :func:`cnn_jax.train.vmap.fit_seeds`; both run
:class:`cnn_jax.train.loop.Loop`), ``evaluate`` and ``restore``; ``build`` assembles a run
from a resolved config. Submodules load on
first use, so ``import cnn_jax.train`` does not import JAX (``cnn_jax.rundir`` reads run
directories without it).
"""

import importlib

_EXPORTS = {
    "FitResult": ("cnn_jax.train.loop", "FitResult"),
    "Restored": ("cnn_jax.train.saved_runs", "Restored"),
    "fit": ("cnn_jax.train.loop", "fit"),
    "evaluate": ("cnn_jax.train.saved_runs", "evaluate"),
    "restore": ("cnn_jax.train.saved_runs", "restore"),
    "build": ("cnn_jax.train.assemble", "build"),
    "Setup": ("cnn_jax.train.assemble", "Setup"),
    "fit_seeds": ("cnn_jax.train.vmap", "fit_seeds"),
    "TrainState": ("cnn_jax.train.state", "TrainState"),
    "create_train_state": ("cnn_jax.train.state", "create"),
    "eval_step": ("cnn_jax.train.step", "eval_step"),
    "summarize": ("cnn_jax.train.step", "summarize"),
    "train_step": ("cnn_jax.train.step", "train_step"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'cnn_jax.train' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
