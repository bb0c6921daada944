"""The process's runtime, set before and after JAX is imported: XLA host devices on CPU,
multi-host ``jax.distributed``, logging levels and the persistent compilation cache.

Used by the ``cnn-jax`` command line (:mod:`cnn_jax.cli`) and by the benchmarks, so that a
benchmark runs under the same settings as the command it measures. Nothing here imports JAX
at module level: :func:`host_device_flags` must run before JAX is first imported.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import tempfile

from cnn_jax.errors import UserError

HOST_DEVICE_COMMANDS = ("train", "bench", "evaluate")
MAX_HOST_DEVICES = 8


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: what a pinned worker got)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- CPUs per process

# Why a fixed number of CPUs: XLA:CPU sizes its thread pool by the CPUs a process may run
# on and partitions its loop kernels by that count when it compiles, and a kernel split
# differently can round differently. Measured (jax 0.10.2, AMD EPYC, 2026-12-05): one step
# of the simple CNN on 1 CPU and on 2 CPUs gave different parameters; the optimised
# programs differed only in ``outer_dimension_partitions`` of their loop fusions.
# ``--xla_cpu_multi_thread_eigen=false`` did not change that. So every trial runs pinned
# to the same number of CPUs (``--cpus-per-trial``, default 1) on every executor.

_HELD: list = []  # the lock files of the CPUs this process claimed (held until it exits)


def cpu_lock_dir() -> str:
    """Where processes of this user mark the CPUs they hold (``CNN_JAX_CPU_LOCKS``, else
    ``/dev/shm/cnn_jax-cpus-UID`` or the temporary directory)."""
    d = os.environ.get("CNN_JAX_CPU_LOCKS")
    if d:
        return d
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    return os.path.join(base, f"cnn_jax-cpus-{os.getuid()}")


def pin_cpus(n: int, flag: str = "--cpus", prefer: list[int] | None = None,
             quiet: bool = False) -> list[int]:
    """Pins this process to ``n`` of the CPUs it may run on, before JAX is imported, and
    returns them. CPUs that no other process of this user holds (a lock file each in
    :func:`cpu_lock_dir`, released when the process exits, even on ``kill -9``) come first,
    so that cluster jobs sharing a node (Ray tasks, SLURM jobs without CPU binding) do not
    stack on one CPU; when too few are free it shares some and says so (same numbers,
    slower). ``flag`` names the option in the error for an impossible ``n``; the CPUs
    ``prefer`` (the local pool's group for each worker) are tried first; ``quiet``: no
    warning when sharing (the local pool says so itself where its own workers overlap)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no affinity to set (the numerics record the count)
        return []
    if not isinstance(n, int) or n < 1 or n > len(cpus):
        raise UserError(
            f"{flag} {n}: this process may run on {len(cpus)} CPU{'s' if len(cpus) > 1 else ''}; "
            f"choose 1 to {len(cpus)}"
        )
    if "jax" in sys.modules:  # pragma: no cover  (XLA's thread pool is already sized)
        print("warning: CPUs pinned after JAX was imported", file=sys.stderr)
    if n == len(cpus):
        return cpus
    import fcntl

    first = [c for c in prefer or [] if c in cpus]
    cpus = first + [c for c in cpus if c not in first]
    d = cpu_lock_dir()
    os.makedirs(d, exist_ok=True)
    free = []
    for c in cpus:
        if len(free) == n:
            break
        f = open(os.path.join(d, f"cpu{c}"), "a")  # noqa: SIM115  (held until exit)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        free.append(c)
        _HELD.append(f)
    shared = [c for c in cpus if c not in free][: n - len(free)]  # (preferred ones first)
    if shared and not quiet:
        print(f"warning: CPU{'s' if len(shared) > 1 else ''} {','.join(map(str, shared))} "
              "already held by other cnn-jax processes: sharing them (same numbers, slower)",
              file=sys.stderr)
    chosen = sorted(free + shared)
    os.sched_setaffinity(0, chosen)
    return chosen


CPUS_COMMANDS = ("train", "evaluate")


def cpus_flag(argv: list[str]) -> int | None:
    """``--cpus N`` of ``train`` and ``evaluate``, read from the raw arguments and applied
    (:func:`pin_cpus`) before JAX is imported; returns N (``None``: not given)."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in CPUS_COMMANDS:
        return None
    for i, a in enumerate(argv):
        if a == "--cpus":
            value = argv[i + 1] if i + 1 < len(argv) else ""
        elif a.startswith("--cpus="):
            value = a.partition("=")[2]
        else:
            continue
        if not value.isdigit():
            raise UserError(f"--cpus must be a positive number of CPUs, got {value!r}")
        pin_cpus(int(value), "--cpus")
        return int(value)
    return None


def host_device_flags(argv: list[str] | None = None) -> None:
    """Splits the CPU into XLA host devices before jax is imported, so that
    ``parallel.mode=auto`` can shard a large enough step over the cores
    (:func:`cnn_jax.train.loop.auto_mode`).

    ``CNN_JAX_HOST_DEVICES=N`` asks for N devices (1: off); unset, ``train``, ``bench`` and
    ``evaluate`` take one per core (at most 8) and other commands one in all (a sweep's
    trials run in worker processes instead). An explicit
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS`` wins. The CPU collectives'
    time-outs are raised to 10 minutes: with the default ones, a heavily loaded machine was
    seen to abort a rendezvous between host devices."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or "jax" in sys.modules:
        return
    n = os.environ.get("CNN_JAX_HOST_DEVICES", "")
    if n and (not n.isdigit() or int(n) < 1):
        raise UserError(f"CNN_JAX_HOST_DEVICES must be a positive integer, got {n!r}")
    if not n:
        command = next((a for a in (argv or []) if not a.startswith("-")), None)
        if command not in HOST_DEVICE_COMMANDS:
            return
        n = str(min(usable_cpus(), MAX_HOST_DEVICES))
    if int(n) > 1:
        extra = [f"--xla_force_host_platform_device_count={n}"]
        for flag in ("xla_cpu_collective_timeout_seconds", "xla_cpu_collective_call_terminate_timeout_seconds"):
            if flag not in flags:
                extra.append(f"--{flag}=600")
        os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()


def init_distributed(args) -> None:
    """``jax.distributed.initialize`` from flags or the environment (multi-host runs).

    ``args`` (an ``argparse.Namespace``; missing attributes count as unset) may carry
    ``coordinator``, ``num_processes``, ``process_id`` (else ``CNN_JAX_COORDINATOR``,
    ``CNN_JAX_NUM_PROCESSES``, ``CNN_JAX_PROCESS_ID``) or ``distributed=True`` (JAX detects
    the cluster). Without a coordinator or ``distributed`` it does nothing."""
    coordinator = getattr(args, "coordinator", None) or os.environ.get("CNN_JAX_COORDINATOR")
    nproc = getattr(args, "num_processes", None) or os.environ.get("CNN_JAX_NUM_PROCESSES")
    pid = getattr(args, "process_id", None)
    if pid is None and os.environ.get("CNN_JAX_PROCESS_ID") is not None:
        pid = int(os.environ["CNN_JAX_PROCESS_ID"])
    if not (coordinator or getattr(args, "distributed", False)):
        return
    import jax

    kwargs = {}
    if coordinator:
        if nproc is None or pid is None:
            raise UserError("--coordinator needs --num-processes and --process-id (or CNN_JAX_* variables)")
        kwargs = dict(coordinator_address=coordinator, num_processes=int(nproc), process_id=int(pid))
    jax.distributed.initialize(**kwargs)  # no arguments: JAX detects the cluster (SLURM, TPU, ...)


def setup_runtime(debug: bool) -> None:
    """Quiet third-party logging and enable JAX's persistent compilation cache."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import absl.logging

    absl.logging.set_verbosity("info" if debug else "error")
    import jax

    cache = os.environ.get("CNN_JAX_CACHE_DIR", os.path.expanduser("~/.cache/cnn_jax/xla"))
    if cache and cache.lower() not in ("0", "off", "none"):
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.05)
    try:
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()
    except ImportError:
        pass


# ----------------------------------------------------------------------------- host facts


def default_workers(cpus_per_trial: int = 1) -> int:
    """Worker processes that fit this machine.

    On CPU: one per ``cpus_per_trial`` cores, each pinned to its own (:func:`cnn_jax.study.execution.executors.local.
    cpu_groups`), and at most one per 2 GB of memory (a worker of the pooling study peaked
    at 0.69 GB of RSS). On 2 shared cores, the pooling study's 90 trials (five seeds then)
    from an empty workdir took 4 min 24 s with two pinned workers against 5 min 30 s with
    one worker spreading XLA's threads over both cores, back to back (2026-12-01):
    single-threaded steps took less CPU (7 min 00 s of single-core step time against 4 min
    30 s of two-core time) and one worker compiles while the other trains. (The one-worker
    default came from runs whose pool left an idle worker waiting for the other's trial to
    end.) With an accelerator: one (its memory is shared).
    """
    if accelerator_installed():
        return 1
    cores = max(1, usable_cpus() // max(1, cpus_per_trial))
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (AttributeError, ValueError, OSError):
        memory_gb = 2.0 * cores
    return max(1, min(cores, int(memory_gb // 2)))


@functools.cache  # (asked per task and per idle worker by the local pool)
def accelerator_installed() -> bool:
    return any(
        importlib.util.find_spec(m) is not None
        for m in ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "libtpu")
    )


# ----------------------------------------------------------------------------- numerics

# The instruction-set extensions XLA:CPU's kernels may choose between (recorded, not used).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def cpu_model() -> tuple[str, list[str]]:
    """The CPU's model name and which of :data:`ISA_FLAGS` it has (Linux's
    ``/proc/cpuinfo``; elsewhere ``platform.processor()`` and no flags)."""
    import platform

    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), [f for f in ISA_FLAGS if f in flags]


def numeric_environment() -> dict:
    """What a run's numbers depend on besides its config and seed, for ``summary.json``:
    the jax/jaxlib versions, the backend and its devices, the CPU's model and ISA
    extensions, the CPUs the process may use (XLA:CPU sizes its thread pool and partitions
    its loop kernels by them: see :func:`pin_cpus`) and ``XLA_FLAGS``; a run's summary adds
    :func:`cnn_jax.conv.environment` (the convolution formulations and compile options)."""
    import importlib.metadata

    import jax

    model, isa = cpu_model()
    return {
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "cpu": model,
        "isa": isa,
        "cpus": usable_cpus(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
