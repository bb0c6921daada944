"""The executor interface and registry (see :mod:`cnn_jax.study.execution.executors`)."""

from __future__ import annotations

from collections.abc import Callable

from cnn_jax import slurm
from cnn_jax.errors import UserError

Handle = Callable[[dict], None]
Log = Callable[[str], None]

FINAL_EVENTS = ("done", "failed", "diverged", "interrupted", "busy", "finished")

# Option names and the flags that set them (for error messages): the local pool's, the
# SLURM options' (cnn_jax.slurm) and Ray's.
FLAGS = {
    "workers": "--workers",
    "trials_per_gpu": "--trials-per-gpu",
    **slurm.FLAGS,
    "address": "--ray-address",
}


class Executor:
    """Runs tasks as jobs; ``run`` returns when every job has ended."""

    name = ""
    OPTIONS: tuple[str, ...] = ()
    # Cluster jobs hold one trial each unless its seeds train together as one vmapped
    # program; the local pool keeps a config's seeds in one worker (one compilation) until
    # a worker runs out of tasks and takes over the ones not begun.
    JOB_PER_TRIAL = True
    # How many trials ran at once in the last ``run`` (the local pool's size), or None
    # where the cluster decides: the sweep's overhead line is taken against it.
    concurrency: int | None = None

    def job_per_trial(self, vmap: str) -> bool:
        """Whether each trial is its own job (else one job per config's seed group)."""
        if not self.JOB_PER_TRIAL or vmap == "on":
            return False
        return not (vmap == "auto" and self.options.get("gpus"))  # auto: vmapped on GPUs

    def __init__(self, **options):
        self.options = options

    def check(self) -> None:
        """Raises a :class:`UserError` if this executor cannot run here (writes nothing)."""

    def run(
        self, tasks: list[dict], settings: dict, workdir: str, handle: Handle, log: Log
    ) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


REGISTRY: dict[str, type[Executor]] = {}


def register(cls: type[Executor]) -> type[Executor]:
    REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    return list(REGISTRY)


def create(name: str, options: dict | None = None) -> Executor:
    """The executor ``name`` with ``options`` (``None`` values count as not given),
    checked (see the module docstring)."""
    if name not in REGISTRY:
        raise UserError(f"unknown executor {name!r}; choose one of: {', '.join(REGISTRY)}")
    cls = REGISTRY[name]
    given = {k: v for k, v in (options or {}).items() if v not in (None, (), [])}
    for k in given:
        if k not in cls.OPTIONS:
            owners = [n for n, c in REGISTRY.items() if k in c.OPTIONS]
            flag = FLAGS.get(k, k)
            raise UserError(
                f"{flag} is an option of the {' and '.join(owners) or 'no'} executor"
                f"{'s' if len(owners) > 1 else ''}, not of {name}"
            )
    ex = cls(**given)
    ex.check()
    return ex


def check_positive(options: dict, key: str, allow_zero: bool = False) -> None:
    """A one-line error naming the sweep's flag unless option ``key`` is unset or positive
    (or 0 with ``allow_zero``)."""
    slurm.check_positive(options, key, allow_zero, flags=FLAGS)


