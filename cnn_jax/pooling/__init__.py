"""Pooling operators: one registry, a pure functional form and a linen Module.

Every kind is registered once (see :func:`register`) and is then usable at every pooling
site of every model through :class:`Pool` (``--config.model.pool=KIND``).

Conventions (NHWC arrays, ``x: f32[B, H, W, C]``):

* ``strides`` defaults to the window, as in Keras (``MaxPooling2D``) and PyTorch
  (``nn.MaxPool2d``). Note that :func:`flax.linen.max_pool` defaults to stride 1.
* ``padding`` is ``"VALID"``, ``"SAME"`` (XLA convention: when the total padding is odd,
  the extra row/column goes at the end, i.e. bottom/right) or explicit
  ``((top, bottom), (left, right))``.
"""

from __future__ import annotations

# Registration happens on import: one module per family of kinds.
from cnn_jax.pooling import antialias as _antialias  # noqa: F401  (blur, max_blur)
from cnn_jax.pooling import basic as _basic  # noqa: F401  (max, avg)
from cnn_jax.pooling import heads as _heads  # noqa: F401  (global heads)
from cnn_jax.pooling import learned as _learned  # noqa: F401  (mixed, gated, strided_conv, lip)
from cnn_jax.pooling import lp as _lp  # noqa: F401  (lp)
from cnn_jax.pooling import softpool as _softpool  # noqa: F401  (softpool)
from cnn_jax.pooling import stochastic as _stochastic  # noqa: F401  (stochastic, fractional_max)
from cnn_jax.pooling.core import (
    HEADS,
    POOLS,
    GlobalPool,
    Pool,
    PoolKind,
    head_names,
    names,
    normalize_padding,
    output_size,
    pool,
    register,
    register_head,
)

__all__ = [
    "HEADS",
    "POOLS",
    "GlobalPool",
    "Pool",
    "PoolKind",
    "head_names",
    "names",
    "normalize_padding",
    "output_size",
    "pool",
    "register",
    "register_head",
]
