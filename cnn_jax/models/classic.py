"""The seeds' models: an MLP baseline, LeNet-5 and the small TensorFlow CNN.

References:
  LeCun, Bottou, Bengio & Haffner (1998), "Gradient-based learning applied to document
  recognition" (LeNet-5); the seeds' Keras LeNet-5 (first conv SAME, second VALID) and the
  TensorFlow tutorial CNN (conv32-pool-conv64-pool-conv64-dense64).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from cnn_jax.layers import record
from cnn_jax.models.common import Classifier, Layers
from cnn_jax.models.registry import register


def _head(m: Classifier, x: jax.Array, hidden: Sequence[int], train: bool) -> jax.Array:
    """Flatten, hidden dense layers ``fc1..`` (``width``-scaled, each followed by ``norm``
    called ``fc<i>_norm`` and the activation) with dropout, and the ``logits`` layer."""
    x = x.reshape((x.shape[0], -1))
    for i, h in enumerate(hidden, start=1):
        x = m.dense(x, m.ch(h), name=f"fc{i}")
        x = record(m, f"fc{i}", m.act(m.normalize(x, f"fc{i}_norm", train)))
        x = m.drop(x, m.dropout, name=f"dropout{i}", train=train)
    return m.logits(x)


@register("mlp", inputs="mnist")
class MLP(Classifier):
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

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return _head(self, self.prepare(x), self.hidden, train)


class _ConvPoolNet(Classifier, Layers):
    """Conv → activation → pool stages, then the dense head (shared by LeNet-5 and SimpleCNN).

    ``pool_after[i]`` says whether stage ``i`` ends with a pooling layer (``pool`` and
    ``pool_options`` with ``pool_window``, ``pool_strides``, ``pool_padding``). Common zoo
    options (see :mod:`cnn_jax.models.common`): ``norm`` after each convolution (``bn<i>``,
    before the activation) and hidden dense layer, ``width`` (conv channels and hidden
    sizes), ``resize_to``, ``dtype``; the defaults leave the seeds' networks unchanged.
    """

    num_classes: int = 10
    features: Sequence[int] = ()
    kernel_size: int = 5
    padding: Any = "VALID"
    hidden: Sequence[int] = ()
    pool_window: int = 2
    pool_strides: int | None = None
    pool_padding: Any = "VALID"
    pool_after: Sequence[bool] = ()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.prepare(x)
        pads = self.padding
        if isinstance(pads, str):
            pads = [pads] * len(self.features)
        npool = 0
        for i, (f, pad) in enumerate(zip(self.features, pads), start=1):
            x = self.conv_norm_act(x, self.ch(f), self.kernel_size, padding=pad, name=f"conv{i}",
                                   norm_name=f"bn{i}", bias=True, train=train)
            x = record(self, f"conv{i}", x)
            if self.pool_after[i - 1]:
                npool += 1
                x = self.pool_layer(x, self.pool_window, self.pool_strides, self.pool_padding,
                                    name=f"pool{npool}", train=train)
                record(self, f"pool{npool}", x)
        return _head(self, x, self.hidden, train)


@register("lenet5", inputs="mnist")
class LeNet5(_ConvPoolNet):
    """LeNet-5 as in the seeds' Keras code: 6@5×5 (SAME) → pool → 16@5×5 (VALID) → pool →
    dense 120 → dense 84 → classes. ``hidden=(120, 100)`` gives the seed's 120-100 variant.
    """

    features: Sequence[int] = (6, 16)
    kernel_size: int = 5
    padding: Any = ("SAME", "VALID")
    hidden: Sequence[int] = (120, 84)
    pool_after: Sequence[bool] = (True, True)


@register("simple_cnn", inputs="cifar")
class SimpleCNN(_ConvPoolNet):
    """The seeds' TensorFlow CNN: conv32 3×3 → pool 2 → conv64 3×3 → pool 2 → conv64 3×3 →
    flatten → dense 64 → classes (VALID convolutions)."""

    features: Sequence[int] = (32, 64, 64)
    kernel_size: int = 3
    padding: Any = "VALID"
    hidden: Sequence[int] = (64,)
    pool_after: Sequence[bool] = (True, True, False)
