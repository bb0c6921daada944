"""Planning a study: load the experiment file, apply overrides, plan every trial (each
config resolved once, so mistakes surface before anything runs), and per-arm tuning.

The definition wing's last step: :func:`plan` returns the :class:`Plan` the execution wing
runs (:mod:`cnn_jax.study.execution.runner`).
"""

from __future__ import annotations

import dataclasses
import inspect
import os

from cnn_jax import config as config_lib
from cnn_jax import experiment as experiment_lib
from cnn_jax.errors import UserError
from cnn_jax.study import store, tuning
from cnn_jax.study.design import Study, as_study


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


def plan(experiment: str, overrides: list[tuple[str, str]] = (), workdir: str | None = None) -> Plan:
    """Loads the experiment, applies ``overrides`` to its config and plans every trial.

    With per-arm tuning (``Study(tune=...)``) the tuning trials come first; the study
    trials follow once every tuning trial in ``workdir`` has finished (each arm with its
    value chosen on validation, :mod:`cnn_jax.study.tuning`), else ``pending`` is true."""
    base, study, path = load_study(experiment)
    base = config_lib.apply_overrides(base, list(overrides))
    extra, pending = {}, False
    if study.tune:
        tune = store.plan(study, base, study.tuning_trials(), phase=tuning.TUNE_PHASE)
        states = trial_states(workdir, tune) if workdir and os.path.isdir(workdir) else {}
        status = {name: st["status"] for name, st in states.items()}
        if tune and all(status.get(t.name) in store.FINISHED for t in tune):
            chosen, table = tuning.choose(study, tuning.scores_of(study, tune, workdir, status))
            trials = tune + store.plan(study, base, study.trials(chosen))
            extra["tuning"] = tuning.record(chosen, table)
        else:
            trials, pending = tune, True
    else:
        trials = store.plan(study, base)
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
