"""ResNets: ImageNet ResNet-18/34/50/101/152 (torchvision layout) and the CIFAR ResNets
20/32/44/56/110 of He et al. (2016), §4.2.

References:
  He, Zhang, Ren & Sun (2016), "Deep residual learning for image recognition";
  ``torchvision.models.resnet*`` (v1.5: the bottleneck's stride on its 3×3 convolution);
  He et al. (2019), "Bag of tricks for image classification with convolutional neural
  networks" (ResNet-D: average pooling before the 1×1 projection of a downsampling shortcut);
  Zhang (2019), "Making convolutional networks shift-invariant again" (stride-1 convolution
  followed by a pooling layer in place of a strided convolution).

Where ``pool`` applies:
  * ImageNet ResNets: the stem's 3×3/2 max pooling (``maxpool``) always.
  * With ``downsample="pool"`` (both families): every stride-2 convolution of a residual
    block becomes a stride-1 convolution followed by a 2×2/2 pooling layer (``pool``, SAME
    padding, so feature-map sizes are those of the strided network), and the shortcut of
    that block is pooled the same way (``shortcut_pool``) before its projection or zero
    padding. Parameter counts do not change.
  * The CIFAR ResNets with the default ``downsample="stride"`` have no pooling layer; a
    non-default ``pool`` is then refused rather than ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.errors import UserError
from cnn_jax.layers import record
from cnn_jax.models.common import Layers, Model
from cnn_jax.models.registry import register

DOWNSAMPLE = ("stride", "pool")
SHORTCUTS = ("A", "B")


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UserError(f"invalid {what} {value!r}; choose one of: {', '.join(choices)}")


class _Block(Layers):
    """Shared parts of the residual blocks.

    Attributes:
      features: the block's base width (its output has ``features * expansion`` channels).
      strides: 1, or 2 for the first block of a downsampling stage.
      downsample: ``stride`` (strided convolution) or ``pool`` (stride-1 convolution, then a
        pooling site).
      shortcut: when the shape changes, ``B`` projects with a 1×1 convolution and ``norm``
        (``downsample_conv``, ``downsample_bn``); ``A`` subsamples and zero-pads the channels
        (no parameters).
    """

    features: int = 64
    strides: int = 1
    downsample: str = "stride"
    shortcut: str = "B"

    def spatial(self, x: jax.Array, conv, name: str, train: bool) -> jax.Array:
        """``conv(x, strides)`` with this block's stride, or stride 1 and a pooling site."""
        if self.strides > 1 and self.downsample == "pool":
            x = conv(x, 1)
            return self.pool_layer(x, 2, self.strides, "SAME", name=name, train=train)
        return conv(x, self.strides)

    def residual(self, x: jax.Array, out_channels: int, train: bool) -> jax.Array:
        if self.strides == 1 and x.shape[-1] == out_channels:
            return x
        if self.shortcut == "B":
            return self.spatial(
                x,
                lambda y, s: self.conv_norm_act(
                    y, out_channels, 1, s, 0, name="downsample_conv", norm_name="downsample_bn",
                    train=train, act=False,
                ),
                "shortcut_pool",
                train,
            )
        # Option A (He et al. 2016, §4.2): subsample, then zero-pad the new channels.
        x = self.spatial(x, lambda y, s: y[:, ::s, ::s, :], "shortcut_pool", train)
        extra = out_channels - x.shape[-1]
        if extra < 0:
            raise UserError(
                f"shortcut A cannot reduce channels ({x.shape[-1]} -> {out_channels}); "
                "use shortcut='B'"
            )
        lo = extra // 2
        return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (lo, extra - lo)))


class BasicBlock(_Block):
    """Two 3×3 convolutions with ``norm``; activation after the addition (He et al. 2016)."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        f = self.features
        y = self.spatial(
            x,
            lambda y, s: self.conv_norm_act(y, f, 3, s, 1, name="conv1", norm_name="bn1",
                                            train=train),
            "pool",
            train,
        )
        y = self.conv_norm_act(y, f, 3, 1, 1, name="conv2", norm_name="bn2", train=train,
                               act=False)
        return self.act(y + self.residual(x, f, train))


class Bottleneck(_Block):
    """1×1 (reduce) → 3×3 (stride, torchvision v1.5) → 1×1 (expand ×4), each with
    ``norm``; activation after the addition."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        f = self.features
        y = self.conv_norm_act(x, f, 1, 1, 0, name="conv1", norm_name="bn1", train=train)
        y = self.spatial(
            y,
            lambda y, s: self.conv_norm_act(y, f, 3, s, 1, name="conv2", norm_name="bn2",
                                            train=train),
            "pool",
            train,
        )
        y = self.conv_norm_act(y, f * 4, 1, 1, 0, name="conv3", norm_name="bn3", train=train,
                               act=False)
        return self.act(y + self.residual(x, f * 4, train))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _stages(m: Model, x, block_cls, widths, stage_sizes, first_strides, shortcut, train):
    for i, (w, n) in enumerate(zip(widths, stage_sizes, strict=True), start=1):
        for j in range(n):
            name = f"layer{i}_{j}"
            x = block_cls(
                features=m.ch(w),
                strides=first_strides[i - 1] if j == 0 else 1,
                downsample=m.downsample,
                shortcut=shortcut,
                **m.layer_options(),
                name=name,
            )(x, train=train)
            record(m, name, x)
    return x


class ResNet(Model):
    """ImageNet ResNet in torchvision's layout: conv 64@7×7/2 (pad 3) → ``norm`` →
    activation → 3×3/2 pooling (``maxpool``, pad 1) → four stages (64, 128, 256, 512 base
    channels; blocks ``layer<stage>_<i>``, the first block of stages 2–4 with stride 2 and a
    projection shortcut) → global pooling head → ``logits``.

    ``block``: ``basic`` (ResNet-18/34) or ``bottleneck`` (ResNet-50/101/152);
    ``stage_sizes``: blocks per stage. Convolutions have no bias unless ``norm="none"``.
    Any input from 1×1 up works (every layer is padded).
    """

    norm: str = "batch"
    block: str = "basic"
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    downsample: str = "stride"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        _check_choice("block", self.block, tuple(BLOCKS))
        _check_choice("downsample", self.downsample, DOWNSAMPLE)
        if len(self.stage_sizes) != 4:
            raise UserError(f"stage_sizes must give 4 block counts, got {self.stage_sizes!r}")
        x = self.prepare(x)
        x = self.conv_norm_act(x, self.ch(64), 7, 2, 3, name="conv1", norm_name="bn1",
                               train=train)
        record(self, "conv1", x)
        x = self.pool_layer(x, 3, 2, ((1, 1), (1, 1)), name="maxpool", train=train)
        record(self, "maxpool", x)
        x = _stages(self, x, BLOCKS[self.block], (64, 128, 256, 512), self.stage_sizes,
                    (1, 2, 2, 2), "B", train)
        return self.logits(self.global_pool(x, train))


@register("resnet18", inputs="imagenet")
class ResNet18(ResNet):
    """ResNet-18: basic blocks 2, 2, 2, 2 (11,689,512 parameters for 1000 classes)."""

    stage_sizes: Sequence[int] = (2, 2, 2, 2)


@register("resnet34", inputs="imagenet")
class ResNet34(ResNet):
    """ResNet-34: basic blocks 3, 4, 6, 3 (21,797,672 parameters for 1000 classes)."""

    stage_sizes: Sequence[int] = (3, 4, 6, 3)


@register("resnet50", inputs="imagenet")
class ResNet50(ResNet):
    """ResNet-50: bottlenecks 3, 4, 6, 3 (25,557,032 parameters for 1000 classes)."""

    block: str = "bottleneck"
    stage_sizes: Sequence[int] = (3, 4, 6, 3)


@register("resnet101", inputs="imagenet")
class ResNet101(ResNet):
    """ResNet-101: bottlenecks 3, 4, 23, 3 (44,549,160 parameters for 1000 classes)."""

    block: str = "bottleneck"
    stage_sizes: Sequence[int] = (3, 4, 23, 3)


@register("resnet152", inputs="imagenet")
class ResNet152(ResNet):
    """ResNet-152: bottlenecks 3, 8, 36, 3 (60,192,808 parameters for 1000 classes)."""

    block: str = "bottleneck"
    stage_sizes: Sequence[int] = (3, 8, 36, 3)


class CifarResNet(Model):
    """CIFAR ResNet of He et al. (2016), §4.2: conv 16@3×3 → ``norm`` → activation → three
    stages of ``n = (depth - 2) / 6`` basic blocks with 16, 32, 64 channels (the first block
    of stages 2 and 3 with stride 2) → global pooling head → ``logits``; ``6n + 2`` layers.

    ``shortcut``: ``A`` (the paper's CIFAR choice: identity shortcuts, subsampled and
    zero-padded where the shape changes, no parameters) or ``B`` (1×1 projections).
    Pooling: see the module docstring (only with ``downsample="pool"``). Any input size
    works (e.g. 28×28×1 MNIST).
    """

    num_classes: int = 10
    norm: str = "batch"
    depth: int = 20
    shortcut: str = "A"
    downsample: str = "stride"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        _check_choice("shortcut", self.shortcut, SHORTCUTS)
        _check_choice("downsample", self.downsample, DOWNSAMPLE)
        if self.depth < 8 or (self.depth - 2) % 6:
            raise UserError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110, ...), "
                            f"got {self.depth}")
        self.require_pool_site(
            self.downsample == "pool",
            "set downsample='pool' to pool at each downsampling point instead of the strided "
            "convolutions",
        )
        n = (self.depth - 2) // 6
        x = self.prepare(x)
        x = self.conv_norm_act(x, self.ch(16), 3, 1, 1, name="conv1", norm_name="bn1",
                               train=train)
        record(self, "conv1", x)
        x = _stages(self, x, BasicBlock, (16, 32, 64), (n, n, n), (1, 2, 2), self.shortcut,
                    train)
        return self.logits(self.global_pool(x, train))


def _cifar(depth: int, params: str) -> type[CifarResNet]:
    cls = type(
        f"ResNet{depth}",
        (CifarResNet,),
        {
            "__annotations__": {"depth": int},
            "depth": depth,
            "__doc__": f"CIFAR ResNet-{depth} (n = {(depth - 2) // 6}; {params} parameters "
            "for 10 classes with shortcut A).",
            "__module__": __name__,
        },
    )
    return register(f"resnet{depth}", inputs="cifar")(cls)


ResNet20 = _cifar(20, "269,722")
ResNet32 = _cifar(32, "464,154")
ResNet44 = _cifar(44, "658,586")
ResNet56 = _cifar(56, "853,018")
ResNet110 = _cifar(110, "1,727,962")
