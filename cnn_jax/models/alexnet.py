"""AlexNet (the seeds' Keras version and torchvision's) and ZFNet.

References:
  Krizhevsky, Sutskever & Hinton (2012), "ImageNet classification with deep convolutional
  neural networks" (AlexNet); Krizhevsky (2014), "One weird trick for parallelizing
  convolutional neural networks" (the single-tower layout torchvision follows);
  Zeiler & Fergus (2014), "Visualizing and understanding convolutional networks" (ZFNet).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from cnn_jax.layers import AdaptiveAvgPool, local_response_norm, record
from cnn_jax.models.common import Model
from cnn_jax.models.registry import register

PAD1 = ((1, 1), (1, 1))


def _classifier(m: Model, x: jax.Array, hidden: Sequence[int], train: bool, drop_first: bool):
    """Flatten, ``fc1..`` with dropout (before each dense layer as torchvision does when
    ``drop_first``, else after its activation as Keras code usually does), ``logits``."""
    x = x.reshape((x.shape[0], -1))
    for i, h in enumerate(hidden, start=1):
        if drop_first:
            x = m.drop(x, m.dropout, name=f"dropout{i}", train=train)
        x = record(m, f"fc{i}", m.act(m.dense(x, m.ch(h), name=f"fc{i}")))
        if not drop_first:
            x = m.drop(x, m.dropout, name=f"dropout{i}", train=train)
    return m.logits(x)


@register("alexnet", inputs="imagenet", input_shape=(227, 227, 3))
class AlexNet(Model):
    """The seeds' Keras AlexNet: 227×227×3 input; conv 96@11×11/4 (VALID) → BN → max pool
    3×3/2 → conv 256@5×5 → BN → pool → conv 384@3×3 → BN → conv 384@3×3 → BN → conv
    256@3×3 → BN → pool → flatten → dense 4096 → dropout 0.5 → dense 4096 → dropout 0.5 →
    classes. As in the seed, each normalisation follows its convolution's activation.

    Pooling sites: ``pool1``..``pool3`` (3×3, stride 2, VALID). The classifier is sized from
    the flattened features, so the parameter count depends on the input size; the smallest
    input is 67×67. With ``norm="none"`` there is no normalisation (the original has local
    response normalisation instead, not in the seed).
    """

    norm: str = "batch"
    dropout: float = 0.5
    hidden: Sequence[int] = (4096, 4096)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.prepare(x)
        spec = [(96, 11, 4, "VALID", True), (256, 5, 1, "SAME", True), (384, 3, 1, "SAME", False),
                (384, 3, 1, "SAME", False), (256, 3, 1, "SAME", True)]
        npool = 0
        for i, (f, k, s, pad, pool_after) in enumerate(spec, start=1):
            x = self.act(self.conv(x, self.ch(f), k, s, pad, name=f"conv{i}"))
            x = record(self, f"conv{i}", self.normalize(x, f"bn{i}", train))
            if pool_after:
                npool += 1
                x = self.pool_layer(x, 3, 2, "VALID", name=f"pool{npool}", train=train)
                record(self, f"pool{npool}", x)
        return _classifier(self, x, self.hidden, train, drop_first=False)


@register("alexnet_tv", inputs="imagenet")
class AlexNetTV(Model):
    """torchvision's AlexNet (``torchvision.models.alexnet``): conv 64@11×11/4 (pad 2) → max
    pool 3×3/2 → conv 192@5×5 → pool → conv 384, 256, 256 @3×3 → pool → adaptive average
    pool to 6×6 → dropout → dense 4096 → dropout → dense 4096 → classes.

    Pooling sites: ``pool1``..``pool3`` (3×3, stride 2, VALID); the adaptive average pool
    (``avgpool``) makes the classifier independent of the input size (61,100,840 parameters
    for 1000 classes). The smallest input is 63×63.
    """

    dropout: float = 0.5
    hidden: Sequence[int] = (4096, 4096)
    adaptive_size: int = 6

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.prepare(x)
        spec = [(64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False),
                (256, 3, 1, 1, False), (256, 3, 1, 1, True)]
        npool = 0
        for i, (f, k, s, pad, pool_after) in enumerate(spec, start=1):
            x = self.conv_norm_act(x, self.ch(f), k, s, pad, name=f"conv{i}", norm_name=f"bn{i}",
                                   train=train)
            record(self, f"conv{i}", x)
            if pool_after:
                npool += 1
                x = self.pool_layer(x, 3, 2, "VALID", name=f"pool{npool}", train=train)
                record(self, f"pool{npool}", x)
        x = record(self, "avgpool", AdaptiveAvgPool(self.adaptive_size, name="avgpool")(x))
        return _classifier(self, x, self.hidden, train, drop_first=True)


@register("zfnet", inputs="imagenet")
class ZFNet(Model):
    """ZFNet (Zeiler & Fergus 2014, Fig. 3): 224×224×3 → conv 96@7×7/2 → max pool 3×3/2 →
    LRN → conv 256@5×5/2 → pool 3×3/2 → LRN → conv 384, 384, 256 @3×3 → pool 3×3/2 → dense
    4096 → dense 4096 → classes, with dropout 0.5 in the dense layers; feature maps 110, 55,
    26, 13, 13, 6 as in the paper.

    Pooling sites: ``pool1``..``pool3``. ``lrn``: the paper's contrast normalisation across
    feature maps after the first two pooling layers (PyTorch-convention local response
    normalisation, size 5); ``norm`` applies after every convolution as elsewhere. The
    smallest input is 53×53; the classifier is sized from the flattened features.
    """

    dropout: float = 0.5
    hidden: Sequence[int] = (4096, 4096)
    lrn: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.prepare(x)
        spec = [(96, 7, 2, 1, PAD1), (256, 5, 2, "VALID", PAD1), (384, 3, 1, 1, None),
                (384, 3, 1, 1, None), (256, 3, 1, 1, "VALID")]
        npool = 0
        for i, (f, k, s, pad, pool_pad) in enumerate(spec, start=1):
            x = self.conv_norm_act(x, self.ch(f), k, s, pad, name=f"conv{i}", norm_name=f"bn{i}",
                                   train=train)
            record(self, f"conv{i}", x)
            if pool_pad is not None:
                npool += 1
                x = self.pool_layer(x, 3, 2, pool_pad, name=f"pool{npool}", train=train)
                if self.lrn and npool <= 2:
                    x = local_response_norm(x)
                record(self, f"pool{npool}", x)
        return _classifier(self, x, self.hidden, train, drop_first=False)
