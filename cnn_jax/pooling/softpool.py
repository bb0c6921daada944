"""SoftPool: softmax-weighted pooling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.pooling.core import register
from cnn_jax.pooling.windows import patch_mask, patches


@register("softpool")
def softpool(x: jax.Array, window, strides, pads, *, train=False, rng=None) -> jax.Array:
    """SoftPool (Stergiou, Poppe & Kalliatakis 2021, "Refining activation downsampling with
    SoftPool"): ``y = sum_{i in R} x_i e^{x_i} / sum_{j in R} e^{x_j}`` per channel, i.e.
    the window's values weighted by their softmax.

    Numerically stable: the exponentials are taken of ``x_i - max_R x`` (the shift cancels;
    it is gradient-stopped, so no max-pool backward is paid). Padding is excluded (weight
    0), so a padded window is the softmax-weighted sum of its real inputs; a window lying
    entirely in the padding gives 0.
    """
    p = patches(x, window, strides, pads, 0.0)  # [B, Ho, Wo, K, C]
    mask = patch_mask(x.shape, window, strides, pads)
    if mask.all():
        m = lax.stop_gradient(jnp.max(p, axis=3, keepdims=True))
        e = jnp.exp(p - m)
        return jnp.sum(e * p, axis=3) / jnp.sum(e, axis=3)
    m = lax.stop_gradient(jnp.max(jnp.where(mask, p, -jnp.inf), axis=3, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    e = jnp.where(mask, jnp.exp(jnp.where(mask, p, 0.0) - m), 0.0)
    den = jnp.sum(e, axis=3)
    pos = den > 0
    return jnp.where(pos, jnp.sum(e * p, axis=3) / jnp.where(pos, den, 1.0), 0.0)
