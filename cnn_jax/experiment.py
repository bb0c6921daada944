"""Experiment files and command lines: from ``FILE.py[:ARG]`` and ``--config.a.b=V`` to a
resolved config.

An experiment file is a Python file exposing ``get_config()`` (optionally taking one string
argument, given as ``FILE.py:ARG``) that returns an ``ml_collections.ConfigDict``, usually
:func:`cnn_jax.config.base_config` with a few fields changed; a study adds ``get_sweep()``.
Setting, flattening and resolving values stays in :mod:`cnn_jax.config`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys

import ml_collections

from cnn_jax.config import apply_overrides, base_config, resolve
from cnn_jax import rundir
from cnn_jax.errors import UserError


def load_module(spec: str):
    """Imports experiment file ``FILE.py`` or ``FILE.py:ARG``; returns ``(module, path, arg)``.
    Syntax and import errors become one-line :class:`UserError` messages.

    A file is executed once per process (the module is kept in ``sys.modules`` under a name
    made of its absolute path, its size and modification time): what it registers (pooling
    kinds, models, analyses, datasets) is registered once however often it is loaded."""
    path, _, arg = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
    if not os.path.isfile(path):
        raise UserError(f"experiment file {path!r} does not exist")
    return import_file(path), path, arg


def import_file(path: str):
    """The module of experiment file ``path``, executed the first time only (see
    :func:`load_module`)."""
    full = os.path.abspath(path)
    st = os.stat(full)
    key = hashlib.sha256(f"{full}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(full))[0])
    name = f"cnn_jax_experiment_{stem}_{key}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, full)
    if module_spec is None or module_spec.loader is None:
        raise UserError(f"experiment file {path!r} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # before executing: a failed load is removed again below
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        raise UserError(f"{path}:{e.lineno}: syntax error in experiment file: {e.msg}") from None
    except UserError as e:
        sys.modules.pop(name, None)
        raise UserError(f"{path}: {e}") from None
    except Exception as e:
        sys.modules.pop(name, None)
        raise UserError(f"{path}: error while loading experiment file: {type(e).__name__}: {e}") from e
    return module


def import_files(paths) -> None:
    """Imports the experiment files ``paths`` (what a sweep's planner imported, as
    ``sweep.json`` records it): every process of a study sees the same registrations."""
    for path in paths or ():
        import_file(path)


def import_recorded(run_dir: str) -> None:
    """Imports the experiment files run directory ``run_dir`` recorded (``imports.json``):
    what its training registered exists again before it is evaluated or visualised."""
    import_files(rundir.read_json(rundir.path(run_dir, rundir.IMPORTS)) or [])


def record_imports(run_dir: str, paths: list[str]) -> None:
    """Writes ``imports.json`` (the experiment files ``paths``) into run directory ``run_dir``."""
    if paths:
        rundir.write_json(rundir.path(run_dir, rundir.IMPORTS), [os.path.abspath(p) for p in paths])


def load_experiment(spec: str) -> ml_collections.ConfigDict:
    """Loads ``FILE.py`` or ``FILE.py:ARG`` and returns ``get_config([ARG])``."""
    module, path, arg = load_module(spec)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise UserError(f"experiment file {path!r} defines no get_config() function")
    cfg = get_config(arg) if arg else get_config()
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise UserError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    return cfg


def parse_override_args(args: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Splits ``--config.a.b=v`` / ``--config.a.b v`` from other arguments."""
    overrides, rest = [], []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--config."):
            body = a[len("--config."):]
            if "=" in body:
                k, v = body.split("=", 1)
            elif i + 1 < len(args):
                k, v = body, args[i + 1]
                i += 1
            else:
                raise UserError(f"override {a!r} has no value; write {a}=VALUE")
            overrides.append((k, v))
        else:
            rest.append(a)
        i += 1
    return overrides, rest


def from_args(config_spec: str | None, overrides, *, model: str | None = None):
    """The resolved config of a command line: the experiment file ``config_spec`` (or
    :func:`base_config`), ``model`` as ``model.name`` and the ``--config.a.b=V`` overrides."""
    cfg = load_experiment(config_spec) if config_spec else base_config()
    if model is not None:
        overrides = [("model.name", model), *overrides]
    return resolve(apply_overrides(cfg, list(overrides)))


def parse_shape(text: str, flag: str = "--input-shape") -> tuple[int, ...]:
    """``"H,W,C"`` as a tuple of three positive ints (a one-line error otherwise)."""
    try:
        shape = tuple(int(t) for t in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"invalid {flag} {text!r}; write H,W,C with positive ints, e.g. 28,28,1")
    return shape
