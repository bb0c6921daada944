"""Building blocks shared by the models: activations, a shape-checked convolution, features."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.errors import ShapeError
from cnn_jax.pooling.core import normalize_padding, output_size
from cnn_jax.registry import Registry

ACTIVATIONS: Registry[Callable[[jax.Array], jax.Array]] = Registry("activation")

for _name, _fn in {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "swish": nn.swish,
    "elu": nn.elu,
    "selu": nn.selu,
    "leaky_relu": nn.leaky_relu,
    "softplus": nn.softplus,
    "mish": lambda x: x * jnp.tanh(nn.softplus(x)),
    "relu6": nn.relu6,
    "hard_swish": nn.hard_swish,
    "identity": lambda x: x,
}.items():
    ACTIVATIONS.add(_name, _fn)


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function registered as ``name``."""
    return ACTIVATIONS.get(name)


class Conv(nn.Conv):
    """``flax.linen.Conv`` that names itself when its input is too small.

    Parameter paths are those of ``nn.Conv`` (``<name>/kernel``, ``<name>/bias``).
    """

    def __call__(self, inputs: jax.Array) -> jax.Array:
        if inputs.ndim == 4:
            k = tuple(self.kernel_size)
            s = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides or (1, 1))
            pad = self.padding
            if isinstance(pad, str) and pad.upper() in ("SAME", "VALID"):
                pads = normalize_padding(pad, inputs.shape[1:3], k, s)
            elif isinstance(pad, int):
                pads = ((pad, pad), (pad, pad))
            else:
                pads = None  # other flax padding forms (CIRCULAR, ...) keep their own checks
            if pads is not None:
                out = [output_size(n, w, st, p) for n, w, st, p in zip(inputs.shape[1:3], k, s, pads)]
                if min(out) <= 0:
                    raise ShapeError(
                        f"input too small: layer '{self.name}' ({k[0]}x{k[1]} convolution, "
                        f"{pad} padding) on a {inputs.shape[1]}x{inputs.shape[2]} feature map would "
                        f"give an empty {out[0]}x{out[1]} output; use a larger input or SAME padding"
                    )
        return super().__call__(inputs)


def record(module: nn.Module, name: str, x: jax.Array) -> jax.Array:
    """Stores activation ``x`` under ``name`` in the ``'intermediates'`` collection."""
    module.sow("intermediates", name, x, reduce_fn=lambda _, b: b, init_fn=lambda: None)
    return x
