"""The model registry: registration, options, creation, pooling sites, features.

``create(name, num_classes=..., **options)`` returns a linen Module applied as
``model.apply(variables, x, train=...)`` returning logits ``f32[B, num_classes]``.
Every model records its intermediate activations by layer name; get them with
:func:`features`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from cnn_jax.errors import UserError, suggest
from cnn_jax.registry import Registry

MODELS: Registry[type[nn.Module]] = Registry("model")

# Module fields that are not user options.
_INTERNAL = {"parent", "name", "pool_sites"}


# The data a model was designed for, as (input shape H, W, C; classes): what ``cnn-jax
# summary`` shows when it is not given a shape or a config's dataset.
INPUTS: dict[str, tuple[tuple[int, int, int], int]] = {
    "imagenet": ((224, 224, 3), 1000),
    "cifar": ((32, 32, 3), 10),
    "mnist": ((28, 28, 1), 10),
}


def register(
    name: str, *, inputs: str | None = None, input_shape: tuple[int, int, int] | None = None, **meta: Any
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator registering a model under ``name``.

    Args:
      inputs: the data it was designed for, a key of :data:`INPUTS` (its default input shape
        and number of classes; see :func:`default_input`).
      input_shape: ``(H, W, C)`` when it differs from that data's usual shape (the seeds'
        Keras AlexNet takes 227×227×3 ImageNet crops).
      meta: further metadata (:meth:`cnn_jax.registry.Registry.meta`).
    """
    if inputs is not None:
        if inputs not in INPUTS:
            raise ValueError(f"unknown inputs {inputs!r} for model {name!r}; choose one of: {', '.join(INPUTS)}")
        shape, classes = INPUTS[inputs]
        meta.update(inputs=inputs, input_shape=tuple(input_shape or shape), num_classes=classes)
    return MODELS.register(name, **meta)


def names() -> list[str]:
    """The registered model names."""
    return MODELS.names()


def default_input(name: str) -> tuple[tuple[int, int, int], int]:
    """The input shape ``(H, W, C)`` and number of classes model ``name`` was designed for."""
    shape = MODELS.meta(name, "input_shape")
    if shape is None:
        raise UserError(f"model {name!r} declares no default input; pass --input-shape and --num-classes")
    return shape, MODELS.meta(name, "num_classes")


def options(name: str) -> dict[str, Any]:
    """The configurable options of model ``name`` and their defaults."""
    cls = MODELS.get(name)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in _INTERNAL or f.name == "num_classes" or not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def create(name: str, num_classes: int, **opts: Any) -> nn.Module:
    """Instantiates registered model ``name``; unknown options are a :class:`UserError`.

    ``pool`` may be one kind (every site) or one kind per pooling site in the model's site
    order (:func:`pooling_sites`)."""
    cls = MODELS.get(name)
    valid = options(name)
    for k in opts:
        if k not in valid:
            raise UserError(
                f"model {name!r} has no option {k!r}{suggest(k, valid)}; "
                f"valid options: {', '.join(sorted(valid))}"
            )
    for k, v in opts.items():
        _check_size(name, k, v, valid[k])
    if not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes must be a positive int, got {num_classes!r}")
    pool = opts.get("pool")
    if isinstance(pool, (list, tuple)):
        sites = pooling_sites(name, num_classes, **{k: v for k, v in opts.items() if k != "pool"})
        if len(pool) != len(sites):
            raise UserError(
                f"model.pool lists {len(pool)} kind{'s' if len(pool) != 1 else ''} "
                f"({', '.join(map(str, pool))}) but model {name!r} has {len(sites)} pooling "
                f"site{'s' if len(sites) != 1 else ''} here ({', '.join(sites) or 'none'}); give "
                f"one kind for all, or one per site in this order"
            )
        opts = {**opts, "pool": tuple(pool)}
        return cls(num_classes=num_classes, pool_sites=tuple(sites), **opts)
    return cls(num_classes=num_classes, **opts)


def resolve_pool(name: str, pool, **opts: Any):
    """``pool`` of model ``name`` checked: one registered kind (a ``str``), or one per pooling
    site (a tuple, or ``"max,avg"``) whose count matches the model's sites (the error names
    them)."""
    from cnn_jax import pooling

    if isinstance(pool, str) and "," in pool:
        pool = tuple(p.strip() for p in pool.split(","))
    if not isinstance(pool, (list, tuple)):
        pooling.POOLS.get(pool)
        return pool
    if not pool:
        raise UserError("model.pool is an empty list; give one kind, or one per pooling site")
    for kind in pool:
        pooling.POOLS.get(kind)
    create(name, 10, pool=tuple(pool), **opts)  # checks the count against the sites
    return tuple(pool)


def pooling_sites(name: str, num_classes: int = 10, input_shape=None, **opts: Any) -> list[str]:
    """The paths of model ``name``'s local pooling sites (``pool1``, ``layer1_0/pool``, ...)
    in the order a per-site ``pool`` lists their kinds, traced (no weights allocated) on
    ``input_shape`` (default: the model's own input)."""
    import jax.numpy as jnp

    from cnn_jax.models import common

    opts = {**opts, "pool": "max"}
    model = create(name, num_classes, **opts)
    if input_shape is None:
        input_shape = MODELS.meta(name, "input_shape") or (28, 28, 1)
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    with common.recording_sites() as sites:
        jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
    return list(dict.fromkeys(sites))


def _check_size(model: str, key: str, value: Any, default: Any) -> None:
    """Sizes must stay positive: an option whose default is a positive number (or a tuple
    of them) rejects zero and negative values."""
    def positive(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0

    if positive(default) and isinstance(value, (int, float)) and not positive(value):
        raise UserError(f"model {model!r} option {key} must be positive, got {value!r}")
    if (isinstance(default, (tuple, list)) and default and all(positive(d) for d in default)
            and isinstance(value, (tuple, list))):
        bad = [v for v in value if isinstance(v, (int, float)) and not positive(v)]
        if bad:
            raise UserError(f"model {model!r} option {key} must hold positive sizes, got {tuple(value)!r}")


def features(model: nn.Module, variables, x: jax.Array) -> dict[str, jax.Array]:
    """The intermediate activations of ``model`` on ``x`` in evaluation mode, by layer name."""
    _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
    return dict(state["intermediates"]["features"])


# Registration: importing a model module registers its models.
