"""Model registry.

``create(name, num_classes=..., **options)`` returns a linen Module applied as
``model.apply(variables, x, train=...)`` returning logits ``f32[B, num_classes]``.
Every model records its intermediate activations by layer name; get them with
:func:`features`. The registry lives in :mod:`cnn_jax.models.registry`; the zoo's modules
below register themselves on import.
"""

from cnn_jax.models import alexnet as _alexnet  # noqa: F401  (alexnet, alexnet_tv, zfnet)
from cnn_jax.models import classic as _classic  # noqa: F401  (mlp, lenet5, simple_cnn)
from cnn_jax.models import googlenet as _googlenet  # noqa: F401
from cnn_jax.models import nin as _nin  # noqa: F401  (nin, allcnn_c)
from cnn_jax.models import resnet as _resnet  # noqa: F401  (resnet18..152, resnet20..110)
from cnn_jax.models import vgg as _vgg  # noqa: F401  (vgg11..19, *_bn)
from cnn_jax.models.registry import (
    INPUTS,
    MODELS,
    create,
    default_input,
    features,
    names,
    options,
    pooling_sites,
    register,
    resolve_pool,
)

__all__ = [
    "INPUTS",
    "MODELS",
    "create",
    "default_input",
    "features",
    "names",
    "options",
    "pooling_sites",
    "register",
    "resolve_pool",
]
