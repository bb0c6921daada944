"""Options and helpers shared by the model zoo.

Every zoo model is a linen Module whose dataclass fields are its options (they become
``--config.model.X=...`` overrides). The fields are declared once, on the bases below:
:class:`Base` (activation, norm, dtype), :class:`Layers` (+ the pooling kind, what blocks
take), :class:`Classifier` (+ the whole-network options; the seeds' models in
:mod:`cnn_jax.models.classic` build on it) and :class:`Model` (all of them and the global
pooling head: the zoo's base). The shared options are:

* ``pool``, ``pool_options``: the pooling kind used at every local pooling site (any name
  registered in :mod:`cnn_jax.pooling`); each model's docstring says where its sites are.
* ``head_pool``, ``head_pool_options``: the global pooling head, where the model has one
  (:class:`cnn_jax.pooling.GlobalPool`; the classifier is sized from what the head returns, so
  heads that return more than ``C`` features, e.g. concatenated average and max, work).
* ``activation``: a name from :data:`cnn_jax.activations.ACTIVATIONS`.
* ``norm``: ``none``, ``batch``, ``group`` or ``layer`` (:data:`cnn_jax.layers.NORMS`), after
  every convolution (before its activation unless the model says otherwise).
* ``dropout``: the classifier dropout rate (training only).
* ``width``: channel multiplier (every convolution and hidden dense layer, rounded, at least
  one channel) for cheap ablations; ``width=1`` is the published network.
* ``resize_to``: ``None`` or ``(h, w)``: resize the input (bilinear, :func:`jax.image.resize`)
  before the first layer, for inputs the architecture cannot take as they are.
* ``dtype``: compute dtype (``float32``, ``bfloat16``, ``float16``); parameters stay float32
  and the logits are returned as float32.

An input too small for the architecture raises :class:`cnn_jax.errors.ShapeError` naming the
first layer that would produce an empty output.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.activations import activation
from cnn_jax.errors import UserError
from cnn_jax.layers import Conv, compute_dtype, norm, record, resize_input, scale_channels
from cnn_jax.pooling import GlobalPool, Pool


def ceil_mode_pads(n: int, window: int, stride: int, pad: int = 0) -> tuple[int, int]:
    """``(before, after)`` padding that reproduces PyTorch's ``ceil_mode=True`` pooling on a
    length-``n`` axis: ``ceil((n + 2 pad - window) / stride) + 1`` outputs, the last window
    starting inside the input or the left padding. An input too small for even one window
    gets no extra padding, so the pooling layer reports it."""
    out = math.ceil((n + 2 * pad - window) / stride) + 1
    if out > 1 and (out - 1) * stride >= n + pad:
        out -= 1
    if out < 1:
        return (pad, pad)
    return (pad, max(pad, (out - 1) * stride + window - n - pad))


class Base(nn.Module):
    """Fields and layer helpers of every model and block: activation, normalisation and
    compute dtype.

    The helpers create submodules, so call them only from a compact method.
    """

    activation: str = "relu"
    norm: str = "none"
    dtype: str = "float32"

    @property
    def cdtype(self):
        return compute_dtype(self.dtype)

    def act(self, x: jax.Array) -> jax.Array:
        return activation(self.activation)(x)

    def conv(
        self,
        x: jax.Array,
        features: int,
        kernel: int | Sequence[int],
        strides: int = 1,
        padding: Any = "SAME",
        *,
        name: str,
        bias: bool = True,
    ) -> jax.Array:
        k = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        return Conv(
            features, k, strides=strides, padding=padding, use_bias=bias, dtype=self.cdtype,
            name=name,
        )(x)

    def normalize(self, x: jax.Array, name: str, train: bool) -> jax.Array:
        return norm(x, self.norm, train=train, name=name, dtype=self.cdtype)

    def conv_norm_act(
        self, x, features, kernel, strides=1, padding="SAME", *, name, train, norm_name=None,
        bias=None, act=True,
    ) -> jax.Array:
        """Convolution, ``norm`` (named ``norm_name``, default ``<name>_bn``) and activation.
        The convolution has a bias only without normalisation unless ``bias`` says."""
        bias = (self.norm == "none") if bias is None else bias
        x = self.conv(x, features, kernel, strides, padding, name=name, bias=bias)
        x = self.normalize(x, norm_name or f"{name}_bn", train)
        return self.act(x) if act else x


# While :func:`recording_sites` is active (``cnn_jax.models.pooling_sites`` traces a model),
# the path of every pooling site the trace passes, in call order; ``None`` otherwise. A
# context variable: a trace in another thread records nothing into this one's list.
_SITES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("pool_sites", default=None)


@contextlib.contextmanager
def recording_sites():
    """Within the block, every pooling site a model trace passes is appended to the list
    this yields (in call order)."""
    sites: list[str] = []
    token = _SITES.set(sites)
    try:
        yield sites
    finally:
        _SITES.reset(token)


class Layers(Base):
    """:class:`Base` and the pooling sites' kind: the fields and helpers blocks share with
    the model that builds them (:meth:`layer_options`).

    ``pool`` is one kind for every local pooling site, or a tuple with one kind per site in
    the model's site order (``pool_sites``, filled in by :func:`cnn_jax.models.create`)."""

    pool: str | tuple[str, ...] = "max"
    pool_options: dict = dataclasses.field(default_factory=dict)
    pool_sites: tuple[str, ...] = ()  # the site paths for a per-site ``pool`` (not an option)

    def layer_options(self) -> dict[str, Any]:
        """The shared fields, to pass on to a block."""
        return {
            "activation": self.activation,
            "norm": self.norm,
            "pool": self.pool,
            "pool_options": self.pool_options,
            "pool_sites": self.pool_sites,
            "dtype": self.dtype,
        }

    def site_kind(self, name: str) -> str:
        """The pooling kind of this module's site ``name``."""
        path = "/".join((*self.scope.path, name))
        sites = _SITES.get()
        if sites is not None:
            sites.append(path)
        if isinstance(self.pool, str):
            return self.pool
        return self.pool[self.pool_sites.index(path)]

    def pool_layer(
        self, x: jax.Array, window, strides=None, padding: Any = "VALID", *, name: str,
        train: bool, kind: str | None = None,
    ) -> jax.Array:
        """A pooling site: ``Pool(kind of this site, ...)`` named ``name`` (``kind``
        overrides it; ``pool_options`` then do not apply)."""
        site = self.site_kind(name)
        if kind is not None and kind != site:
            return Pool(kind, window, strides, padding, name=name)(x, train=train)
        return Pool(site, window, strides, padding, dict(self.pool_options), name=name)(
            x, train=train
        )

    def ceil_pool(
        self, x, window: int, stride: int, pad: int = 0, *, name: str, train: bool,
        kind: str | None = None,
    ):
        """A pooling site with PyTorch ``ceil_mode=True`` output sizes (GoogLeNet, NIN)."""
        pads = tuple(ceil_mode_pads(n, window, stride, pad) for n in x.shape[1:3])
        return self.pool_layer(x, window, stride, pads, name=name, train=train, kind=kind)


class Classifier(Base):
    """:class:`Base` and the options of a whole network: ``num_classes``, ``dropout``,
    ``width``, ``resize_to``, with the input, dense and classifier helpers."""

    num_classes: int = 1000
    dropout: float = 0.0
    width: float = 1.0
    resize_to: Any = None

    def ch(self, channels: int) -> int:
        """``channels`` scaled by ``width``."""
        return scale_channels(channels, self.width)

    def prepare(self, x: jax.Array) -> jax.Array:
        """Resizes (``resize_to``) and casts the input to the compute dtype."""
        x = resize_input(x, self.resize_to)
        return x.astype(self.cdtype)

    def dense(self, x: jax.Array, features: int, *, name: str) -> jax.Array:
        return nn.Dense(features, dtype=self.cdtype, name=name)(x)

    def drop(self, x: jax.Array, rate: float, *, name: str, train: bool) -> jax.Array:
        if rate <= 0:
            return x
        return nn.Dropout(rate, deterministic=not train, name=name)(x)

    def logits(self, x: jax.Array, name: str = "logits") -> jax.Array:
        """The classifier ``Dense(num_classes)``, recorded, returned as float32."""
        x = self.dense(x, self.num_classes, name=name)
        return record(self, name, x).astype(jnp.float32)


class Model(Classifier, Layers):
    """Base of the zoo models: the shared options (see the module docstring)."""

    head_pool: str = "avg"
    head_pool_options: dict = dataclasses.field(default_factory=dict)

    def global_pool(self, x: jax.Array, train: bool) -> jax.Array:
        """The global pooling head ``f[B, H, W, C] -> f[B, C']``, recorded as ``head_pool``."""
        x = GlobalPool(self.head_pool, dict(self.head_pool_options), name="head_pool")(
            x, train=train
        )
        return record(self, "head_pool", x)

    def class_map_logits(self, x: jax.Array, train: bool) -> jax.Array:
        """Global pooling over class maps (NIN, All-CNN): the head output is the logits when
        it has ``num_classes`` features; a head that returns more (e.g. concatenated average
        and max) is followed by a ``Dense(num_classes)`` layer called ``logits``."""
        x = self.global_pool(x, train)
        if x.shape[-1] != self.num_classes:
            return self.logits(x)
        return record(self, "logits", x).astype(jnp.float32)

    def require_pool_site(self, has_site: bool, how: str) -> None:
        """Refuses a non-default ``pool``/``pool_options`` for a configuration without a
        pooling site, rather than silently ignoring it."""
        if not has_site and (self.pool not in ("max", ()) or self.pool_options):
            raise UserError(
                f"{type(self).__name__} has no pooling layer in this configuration, so "
                f"pool={self.pool!r} would change nothing; {how}"
            )
