"""Building blocks shared by the models: normalisation layers, a shape-checked convolution,
adaptive average pooling, input resizing, compute dtypes, features (activations are in
:mod:`cnn_jax.activations`)."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import conv as conv_ops
from cnn_jax.errors import ShapeError, UserError
from cnn_jax.pooling.core import normalize_padding, output_size
from cnn_jax.registry import Registry

CONV_PADDINGS = ("SAME", "VALID", "CIRCULAR", "CAUSAL", "REFLECT")


class Conv(nn.Conv):
    """``flax.linen.Conv`` that names itself when its input is too small.

    Parameter paths are those of ``nn.Conv`` (``<name>/kernel``, ``<name>/bias``).
    """

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        if isinstance(self.padding, str) and self.padding.upper() not in CONV_PADDINGS:
            raise UserError(
                f"invalid padding {self.padding!r} for layer '{self.name}'; choose one of: "
                f"{', '.join(CONV_PADDINGS)}, an int or ((top, bottom), (left, right))"
            )
        if inputs.ndim == 4:
            k = tuple(self.kernel_size)
            s = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides or (1, 1))
            pad = self.padding
            if isinstance(pad, str) and pad.upper() in ("SAME", "VALID"):
                pads = normalize_padding(pad, inputs.shape[1:3], k, s)
            elif isinstance(pad, int):
                pads = ((pad, pad), (pad, pad))
            elif _explicit_pads(pad):
                pads = tuple((int(a), int(b)) for a, b in pad)
            else:
                pads = None  # other flax padding forms (CIRCULAR, ...) keep their own checks
            if pads is not None:
                out = [output_size(n, w, st, p) for n, w, st, p in zip(inputs.shape[1:3], k, s, pads)]
                if min(out) <= 0:
                    raise ShapeError(
                        f"input too small: layer '{self.name}' ({k[0]}x{k[1]} convolution, "
                        f"{pad} padding) on a {inputs.shape[1]}x{inputs.shape[2]} feature map would "
                        f"give an empty {out[0]}x{out[1]} output; use a larger input, SAME padding or "
                        "the model's resize_to option"
                    )
            if pads is not None and self._plain():
                return self._conv2d(inputs, k, s, pads)
        return super().__call__(inputs)

    def _plain(self) -> bool:
        """A dense, undilated, unmasked convolution with flax's default operation."""
        one = lambda v: v is None or (v == 1 if isinstance(v, int) else all(d == 1 for d in v))  # noqa: E731
        return (
            self.feature_group_count == 1 and one(self.input_dilation) and one(self.kernel_dilation)
            and self.shared_weights and self.mask is None and self.precision is None
            and self.conv_general_dilated is None and self.conv_general_dilated_cls is None
        )

    def _conv2d(self, inputs: jax.Array, k: tuple, s: tuple, pads) -> jax.Array:
        """The same parameters and result as ``nn.Conv``: stride 1 through
        :func:`cnn_jax.conv.conv2d` (its CPU formulations), other strides through lax."""
        kernel = self.param("kernel", self.kernel_init, (*k, inputs.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        if s == (1, 1):
            y = conv_ops.conv2d(inputs, kernel, pads)
        else:
            y = jax.lax.conv_general_dilated(inputs, kernel, s, pads, dimension_numbers=conv_ops.DIMENSION_NUMBERS)
        return y + bias if bias is not None else y


def _explicit_pads(pad: Any) -> bool:
    try:
        return len(pad) == 2 and all(len(p) == 2 for p in pad)
    except TypeError:
        return False


def record(module: nn.Module, name: str, x: jax.Array) -> jax.Array:
    """Stores activation ``x`` under ``name`` in the ``'intermediates'`` collection."""
    # One dict-valued variable per module: a variable named like a submodule ("conv1")
    # would clash with that submodule's scope.
    module.sow(
        "intermediates", "features", {name: x}, reduce_fn=lambda a, b: {**a, **b}, init_fn=dict
    )
    return x


# --- normalisation -------------------------------------------------------------------------

NORMS: Registry[Callable[..., Any]] = Registry("norm")
"""Normalisation layers by name (``--config.model.norm=KIND``). Each entry is a factory
``make(features, *, name, dtype) -> callable(x, train) -> x``; ``features`` is the channel
count (the last axis of ``x``)."""

BN_MOMENTUM = 0.9  # flax convention: running = m * running + (1 - m) * batch (PyTorch's 0.1)
NORM_EPS = 1e-5  # PyTorch's default for BatchNorm, GroupNorm and LayerNorm


def _none(features, *, name, dtype):
    return None


_BATCH_AXIS: contextvars.ContextVar[str | None] = contextvars.ContextVar("batch_axis", default=None)


@contextlib.contextmanager
def batch_axis(name: str | None):
    """While tracing a step under ``jax.pmap`` with axis ``name``, BatchNorm layers compute
    their statistics over the whole (global) batch across that axis."""
    token = _BATCH_AXIS.set(name)
    try:
        yield
    finally:
        _BATCH_AXIS.reset(token)


def _batch(features, *, name, dtype):
    layer = nn.BatchNorm(
        momentum=BN_MOMENTUM, epsilon=NORM_EPS, dtype=dtype, axis_name=_BATCH_AXIS.get(), name=name
    )
    return lambda x, train: layer(x, use_running_average=not train)


def _group(features, *, name, dtype):
    # 32 groups (Wu & He 2018) where the channels allow; gcd keeps it a divisor under `width`.
    layer = nn.GroupNorm(num_groups=math.gcd(features, 32), epsilon=NORM_EPS, dtype=dtype, name=name)
    return lambda x, train: layer(x)


def _layer(features, *, name, dtype):
    # Per example over every non-batch axis (H, W, C for feature maps), with a per-channel
    # scale and bias: GroupNorm with one group.
    def call(x, train):
        layer = nn.LayerNorm(
            epsilon=NORM_EPS, dtype=dtype, reduction_axes=tuple(range(1, x.ndim)), feature_axes=-1,
            name=name,
        )
        return layer(x)

    return call


NORMS.add("none", _none)
NORMS.add("batch", _batch)
NORMS.add("group", _group)
NORMS.add("layer", _layer)


def norm(x: jax.Array, kind: str, *, train: bool, name: str, dtype: Any = None) -> jax.Array:
    """Applies normalisation ``kind`` (``none``, ``batch``, ``group``, ``layer``) to
    ``x: f32[B, ..., C]`` as a layer called ``name`` (call inside a compact method).

    ``batch``: ``flax.linen.BatchNorm`` with ``use_running_average=not train``, momentum 0.9,
    eps 1e-5 (statistics in the ``batch_stats`` collection). ``group``: 32 groups, or the
    largest power of two dividing the channels. ``layer``: over all non-batch axes.
    """
    make = NORMS.get(kind)(x.shape[-1], name=name, dtype=dtype)
    return x if make is None else make(x, train)


def local_response_norm(
    x: jax.Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
) -> jax.Array:
    """Local response normalisation across channels (Krizhevsky et al. 2012, §3.3), PyTorch's
    ``nn.LocalResponseNorm`` convention: ``x / (k + alpha / size * sum_{window} x^2) ** beta``
    over ``size`` neighbouring channels (zero-padded at the ends)."""
    sq = jnp.square(x.astype(jnp.float32))
    lo = size // 2
    window_sum = jax.lax.reduce_window(
        sq, 0.0, jax.lax.add, (1,) * (x.ndim - 1) + (size,), (1,) * x.ndim,
        ((0, 0),) * (x.ndim - 1) + ((lo, size - 1 - lo),),
    )
    return (x / (k + alpha / size * window_sum) ** beta).astype(x.dtype)


# --- sizes, dtypes, inputs -----------------------------------------------------------------

def scale_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded to the nearest int, at least 1 (the ``width`` option)."""
    if not width > 0:
        raise UserError(f"model width must be a positive number, got {width!r}")
    return max(1, round(channels * width))


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str) -> Any:
    """The compute dtype called ``name`` (``float32``, ``bfloat16``, ``float16``)."""
    try:
        return DTYPES[name]
    except (KeyError, TypeError):
        raise UserError(
            f"unknown dtype {name!r}; choose one of: {', '.join(DTYPES)}"
        ) from None


def resize_input(x: jax.Array, size: int | Sequence[int] | None, method: str = "bilinear"):
    """Resizes ``x: f32[B, H, W, C]`` to ``size`` (int or ``(h, w)``) with
    :func:`jax.image.resize` (antialiased when shrinking); ``None`` leaves it unchanged."""
    if size is None or (not isinstance(size, int) and len(size) == 0):
        return x
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in hw):
        raise UserError(f"resize_to must be a positive int or (height, width), got {size!r}")
    if x.ndim != 4:
        raise ShapeError(f"resize_to needs NHWC images, got shape {tuple(x.shape)}")
    if tuple(x.shape[1:3]) == hw:
        return x
    return jax.image.resize(x, (x.shape[0], *hw, x.shape[3]), method=method)


def _adaptive_matrix(n: int, out: int) -> np.ndarray:
    """``f32[out, n]`` averaging matrix: row ``i`` averages inputs
    ``floor(i n / out) .. ceil((i + 1) n / out) - 1`` (PyTorch's adaptive pooling bins)."""
    m = np.zeros((out, n), np.float32)
    for i in range(out):
        lo, hi = (i * n) // out, -((-(i + 1) * n) // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


class AdaptiveAvgPool(nn.Module):
    """Average pooling to a fixed ``output_size`` whatever the input size, with PyTorch's
    ``nn.AdaptiveAvgPool2d`` bins (overlapping when the size does not divide, repeating
    inputs when the input is smaller than the output). No parameters.

    ``x: f32[B, H, W, C] -> f32[B, h, w, C]``.
    """

    output_size: int | Sequence[int] = (7, 7)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        oh, ow = (
            (self.output_size,) * 2 if isinstance(self.output_size, int) else self.output_size
        )
        h, w = x.shape[1:3]
        if (h, w) == (oh, ow):
            return x
        if h % oh == 0 and w % ow == 0:  # plain non-overlapping windows
            return x.reshape(x.shape[0], oh, h // oh, ow, w // ow, x.shape[3]).mean((2, 4))
        mh = jnp.asarray(_adaptive_matrix(h, oh), x.dtype)
        mw = jnp.asarray(_adaptive_matrix(w, ow), x.dtype)
        return jnp.einsum("ih,bhwc,jw->bijc", mh, x, mw)
