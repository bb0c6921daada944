"""Configuration: experiment files, ``--config.a.b=value`` overrides, validation.

An experiment file is a Python file exposing ``get_config()`` (optionally taking one
string argument, given as ``FILE.py:ARG``) that returns an ``ml_collections.ConfigDict``,
usually :func:`base_config` with a few fields changed. Overrides are typed by the field
they replace; an unknown key fails with a suggestion.
"""

from __future__ import annotations

import ast
import copy
import json
from typing import Any

import ml_collections

from cnn_jax.errors import UserError, suggest

# ``train.on_nan``: what a non-finite (NaN/Inf) loss does.
ON_NAN_STOP, ON_NAN_SKIP, ON_NAN_LOWER_LR = "stop", "skip", "lower_lr"
ON_NAN = (ON_NAN_STOP, ON_NAN_SKIP, ON_NAN_LOWER_LR)
# ``parallel.mode``: how the per-device step runs (see cnn_jax.train.parallel).
PARALLEL_MODES = ("auto", "single", "pmap", "sharded")
# ``train.checkpoint_evals``: which evaluations save a checkpoint.
CHECKPOINT_EVALS = ("all", "best", "end")


def base_config() -> ml_collections.ConfigDict:
    """Every key the library reads, with defaults. Experiments change what they study."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Model: `name` plus that model's options (filled in by `resolve_model_options`).
    c.model = ml_collections.ConfigDict()
    c.model.name = "lenet5"

    c.data = ml_collections.ConfigDict()
    c.data.name = "mnist5k"
    c.data.data_dir = ""  # "" -> $CNN_JAX_DATA_DIR, $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.data.batch_size = 128
    c.data.eval_batch_size = 500
    c.data.crop_padding = 0  # padded random crop (pixels of zero padding); 0 = off
    c.data.flip = False  # random horizontal flip
    c.data.train_split = "train"  # tfds split expressions, e.g. "train[:90%]"
    c.data.test_split = "test"
    # Validation for model selection: a stratified, seeded hold-out of the training split
    # (the same for every trial seed), a fraction in (0, 1) or a whole count; 0 = none.
    c.data.validation = 0.1
    c.data.prefetch = 2  # batches put on devices ahead of the step (0: synchronous)
    # Input pipeline (cnn_jax.data): decoded into host memory, or streamed (read, decoded and
    # augmented per batch in grain worker processes); both give the same batches.
    c.data.in_memory = "auto"  # auto (streams a split above max_memory_gb) | true | false
    c.data.max_memory_gb = 4.0  # the most host memory (10^9 bytes) one decoded split may take
    c.data.workers = 2  # grain processes decoding a streamed split (0: in the training process)
    c.data.crop_size = 0  # > 0: ImageNet-style views (random-resized crop; resize + centre crop)
    c.data.image_size = 0  # > 0: images resized to this square when decoded (shorter side)
    c.data.path = ""  # data.name=image_folder: DIR of class subfolders (or DIR/train, ...)
    c.data.skip_bad_images = False  # skip (and count) images that do not decode

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adam"
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "constant"
    c.optim.warmup_steps = 0
    c.optim.warmup_epochs = 0
    c.optim.boundaries = (0.5, 0.75)  # piecewise: fractions of training (or step counts)
    c.optim.scales = (0.1, 0.1)
    c.optim.momentum = 0.9
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.rms_decay = 0.9
    c.optim.weight_decay = 0.0
    c.optim.grad_clip_norm = 0.0  # 0 = off

    c.train = ml_collections.ConfigDict()
    c.train.epochs = 10
    c.train.steps = 0  # > 0: train this many steps instead of `epochs`
    c.train.loss = "softmax_cross_entropy"
    c.train.label_smoothing = 0.0
    c.train.eval_every_epochs = 1
    c.train.checkpoint_every_steps = 0  # 0 = at every evaluation only
    # Which evaluations checkpoint: "all"; "best" (those that improve validation accuracy,
    # and the last step); or "end" (the last step only; the best state waits in memory and is
    # saved with the next checkpoint): fewer saves for short runs; a resume is exact either way.
    c.train.checkpoint_evals = "all"
    c.train.log_every_steps = 20
    c.train.keep_latest = 2
    c.train.keep_best = 1  # best checkpoints by validation accuracy (needs data.validation)
    # Stop when validation accuracy has not improved for this many evaluations; 0 = off.
    c.train.early_stopping_patience = 0
    # A non-finite (NaN/Inf) loss: "stop" (error naming the step, last good checkpoint
    # kept), "skip" (that step changes nothing) or "lower_lr" (back to the last good
    # checkpoint with the learning rate times nan_lr_factor, at most nan_max_retries times).
    c.train.on_nan = ON_NAN_STOP
    c.train.nan_lr_factor = 0.1
    c.train.nan_max_retries = 3

    c.parallel = ml_collections.ConfigDict()
    c.parallel.mode = "auto"  # auto | single | pmap | sharded (see cnn_jax.train.parallel)
    return c


# Keys that may differ when resuming a workdir (they do not change the result).
RESUME_SAFE_KEYS = ("data.data_dir", "data.prefetch", "train.log_every_steps", "parallel.mode",
                    "data.workers", "data.in_memory", "data.max_memory_gb", "train.checkpoint_evals")


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_value(key: str, text: str, current: Any) -> Any:
    """Converts override ``text`` to the type of the ``current`` value of ``key``."""
    if isinstance(current, (dict, ml_collections.ConfigDict)):
        raise UserError(f"config key {key!r} is a group; set one of its keys ({key}.NAME=...)")
    if current is None:
        return _literal(text)
    try:
        if isinstance(current, bool):
            return _parse_bool(text)
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, str):
            return text
        if isinstance(current, (tuple, list)):
            if text.strip()[:1] in "([":
                v = _literal(text)
                if not isinstance(v, (tuple, list)):
                    raise ValueError
            else:  # comma-separated, each item typed like the current first item
                items = [t.strip() for t in text.split(",") if t.strip()]
                v = [parse_value(key, t, current[0]) if current else _literal(t) for t in items]
            return type(current)(v)
    except (ValueError, UserError):
        pass
    kind = type(current).__name__
    raise UserError(
        f"invalid value for {key}: {text!r} is not a valid {kind} (current value {current!r})"
    )


def _keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    out = []
    for k, v in cfg.items():
        out.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            out.extend(_keys(v, prefix + k + "."))
    return out


def _free_form(cfg, option: str) -> bool:
    """Whether model option ``option`` is a dict of kind-specific options (e.g.
    ``pool_options``), which takes new keys: read from the model's own declaration."""
    from cnn_jax import models

    name = cfg.model.get("name")
    return name in models.MODELS and isinstance(models.options(name).get(option), dict)


def _node_for(cfg: ml_collections.ConfigDict, key: str):
    """The group holding dotted ``key`` (created for a model option the experiment's config
    lacks but its model has, and for a new key of a free-form options dict); an unknown key
    fails with a suggestion."""
    parts = key.split(".")
    node = cfg
    for i, p in enumerate(parts):
        here = ".".join(parts[: i + 1])
        if not isinstance(node, ml_collections.ConfigDict) or p not in node:
            if i == 1 and parts[0] == "model" and _model_has_option(cfg, p):
                from cnn_jax import models

                with node.unlocked():
                    node[p] = _to_config_value(models.options(cfg.model.name)[p])
            elif (i == 2 == len(parts) - 1 and parts[0] == "model" and _free_form(cfg, parts[1])
                  and isinstance(node, ml_collections.ConfigDict)):
                pass  # a new key of a free-form options dict (checked by the pool kind)
            else:
                raise UserError(
                    f"unknown config key {here!r}{suggest(here, _keys(cfg) + _model_keys(cfg))}"
                )
        if i < len(parts) - 1:
            node = node[p]
    return node, parts[-1]


def set_key(cfg: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Applies one command-line override ``key=text`` (parsed to the type of the field)."""
    node, last = _node_for(cfg, key)
    _assign(node, key, last, parse_value(key, text, node[last] if last in node else None))


def set_value(cfg: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Sets dotted ``key`` to the Python ``value``: the one typed way to change a config
    (sweeps use it; no text round trip). Unknown keys fail as on the command line; a model
    option missing from the experiment's config is added when the model has it; a string
    given for a numeric or boolean field is parsed as on the command line."""
    node, last = _node_for(cfg, key)
    if last in node and isinstance(value, str):
        current = node[last]
        if isinstance(current, (bool, int, float)) and current is not None:
            value = parse_value(key, value, current)
    _assign(node, key, last, value)


def _assign(node, key: str, last: str, value: Any) -> None:
    current = node[last] if last in node else None
    if isinstance(current, ml_collections.ConfigDict):
        raise UserError(f"config key {key!r} is a group; set one of its keys ({key}.NAME=...)")
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    with node.ignore_type():
        node[last] = value


def _model_has_option(cfg, key: str) -> bool:
    from cnn_jax import models

    return cfg.model.get("name") in models.MODELS and key in models.options(cfg.model.name)


def _model_keys(cfg) -> list[str]:
    from cnn_jax import models

    if cfg.model.get("name") not in models.MODELS:
        return []
    return ["model." + k for k in models.options(cfg.model.name)]


def _to_config_value(v: Any) -> Any:
    if isinstance(v, dict):
        return ml_collections.ConfigDict(v)
    if isinstance(v, list):
        return tuple(v)
    return v


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: list[tuple[str, str]]):
    """Applies ``[(dotted_key, text), ...]``; ``model.name`` first so that model options
    of the chosen model are recognised whatever the order on the command line."""
    cfg = copy.deepcopy(cfg)
    ordered = sorted(overrides, key=lambda kv: kv[0] != "model.name")
    for key, text in ordered:
        set_key(cfg, key, text)
        if key == "model.name":
            _drop_foreign_model_options(cfg)
    return cfg


def _drop_foreign_model_options(cfg: ml_collections.ConfigDict) -> None:
    """After switching ``model.name``, options the new model lacks (set by the experiment
    for its own model, e.g. ``pool`` when switching to ``mlp``) no longer apply."""
    from cnn_jax import models

    if cfg.model.name not in models.MODELS:
        return
    valid = models.options(cfg.model.name)
    with cfg.model.unlocked():
        for k in [k for k in cfg.model if k != "name" and k not in valid]:
            del cfg.model[k]


def resolve(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Fills in the model's default options and validates names and sizes."""
    from cnn_jax import data, losses, models, optim, pooling
    from cnn_jax.activations import ACTIVATIONS
    from cnn_jax.layers import NORMS, compute_dtype

    cfg = copy.deepcopy(cfg)
    base = base_config()
    for group in base:  # groups and keys a config lacks (e.g. saved before they existed)
        if group not in cfg:
            cfg[group] = copy.deepcopy(base[group])
        elif isinstance(base[group], ml_collections.ConfigDict):
            with cfg[group].unlocked():
                for k in base[group]:
                    if k not in cfg[group]:
                        cfg[group][k] = copy.deepcopy(base[group][k])
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
                cfg.model[k] = _to_config_value(v)
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
    data.DATASETS.get(cfg.data.name)
    with cfg.data.ignore_type():
        cfg.data.in_memory = str(cfg.data.in_memory).lower()  # True / "TRUE" -> "true"
    _choice(cfg, "data.in_memory", data.registry.IN_MEMORY_CHOICES)
    for key in ("data.workers", "data.crop_size", "data.image_size"):
        _check(cfg, key, lambda v: isinstance(v, int) and v >= 0, "a non-negative integer")
    _check(cfg, "data.max_memory_gb", lambda v: v > 0, "a positive number (GB)")
    if cfg.data.name == "image_folder" and not cfg.data.path:
        raise UserError("data.name=image_folder needs data.path=DIR, a folder of class subfolders "
                        "of images (or of train/validation/test folders of them)")
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
    if cfg.train.epochs == 0 and cfg.train.steps == 0:
        raise UserError("nothing to train: set train.epochs or train.steps to a positive value")
    if not 0 <= cfg.train.label_smoothing < 1:
        raise UserError(f"train.label_smoothing must be in [0, 1), got {cfg.train.label_smoothing}")
    if "dropout" in cfg.model and not 0 <= cfg.model.dropout < 1:
        raise UserError(f"model.dropout must be in [0, 1), got {cfg.model.dropout}")
    return _mark_resolved(cfg)


def _mark_resolved(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    # The resolved config's own text, kept beside it (not a config field): a later change
    # to the config makes :func:`resolved` resolve it again.
    object.__setattr__(cfg, "_resolved_json", to_json(cfg))
    return cfg


def resolved(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``cfg`` itself if it is the unchanged output of :func:`resolve` (or was read back with
    ``from_json(..., resolved=True)``), else ``resolve(cfg)``: a config is resolved once and
    handed down resolved."""
    if getattr(cfg, "_resolved_json", None) == to_json(cfg):
        return cfg
    return resolve(cfg)


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


def to_json(cfg: ml_collections.ConfigDict) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=list)


def from_json(text: str, *, resolved: bool = False) -> ml_collections.ConfigDict:
    """A config from :func:`to_json` text; ``resolved=True`` marks it as the output of
    :func:`resolve` (for a config that was resolved before it was written)."""
    def fix(d):
        return {k: fix(v) if isinstance(v, dict) else (tuple(v) if isinstance(v, list) else v)
                for k, v in d.items()}

    cfg = ml_collections.ConfigDict(fix(json.loads(text)))
    return _mark_resolved(cfg) if resolved else cfg


def diff(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict, ignore=RESUME_SAFE_KEYS):
    """Dotted keys whose values differ between two configs, as ``[(key, a, b)]``."""
    fa, fb = flatten(a), flatten(b)
    out = []
    for k in sorted(set(fa) | set(fb)):
        if k in ignore:
            continue
        va, vb = fa.get(k, "<missing>"), fb.get(k, "<missing>")
        if _norm(va) != _norm(vb):
            out.append((k, va, vb))
    return out


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def flatten(cfg, prefix: str = "") -> dict[str, Any]:
    """``{dotted_key: value}`` of a config (or a nested dict), leaves only."""
    d = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else cfg
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out



