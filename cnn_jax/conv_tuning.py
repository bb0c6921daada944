"""Which formulation each convolution takes, chosen by measurement on this machine.

``CNN_JAX_CONV`` (read when a program is traced) picks how :func:`cnn_jax.conv.conv2d`
computes a stride-1 convolution on CPU:

* ``tuned``: the first time a layer's geometry (kernel, input size, padding,
  dtype) is traced, every registered forward formulation (:data:`cnn_jax.conv.FORWARD`:
  XLA's convolution, the tap loop, ...), input-gradient formulation
  (:data:`cnn_jax.conv.INPUT_GRAD`: XLA's transposed convolution, col2im, ...) and
  kernel-gradient formulation (:data:`cnn_jax.conv.KERNEL_GRAD`) that applies to it is
  timed on this CPU, each part alone, in the spirit of cuDNN's benchmark mode, and the
  fastest is kept; one other than XLA's only when it takes at most :data:`MARGIN` of
  XLA's time, against noise and what the isolated timing cannot see (how XLA compiles the
  whole step around it). The choice is cached per CPU model, ISA extensions, usable CPUs
  and jax/jaxlib version in a JSON file: the sweep's
  (``WORKDIR/.cache/conv.json``, which ``cnn-jax sweep`` sets through
  ``CNN_JAX_CONV_CACHE``) and the user's (``~/.cache/cnn_jax/conv.json``;
  ``CNN_JAX_CONV_USER_CACHE``, ``off`` for none). A choice found in either file is used
  as is (a second process measures nothing), so every trial of a sweep on one machine
  gets the same formulations; measuring is done under a file lock, once. The choice does
  not depend on the batch size (it is measured at a batch fixed by the geometry), so
  single-device, sharded and evaluation programs of one layer agree.
* ``rows`` (the default, :data:`DEFAULT`) and ``auto``: fixed rules measured on AMD
  EPYCs in 2026-11 and 12, no measuring, the same choice on every machine. ``auto``
  (:func:`cnn_jax.conv.auto_rule_choice`) is the rule set as it stood before row patches and
  does not change: a study that pins it (``Study(conv="auto")``) reproduces its earlier
  numbers bit for bit on the same machine. ``rows`` (:func:`cnn_jax.conv.rule_choice`)
  adds row patches for LeNet-5's second layer (2026-12-06), which sum in another order.
  A change of rules is a new mode, never an edit of one that results were recorded in.
* ``xla``: XLA's convolution everywhere.

On accelerators every mode is XLA's convolution. The choices a process made are part of
its numeric environment (:func:`record`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import statistics
import threading
import time

import numpy as np

from cnn_jax import rundir
from cnn_jax.errors import UserError

MODES = ("rows", "auto", "tuned", "xla")  # the rule modes: cnn_jax.conv.rule_sets
# The default: the fixed rules. Measured (AMD EPYC, AVX-512, 2 cores, 2026-12-06): the main
# job with `tuned` took 11 min 36 s against 11 min 09 s and 11 min 19 s with the rules
# (training steps 15 min 13 s against 15 min 17 s and 15 min 40 s), and changed the simple CNN's
# numbers; per pooling kind its step ran 0.59x (blur) to 1.09x (softpool) the rules' speed
# (benchmarks/RESULTS.md). Timing a formulation alone does not predict the whole step
# well enough here to make results depend on it by default.
DEFAULT = "rows"
ENV = "CNN_JAX_CONV"
CACHE_ENV = "CNN_JAX_CONV_CACHE"  # the sweep's file (looked up first, written)
USER_CACHE_ENV = "CNN_JAX_CONV_USER_CACHE"  # the user's file (looked up next, written)
# Another formulation wins only at <= MARGIN x the time of XLA's, timed alone: the whole
# step can behave otherwise, which can eat a small gain. Measured (AMD EPYC,
# AVX-512, one core, batch 64): col2im for the simple CNN's 32 -> 64 layer took 0.90x XLA's
# input-gradient time alone, yet with Lp pooling the step then ran 1.7x slower (56.8 against
# 33.0 ms; 29.7 with that layer's XLA gradient and the others tuned). The margin does not
# make the choice safe: see DEFAULT.
MARGIN = 0.75
ROUNDS = 5  # alternating timing rounds per candidate; the median counts
BLOCK_SECONDS = 0.004  # each timed block runs at least this long
BATCH_ELEMENTS = 1 << 21  # the timing batch: the largest power of 2 <= 64 under this many inputs
FORMAT = 1

_lock = threading.Lock()
PARTS = ("forward", "input_grad", "kernel_grad")
_memo: dict[str, tuple[str, str, str]] = {}
_used: dict[str, str] = {}  # geometry -> "forward/input-gradient/kernel-gradient" traced here
measured: list[str] = []  # geometries this process measured (tests: a cache hit measures none)


def mode() -> str:
    """``CNN_JAX_CONV``, checked: a one-line :class:`UserError` for another value."""
    value = os.environ.get(ENV, DEFAULT) or DEFAULT
    if value not in MODES:
        raise UserError(f"{ENV}={value!r} is not a convolution mode; choose one of: {', '.join(MODES)}")
    return value


@dataclasses.dataclass(frozen=True)
class Geometry:
    """What a choice is made for: the input's spatial size and channels, the kernel, the
    padding and the dtype (not the batch)."""

    in_hw: tuple[int, int]
    kernel: tuple[int, int, int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]
    dtype: str

    @property
    def key(self) -> str:
        kh, kw, cin, cout = self.kernel
        (t, b), (l, r) = self.pads
        return f"{kh}x{kw}x{cin}->{cout} on {self.in_hw[0]}x{self.in_hw[1]} pad {t},{b},{l},{r} {self.dtype}"

    def batch(self) -> int:
        per_image = self.in_hw[0] * self.in_hw[1] * self.kernel[2]
        n = 64
        while n > 1 and n * per_image > BATCH_ELEMENTS:
            n //= 2
        return n


@functools.cache
def _machine() -> tuple[str, str]:
    """The CPU model with its ISA extensions, and the jax/jaxlib versions (fixed per
    process)."""
    import importlib.metadata

    import jax

    from cnn_jax import runtime

    model, isa = runtime.cpu_model()
    return f"{model} [{' '.join(isa)}]", f"jax={jax.__version__} jaxlib={importlib.metadata.version('jaxlib')}"


def machine_key() -> str:
    """Whose measurements a cache entry is: CPU model, ISA extensions, usable CPUs, jax."""
    from cnn_jax import runtime

    cpu, versions = _machine()
    return f"{cpu} cpus={runtime.usable_cpus()} {versions}"


def choose(x_shape, w_shape, pads, dtype, *, rules, measure) -> tuple[str, str, str]:
    """``(forward, input gradient, kernel gradient)`` formulation names for a convolution
    of these shapes in the mode :func:`mode` says (all ``"xla"`` off the CPU): ``rules[
    mode](w_shape)`` gives a rule mode's, ``measure(geometry)`` a new cache entry (see
    :func:`cnn_jax.conv.measure`)."""
    m = mode()
    if m == "xla":
        return "xla", "xla", "xla"
    geom = Geometry(tuple(x_shape[1:3]), tuple(w_shape), tuple(map(tuple, pads)), np.dtype(dtype).name)
    if m in rules:
        choice = tuple(rules[m](w_shape))
    else:
        import jax

        if jax.default_backend() != "cpu":
            return "xla", "xla", "xla"
        choice = _tuned(geom, measure)
    _used[geom.key] = "/".join(choice)
    return choice


def record() -> dict:
    """This process's convolution mode and the choices it traced (for ``summary.json``)."""
    return {"mode": mode(), "choices": dict(sorted(_used.items()))}


@contextlib.contextmanager
def sweep_settings(env: dict):
    """A sweep's convolution settings (``env``'s :data:`ENV` and :data:`CACHE_ENV`) in
    this process while it runs trials itself (``--workers 0``), restored afterwards."""
    keys = (ENV, CACHE_ENV)
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: str(env[k]) for k in keys if k in env})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ----------------------------------------------------------------------------- the cache


def _files() -> list[str]:
    files = [os.environ.get(CACHE_ENV, "")]
    user = os.environ.get(USER_CACHE_ENV, os.path.join(os.path.expanduser("~"), ".cache", "cnn_jax", "conv.json"))
    files.append("" if user.lower() in ("off", "none", "0") else user)
    return [f for f in files if f]


def _read(file: str) -> dict:
    try:
        with open(file) as f:
            data = json.load(f)
    except (OSError, ValueError):  # absent, or unreadable: measured again and rewritten
        return {}
    return data.get("machines", {}) if isinstance(data, dict) and data.get("format") == FORMAT else {}


def _lookup(files: list[str], machine: str, key: str) -> dict | None:
    for f in files:
        entry = _read(f).get(machine, {}).get(key)
        if isinstance(entry, dict) and set(PARTS) <= entry.keys():
            return entry
    return None


def _store(files: list[str], machine: str, key: str, entry: dict, lock: bool = True) -> None:
    """Adds ``entry`` to each file that lacks it (each under its own lock unless the
    caller holds it; an entry already there is never overwritten)."""
    for f in files:
        with _file_lock(f) if lock else contextlib.nullcontext():
            machines = _read(f)
            if key in machines.get(machine, {}):
                continue
            machines.setdefault(machine, {})[key] = entry
            rundir.write_json(f, {"format": FORMAT, "machines": machines})


@contextlib.contextmanager
def _file_lock(file: str):
    """An exclusive lock on ``file + ".lock"`` (other processes wait)."""
    import fcntl

    os.makedirs(os.path.dirname(os.path.abspath(file)), exist_ok=True)
    with open(file + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _tuned(geom: Geometry, measure) -> tuple[str, str, str]:
    files, machine = _files(), machine_key()
    memo = "|".join([*files, machine, geom.key])
    with _lock:
        if memo not in _memo:
            entry = _lookup(files[:1], machine, geom.key)
            if entry is None:  # not in the first file: found in the next, or measured
                with _file_lock(files[0]) if files else contextlib.nullcontext():
                    entry = _lookup(files, machine, geom.key)  # (measured meanwhile?)
                    if entry is None:
                        entry = _measure_outside_trace(geom, measure)
                        measured.append(geom.key)
                    _store(files[1:], machine, geom.key, entry)
                    _store(files[:1], machine, geom.key, entry, lock=False)
            _memo[memo] = tuple(entry[p] for p in PARTS)
        return _memo[memo]


# ----------------------------------------------------------------------------- measuring


def _measure_outside_trace(geom: Geometry, measure) -> dict:
    """``measure(geom)`` in a fresh thread: JAX's tracing state is per thread, so the
    candidates are compiled and run for real even while the caller traces a program."""
    out: dict = {}

    def target():
        try:
            out["entry"] = measure(geom)
        except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
            out["error"] = e

    t = threading.Thread(target=target, name="cnn_jax-conv-tuning")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["entry"]


def winner(ms: dict[str, float]) -> str:
    """The fastest of ``{formulation: ms}``, unless it is not XLA's and takes more than
    :data:`MARGIN` of XLA's time: then XLA's."""
    best = min(ms, key=ms.get)
    return best if best == "xla" or ms[best] <= MARGIN * ms["xla"] else "xla"


def time_calls(fns: dict, args) -> dict[str, float]:
    """Median ms per call of each of ``fns`` over :data:`ROUNDS` alternating rounds."""
    import jax

    reps = {}
    for k, f in fns.items():
        jax.block_until_ready(f(*args))  # compile
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        reps[k] = max(2, int(BLOCK_SECONDS / max(time.perf_counter() - t0, 1e-6)) + 1)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(ROUNDS):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(reps[k]):
                out = f(*args)
            jax.block_until_ready(out)
            times[k].append((time.perf_counter() - t0) / reps[k] * 1e3)
    return {k: round(statistics.median(v), 4) for k, v in times.items()}
