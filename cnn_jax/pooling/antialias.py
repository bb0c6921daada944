"""Anti-aliased downsampling (Zhang 2019): blur pooling and max-blur pooling."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.errors import UserError
from cnn_jax.pooling.core import register
from cnn_jax.pooling.windows import out_shape, window_max


def binomial_filter(size: int) -> np.ndarray:
    """The normalised 1-D binomial filter of ``size`` taps (row ``size - 1`` of Pascal's
    triangle / ``2^(size-1)``): 1: [1], 2: [1, 1], 3: [1, 2, 1], ..., 7: [1, 6, 15, 20, 15,
    6, 1]. The 2-D filter is its outer product with itself."""
    row = np.array([math.comb(size - 1, k) for k in range(size)], np.float64)
    return row / row.sum()


def _check_size(kind: str, size) -> None:
    if not (isinstance(size, int) and 1 <= size <= 7):
        raise UserError(f"pool {kind!r}: size must be an int in 1..7, got {size!r}")


def blur_downsample(x: jax.Array, size: int, strides, out_hw) -> jax.Array:
    """Zhang's ``Downsample``: reflect-pad, blur with the binomial filter of ``size``
    taps, keep every ``stride``-th sample, giving ``out_hw`` outputs.

    Along each axis of length ``n`` the input is reflect-padded by ``(size - 1) // 2``
    before (as in the authors' code) and, after, by whatever the ``out`` outputs need
    (the authors pad ``ceil((size - 1) / 2)``, which gives ``ceil(n / stride)`` outputs;
    for that many outputs both agree exactly). Separable: one 1-D pass per axis.
    """
    taps = binomial_filter(size)
    for axis, s, out in ((1, strides[0], out_hw[0]), (2, strides[1], out_hw[1])):
        n = x.shape[axis]
        left = (size - 1) // 2
        need = (out - 1) * s + size  # padded length the outputs read
        right = need - n - left
        pad = [(0, 0)] * 4
        pad[axis] = (left, max(right, 0))
        x = jnp.pad(x, pad, mode="reflect") if pad[axis] != (0, 0) else x
        terms = []
        for k, c in enumerate(taps):
            start = [0, 0, 0, 0]
            limit = list(x.shape)
            step = [1, 1, 1, 1]
            start[axis], limit[axis], step[axis] = k, k + (out - 1) * s + 1, s
            terms.append(float(c) * lax.slice(x, start, limit, step))
        y = terms[0]
        for t in terms[1:]:
            y = y + t
        x = y
    return x


@register("blur")
def blur_pool(
    x: jax.Array, window, strides, pads, *, train=False, rng=None, size: int = 3
) -> jax.Array:
    """Blur pooling (Zhang 2019, "Making convolutional networks shift-invariant again",
    ``BlurPool``): low-pass filter with a ``size x size`` binomial filter (separable,
    normalised; ``size`` 1–7: 1 is plain subsampling, 2 ``[1,1]``, 3 ``[1,2,1]``, 5
    ``[1,4,6,4,1]``), then subsample with the pooling ``strides``. Each channel is filtered
    separately; the input is reflect-padded as in the authors' code (``(size-1)//2``
    before).

    The pooling ``window`` and ``padding`` only set the number of outputs, which is that of
    the other kinds at the same site (``output_size(n, window, stride, pads)``); with
    ``SAME`` padding this is ``ceil(n / stride)``, exactly the authors' ``BlurPool``.
    With ``VALID`` on an odd size it keeps the first ``floor(n / stride)`` of the
    authors' outputs.

    Args:
      size: filter taps per side, 1..7 (default 3, the paper's "Tri-3").
    """
    _check_size("blur", size)
    return blur_downsample(x, size, strides, out_shape(x.shape, window, strides, pads))


@register("max_blur")
def max_blur_pool(
    x: jax.Array, window, strides, pads, *, train=False, rng=None, size: int = 3
) -> jax.Array:
    """Max-blur pooling (Zhang 2019, ``MaxBlurPool``): max pooling with the window and
    padding but stride 1 (dense evaluation), then :func:`blur_pool`'s blur and
    subsampling with the pooling ``strides``: ``BlurPool_s(MaxPool_{k,1}(x))``.

    The output has the size of plain max pooling for every padding form
    (``ceil((n + pads - k + 1) / s)``), and ``size = 1`` is exactly max pooling.

    Args:
      size: blur filter taps per side, 1..7 (default 3).
    """
    _check_size("max_blur", size)
    m = window_max(x, window, (1, 1), pads)
    return blur_downsample(m, size, strides, out_shape(x.shape, window, strides, pads))
