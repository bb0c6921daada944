"""VGG-11/13/16/19 with and without BatchNorm, in torchvision's layout.

Reference: Simonyan & Zisserman (2015), "Very deep convolutional networks for large-scale
image recognition" (configurations A, B, D, E); ``torchvision.models.vgg*``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from cnn_jax.errors import UserError
from cnn_jax.layers import AdaptiveAvgPool, record
from cnn_jax.models.common import Model
from cnn_jax.models.registry import register

STAGE_CHANNELS = (64, 128, 256, 512, 512)


class VGG(Model):
    """VGG: five stages of 3×3 convolutions (padding 1) each ending with a 2×2/2 pooling
    site ``pool1``..``pool5``; an adaptive average pool to 7×7 (``avgpool``); dense 4096 →
    dropout → dense 4096 → dropout → classes.

    ``layers``: convolutions per stage (VGG-11: 1,1,2,2,2; 13: 2,2,2,2,2; 16: 2,2,3,3,3;
    19: 2,2,4,4,4). ``conv<stage>_<i>`` are followed by ``norm`` (``bn<stage>_<i>``; the
    ``_bn`` variants default to ``batch``; convolutions keep their bias as in torchvision)
    and the activation. The smallest input is 32×32 (five halvings).
    """

    layers: Sequence[int] = (2, 2, 3, 3, 3)
    dropout: float = 0.5
    hidden: Sequence[int] = (4096, 4096)
    adaptive_size: int = 7

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if len(self.layers) != len(STAGE_CHANNELS):
            raise UserError(
                f"VGG layers must give the convolutions of each of the {len(STAGE_CHANNELS)} "
                f"stages, got {tuple(self.layers)!r}"
            )
        x = self.prepare(x)
        for s, (n, c) in enumerate(zip(self.layers, STAGE_CHANNELS), start=1):
            for i in range(1, n + 1):
                name = f"conv{s}_{i}"
                x = self.conv_norm_act(x, self.ch(c), 3, 1, 1, name=name, norm_name=f"bn{s}_{i}",
                                       bias=True, train=train)
                record(self, name, x)
            x = self.pool_layer(x, 2, 2, "VALID", name=f"pool{s}", train=train)
            record(self, f"pool{s}", x)
        x = record(self, "avgpool", AdaptiveAvgPool(self.adaptive_size, name="avgpool")(x))
        x = x.reshape((x.shape[0], -1))
        for i, h in enumerate(self.hidden, start=1):
            x = record(self, f"fc{i}", self.act(self.dense(x, self.ch(h), name=f"fc{i}")))
            x = self.drop(x, self.dropout, name=f"dropout{i}", train=train)
        return self.logits(x)


@register("vgg11", inputs="imagenet")
class VGG11(VGG):
    """VGG-11 (configuration A): 132,863,336 parameters for 1000 classes."""

    layers: Sequence[int] = (1, 1, 2, 2, 2)


@register("vgg13", inputs="imagenet")
class VGG13(VGG):
    """VGG-13 (configuration B): 133,047,848 parameters for 1000 classes."""

    layers: Sequence[int] = (2, 2, 2, 2, 2)


@register("vgg16", inputs="imagenet")
class VGG16(VGG):
    """VGG-16 (configuration D): 138,357,544 parameters for 1000 classes."""

    layers: Sequence[int] = (2, 2, 3, 3, 3)


@register("vgg19", inputs="imagenet")
class VGG19(VGG):
    """VGG-19 (configuration E): 143,667,240 parameters for 1000 classes."""

    layers: Sequence[int] = (2, 2, 4, 4, 4)


@register("vgg11_bn", inputs="imagenet")
class VGG11BN(VGG11):
    """VGG-11 with BatchNorm after every convolution (``torchvision.models.vgg11_bn``)."""

    norm: str = "batch"


@register("vgg13_bn", inputs="imagenet")
class VGG13BN(VGG13):
    """VGG-13 with BatchNorm after every convolution (``torchvision.models.vgg13_bn``)."""

    norm: str = "batch"


@register("vgg16_bn", inputs="imagenet")
class VGG16BN(VGG16):
    """VGG-16 with BatchNorm after every convolution (``torchvision.models.vgg16_bn``)."""

    norm: str = "batch"


@register("vgg19_bn", inputs="imagenet")
class VGG19BN(VGG19):
    """VGG-19 with BatchNorm after every convolution (``torchvision.models.vgg19_bn``)."""

    norm: str = "batch"
