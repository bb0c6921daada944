"""Global pooling heads ``f32[B, H, W, C] -> f32[B, C']`` (``--config.model.head_pool=KIND``)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.errors import UserError
from cnn_jax.pooling.core import register_head


@register_head("avg")
def global_avg(x: jax.Array) -> jax.Array:
    """Global average pooling: ``y_c = mean_{h,w} x_{h,w,c}`` (Lin, Chen & Yan 2014,
    "Network in Network"). Output ``f32[B, C]``."""
    return jnp.mean(x, axis=(1, 2))


@register_head("max")
def global_max(x: jax.Array) -> jax.Array:
    """Global max pooling: ``y_c = max_{h,w} x_{h,w,c}`` (e.g. Oquab et al. 2015).
    Output ``f32[B, C]``."""
    return jnp.max(x, axis=(1, 2))


@register_head("avg_max")
def global_avg_max(x: jax.Array) -> jax.Array:
    """Sum of global average and global max pooling: ``y_c = mean x_c + max x_c``
    (timm's ``'avgmax'`` halves this sum; we do not, the scale is absorbed by the next
    layer). Output ``f32[B, C]``."""
    return jnp.mean(x, axis=(1, 2)) + jnp.max(x, axis=(1, 2))


@register_head("concat_avg_max")
def global_concat_avg_max(x: jax.Array) -> jax.Array:
    """Concatenation ``[mean x ‖ max x]`` (timm's ``'catavgmax'``; fast.ai's
    ``AdaptiveConcatPool2d`` concatenates max first). Output ``f32[B, 2C]``, averages
    first."""
    return jnp.concatenate([jnp.mean(x, axis=(1, 2)), jnp.max(x, axis=(1, 2))], axis=-1)


def gem(x: jax.Array, p: jax.Array | float, eps: float = 1e-6) -> jax.Array:
    """Generalised mean over H, W: ``y_c = (mean_{h,w} max(x, eps)^p)^(1/p)``."""
    p = jnp.asarray(p, x.dtype)
    return jnp.mean(jnp.maximum(x, eps) ** p, axis=(1, 2)) ** (1.0 / p)


@register_head("gem")
class GeM(nn.Module):
    """Generalised-mean pooling (Radenović, Tolias & Chum 2018, "Fine-tuning CNN image
    retrieval with no human annotation"):
    ``y_c = ((1/HW) sum_{h,w} max(x_{h,w,c}, eps)^p)^(1/p)``.

    ``p = 1`` is average pooling, ``p -> inf`` max pooling. Inputs are clamped at ``eps``
    (as in the authors' code) so that fractional powers are defined; after a ReLU this only
    changes exact zeros.

    Attributes:
      p: initial (or fixed) exponent; 3 as in the paper.
      learn: learn ``p`` (one scalar parameter ``p`` for the layer) as in the paper.
      eps: clamp.
    """

    p: float = 3.0
    learn: bool = True
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if not self.p > 0:
            raise UserError(f"gem head: p must be > 0, got {self.p!r}")
        p = self.param("p", nn.initializers.constant(self.p), (), jnp.float32) if self.learn else self.p
        return gem(x, p, self.eps)


def _bins(n: int, level: int) -> list[tuple[int, int]]:
    """Adaptive bins ``[floor(i n / l), ceil((i + 1) n / l))`` (PyTorch ``AdaptiveMaxPool2d``):
    exactly ``level`` non-empty bins covering ``0..n-1`` for any ``n >= 1``."""
    return [((i * n) // level, -(-((i + 1) * n) // level)) for i in range(level)]


@register_head("spp")
def spatial_pyramid(
    x: jax.Array, *, levels: Sequence[int] = (1, 2, 4), mode: str = "max"
) -> jax.Array:
    """Spatial pyramid pooling (He, Zhang, Ren & Sun 2014, "Spatial pyramid pooling in deep
    convolutional networks for visual recognition").

    For each level ``l`` the feature map is divided into an ``l x l`` grid of bins and each
    bin is max- (or average-) pooled; the results are flattened (bin row, bin column,
    channel) and concatenated over levels, giving ``f32[B, C * sum(l^2)]`` whatever the
    input size. Bins are the adaptive bins ``[floor(i n/l), ceil((i+1) n/l))`` of PyTorch's
    ``AdaptiveMaxPool2d`` rather than the paper's window ``ceil(n/l)`` / stride
    ``floor(n/l)``, which yields the wrong number of bins for some sizes (e.g. n=7, l=4);
    they are non-empty and cover the map for every ``n >= 1`` (bins overlap when ``n`` is
    not a multiple of ``l``).

    Args:
      levels: pyramid levels (bins per side); the paper uses ``(1, 2, 3, 6)`` and
        ``(1, 2, 4)``.
      mode: ``"max"`` (the paper) or ``"avg"``.
    """
    if mode not in ("max", "avg"):
        raise UserError(f"spp head: invalid mode {mode!r}; choose one of: avg, max")
    levels = tuple(levels)
    if not levels or not all(isinstance(v, int) and v >= 1 for v in levels):
        raise UserError(f"spp head: levels must be positive ints, got {levels!r}")
    reduce = jnp.max if mode == "max" else jnp.mean
    b, h, w, c = x.shape
    outs = []
    for level in levels:
        cells = [
            reduce(x[:, r0:r1, c0:c1, :], axis=(1, 2))
            for r0, r1 in _bins(h, level)
            for c0, c1 in _bins(w, level)
        ]
        outs.append(jnp.stack(cells, axis=1).reshape(b, level * level * c))
    return jnp.concatenate(outs, axis=-1)
