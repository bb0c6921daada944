"""Max and average pooling."""

from __future__ import annotations

import jax

from cnn_jax.pooling.core import register
from cnn_jax.pooling.windows import window_max, window_mean


@register("max")
def max_pool(x: jax.Array, window, strides, pads, *, train=False, rng=None) -> jax.Array:
    """Max pooling: ``y = max_{i in R} x_i`` over each window ``R``.

    Padding never wins (it is ``-inf``). With ``strides == window`` this takes the reshape
    fast path of :mod:`cnn_jax.pooling.windows`, which gives the same values and the same
    gradients as ``lax.reduce_window`` (the whole gradient of a window goes to its first
    maximal element in row-major order) and is much faster to differentiate on CPU.

    Reference: Ranzato, Huang, Boureau & LeCun (2007); Jarrett et al. (2009).
    """
    return window_max(x, window, strides, pads)


@register("avg")
def avg_pool(
    x: jax.Array, window, strides, pads, *, train=False, rng=None, count_include_pad: bool = False
) -> jax.Array:
    """Average pooling: ``y = (1/|R|) sum_{i in R} x_i``.

    Args:
      count_include_pad: whether ``|R|`` is the full window size even where the window
        overlaps the padding (whose values are zeros). flax (``nn.avg_pool``) and PyTorch
        (``nn.AvgPool2d``) count the padding by default; TensorFlow/Keras
        (``AveragePooling2D``) do not. Default ``False`` (the Keras convention of the
        seeds): ``|R|`` is the number of real inputs in the window.

    Reference: LeCun et al. (1989, 1998) (subsampling layers).
    """
    return window_mean(x, window, strides, pads, count_include_pad)
