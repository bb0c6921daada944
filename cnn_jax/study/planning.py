"""Planning a study: load the experiment file, apply overrides, plan every trial (each
config resolved once, so mistakes surface before anything runs), and per-arm tuning.

The definition wing's last step: :func:`plan` returns the :class:`Plan` the execution wing
runs (:mod:`cnn_jax.study.execution.runner`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import re
from typing import Any

import ml_collections

from cnn_jax import config as config_lib
from cnn_jax import experiment as experiment_lib
from cnn_jax.errors import UserError
from cnn_jax.study import store, tuning
from cnn_jax.study.design import BUDGET_PHASE, Study, as_study


def build_config(
    base: ml_collections.ConfigDict, point: dict, seed: int
) -> ml_collections.ConfigDict:
    """``base`` with the sweep ``point`` and ``seed`` applied, resolved and validated."""
    return config_lib.with_values(base, {**point, "seed": int(seed)})


def config_hash(cfg: ml_collections.ConfigDict, *, without: tuple[str, ...] = ()) -> str:
    """SHA-256 (hex) of the resolved config, ignoring :data:`HASH_IGNORE`, ``without`` and
    the keys of :data:`HASH_NEUTRAL` at their neutral value."""
    flat = config_lib.flatten(json.loads(config_lib.to_json(cfg)))
    for k in (*store.HASH_IGNORE, *without):
        flat.pop(k, None)
    for k, off in store.HASH_NEUTRAL.items():
        if k in flat and flat[k] == off:
            del flat[k]
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()


def _slug(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        s = "x".join(_slug(x) for x in v)
    elif isinstance(v, float):
        s = f"{v:g}"
    else:
        s = str(v)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", s).strip("-") or "none"


def trial_name(point: dict, seed: int, digest: str) -> str:
    """``lenet5_pool-max_seed0_1a2b3c4d``: swept values (``*.name`` keys by value alone),
    the seed and 8 hex digits of the config hash."""
    parts = []
    for k, v in point.items():
        last = k.split(".")[-1]
        parts.append(_slug(v) if last == "name" else f"{last}-{_slug(v)}")
    head = "_".join(parts + [f"seed{seed}"])
    if len(head) > 100:
        head = head[:100].rstrip("_-")
    return f"{head}_{digest[:8]}"


def plan_trials(study: Study, base: ml_collections.ConfigDict, pairs=None, phase: str = "") -> list[store.Trial]:
    """The trials of ``study`` (or the ``(point, seed)`` ``pairs`` given) on top of ``base``
    (every config resolved: mistakes surface here, before anything runs); ``phase`` marks
    the trials of a tuning phase (``"tune"``)."""
    trials = []
    seen: dict[str, store.Trial] = {}
    for point, seed in study.trials() if pairs is None else pairs:
        try:
            cfg = build_config(base, point, seed)
        except UserError as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise UserError(f"sweep point {{{shown}}}: {e}") from None
        digest = config_hash(cfg)
        t = store.Trial(
            trial_name(point, seed, digest),
            digest,
            config_hash(cfg, without=("seed",))[:12],
            dict(point),
            int(seed),
            cfg,
            phase,
        )
        if digest in seen:
            raise UserError(
                f"sweep points {seen[digest].point} and {point} give the same config "
                f"(seed {seed}); "
                "a swept value has no effect"
            )
        seen[digest] = t
        trials.append(t)
    return trials


def budget_point(base: ml_collections.ConfigDict, point: dict, factor: float) -> dict:
    """``point`` at ``factor`` times its budget: ``train.steps`` x ``factor`` where
    ``train.steps`` is set, else ``train.epochs`` x ``factor`` (a :class:`UserError` unless
    the product is whole)."""
    steps = int(base.train.steps)
    key, n = ("train.steps", steps) if steps > 0 else ("train.epochs", int(base.train.epochs))
    total = n * factor
    if abs(total - round(total)) > 1e-9:
        what = key.split(".")[1]
        raise UserError(
            f"BudgetCheck.factor {factor:g} x {key} {n} = {total:g} is not a whole number of "
            f"{what}; choose a factor that makes it whole (e.g. 2)"
        )
    return {**point, key: round(total)}


def plan_budget(study: Study, base: ml_collections.ConfigDict, chosen=None) -> list[store.Trial]:
    """The budget check's trials (phase ``"budget"``): the study trials it re-runs
    (:meth:`Study.budget_arms`, with each arm's ``chosen`` tuned values) at its factor times
    the budget; ``[]`` without a budget check."""
    if study.budget_check is None:
        return []
    factor = float(study.budget_check.factor)
    pairs = [(budget_point(base, p, factor), s) for p, s in study.budget_arms(chosen)]
    return plan_trials(study, base, pairs, phase=BUDGET_PHASE)


def trial_states(workdir: str, trials: list[store.Trial]) -> dict[str, dict]:
    """``{trial name: its status record}`` (:func:`cnn_jax.study.store.read_status`)."""
    return {t.name: store.read_status(t.dir(workdir)) for t in trials}


def load_study(spec: str):
    """``(base_config, study, path)`` from ``FILE.py[:ARG]``: ``get_config([ARG])``,
    ``get_sweep([ARG])`` and the file's absolute path (what every process of the sweep
    imports, :func:`cnn_jax.experiment.import_files`)."""
    module, path, arg = experiment_lib.load_module(spec)
    get_config = getattr(module, "get_config", None)
    get_sweep = getattr(module, "get_sweep", None)
    if not callable(get_config):
        raise UserError(f"experiment file {path!r} defines no get_config() function")
    if not callable(get_sweep):
        raise UserError(
            f"experiment file {path!r} defines no get_sweep() function, so it is not a study "
            "(train it with `cnn-jax train --config`, or see experiments/pooling_study.py)"
        )

    def call(fn, what):
        takes_arg = bool(inspect.signature(fn).parameters)
        if arg and not takes_arg:
            raise UserError(f"{path}: {what}() takes no argument, but {spec!r} passes {arg!r}")
        try:
            return fn(arg) if arg else fn()
        except UserError as e:
            raise UserError(f"{path}: {e}") from None

    cfg = call(get_config, "get_config")
    if not isinstance(cfg, config_lib.ml_collections.ConfigDict):
        raise UserError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    return cfg, as_study(call(get_sweep, "get_sweep")), os.path.abspath(path)


@dataclasses.dataclass
class Plan:
    study: Study
    trials: list[store.Trial]
    record: dict  # what sweep.json holds
    pending: bool = False  # a tuning phase must finish before the study trials are known


def _check_analyses(study: Study, trials: list[store.Trial]) -> None:
    """The study's analyses checked against each distinct dataset of ``trials``."""
    from cnn_jax import analyses

    spec, seen = study.analysis_spec(), set()
    for t in trials:
        if t.config.data.name not in seen:
            seen.add(t.config.data.name)
            analyses.check_config(spec, t.config)


def plan(experiment: str, overrides: list[tuple[str, str]] = (), workdir: str | None = None) -> Plan:
    """Loads the experiment, applies ``overrides`` to its config and plans every trial.

    With per-arm tuning (``Study(tune=...)``) the tuning trials come first; the study
    trials follow once every tuning trial in ``workdir`` has finished (each arm with its
    value chosen on validation, :mod:`cnn_jax.study.tuning`), else ``pending`` is true.
    A budget check's trials (``Study(budget_check=...)``) come last, after the study trials,
    so that an interrupted sweep has its main answer first."""
    base, study, path = load_study(experiment)
    base = config_lib.apply_overrides(base, list(overrides))
    extra, pending = {}, False
    if study.tune:
        tune = plan_trials(study, base, study.tuning_trials(), phase=tuning.TUNE_PHASE)
        states = trial_states(workdir, tune) if workdir and os.path.isdir(workdir) else {}
        status = {name: st["status"] for name, st in states.items()}
        if tune and all(status.get(t.name) in store.FINISHED for t in tune):
            chosen, table = tuning.choose(study, tuning.scores_of(study, tune, workdir, status))
            trials = tune + plan_trials(study, base, study.trials(chosen))
            trials += plan_budget(study, base, chosen)
            extra["tuning"] = tuning.record(chosen, table)
        else:
            if study.budget_check is not None:  # a budget not to be multiplied fails now
                budget_point(base, {}, float(study.budget_check.factor))
            trials, pending = tune, True
    else:
        trials = plan_trials(study, base) + plan_budget(study, base)
    _check_analyses(study, trials)
    record = {
        "version": 1,
        "experiment": experiment,
        "imports": [path],
        "overrides": [list(kv) for kv in overrides],
        "study": study.options(),
        "trials": [t.record() for t in trials],
        **extra,
    }
    return Plan(study, trials, record, pending)
