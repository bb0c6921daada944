"""Pooling kinds that sample in training mode: stochastic and fractional max pooling.

Both draw from the ``rng`` they are given (the ``'pool'`` stream under :class:`Pool`) when
``train=True`` and are deterministic when ``train=False``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.errors import UserError
from cnn_jax.pooling.core import register
from cnn_jax.pooling.windows import patches


@register("stochastic", stochastic=True)
def stochastic_pool(x: jax.Array, window, strides, pads, *, train=False, rng=None) -> jax.Array:
    """Stochastic pooling (Zeiler & Fergus 2013, "Stochastic pooling for regularization of
    deep convolutional neural networks").

    With ``a = max(x, 0)`` (the paper assumes non-negative activations, as after a ReLU;
    negative inputs are clamped to 0 and so are never sampled) and ``S = sum_{i in R} a_i``:

    * training: sample one position ``i`` of each window with probability ``a_i / S`` and
      output ``a_i``; the gradient flows to the sampled element only;
    * evaluation ("probabilistic weighting"): ``y = sum_i a_i (a_i / S) = sum a_i^2 / S``.

    A window with ``S = 0`` (all inputs ``<= 0``) outputs 0 in both modes (with gradient 0).
    Padding is excluded (it has probability 0). One uniform number per window, channel and
    example is drawn from ``rng``.
    """
    a = patches(jnp.maximum(x, 0.0), window, strides, pads, 0.0)  # [B, Ho, Wo, K, C]
    if train:
        if rng is None:
            raise UserError("pool 'stochastic' samples in training mode: pass rng=")
        cum = jnp.cumsum(a, axis=3)
        total = cum[:, :, :, -1:, :]
        u = 1.0 - jax.random.uniform(rng, total.shape, x.dtype)  # in (0, 1]
        # The sampled index is the first i with cum_i >= u * S: P(i) = a_i / S exactly,
        # never a zero-probability element; S = 0 gives index 0, whose a is 0.
        idx = jnp.sum((cum < u * total).astype(jnp.int32), axis=3, keepdims=True)
        onehot = lax.stop_gradient(idx == np.arange(a.shape[3]).reshape(1, 1, 1, -1, 1))
        return jnp.sum(jnp.where(onehot, a, 0.0), axis=3)
    s = jnp.sum(a, axis=3)
    pos = s > 0
    return jnp.where(pos, jnp.sum(a * a, axis=3) / jnp.where(pos, s, 1.0), 0.0)


_SEQUENCES = ("pseudo", "random")


def fmp_boundaries(n: int, out: int, kind: str, key: jax.Array | None, batch: int) -> jax.Array:
    """Region boundaries ``a_0 = 0 < a_1 < ... < a_out = n`` with increments in {1, 2},
    ``i32[batch, out + 1]`` (one sequence per example), following Graham (2014).

    ``key=None`` gives the fixed evaluation sequence (pseudo-random with ``u = 1/2``).
    """
    i = np.arange(out + 1)
    if key is None or kind == "pseudo":
        # a_i = ceil(alpha (i + u)) - ceil(alpha u) with alpha = n / out: for u uniform in
        # (0, 1) the sequence depends only on t = ceil(n u) in {1..n} (uniform), so it is
        # computed exactly in integers: ceil((n i + t) / out) - ceil(t / out).
        if key is None:
            t = jnp.full((batch, 1), max(1, -(-n // 2)), jnp.int32)
        else:
            t = jax.random.randint(key, (batch, 1), 1, n + 1, jnp.int32)
        ceil_div = lambda m: (m + out - 1) // out
        return ceil_div(n * jnp.asarray(i)[None, :] + t) - ceil_div(t)
    # random: a random arrangement of (n - out) increments of 2 and (2 out - n) of 1.
    r = jax.random.uniform(key, (batch, out))
    rank = jnp.argsort(jnp.argsort(r, axis=1), axis=1)
    incr = 1 + (rank < n - out).astype(jnp.int32)
    return jnp.concatenate([jnp.zeros((batch, 1), jnp.int32), jnp.cumsum(incr, axis=1)], axis=1)


def _gather_max(x: jax.Array, bounds: jax.Array, overlapping: bool, axis: int) -> jax.Array:
    """Max of ``x`` (rank 4) over the regions given by ``bounds: i32[B, out + 1]`` along
    spatial ``axis`` (1 or 2)."""
    n = x.shape[axis]
    lo, hi = bounds[:, :-1], bounds[:, 1:]
    if overlapping:  # [a_{i-1}, a_i], the last one clipped to the input
        idxs = [lo, jnp.minimum(lo + 1, n - 1), jnp.minimum(hi, n - 1)]
    else:  # [a_{i-1}, a_i - 1]
        idxs = [lo, hi - 1]
    shape = (x.shape[0], -1, 1, 1) if axis == 1 else (x.shape[0], 1, -1, 1)
    vals = [jnp.take_along_axis(x, ix.reshape(shape), axis=axis) for ix in idxs]
    y = vals[0]
    for v in vals[1:]:
        y = jnp.maximum(y, v)
    return y


@register("fractional_max", stochastic=True)
def fractional_max_pool(
    x: jax.Array, window, strides, pads, *, train=False, rng=None, alpha: float = math.sqrt(2),
    sequence: str = "pseudo", overlapping: bool = False,
) -> jax.Array:
    """Fractional max pooling (Graham 2014, "Fractional max-pooling").

    Each spatial size ``n`` is reduced to ``out = ceil(n / alpha)``. Rows are split by an
    increasing sequence ``0 = a_0 < a_1 < ... < a_out = n`` with increments 1 or 2 (and
    columns by an independent sequence ``b``); output ``(i, j)`` is the max over the region
    ``[a_{i-1}, a_i - 1] x [b_{j-1}, b_j - 1]`` (disjoint) or ``[a_{i-1}, a_i] x
    [b_{j-1}, b_j]`` (``overlapping``; the last region is clipped to the input).

    Sequences: ``"pseudo"``: ``a_i = ceil(alpha' (i + u)) - ceil(alpha' u)`` with
    ``alpha' = n / out`` and ``u ~ U(0, 1)``; ``"random"``: a uniformly random arrangement
    of the increments. Training draws one row and one column sequence per example from
    ``rng``. Evaluation uses a fixed sequence, the pseudo-random one with ``u = 1/2`` (for
    both kinds); Graham instead averages the predictions of several random draws, which you
    can do by applying the model with ``train=True`` and different ``'pool'`` keys.

    ``window``, ``strides`` and ``padding`` are ignored: the regions tile the unpadded
    input and the reduction is set by ``alpha``, so at a pooling site this kind gives
    larger outputs than the others (e.g. 28 -> 20 instead of 14 with ``alpha = sqrt(2)``).

    Args:
      alpha: reduction ratio in ``(1, 2]``; Graham uses ``sqrt(2)`` (default) and
        ``2^(1/3)``.
      sequence: ``"pseudo"`` or ``"random"``.
      overlapping: overlapping regions (Graham found them better with pseudo-random ones).
    """
    if not (isinstance(alpha, (int, float)) and 1 < alpha <= 2):
        raise UserError(f"pool 'fractional_max': alpha must be in (1, 2], got {alpha!r}")
    if sequence not in _SEQUENCES:
        raise UserError(
            f"pool 'fractional_max': invalid sequence {sequence!r}; choose one of: "
            f"{', '.join(_SEQUENCES)}"
        )
    if train and rng is None:
        raise UserError("pool 'fractional_max' samples in training mode: pass rng=")
    b, h, w, _ = x.shape
    keys = jax.random.split(rng) if train else (None, None)
    rows = fmp_boundaries(h, max(1, math.ceil(h / alpha)), sequence, keys[0], b)
    cols = fmp_boundaries(w, max(1, math.ceil(w / alpha)), sequence, keys[1], b)
    y = _gather_max(x, rows, overlapping, axis=1)
    return _gather_max(y, cols, overlapping, axis=2)
