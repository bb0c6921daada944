"""Per-trial analyses (a registry): the measures a study records of every trained trial.

See :mod:`cnn_jax.analyses.base` for the :class:`Analysis` contract and how to register
one (from the package, or from an experiment file). Registered here: ``shift_consistency``
(Zhang 2019), ``calibration`` (ECE, NLL, Brier) and ``corruptions`` (mean corruption
accuracy; mCE in the report), ``cost`` (parameters, MACs, inference time beside the
baseline's) and ``equivariance`` (per-site feature equivariance of the pooling sites, Zhang
2019). Importing this package imports no JAX.
"""

from cnn_jax.analyses import calibration as _calibration  # noqa: F401  (registers calibration)
from cnn_jax.analyses import corruptions as _corruptions  # noqa: F401  (registers corruptions)
from cnn_jax.analyses import cost as _cost  # noqa: F401  (registers cost)
from cnn_jax.analyses import equivariance as _equivariance  # noqa: F401  (registers equivariance)
from cnn_jax.analyses import shift as _shift  # noqa: F401  (registers shift_consistency)
from cnn_jax.analyses.base import (
    DETAILS,
    REGISTRY,
    STATE,
    STATES,
    Analysis,
    Context,
    Measure,
    check_config,
    get,
    measures_of,
    names,
    register,
    resolve,
)

__all__ = [
    "DETAILS",
    "REGISTRY",
    "STATE",
    "STATES",
    "Analysis",
    "Context",
    "Measure",
    "check_config",
    "get",
    "measures_of",
    "names",
    "register",
    "resolve",
]
