"""The seeds' models: an MLP baseline, LeNet-5 and the small TensorFlow CNN.

References:
  LeCun, Bottou, Bengio & Haffner (1998), "Gradient-based learning applied to document
  recognition" (LeNet-5); the seeds' Keras LeNet-5 (first conv SAME, second VALID) and the
  TensorFlow tutorial CNN (conv32-pool-conv64-pool-conv64-dense64).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import (
    Conv,
    activation,
    compute_dtype,
    norm,
    record,
    resize_input,
    scale_channels,
)
from cnn_jax.models import register
from cnn_jax.pooling import Pool


def _prepare(m: nn.Module, x: jax.Array) -> jax.Array:
    """``resize_to`` and the compute dtype."""
    return resize_input(x, m.resize_to).astype(compute_dtype(m.dtype))


def _head(m: nn.Module, x: jax.Array, hidden: Sequence[int], act, dropout: float, train: bool):
    """Flatten, hidden dense layers ``fc1..`` (``width``-scaled, each followed by ``norm``
    called ``fc<i>_norm`` and the activation) with dropout, and the ``logits`` layer."""
    dtype = compute_dtype(m.dtype)
    x = x.reshape((x.shape[0], -1))
    for i, h in enumerate(hidden, start=1):
        x = nn.Dense(scale_channels(h, m.width), dtype=dtype, name=f"fc{i}")(x)
        x = record(m, f"fc{i}", act(norm(x, m.norm, train=train, name=f"fc{i}_norm", dtype=dtype)))
        if dropout > 0:
            x = nn.Dropout(dropout, deterministic=not train, name=f"dropout{i}")(x)
    x = record(m, "logits", nn.Dense(m.num_classes, dtype=dtype, name="logits")(x))
    return x.astype(jnp.float32)


@register("mlp")
class MLP(nn.Module):
    """A network without convolution: flatten, dense layers, classifier (the seeds' baseline).

    Attributes:
      hidden: sizes of the hidden dense layers.
      activation: a registered activation name.
      dropout: dropout rate after each hidden layer (training only).
      norm: ``none``, ``batch``, ``group`` or ``layer`` after each hidden dense layer.
      width: multiplier of the hidden sizes.
      resize_to: ``(h, w)`` to resize the input to first, or ``None``.
      dtype: compute dtype (parameters stay float32).
    """

    num_classes: int = 10
    hidden: Sequence[int] = (256, 128)
    activation: str = "relu"
    dropout: float = 0.0
    norm: str = "none"
    width: float = 1.0
    resize_to: Any = None
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = _prepare(self, x)
        return _head(self, x, self.hidden, activation(self.activation), self.dropout, train)


class _ConvPoolNet(nn.Module):
    """Conv → activation → pool stages, then the dense head (shared by LeNet-5 and SimpleCNN).

    ``pool_after[i]`` says whether stage ``i`` ends with a pooling layer. Common zoo options
    (see :mod:`cnn_jax.models.common`): ``norm`` after each convolution (``bn<i>``, before
    the activation) and hidden dense layer, ``width`` (conv channels and hidden sizes),
    ``resize_to``, ``dtype``; the defaults leave the seeds' networks unchanged.
    """

    num_classes: int = 10
    features: Sequence[int] = ()
    kernel_size: int = 5
    padding: Any = "VALID"
    hidden: Sequence[int] = ()
    pool: str = "max"
    pool_window: int = 2
    pool_strides: int | None = None
    pool_padding: Any = "VALID"
    pool_options: dict = dataclasses.field(default_factory=dict)
    activation: str = "relu"
    dropout: float = 0.0
    pool_after: Sequence[bool] = ()
    norm: str = "none"
    width: float = 1.0
    resize_to: Any = None
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = activation(self.activation)
        dtype = compute_dtype(self.dtype)
        x = _prepare(self, x)
        pads = [self.padding] * len(self.features) if isinstance(self.padding, str) else self.padding
        npool = 0
        for i, (f, pad) in enumerate(zip(self.features, pads), start=1):
            x = Conv(scale_channels(f, self.width), (self.kernel_size, self.kernel_size),
                     padding=pad, dtype=dtype, name=f"conv{i}")(x)
            x = norm(x, self.norm, train=train, name=f"bn{i}", dtype=dtype)
            x = record(self, f"conv{i}", act(x))
            if self.pool_after[i - 1]:
                npool += 1
                x = Pool(
                    self.pool,
                    self.pool_window,
                    self.pool_strides,
                    self.pool_padding,
                    dict(self.pool_options),
                    name=f"pool{npool}",
                )(x, train=train)
                record(self, f"pool{npool}", x)
        return _head(self, x, self.hidden, act, self.dropout, train)


@register("lenet5")
class LeNet5(_ConvPoolNet):
    """LeNet-5 as in the seeds' Keras code: 6@5×5 (SAME) → pool → 16@5×5 (VALID) → pool →
    dense 120 → dense 84 → classes. ``hidden=(120, 100)`` gives the seed's 120-100 variant.
    """

    features: Sequence[int] = (6, 16)
    kernel_size: int = 5
    padding: Any = ("SAME", "VALID")
    hidden: Sequence[int] = (120, 84)
    pool_after: Sequence[bool] = (True, True)


@register("simple_cnn")
class SimpleCNN(_ConvPoolNet):
    """The seeds' TensorFlow CNN: conv32 3×3 → pool 2 → conv64 3×3 → pool 2 → conv64 3×3 →
    flatten → dense 64 → classes (VALID convolutions)."""

    features: Sequence[int] = (32, 64, 64)
    kernel_size: int = 3
    padding: Any = "VALID"
    hidden: Sequence[int] = (64,)
    pool_after: Sequence[bool] = (True, True, False)
