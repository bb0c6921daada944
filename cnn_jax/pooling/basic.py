"""Max and average pooling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.pooling.core import register, register_head


def _reduce_window(x, init, op, window, strides, pads):
    return lax.reduce_window(
        x, init, op, (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0))
    )


@register("max")
def max_pool(x: jax.Array, window, strides, pads, *, train=False, rng=None) -> jax.Array:
    """Max pooling: the largest value in each window; padding never wins (it is -inf)."""
    return _reduce_window(x, -jnp.inf, lax.max, window, strides, pads)


@register("avg")
def avg_pool(
    x: jax.Array, window, strides, pads, *, train=False, rng=None, count_include_pad: bool = False
) -> jax.Array:
    """Average pooling.

    Args:
      count_include_pad: divide by the full window size even where it overlaps padding
        (zeros). flax (``nn.avg_pool``) and PyTorch (``nn.AvgPool2d``) count the padding by
        default; TensorFlow/Keras (``AveragePooling2D``) do not. Default ``False`` (the
        Keras convention of the seeds): each output is the mean of the real inputs.
    """
    sums = _reduce_window(x, 0.0, lax.add, window, strides, pads)
    if count_include_pad or pads == ((0, 0), (0, 0)):
        return sums / (window[0] * window[1])
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    counts = _reduce_window(ones, 0.0, lax.add, window, strides, pads)
    return sums / counts


@register_head("avg")
def global_avg(x: jax.Array) -> jax.Array:
    """Global average pooling (Lin, Chen & Yan 2014, "Network in Network"): mean over H, W."""
    return jnp.mean(x, axis=(1, 2))


@register_head("max")
def global_max(x: jax.Array) -> jax.Array:
    """Global max pooling: max over H, W."""
    return jnp.max(x, axis=(1, 2))
