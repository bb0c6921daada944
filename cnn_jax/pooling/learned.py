"""Pooling kinds with learned parameters: mixed, gated, strided convolution, LIP.

Their parameters live in the ``impl`` submodule of the :class:`~cnn_jax.pooling.Pool`
layer (e.g. ``pool1/impl/omega``), so the other layers' parameter paths do not depend on
the kind.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.activations import activation as get_activation
from cnn_jax.errors import UserError
from cnn_jax.pooling.core import PoolModule, learned_shape, register
from cnn_jax.pooling.windows import patches, window_max, window_mean, window_sum


def mix(x: jax.Array, a, window, strides, pads, count_include_pad: bool = False) -> jax.Array:
    """``a * max_pool(x) + (1 - a) * avg_pool(x)`` (``a`` a scalar, ``[C]`` or an array
    broadcastable to the output)."""
    mx = window_max(x, window, strides, pads)
    av = window_mean(x, window, strides, pads, count_include_pad)
    return av + a * (mx - av)


class MixedPool(PoolModule):
    """Mixed max-average pooling as a layer (see :func:`mixed_pool`).

    Attributes:
      alpha: the fixed mixing proportion, or its initial value when learned (then in
        ``(0, 1)``).
      learn: ``"layer"`` (default: one learned ``a`` for the layer, as in the paper),
        ``"channel"`` (one per channel) or ``"none"`` (fixed ``alpha``, no parameters).
        The parameter is the logit ``a_logit`` with ``a = sigmoid(a_logit)``, which keeps
        ``a`` in ``[0, 1]`` without clipping.
      count_include_pad: for the average branch (see :func:`avg_pool`).
    """

    alpha: float = 0.5
    learn: str = "layer"
    count_include_pad: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        shape = learned_shape("mixed", self.learn, x)
        if shape is None:
            return mixed_pool(x, self.window, self.strides, self.pads, alpha=self.alpha,
                              count_include_pad=self.count_include_pad)
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 1):
            raise UserError(f"pool 'mixed': a learned alpha must start in (0, 1), got {self.alpha!r}")
        init = float(np.log(self.alpha / (1.0 - self.alpha)))
        logit = self.param("a_logit", nn.initializers.constant(init), shape, jnp.float32)
        return mix(x, nn.sigmoid(logit), self.window, self.strides, self.pads,
                   self.count_include_pad)


@register("mixed", module=MixedPool)
def mixed_pool(
    x: jax.Array, window, strides, pads, *, train=False, rng=None, alpha: float = 0.5,
    count_include_pad: bool = False,
) -> jax.Array:
    """Mixed max-average pooling (Lee, Gallagher & Tu 2016, "Generalizing pooling functions
    in convolutional neural networks: mixed, gated, and tree"):
    ``y = a * max_R x + (1 - a) * mean_R x``.

    The functional form uses a fixed ``a = alpha``; as a layer (:class:`Pool`) ``a`` is
    learned per layer by default, or per channel (option ``learn``), as
    ``a = sigmoid(a_logit)``.

    Args:
      alpha: mixing proportion in ``[0, 1]`` (1 is max pooling, 0 average pooling).
      count_include_pad: for the average branch (see :func:`avg_pool`).
    """
    if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
        raise UserError(f"pool 'mixed': alpha must be in [0, 1], got {alpha!r}")
    return mix(x, float(alpha), window, strides, pads, count_include_pad)


@register("gated")
class GatedPool(PoolModule):
    """Gated max-average pooling (Lee, Gallagher & Tu 2016):
    ``y = g * max_R x + (1 - g) * mean_R x`` with a gate ``g = sigmoid(omega^T x_R)``
    computed from the window's own values.

    ``omega`` (parameter ``omega``, ``[kh, kw]``) is one window-sized gating mask for the
    layer, shared across channels as in the authors' code; ``per_channel=True`` learns one
    mask per channel (``[kh, kw, C]``). Padding contributes 0 to ``omega^T x_R``, never
    wins the max and, by default, is not counted in the mean. ``omega`` starts at 0
    (``g = 1/2``: the start of :func:`mixed_pool` with ``alpha = 1/2``); the gradient
    moves it away from there.

    Attributes:
      per_channel: one gating mask per channel.
      count_include_pad: for the average branch (see :func:`avg_pool`).
    """

    per_channel: bool = False
    count_include_pad: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        kh, kw = self.window
        shape = (kh, kw, x.shape[-1]) if self.per_channel else (kh, kw)
        omega = self.param("omega", nn.initializers.zeros, shape, jnp.float32)
        p = patches(x, self.window, self.strides, self.pads, 0.0)  # [B, Ho, Wo, K, C]
        if self.per_channel:
            z = jnp.einsum("bhwkc,kc->bhwc", p, omega.reshape(kh * kw, -1))
        else:
            z = jnp.einsum("bhwkc,k->bhwc", p, omega.reshape(kh * kw))
        return mix(x, nn.sigmoid(z), self.window, self.strides, self.pads, self.count_include_pad)


@register("strided_conv")
class StridedConv(PoolModule):
    """A learned strided convolution in place of pooling (Springenberg, Dosovitskiy, Brox &
    Riedmiller 2014, "Striving for simplicity: the all convolutional net").

    ``y = conv(x, W, stride) + b`` with a ``kh x kw`` kernel (the pooling window), the
    pooling strides and padding (zeros, as for convolutions) and as many output channels
    as input channels (parameters ``kernel: [kh, kw, C, C]`` and ``bias: [C]``, flax's
    default initialisation). The paper's replacement layer is an ordinary convolution
    followed by the network's nonlinearity; here it is linear by default (the next layer
    brings its own), set ``activation`` (a registered activation name) to add one.

    Attributes:
      use_bias: add a bias.
      activation: activation applied after the convolution (``"identity"``: none).
    """

    use_bias: bool = True
    activation: str = "identity"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = get_activation(self.activation)
        c = x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (*self.window, c, c), jnp.float32
        )
        y = lax.conv_general_dilated(
            x, kernel.astype(x.dtype), self.strides, self.pads,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (c,), jnp.float32).astype(x.dtype)
        return act(y)


@register("lip")
class LIP(PoolModule):
    """Local importance pooling (Gao, Wang & Wu 2019, "LIP: Local importance-based
    pooling"): ``y = sum_R x * F(x) / sum_R F(x)`` with importance ``F(x) = exp(logit(x))``
    computed per position and channel by a small learned network.

    Here ``logit(x) = bound * sigmoid(conv(x))``: one ``k x k`` convolution ``C -> C``
    with SAME padding (submodule ``logit``: ``kernel``, ``bias``), bounded like the
    authors' ``SoftGate`` (``12 * sigmoid``) so that ``exp`` cannot overflow. Padding has
    importance 0 (it is excluded).

    Attributes:
      logit_kernel: size ``k`` of the importance convolution.
      bound: the logit bound (``> 0``; the authors use 12).
    """

    logit_kernel: int = 3
    bound: float = 12.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if not (isinstance(self.bound, (int, float)) and self.bound > 0):
            raise UserError(f"pool 'lip': bound must be > 0, got {self.bound!r}")
        if not (isinstance(self.logit_kernel, int) and self.logit_kernel >= 1):
            raise UserError(f"pool 'lip': logit_kernel must be a positive int, got "
                            f"{self.logit_kernel!r}")
        k = self.logit_kernel
        logit = nn.Conv(x.shape[-1], (k, k), padding="SAME", name="logit")(x)
        w = jnp.exp(self.bound * nn.sigmoid(logit))
        num = window_sum(x * w, self.window, self.strides, self.pads)
        den = window_sum(w, self.window, self.strides, self.pads)
        pos = den > 0  # 0 only for a window entirely in the padding
        return jnp.where(pos, num / jnp.where(pos, den, 1.0), 0.0)
