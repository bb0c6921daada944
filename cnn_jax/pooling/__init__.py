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
from cnn_jax.pooling import basic as _basic  # noqa: F401  (registers max, avg)

__all__ = [
    "HEADS",
    "POOLS",
    "GlobalPool",
    "head_names",
    "register_head",
    "Pool",
    "PoolKind",
    "names",
    "normalize_padding",
    "output_size",
    "pool",
    "register",
]
