"""Window primitives shared by the pooling kinds: sums, maxima and patches over windows.

All functions take NHWC ``x: f32[B, H, W, C]``, a ``window`` and ``strides`` pair and explicit
``pads = ((top, bottom), (left, right))`` (see :func:`cnn_jax.pooling.normalize_padding`).

Fast path for non-overlapping windows
-------------------------------------
On XLA CPU the backward pass of ``lax.reduce_window`` max (``select_and_scatter``) is
slow: with it, training steps are ~1.2–1.3× (LeNet-5) and ~1.7× (``simple_cnn``) slower
with max than with average pooling on 2 cores (``benchmarks/pooling.py``); with the path
below, max and average pooling cost about the same. When
``strides == window`` (every input position belongs to at most one window), the input is
padded (with the reduction's identity: ``-inf`` for max, ``0`` for sums), cropped to the
rows/columns that some window covers, reshaped to ``[B, Ho, kh, Wo, kw, C]`` and reduced
over the two window axes. The rule, then: **a window sum or max uses the reshape path
exactly when ``strides == window``, whatever the padding**; overlapping windows use
``lax.reduce_window``.

The result is the same as ``lax.reduce_window``: the same values (maxima exactly; sums up
to float rounding, the summation order may differ) and, for max, the same gradients —
including on ties. ``select_and_scatter`` gives the whole cotangent of a window to the
*first* maximal element in row-major window order, whereas ``jnp.max`` would split it
equally between tied elements (and ReLU makes ties common: all-zero windows). The reshape
path therefore has a custom JVP whose tangent is the tangent of that first maximal
element (an arg-max one-hot); it is linear, so JAX transposes it for reverse mode and
both ``jax.grad`` and forward-mode work. ``tests/test_pooling.py`` checks values and
gradients, with ties, against ``lax.reduce_window``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.barrier import materialize
from cnn_jax.pooling.core import output_size

Pair = tuple[int, int]
Pads = tuple[tuple[int, int], tuple[int, int]]

VALID_PADS: Pads = ((0, 0), (0, 0))


def out_shape(x_shape, window: Pair, strides: Pair, pads: Pads) -> Pair:
    """``(Ho, Wo)`` for a window sliding over the padded spatial dims of ``x_shape``."""
    return tuple(  # type: ignore[return-value]
        output_size(n, w, s, p) for n, w, s, p in zip(x_shape[1:3], window, strides, pads)
    )


def non_overlapping(window: Pair, strides: Pair) -> bool:
    """Whether the reshape fast path applies (``strides == window``)."""
    return tuple(window) == tuple(strides)


def _blocks(x: jax.Array, window: Pair, pads: Pads, value: float) -> jax.Array:
    """``x`` padded with ``value``, cropped and reshaped to ``[B, Ho, kh, Wo, kw, C]``
    (for ``strides == window``)."""
    (kh, kw) = window
    ho, wo = out_shape(x.shape, window, window, pads)
    (pt, pb), (pl, pr) = pads
    if pads != VALID_PADS:
        x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)
    x = x[:, : ho * kh, : wo * kw, :]
    b, _, _, c = x.shape
    return x.reshape(b, ho, kh, wo, kw, c)


def _window_index(kh: int, kw: int) -> np.ndarray:
    """Row-major position of each window element, shaped to broadcast against blocks."""
    return (np.arange(kh)[:, None] * kw + np.arange(kw)[None, :]).reshape(1, 1, kh, 1, kw, 1)


@jax.custom_jvp
def _block_max(xb: jax.Array) -> jax.Array:
    """Max over the window axes (2, 4) of ``xb: [B, Ho, kh, Wo, kw, C]``; the derivative
    is that of the first maximal element in row-major window order (as select_and_scatter)."""
    return jnp.max(xb, axis=(2, 4))


def _first_max_index(xb: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(y, idx)``: the window maxima and the row-major position of the first maximal
    element of each window, ``idx: [B, Ho, 1, Wo, 1, C]``. Computed elementwise over the
    ``kh*kw`` window slices (one fused pass; faster on CPU than a compare-and-reduce)."""
    kh, kw = xb.shape[2], xb.shape[4]
    y, idx = _first_max([xb[:, :, i, :, j, :] for i in range(kh) for j in range(kw)])
    # Computed once here (one byte per window): otherwise XLA:CPU fuses the comparisons
    # into the backward pass and redoes them for every element of the window (LeNet-5's
    # step 1.035-1.05x faster with it, AMD EPYC with AVX-512, 2026-12-06).
    return y, materialize(idx)[:, :, None, :, None, :]


@jax.checkpoint
def _select_first(idx: jax.Array, xb_dot: jax.Array) -> jax.Array:
    """The tangent of the first maximal element of each window. Checkpointed so that
    reverse mode keeps only ``idx`` (one byte per output) and rebuilds the one-hot mask in
    the backward pass, instead of storing a full-size mask."""
    pos = _window_index(xb_dot.shape[2], xb_dot.shape[4]).astype(idx.dtype)
    zero = jnp.zeros((), xb_dot.dtype)
    return jnp.sum(jnp.where(pos == idx, xb_dot, zero), axis=(2, 4))


@_block_max.defjvp
def _block_max_jvp(primals, tangents):
    (xb,), (xb_dot,) = primals, tangents
    y, idx = _first_max_index(xb)
    # Linear in xb_dot, so reverse mode transposes it to where(onehot, g, 0): a broadcast.
    return y, _select_first(idx, xb_dot)


def _views(xp: jax.Array, window: Pair, strides: Pair, out: Pair) -> list[jax.Array]:
    """The ``kh*kw`` strided views of padded ``xp``, one per window position in row-major
    order, each ``[B, Ho, Wo, C]``: view ``(i, j)`` holds element ``(i, j)`` of every window."""
    (kh, kw), (sh, sw), (ho, wo) = window, strides, out
    b, _, _, c = xp.shape
    return [
        lax.slice(xp, (0, i, j, 0), (b, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c), (1, sh, sw, 1))
        for i in range(kh) for j in range(kw)
    ]


def _first_max(views: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``(max, idx)`` over ``views``: the elementwise maximum and the index of the first
    view that holds it."""
    y = views[0]
    for v in views[1:]:
        y = jnp.maximum(y, v)
    dt = jnp.int8 if len(views) <= 127 else jnp.int32
    idx = jnp.full(y.shape, len(views) - 1, dt)
    for pos in range(len(views) - 2, -1, -1):
        idx = jnp.where(views[pos] == y, jnp.asarray(pos, dt), idx)
    return y, idx


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _overlapping_max(xp: jax.Array, window: Pair, strides: Pair, out: Pair) -> jax.Array:
    """Max over overlapping windows of padded ``xp`` from its strided views (elementwise
    maxima); the derivative is that of the first maximal element in row-major window order,
    as ``lax.reduce_window``'s (select-and-scatter), whose backward pass XLA:CPU runs far
    more slowly (max-blur pooling in the simple CNN: below)."""
    return _first_max(_views(xp, window, strides, out))[0]


@functools.partial(jax.checkpoint, static_argnums=(2, 3, 4))
def _select_view(idx: jax.Array, xp_dot: jax.Array, window: Pair, strides: Pair, out: Pair) -> jax.Array:
    """The tangent of each window's first maximal element (reverse mode keeps ``idx`` only)."""
    zero = jnp.zeros((), xp_dot.dtype)
    views = _views(xp_dot, window, strides, out)
    t = jnp.where(idx == 0, views[0], zero)
    for pos, v in enumerate(views[1:], 1):
        t = t + jnp.where(idx == pos, v, zero)
    return t


@_overlapping_max.defjvp
def _overlapping_max_jvp(window, strides, out, primals, tangents):
    (xp,), (xp_dot,) = primals, tangents
    y, idx = _first_max(_views(xp, window, strides, out))
    return y, _select_view(idx, xp_dot, window, strides, out)


def window_max(x: jax.Array, window: Pair, strides: Pair, pads: Pads) -> jax.Array:
    """Max over each window (padding is ``-inf``, so it never wins unless a window is all
    padding); the derivative is that of each window's first maximal element in row-major
    order, as ``lax.reduce_window``'s. Reshape path when ``strides == window``, else the
    windows' strided views (:func:`_overlapping_max`)."""
    window, strides = tuple(window), tuple(strides)
    if non_overlapping(window, strides):
        return _block_max(_blocks(x, window, pads, -jnp.inf))
    pads = tuple(map(tuple, pads))
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf) if pads != VALID_PADS else x
    return _overlapping_max(xp, window, strides, out_shape(x.shape, window, strides, pads))


def window_sum(x: jax.Array, window: Pair, strides: Pair, pads: Pads) -> jax.Array:
    """Sum over each window (padding is 0). Reshape path when ``strides == window``."""
    window, strides = tuple(window), tuple(strides)
    if non_overlapping(window, strides):
        return jnp.sum(_blocks(x, window, pads, 0.0), axis=(2, 4))
    return lax.reduce_window(
        x, 0.0, lax.add, (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0))
    )


@functools.lru_cache(maxsize=256)
def _counts(hw: Pair, window: Pair, strides: Pair, pads: Pads) -> np.ndarray:
    (h, w), (kh, kw), (sh, sw) = hw, window, strides
    (pt, _), (pl, _) = pads
    ho = output_size(h, kh, sh, pads[0])
    wo = output_size(w, kw, sw, pads[1])
    rows = np.array([min(i * sh - pt + kh, h) - max(i * sh - pt, 0) for i in range(ho)])
    cols = np.array([min(j * sw - pl + kw, w) - max(j * sw - pl, 0) for j in range(wo)])
    c = np.maximum(rows, 0)[:, None] * np.maximum(cols, 0)[None, :]
    return c.reshape(1, ho, wo, 1).astype(np.float32)


def window_counts(x_shape, window: Pair, strides: Pair, pads: Pads) -> np.ndarray:
    """Number of real (non-padding) input positions in each window: ``f32[1, Ho, Wo, 1]``,
    computed statically with NumPy (0 for a window that lies entirely in the padding)."""
    return _counts(tuple(x_shape[1:3]), tuple(window), tuple(strides), tuple(map(tuple, pads)))


def window_mean(
    x: jax.Array, window: Pair, strides: Pair, pads: Pads, count_include_pad: bool = False
) -> jax.Array:
    """Mean over each window: divided by the window size if ``count_include_pad``, else by
    the number of real positions (a window entirely in the padding gives 0)."""
    sums = window_sum(x, window, strides, pads)
    if count_include_pad or tuple(map(tuple, pads)) == VALID_PADS:
        return sums / (window[0] * window[1])
    counts = window_counts(x.shape, window, strides, pads)
    return sums / jnp.asarray(np.maximum(counts, 1.0), sums.dtype)


def patches(
    x: jax.Array, window: Pair, strides: Pair, pads: Pads, value: float = 0.0
) -> jax.Array:
    """The windows of ``x`` as ``f32[B, Ho, Wo, kh*kw, C]`` (row-major window order),
    with padding filled with ``value``. Built from ``kh*kw`` strided slices (whose
    gradients are pads, not scatters)."""
    (kh, kw), (sh, sw) = window, strides
    ho, wo = out_shape(x.shape, window, strides, pads)
    (pt, pb), (pl, pr) = pads
    if tuple(map(tuple, pads)) != VALID_PADS:
        x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)
    b, _, _, c = x.shape
    cols = [
        lax.slice(x, (0, i, j, 0), (b, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c),
                  (1, sh, sw, 1))
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.stack(cols, axis=3)


@functools.lru_cache(maxsize=256)
def _patch_mask(hw: Pair, window: Pair, strides: Pair, pads: Pads) -> np.ndarray:
    (kh, kw), (sh, sw) = window, strides
    (pt, pb), (pl, pr) = pads
    ho = output_size(hw[0], kh, sh, pads[0])
    wo = output_size(hw[1], kw, sw, pads[1])
    ones = np.pad(np.ones(hw, bool), ((pt, pb), (pl, pr)))
    cols = [
        ones[i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]
    return np.stack(cols, axis=-1)[None, :, :, :, None]


def patch_mask(x_shape, window: Pair, strides: Pair, pads: Pads) -> np.ndarray:
    """``bool[1, Ho, Wo, kh*kw, 1]``: which window elements are real inputs (not padding),
    computed statically with NumPy."""
    return _patch_mask(tuple(x_shape[1:3]), tuple(window), tuple(strides), tuple(map(tuple, pads)))
