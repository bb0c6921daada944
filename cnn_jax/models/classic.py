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

from cnn_jax.layers import Conv, activation, record
from cnn_jax.models import register
from cnn_jax.pooling import Pool


def _head(m: nn.Module, x: jax.Array, hidden: Sequence[int], act, dropout: float, train: bool):
    """Flatten, hidden dense layers ``fc1..`` with dropout, and the ``logits`` layer."""
    x = x.reshape((x.shape[0], -1))
    for i, h in enumerate(hidden, start=1):
        x = record(m, f"fc{i}", act(nn.Dense(h, name=f"fc{i}")(x)))
        if dropout > 0:
            x = nn.Dropout(dropout, deterministic=not train, name=f"dropout{i}")(x)
    return record(m, "logits", nn.Dense(m.num_classes, name="logits")(x))


@register("mlp")
class MLP(nn.Module):
    """A network without convolution: flatten, dense layers, classifier (the seeds' baseline).

    Attributes:
      hidden: sizes of the hidden dense layers.
      activation: a registered activation name.
      dropout: dropout rate after each hidden layer (training only).
    """

    num_classes: int = 10
    hidden: Sequence[int] = (256, 128)
    activation: str = "relu"
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return _head(self, x, self.hidden, activation(self.activation), self.dropout, train)


class _ConvPoolNet(nn.Module):
    """Conv → activation → pool stages, then the dense head (shared by LeNet-5 and SimpleCNN).

    ``pool_after[i]`` says whether stage ``i`` ends with a pooling layer.
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

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = activation(self.activation)
        pads = [self.padding] * len(self.features) if isinstance(self.padding, str) else self.padding
        npool = 0
        for i, (f, pad) in enumerate(zip(self.features, pads), start=1):
            x = Conv(f, (self.kernel_size, self.kernel_size), padding=pad, name=f"conv{i}")(x)
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
