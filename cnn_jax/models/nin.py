"""Network in Network (Lin, Chen & Yan 2014) and All-CNN-C (Springenberg et al. 2015).

References:
  Lin, Chen & Yan (2014), "Network in network" (the CIFAR-10 model of the authors' Caffe
  files: three mlpconv blocks, max pooling, dropout, global average pooling of class maps);
  Springenberg, Dosovitskiy, Brox & Riedmiller (2015), "Striving for simplicity: the all
  convolutional net" (All-CNN-C, Table 2: stride-2 convolutions instead of pooling).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from cnn_jax.errors import UserError
from cnn_jax.layers import record
from cnn_jax.models.common import Model
from cnn_jax.models.registry import register

PAD1 = ((1, 1), (1, 1))


@register("nin", inputs="cifar")
class NIN(Model):
    """Network in Network for 32×32 images: three mlpconv blocks (a k×k convolution then two
    1×1 convolutions, i.e. a per-pixel MLP) — 192@5×5, 160, 96 → 3×3/2 pooling → dropout →
    192@5×5, 192, 192 → 3×3/2 pooling → dropout → 192@3×3, 192, ``num_classes`` — then
    global pooling of the class maps (``head_pool``, average in the paper) as logits.

    Layer names follow the Caffe model (``conv1``, ``cccp1``, …, ``cccp6``). Pooling sites:
    ``pool1``, ``pool2`` (3×3/2, ceil mode as Caffe; the Caffe model averages at ``pool2``,
    the paper's text says max: ``pool`` sets both). As in the Caffe model the class maps go
    through the activation too. ``norm`` follows every convolution; ``dropout`` follows
    each pooling layer; ``width`` scales every layer but the class maps.
    Inputs from 4×4 up work (28×28 MNIST included).
    """

    num_classes: int = 10
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.prepare(x)
        blocks = [
            ("conv1", 192, 5, ("cccp1", 160), ("cccp2", 96)),
            ("conv2", 192, 5, ("cccp3", 192), ("cccp4", 192)),
            ("conv3", 192, 3, ("cccp5", 192), ("cccp6", None)),
        ]
        for b, (name, f, k, mlp1, mlp2) in enumerate(blocks, start=1):
            x = self.conv_norm_act(x, self.ch(f), k, 1, k // 2, name=name, train=train)
            record(self, name, x)
            for mlp_name, mf in (mlp1, mlp2):
                mf = self.num_classes if mf is None else self.ch(mf)
                x = self.conv_norm_act(x, mf, 1, 1, 0, name=mlp_name, train=train)
                record(self, mlp_name, x)
            if b < 3:
                x = self.ceil_pool(x, 3, 2, name=f"pool{b}", train=train)
                record(self, f"pool{b}", x)
                x = self.drop(x, self.dropout, name=f"dropout{b}", train=train)
        return self.class_map_logits(x, train)


@register("allcnn_c", inputs="cifar")
class AllCNNC(Model):
    """All-CNN-C: dropout 0.2 on the input → 96@3×3 ×2 → 96@3×3/2 → dropout → 192@3×3 ×2 →
    192@3×3/2 → dropout → 192@3×3 (VALID) → 192@1×1 → ``num_classes``@1×1 → global
    pooling of the class maps (``head_pool``, average in the paper) as logits.

    ``downsample``: ``stride`` (All-CNN-C: the two stride-2 convolutions ``conv3``,
    ``conv6`` downsample, and there is no pooling site, so a non-default ``pool`` is refused)
    or ``pool`` (the paper's base "Model C": those convolutions are replaced by 3×3/2
    pooling sites ``pool1``, ``pool2``, padding 1, so the feature-map sizes are the same).
    ``dropout`` follows each downsampling layer, ``input_dropout`` applies to the input;
    ``norm`` follows every convolution; ``width`` scales every layer but the class maps.
    Inputs from 9×9 up work.
    """

    num_classes: int = 10
    dropout: float = 0.5
    input_dropout: float = 0.2
    downsample: str = "stride"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.downsample not in ("stride", "pool"):
            raise UserError(f"invalid downsample {self.downsample!r}; choose one of: stride, pool")
        self.require_pool_site(
            self.downsample == "pool",
            "set downsample='pool' for the paper's Model C, which pools where All-CNN-C has "
            "stride-2 convolutions",
        )
        x = self.prepare(x)
        x = self.drop(x, self.input_dropout, name="input_dropout", train=train)
        n = 0
        for stage, f in enumerate((96, 192), start=1):
            for _ in range(2):
                n += 1
                x = self.conv_norm_act(x, self.ch(f), 3, 1, 1, name=f"conv{n}", train=train)
                record(self, f"conv{n}", x)
            if self.downsample == "pool":
                x = self.pool_layer(x, 3, 2, PAD1, name=f"pool{stage}", train=train)
                record(self, f"pool{stage}", x)
            else:
                n += 1
                x = self.conv_norm_act(x, self.ch(f), 3, 2, 1, name=f"conv{n}", train=train)
                record(self, f"conv{n}", x)
            x = self.drop(x, self.dropout, name=f"dropout{stage}", train=train)
        for k, f, pad in ((3, self.ch(192), "VALID"), (1, self.ch(192), 0), (1, self.num_classes, 0)):
            n += 1
            x = self.conv_norm_act(x, f, k, 1, pad, name=f"conv{n}", train=train)
            record(self, f"conv{n}", x)
        return self.class_map_logits(x, train)
