"""The training and evaluation steps lowered for GPU and TPU on a machine with neither.

``jax.export`` traces and lowers a ``jit`` program for named platforms without their
devices. :func:`check` exports ``fit``'s own steps (the runner, state and batch of
``cnn-jax bench``) for ``cuda`` and ``tpu`` and returns what would stop them or slow them
there: a primitive with no lowering for the platform (the export fails, naming it), a
CPU-only formulation of this package (:data:`cnn_jax.conv.CPU_ONLY_SCOPE` in the program;
the CPU paths are chosen per platform when lowering, with ``lax.platform_dependent``) or
a custom call of a CPU library. Nothing is compiled or run; ``tests/test_lowering.py``
checks one model per family in every parallel mode and dtype.
"""

from __future__ import annotations

import re

from cnn_jax import conv

ACCELERATORS = ("cuda", "tpu")
# Custom-call targets of jaxlib's CPU kernels (LAPACK, DUCC FFTs, host callbacks on CPU).
CPU_ONLY_TARGETS = ("lapack_", "ducc_", "cpu_", "xla_ffi_python_cpu", "xla_python_cpu")
_TARGET = re.compile(r'(?:call_target_name = |stablehlo\.custom_call @)"?([\w.]+)')


def problems_of(program: str) -> list[str]:
    """What in the lowered ``program`` (StableHLO text with locations) is CPU-only."""
    found = []
    if conv.CPU_ONLY_SCOPE in program:
        found.append(f"a CPU-only formulation ({conv.CPU_ONLY_SCOPE})")
    targets = sorted({t for t in _TARGET.findall(program) if t.startswith(CPU_ONLY_TARGETS)})
    found += [f"the CPU custom call {t}" for t in targets]
    return found


def export(fn, args, platforms=ACCELERATORS):
    """``(program texts, whys)``: ``fn`` lowered for all ``platforms`` at once (one
    program), or, where that fails, for each platform alone, with why each failure failed
    (some lowerings, e.g. host callbacks, exist per platform but not multi-platform)."""
    text, why = _export(fn, args, tuple(platforms))
    if text is not None:
        return [text], []
    if len(platforms) == 1:
        return [], [f"for {platforms[0]}: {why}"]
    texts, whys = [], []
    for p in platforms:
        text, why = _export(fn, args, (p,))
        if text is None:
            whys.append(f"for {p}: {why}")
        else:
            texts.append(text)
    return texts, whys


def _export(fn, args, platforms):
    from jax import export as jax_export

    try:
        exported = jax_export.export(fn, platforms=platforms)(*args)
    except Exception as e:  # a primitive without a lowering rule for a platform, mostly
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return None, f"{type(e).__name__}: {first}"
    return exported.mlir_module(), None


def check_programs(programs: dict, args, platforms=ACCELERATORS) -> dict[str, list[str]]:
    """``{program name: problems}`` for jit ``programs`` of the same ``args``."""
    out = {}
    for name, fn in programs.items():
        texts, whys = export(fn, args, platforms)
        out[name] = whys + sorted({p for text in texts for p in problems_of(text)})
    return out


def check(cfg, shape, num_classes: int, platforms=ACCELERATORS) -> dict[str, list[str]]:
    """``fit``'s train and eval steps for the resolved ``cfg`` (its parallel mode and
    dtype), exported for ``platforms``: ``{"train": problems, "eval": problems}``."""
    from cnn_jax import bench

    runner, state, batch = bench.setup(cfg, shape, num_classes, 100)
    return check_programs(runner.programs(), (state, batch), platforms)
