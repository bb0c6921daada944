"""Lp (power-mean) pooling with a fixed or learned exponent."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.errors import UserError
from cnn_jax.pooling.core import PoolModule, learned_shape, register
from cnn_jax.pooling.windows import patches, window_counts


def lp_mean(x: jax.Array, p, window, strides, pads, count_include_pad: bool = False) -> jax.Array:
    """``(mean_R |x|^p)^(1/p)`` for a float or traced ``p`` (scalar or per channel ``[C]``).

    Overflow- and underflow-safe for any ``p``: each window is divided by its own
    (gradient-stopped) maximum ``m`` and the result multiplied back,
    ``m (mean_R (|x|/m)^p)^(1/p)``; the power mean is positively homogeneous, so values and
    gradients are unchanged, and the sum is ``>= 1``. A window of zeros gives 0 with
    gradient 0 (where the derivative of ``t^(1/p)`` at 0 is infinite).
    """
    a = patches(jnp.abs(x), window, strides, pads, 0.0)  # [B, Ho, Wo, K, C]
    m = lax.stop_gradient(jnp.max(a, axis=3))
    pos = m > 0
    m = jnp.where(pos, m, 1.0)
    s = jnp.sum((a / m[:, :, :, None, :]) ** p, axis=3)
    if count_include_pad or tuple(map(tuple, pads)) == ((0, 0), (0, 0)):
        n = window[0] * window[1]
    else:
        n = window_counts(x.shape, window, strides, pads)
    s = jnp.where(pos, s, 1.0)
    return jnp.where(pos, m * (s / n) ** (1.0 / p), 0.0)


class LpPool(PoolModule):
    """Lp pooling as a layer (see :func:`lp_pool`), optionally learning ``p``.

    Attributes:
      p: the fixed exponent, or the initial one when learned (then ``p > 1``).
      learn: ``"none"`` (fixed ``p``, no parameters), ``"layer"`` (one learned ``p``) or
        ``"channel"`` (one per channel); the parameter is ``rho`` with
        ``p = 1 + softplus(rho)``.
      count_include_pad: as in :func:`avg_pool`.
    """

    p: float = 2.0
    learn: str = "none"
    count_include_pad: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        shape = learned_shape("lp", self.learn, x)
        if shape is None:
            return lp_pool(x, self.window, self.strides, self.pads, p=self.p,
                           count_include_pad=self.count_include_pad)
        if not (isinstance(self.p, (int, float)) and self.p > 1):
            raise UserError(f"pool 'lp': a learned p must start > 1, got {self.p!r}")
        rho0 = float(np.log(np.expm1(self.p - 1.0)))  # softplus^-1(p - 1)
        rho = self.param("rho", nn.initializers.constant(rho0), shape, jnp.float32)
        p = 1.0 + nn.softplus(rho)
        return lp_mean(x, p, self.window, self.strides, self.pads, self.count_include_pad)


@register("lp", module=LpPool)
def lp_pool(
    x: jax.Array, window, strides, pads, *, train=False, rng=None, p: float = 2.0,
    count_include_pad: bool = False,
) -> jax.Array:
    """Lp (power-mean) pooling: ``y = (|R|^-1 sum_{i in R} |x_i|^p)^(1/p)``.

    ``p = 1`` is average pooling of ``|x|``, ``p = 2`` the L2 ("root mean square") pooling
    of Sermanet, Chintala & LeCun (2012, "Convolutional neural networks applied to house
    numbers digit classification"); ``p -> inf`` tends to max pooling of ``|x|``. Learned
    ``p`` (module option ``learn``) follows Gulcehre, Cho, Pascanu & Bengio (2014,
    "Learned-norm pooling for deep feedforward and recurrent neural networks"), with
    ``p = 1 + softplus(rho)`` so that ``p >= 1``.

    Unlike PyTorch's ``nn.LPPool2d``, which computes the power *sum*
    ``(sum_R x^p)^(1/p)`` (no ``1/|R|``, no absolute value), this is a power *mean*:
    ours equals PyTorch's times ``|R|^(-1/p)`` on non-negative inputs, so its scale does not
    depend on the window size and ``p = 1`` is average pooling.

    Args:
      p: exponent, ``p >= 1``.
      count_include_pad: count padding (zeros) in ``|R|`` (as in :func:`avg_pool`).
    """
    if not (isinstance(p, (int, float)) and p >= 1):
        raise UserError(f"pool 'lp': p must be a number >= 1, got {p!r}")
    return lp_mean(x, float(p), window, strides, pads, count_include_pad)
