"""Pooling operators: one registry, a pure functional form and a linen Module.

Every kind is registered once (see :func:`register`) and is then usable at every pooling
site of every model through :class:`Pool` (``--config.model.pool=KIND``).

Conventions (NHWC arrays, ``x: f32[B, H, W, C]``):

* ``strides`` defaults to the window, as in Keras (``MaxPooling2D``) and PyTorch
  (``nn.MaxPool2d``). Note that :func:`flax.linen.max_pool` defaults to stride 1.
* ``padding`` is ``"VALID"``, ``"SAME"`` (XLA convention: when the total padding is odd,
  the extra row/column goes at the end, i.e. bottom/right) or explicit
  ``((top, bottom), (left, right))``. Every windowed kind takes all three; padding never
  wins a max, is excluded from averages and weights (``count_include_pad=True`` counts it
  in ``avg``/``lp``/``mixed``/``gated`` means), is zeros for ``strided_conv`` and for the
  gate of ``gated``. ``blur`` and ``max_blur`` reflect-pad their filter as in the authors'
  code (the site's padding sets their output size); ``fractional_max`` ignores window,
  strides and padding.
* ``train=True`` changes only ``stochastic`` and ``fractional_max``, which then sample from
  the ``rng`` argument (the ``'pool'`` rng stream under :class:`Pool`).
* Non-overlapping max/avg windows (``strides == window``) take a reshape-and-reduce path
  with the same values and gradients as ``lax.reduce_window`` (see
  :mod:`cnn_jax.pooling.windows`).

Kinds (each docstring gives the definition and the paper):

==================  =========================================================  ==========
kind                definition                                                 parameters
==================  =========================================================  ==========
``max``             ``max_R x``                                                --
``avg``             ``mean_R x`` (``count_include_pad``)                       --
``lp``              ``(mean_R |x|^p)^(1/p)``                                   ``rho`` if learned
``stochastic``      sample ``i ~ a_i / sum a`` (train), ``sum a^2 / sum a``     --
``mixed``           ``a max + (1 - a) avg``                                    ``a_logit``
``gated``           ``g max + (1 - g) avg``, ``g = sigmoid(omega . x_R)``       ``omega``
``strided_conv``    learned ``kh x kw`` convolution, stride, ``C -> C``       ``kernel, bias``
``blur``            binomial low-pass, then subsample                          --
``max_blur``        dense max (stride 1), then ``blur``                        --
``softpool``        ``sum_R softmax(x) x``                                     --
``lip``             ``sum_R x e^l / sum_R e^l``, ``l`` a small conv            ``logit/*``
``fractional_max``  max over pseudo-random/random regions, ratio ``alpha``     --
==================  =========================================================  ==========

Global heads (:class:`GlobalPool`, ``f32[B, H, W, C] -> f32[B, C']``): ``avg``, ``max``,
``avg_max`` (sum), ``concat_avg_max`` (``2C``), ``gem`` (learned ``p``), ``spp``
(``C * sum(l^2)``).
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
