"""Where a sweep's trials run: the local worker pool, SLURM (through submitit) or Ray.

Each executor takes the tasks that :func:`cnn_jax.study.execution.dispatch.tasks` builds (one task =
one trial, or the seeds of one config trained together) and runs every task as one job in
a fresh process: a ``python -m cnn_jax.study.execution.worker`` subprocess (local), a job-array task
(SLURM) or a Ray task on a fresh worker process (``max_calls=1``). Every job applies the
sweep's runtime settings before JAX is imported and calls
:func:`cnn_jax.study.execution.task.run_task`, which leases each trial in the trial store; the store
on the shared filesystem is the one source of truth, so the executors give the same results
and can be mixed across re-runs (start locally, finish on SLURM).

``create(name, options)`` checks everything that can be checked before the workdir is
written (the engine is installed, the cluster answers, the options belong to this
executor, the GPUs asked for exist) and raises a one-line :class:`UserError` otherwise.
submitit and ray are imported only by their executors (extras ``.[slurm]``, ``.[ray]``).
"""

from cnn_jax.study.execution.executors.base import (
    FINAL_EVENTS,
    FLAGS,
    REGISTRY,
    Executor,
    Handle,
    Log,
    check_positive,
    create,
    names,
    register,
)

# Registered in this order (``names()`` lists them so): local, slurm, ray.
from cnn_jax.study.execution.executors import local as _local  # noqa: F401, I001
from cnn_jax.study.execution.executors import slurm as _slurm  # noqa: F401, I001
from cnn_jax.study.execution.executors import raycluster as _ray  # noqa: F401, I001
from cnn_jax.study.execution.executors.local import gpu_worker_envs, visible_gpus  # noqa: F401
from cnn_jax.study.execution.executors.slurm import squeue_states  # noqa: F401

__all__ = [
    "FINAL_EVENTS",
    "FLAGS",
    "REGISTRY",
    "Executor",
    "Handle",
    "Log",
    "check_positive",
    "create",
    "gpu_worker_envs",
    "names",
    "register",
    "squeue_states",
    "visible_gpus",
]
