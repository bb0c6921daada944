"""Pooling registry, padding rules, the functional :func:`pool` and the :class:`Pool` module."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax

from cnn_jax.errors import ShapeError, UserError, suggest
from cnn_jax.registry import Registry

Padding = str | Sequence[tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class PoolKind:
    """A registered pooling kind.

    Attributes:
      name: registry name.
      fn: pure function ``fn(x, window, strides, pads, *, train, rng, **options)``, the
        functional form (``pads`` is explicit ``((top, bottom), (left, right))``); ``None``
        for kinds that only exist with learned parameters.
      module: linen Module class for kinds with parameters (fields ``window``, ``strides``,
        ``pads`` plus options; called as ``module(x, train=...)``); ``None`` otherwise.
        A kind may have both (e.g. ``lp`` with a fixed ``p`` as a function, a learned ``p``
        as a module): :func:`pool` uses ``fn``, :class:`Pool` uses ``module``.
      stochastic: whether training mode draws from the ``'pool'`` rng stream.
    """

    name: str
    fn: Callable[..., jax.Array] | None = None
    module: type[nn.Module] | None = None
    stochastic: bool = False


POOLS: Registry[PoolKind] = Registry("pool")


def register(name: str, *, stochastic: bool = False, module: type[nn.Module] | None = None):
    """Registers a pooling kind: decorate its pure function, or its linen Module class for a
    kind with parameters (a :class:`PoolModule`: fields ``window``, ``strides``, ``pads`` plus
    its options).

    Args:
      name: registry name.
      stochastic: training mode draws from the ``'pool'`` rng stream (passed as ``rng=``).
      module: when decorating a function, a Module class that :class:`Pool` uses instead
        (for kinds with a functional form *and* a learned variant).
    """

    def deco(obj):
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            POOLS.add(name, PoolKind(name, module=obj, stochastic=stochastic))
        else:
            POOLS.add(name, PoolKind(name, fn=obj, module=module, stochastic=stochastic))
        return obj

    return deco


class PoolModule(nn.Module):
    """Base of the kinds with parameters: the explicit ``window``, ``strides`` and ``pads``
    (``((top, bottom), (left, right))``) that :class:`Pool` resolves and passes; a subclass
    adds its options as fields and is called as ``module(x, train=...)``."""

    window: tuple[int, int] = (2, 2)
    strides: tuple[int, int] = (2, 2)
    pads: tuple = ((0, 0), (0, 0))


LEARN = ("none", "layer", "channel")


def learned_shape(kind: str, learn: str, x: jax.Array) -> tuple[int, ...] | None:
    """The shape of the parameter a kind's ``learn`` option asks for on ``x: f[B, H, W, C]``:
    ``None`` for ``"none"`` (fixed, no parameter), ``()`` for ``"layer"`` (one for the
    layer), ``(C,)`` for ``"channel"``."""
    if learn not in LEARN:
        raise UserError(
            f"pool {kind!r}: invalid learn {learn!r}; choose one of: {', '.join(LEARN)}"
        )
    if learn == "none":
        return None
    return () if learn == "layer" else (x.shape[-1],)


_NOT_OPTIONS = {"x", "window", "strides", "pads", "train", "rng", "parent", "name"}


def valid_options(spec: PoolKind, *, functional: bool) -> list[str]:
    """The option names a kind accepts (its function's keyword arguments, or its module's
    fields)."""
    if spec.module is not None and not functional:
        return sorted(f.name for f in dataclasses.fields(spec.module)
                      if f.init and f.name not in _NOT_OPTIONS)
    if spec.fn is None:
        return []
    params = inspect.signature(spec.fn).parameters.values()
    return sorted(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in _NOT_OPTIONS)


def check_options(spec: PoolKind, options, *, functional: bool, what: str = "pool") -> None:
    """Raises :class:`UserError` for an option the kind does not have."""
    valid = valid_options(spec, functional=functional)
    for k in options:
        if k not in valid:
            choices = ", ".join(valid) if valid else "(none)"
            raise UserError(
                f"{what} {spec.name!r} has no option {k!r}{suggest(k, valid)}; "
                f"valid options: {choices}"
            )


def names() -> list[str]:
    """The registered pooling kinds."""
    return POOLS.names()


def _pair(v: int | Sequence[int], what: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, int) and i > 0 for i in t):
        raise UserError(f"pooling {what} must be a positive int or a pair of them, got {v!r}")
    return t  # type: ignore[return-value]


def normalize_padding(
    padding: Padding, size: Sequence[int], window: Sequence[int], strides: Sequence[int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit ``((top, bottom), (left, right))`` pads for ``padding``.

    ``"SAME"`` follows XLA/TensorFlow: output size ``ceil(n / s)``, total padding
    ``max((out - 1) * s + w - n, 0)``, and the odd extra pad at the end.
    """
    if isinstance(padding, str):
        p = padding.upper()
        if p == "VALID":
            return ((0, 0), (0, 0))
        if p == "SAME":
            pads = []
            for n, w, s in zip(size, window, strides):
                out = -(-n // s)
                total = max((out - 1) * s + w - n, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)  # type: ignore[return-value]
        raise UserError(
            f"invalid padding {padding!r}; choose 'VALID', 'SAME' or ((top, bottom), (left, right))"
        )
    try:
        pads = tuple((int(a), int(b)) for a, b in padding)
    except (TypeError, ValueError):
        pads = ()
    if len(pads) != 2 or any(a < 0 or b < 0 for a, b in pads):
        raise UserError(
            f"invalid padding {padding!r}; choose 'VALID', 'SAME' or ((top, bottom), (left, right))"
            " with non-negative ints"
        )
    return pads  # type: ignore[return-value]


def output_size(n: int, window: int, stride: int, pad: tuple[int, int]) -> int:
    """Output length of a pooling window sliding over ``n`` (padded) positions."""
    return math.floor((n + pad[0] + pad[1] - window) / stride) + 1


def _resolve(x, window, strides, padding, layer: str):
    window = _pair(window, "window")
    strides = window if strides is None else _pair(strides, "strides")
    if x.ndim != 4:
        raise ShapeError(f"pooling expects NHWC input of rank 4, got shape {tuple(x.shape)}")
    pads = normalize_padding(padding, x.shape[1:3], window, strides)
    out = [output_size(n, w, s, p) for n, w, s, p in zip(x.shape[1:3], window, strides, pads)]
    if min(out) <= 0:
        where = f"layer '{layer}'" if layer else "pooling"
        raise ShapeError(
            f"input too small: {where} ({window[0]}x{window[1]} window, stride "
            f"{strides[0]}x{strides[1]}) on a {x.shape[1]}x{x.shape[2]} feature map would give an "
            f"empty {out[0]}x{out[1]} output; use a larger input, SAME padding or the model's "
            "resize_to option"
        )
    return window, strides, pads


def pool(
    x: jax.Array,
    kind: str,
    window: int | Sequence[int] = (2, 2),
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    *,
    train: bool = False,
    rng: jax.Array | None = None,
    **options: Any,
) -> jax.Array:
    """Pools ``x: f32[B, H, W, C]`` with a registered kind that has a functional form
    (every kind except those that only exist with learned parameters: ``gated``,
    ``strided_conv``, ``lip``; ``lp`` and ``mixed`` are used here with a fixed exponent or
    mixing proportion).

    Training and evaluation differ only for the stochastic kinds (``stochastic``,
    ``fractional_max``), which sample from ``rng`` when ``train=True``.

    Args:
      x: NHWC input.
      kind: a name from :func:`names`.
      window: pooling window (int or pair).
      strides: defaults to ``window`` (Keras/PyTorch convention, unlike ``flax.linen.max_pool``).
      padding: ``"VALID"``, ``"SAME"`` or ``((top, bottom), (left, right))``.
      train: training-mode behaviour for kinds that differ (e.g. stochastic pooling).
      rng: PRNG key for kinds that sample in training mode.
      **options: kind-specific options (see each kind's docstring).
    """
    spec = POOLS.get(kind)
    if spec.fn is None:
        raise UserError(
            f"pool {kind!r} has learned parameters: use cnn_jax.pooling.Pool(kind={kind!r}) "
            "inside a model instead of the functional form"
        )
    check_options(spec, options, functional=True)
    window, strides, pads = _resolve(x, window, strides, padding, layer="")
    if spec.stochastic and train and rng is None:
        raise UserError(f"pool {kind!r} samples in training mode: pass rng=")
    return spec.fn(x, window, strides, pads, train=train, rng=rng, **options).astype(x.dtype)


class Pool(nn.Module):
    """Pooling layer for every registered kind.

    Kinds with parameters keep them in a submodule named ``impl`` under this layer, so the
    parameter paths of the other layers are the same whichever kind is chosen.
    Stochastic kinds draw from the ``'pool'`` rng stream in training mode
    (``model.apply(..., train=True, rngs={"pool": key})``). ``options`` are the kind's
    options (see its docstring); an unknown one is a :class:`UserError`.
    """

    kind: str = "max"
    window: int | Sequence[int] = (2, 2)
    strides: int | Sequence[int] | None = None
    padding: Padding = "VALID"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        spec = POOLS.get(self.kind)
        check_options(spec, self.options, functional=spec.module is None)
        window, strides, pads = _resolve(x, self.window, self.strides, self.padding, self.name or "")
        if spec.module is not None:
            y = spec.module(window=window, strides=strides, pads=pads, **self.options, name="impl")(
                x, train=train
            )
        else:
            rng = self.make_rng("pool") if (spec.stochastic and train) else None
            y = spec.fn(x, window, strides, pads, train=train, rng=rng, **self.options)
        # float32 parameters must not silently promote a bfloat16/float16 model's activations
        return y.astype(x.dtype)


HEADS: Registry[PoolKind] = Registry("head pool")


def register_head(name: str):
    """Registers a global pooling head: a pure function ``fn(x, **options) -> f32[B, C']``
    or a linen Module class (for heads with parameters) called as ``module(x, train=...)``."""

    def deco(obj):
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            HEADS.add(name, PoolKind(name, module=obj))
        else:
            HEADS.add(name, PoolKind(name, fn=obj))
        return obj

    return deco


def _check_head_options(spec: PoolKind, options) -> None:
    if spec.module is not None:
        valid = sorted(f.name for f in dataclasses.fields(spec.module)
                       if f.init and f.name not in _NOT_OPTIONS)
    else:
        params = inspect.signature(spec.fn).parameters.values()  # type: ignore[arg-type]
        valid = sorted(p.name for p in params if p.kind is p.KEYWORD_ONLY)
    for k in options:
        if k not in valid:
            raise UserError(
                f"head pool {spec.name!r} has no option {k!r}{suggest(k, valid)}; "
                f"valid options: {', '.join(valid) if valid else '(none)'}"
            )


def head_names() -> list[str]:
    """The registered global pooling heads."""
    return HEADS.names()


class GlobalPool(nn.Module):
    """Global pooling head ``f32[B, H, W, C] -> f32[B, C']`` chosen by name
    (``--config.model.head_pool=KIND``). Parameters, if any, live in submodule ``impl``."""

    kind: str = "avg"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        spec = HEADS.get(self.kind)
        _check_head_options(spec, self.options)
        if spec.module is not None:
            y = spec.module(**self.options, name="impl")(x, train=train)
        else:
            y = spec.fn(x, **self.options)
        return y.astype(x.dtype)
