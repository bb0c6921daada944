"""Configuration: experiment files, ``--config.a.b=value`` overrides, validation.

An experiment file is a Python file exposing ``get_config()`` (optionally taking one
string argument, given as ``FILE.py:ARG``) that returns an ``ml_collections.ConfigDict``,
usually :func:`base_config` with a few fields changed. Overrides are typed by the field
they replace; an unknown key fails with a suggestion.

The defaults live in :mod:`cnn_jax.config.defaults`, overrides in
:mod:`cnn_jax.config.overrides`, JSON text and comparison in
:mod:`cnn_jax.config.serialize`; :func:`resolve` (here) fills in a model's options and
validates a config. Every public name is importable from ``cnn_jax.config``.
"""

from __future__ import annotations

import copy

import ml_collections

from cnn_jax.config.defaults import (
    CHECKPOINT_EVALS,
    ON_NAN,
    ON_NAN_LOWER_LR,
    ON_NAN_SKIP,
    ON_NAN_STOP,
    PARALLEL_MODES,
    RESUME_SAFE_KEYS,
    WEIGHTS,
    base_config,
)
from cnn_jax.config.overrides import (
    apply_overrides,
    parse_value,
    set_key,
    set_value,
    to_config_value,
)
from cnn_jax.config.serialize import (
    diff,
    flatten,
    from_json,
    is_marked_resolved,
    mark_resolved,
    to_json,
)
from cnn_jax.errors import UserError, suggest

__all__ = [
    "CHECKPOINT_EVALS", "ON_NAN", "ON_NAN_LOWER_LR", "ON_NAN_SKIP", "ON_NAN_STOP",
    "PARALLEL_MODES", "RESUME_SAFE_KEYS", "WEIGHTS", "apply_overrides", "base_config", "diff", "flatten",
    "from_json", "parse_value", "resolve", "resolved", "set_key",
    "set_value", "to_json", "with_values",
]


def with_values(cfg: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
    """``cfg`` (a copy) with ``{dotted key: value}`` set by :func:`set_value`, resolved;
    ``model.name`` first, so that the options of the new model are known."""
    if "model.name" in values:
        cfg = apply_overrides(cfg, [("model.name", str(values["model.name"]))])
    else:
        cfg = copy.deepcopy(cfg)
    for key, value in values.items():
        if key != "model.name":
            set_value(cfg, key, value)
    return resolve(cfg)


def resolve(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Fills in the model's default options and validates names and sizes."""
    cfg = copy.deepcopy(cfg)
    _fill_missing(cfg)
    _resolve_model(cfg)
    _check_data(cfg)
    _check_training(cfg)
    profile_steps(cfg.train.get("profile_steps", ""))
    if "dropout" in cfg.model and not 0 <= cfg.model.dropout < 1:
        raise UserError(f"model.dropout must be in [0, 1), got {cfg.model.dropout}")
    return mark_resolved(cfg)


def resolved(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``cfg`` itself if it is the unchanged output of :func:`resolve` (or was read back with
    ``from_json(..., resolved=True)``), else ``resolve(cfg)``: a config is resolved once and
    handed down resolved."""
    if is_marked_resolved(cfg):
        return cfg
    return resolve(cfg)


def _fill_missing(cfg: ml_collections.ConfigDict) -> None:
    """Adds the groups and keys a config lacks (e.g. saved before they existed)."""
    base = base_config()
    for group in base:
        if group not in cfg:
            cfg[group] = copy.deepcopy(base[group])
        elif isinstance(base[group], ml_collections.ConfigDict):
            with cfg[group].unlocked():
                for k in base[group]:
                    if k not in cfg[group]:
                        cfg[group][k] = copy.deepcopy(base[group][k])


def _resolve_model(cfg: ml_collections.ConfigDict) -> None:
    """The model's name and options checked, its missing options filled in with defaults,
    its pooling kinds resolved."""
    from cnn_jax import models, pooling
    from cnn_jax.activations import ACTIVATIONS
    from cnn_jax.layers import NORMS, compute_dtype

    models.MODELS.get(cfg.model.name)
    opts = models.options(cfg.model.name)
    for k in cfg.model:
        if k != "name" and k not in opts:
            raise UserError(
                f"model {cfg.model.name!r} has no option {k!r}{suggest(k, opts)}; "
                f"valid options: {', '.join(sorted(opts))}"
            )
    with cfg.model.unlocked():
        for k, v in opts.items():
            if k not in cfg.model:
                cfg.model[k] = to_config_value(v)
    if "pool" in cfg.model:  # one kind, or one per pooling site ("max,avg" or a tuple)
        others = {k: v.to_dict() if isinstance(v, ml_collections.ConfigDict) else v
                  for k, v in cfg.model.items() if k not in ("name", "pool")}
        with cfg.model.ignore_type():
            cfg.model.pool = models.resolve_pool(cfg.model.name, cfg.model.pool, **others)
    if "head_pool" in cfg.model and cfg.model.head_pool:
        pooling.HEADS.get(cfg.model.head_pool)
    if "activation" in cfg.model:
        ACTIVATIONS.get(cfg.model.activation)
    if "norm" in cfg.model:
        NORMS.get(cfg.model.norm)
    if "dtype" in cfg.model:
        compute_dtype(cfg.model.dtype)


def _check_data(cfg: ml_collections.ConfigDict) -> None:
    from cnn_jax import data

    data.DATASETS.get(cfg.data.name)
    with cfg.data.ignore_type():
        cfg.data.in_memory = str(cfg.data.in_memory).lower()  # True / "TRUE" -> "true"
    _choice(cfg, "data.in_memory", data.registry.IN_MEMORY_CHOICES)
    for key in ("data.workers", "data.crop_size", "data.image_size"):
        _check(cfg, key, lambda v: isinstance(v, int) and v >= 0, "a non-negative integer")
    _check(cfg, "data.max_memory_gb", lambda v: v > 0, "a positive number (GB)")
    data.augment.check(cfg.data)
    if cfg.data.name == "image_folder" and not cfg.data.path:
        raise UserError("data.name=image_folder needs data.path=DIR, a folder of class subfolders "
                        "of images (or of train/validation/test folders of them)")


def _check_training(cfg: ml_collections.ConfigDict) -> None:
    """The optimizer, loss, schedule and training options: names, choices and ranges."""
    from cnn_jax import losses, optim

    optim.OPTIMIZERS.get(cfg.optim.name)
    optim.SCHEDULES.get(cfg.optim.schedule)
    losses.LOSSES.get(cfg.train.loss)
    _choice(cfg, "train.on_nan", ON_NAN)
    _choice(cfg, "train.checkpoint_evals", CHECKPOINT_EVALS)
    _choice(cfg, "parallel.mode", PARALLEL_MODES)
    if not 0 < cfg.train.nan_lr_factor < 1:
        raise UserError(f"train.nan_lr_factor must be in (0, 1), got {cfg.train.nan_lr_factor}")
    for key in ("data.batch_size", "data.eval_batch_size", "train.eval_every_epochs",
                "train.keep_latest", "train.log_every_steps"):
        _check(cfg, key, lambda v: v >= 1, "a positive integer")
    for key in ("train.epochs", "train.steps", "train.checkpoint_every_steps", "train.keep_best",
                "train.nan_max_retries", "train.early_stopping_patience",
                "data.crop_padding", "data.prefetch", "optim.warmup_steps", "optim.warmup_epochs"):
        _check(cfg, key, lambda v: v >= 0, "a non-negative integer")
    for key in ("optim.learning_rate", "optim.weight_decay", "optim.grad_clip_norm",
                "train.label_smoothing"):
        _check(cfg, key, lambda v: v >= 0, "a non-negative number")
    _check_validation(cfg)
    _check_ema_accum(cfg)
    if cfg.train.epochs == 0 and cfg.train.steps == 0:
        raise UserError("nothing to train: set train.epochs or train.steps to a positive value")
    if not 0 <= cfg.train.label_smoothing < 1:
        raise UserError(f"train.label_smoothing must be in [0, 1), got {cfg.train.label_smoothing}")


def _check_validation(cfg: ml_collections.ConfigDict) -> None:
    """``data.validation``'s form, and no selection on a validation split that is off."""
    from cnn_jax.data.validation import holdout_size

    holdout_size(cfg.data.validation, 1 << 62)  # its form; the size is checked on the data
    if cfg.data.validation == 0:
        for key, off in (("train.keep_best", 0), ("train.early_stopping_patience", 0)):
            group, name = key.split(".")
            if cfg[group][name] != off:
                raise UserError(
                    f"{key}={cfg[group][name]} selects on the validation split, but "
                    f"data.validation=0 turns it off; set data.validation (e.g. 0.1) or "
                    f"{key}={off} (the test split is never used for selection)"
                )


def _check_ema_accum(cfg: ml_collections.ConfigDict) -> None:
    """The moving average of the weights and gradient accumulation: ranges, and the batch
    splitting into equal micro-batches (per device: checked by the step runner)."""
    t = cfg.train
    if not 0 <= t.ema_decay < 1:
        raise UserError(f"train.ema_decay must be in [0, 1) (0 = off), got {t.ema_decay!r}")
    if t.ema_warmup and not t.ema_decay:
        raise UserError("train.ema_warmup=True needs a moving average: set train.ema_decay in (0, 1)")
    _choice(cfg, "train.select_weights", WEIGHTS)
    if t.select_weights == "ema" and not t.ema_decay:
        raise UserError("train.select_weights='ema' needs a moving average: set train.ema_decay in (0, 1)")
    _check(cfg, "train.grad_accum_steps", lambda v: isinstance(v, int) and v >= 1, "a positive integer (1 = off)")
    k, b = t.grad_accum_steps, cfg.data.batch_size
    if b % k:
        lo, hi = (b // k) * k, (b // k + 1) * k
        raise UserError(
            f"data.batch_size {b} does not split into train.grad_accum_steps={k} equal "
            f"micro-batches; choose a batch size of a multiple of {k} (e.g. {f'{lo} or ' if lo else ''}{hi})"
        )


def _choice(cfg, key, choices):
    group, name = key.split(".")
    v = cfg[group][name]
    if v not in choices:
        raise UserError(f"invalid {key} {v!r}{suggest(str(v), choices)}; choose one of: {', '.join(choices)}")


def _check(cfg, key, ok, what):
    group, name = key.split(".")
    v = cfg[group][name]
    if not ok(v):
        raise UserError(f"{key} must be {what}, got {v!r}")


def profile_steps(spec: str) -> tuple[int, int] | None:
    """``train.profile_steps``: ``"A:B"`` as ``(A, B)`` with ``1 <= A <= B`` (steps counted
    from 1); ``""`` is ``None`` (no trace); anything else a one-line :class:`UserError`."""
    if spec in ("", None):
        return None
    try:
        a, b = (int(x) for x in str(spec).split(":"))
    except ValueError:
        a = b = 0
    if not 1 <= a <= b:
        raise UserError(f"train.profile_steps {spec!r}: give A:B with 1 <= A <= B (steps "
                        "counted from 1, e.g. 10:15), or '' for no trace")
    return a, b
