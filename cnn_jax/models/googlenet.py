"""GoogLeNet (Inception v1) in torchvision's layout, with BatchNorm in every convolution.

References:
  Szegedy et al. (2015), "Going deeper with convolutions"; ``torchvision.models.googlenet``
  (BatchNorm after every convolution, ceil-mode pooling, and a 3×3 convolution in the
  "5×5" branch: ``branch3_kernel=5`` restores the paper's 5×5).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.errors import ShapeError
from cnn_jax.layers import AdaptiveAvgPool, record
from cnn_jax.models.common import Layers, Model
from cnn_jax.models.registry import register

# (1×1, 3×3 reduce, 3×3, 5×5 reduce, 5×5, pool projection) per Inception module.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class Inception(Layers):
    """Four parallel branches concatenated on channels: 1×1; 1×1 → 3×3; 1×1 → k×k
    (``branch3_kernel``); 3×3/1 pooling site (``branch4_pool``, kind ``branch_pool`` or else
    ``pool``) → 1×1. Every convolution is followed by ``norm`` and the activation."""

    channels: tuple = (64, 96, 128, 16, 32, 32)
    branch3_kernel: int = 3
    branch_pool: str = ""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        c1, c3r, c3, c5r, c5, cp = self.channels

        def cna(y, f, k, name):
            return self.conv_norm_act(y, f, k, 1, k // 2, name=name, train=train)

        b1 = cna(x, c1, 1, "branch1")
        b2 = cna(cna(x, c3r, 1, "branch2_reduce"), c3, 3, "branch2")
        b3 = cna(cna(x, c5r, 1, "branch3_reduce"), c5, self.branch3_kernel, "branch3")
        b4 = self.ceil_pool(x, 3, 1, 1, name="branch4_pool", train=train,
                            kind=self.branch_pool or None)
        if b4.shape[1:3] != x.shape[1:3]:
            raise ShapeError(
                f"layer '{self.name}/branch4_pool': pool {self.branch_pool or self.pool!r} "
                f"turns the {x.shape[1]}x{x.shape[2]} map into {b4.shape[1]}x{b4.shape[2]} at "
                "a stride-1 site, so the Inception branches cannot be concatenated; choose "
                "another kind for these sites with branch_pool (e.g. branch_pool=max)"
            )
        b4 = cna(b4, cp, 1, "branch4")
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(Layers):
    """torchvision's auxiliary classifier: adaptive average pool 4×4 → 1×1 conv 128 →
    dense 1024 → dropout 0.7 → classes."""

    num_classes: int = 1000
    conv_channels: int = 128
    hidden: int = 1024
    dropout: float = 0.7

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = AdaptiveAvgPool(4, name="avgpool")(x)
        x = self.conv_norm_act(x, self.conv_channels, 1, 1, 0, name="conv", train=train)
        x = x.reshape((x.shape[0], -1))
        x = self.act(nn.Dense(self.hidden, dtype=self.cdtype, name="fc1")(x))
        x = nn.Dropout(self.dropout, deterministic=not train, name="dropout")(x)
        return nn.Dense(self.num_classes, dtype=self.cdtype, name="fc2")(x).astype(jnp.float32)


@register("googlenet", inputs="imagenet")
class GoogLeNet(Model):
    """GoogLeNet: conv 64@7×7/2 → pool 3×3/2 → conv 64@1×1 → conv 192@3×3 → pool 3×3/2 →
    Inception 3a, 3b → pool 3×3/2 → 4a–4e → pool 2×2/2 → 5a, 5b → global pooling head →
    dropout 0.2 → ``logits`` (6,624,904 parameters for 1000 classes without auxiliary heads).

    Pooling sites: ``maxpool1``..``maxpool4`` (ceil mode, as torchvision) and the 3×3/1
    ``branch4_pool`` of every Inception module; ``branch_pool`` (default ``""``: the same as
    ``pool``) chooses another kind for the latter, e.g. when ``pool`` is a kind that
    downsamples whatever its stride (fractional max pooling). ``aux_logits``: add torchvision's auxiliary
    classifiers after 4a and 4d; their logits are recorded as intermediates ``aux1`` and
    ``aux2`` and sown into the ``aux_logits`` collection, which the train step adds to the
    loss with weight 0.3 (the returned value stays the main logits, so a custom loss must read
    them from ``features``). Inputs from 15×15 up work.
    """

    norm: str = "batch"
    dropout: float = 0.2
    aux_logits: bool = False
    branch3_kernel: int = 3
    branch_pool: str = ""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.prepare(x)
        opts = self.layer_options()
        x = self.conv_norm_act(x, self.ch(64), 7, 2, 3, name="conv1", train=train)
        record(self, "conv1", x)
        x = record(self, "maxpool1", self.ceil_pool(x, 3, 2, name="maxpool1", train=train))
        x = self.conv_norm_act(x, self.ch(64), 1, 1, 0, name="conv2", train=train)
        x = self.conv_norm_act(x, self.ch(192), 3, 1, 1, name="conv3", train=train)
        record(self, "conv3", x)
        x = record(self, "maxpool2", self.ceil_pool(x, 3, 2, name="maxpool2", train=train))
        for key, chans in INCEPTION.items():
            if key == "4a":
                x = self.ceil_pool(x, 3, 2, name="maxpool3", train=train)
                record(self, "maxpool3", x)
            elif key == "5a":
                x = self.ceil_pool(x, 2, 2, name="maxpool4", train=train)
                record(self, "maxpool4", x)
            x = Inception(channels=tuple(self.ch(c) for c in chans),
                          branch3_kernel=self.branch3_kernel, branch_pool=self.branch_pool,
                          **opts,
                          name=f"inception{key}")(x, train=train)
            record(self, f"inception{key}", x)
            if self.aux_logits and key in ("4a", "4d"):
                aux = "aux1" if key == "4a" else "aux2"
                y = InceptionAux(num_classes=self.num_classes, conv_channels=self.ch(128),
                                 hidden=self.ch(1024), **opts, name=aux)(x, train=train)
                record(self, aux, y)
                # Auxiliary logits for the loss (train_step adds 0.3 × their loss, as in
                # Szegedy et al. 2015); the returned value stays the main logits.
                self.sow("aux_logits", "heads", {aux: y}, reduce_fn=lambda a, b: {**a, **b},
                         init_fn=dict)
        x = self.global_pool(x, train)
        x = self.drop(x, self.dropout, name="dropout", train=train)
        return self.logits(x)
