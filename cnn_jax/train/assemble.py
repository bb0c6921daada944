"""Assembly: everything a run needs, built once from a resolved config.

``build(cfg)`` loads the splits and creates the model, optimizer, initial state and loss
functions (a :class:`Setup`); ``make_runner`` picks the parallel mode and returns the
:class:`~cnn_jax.train.parallel.Runner` that runs the pure steps. ``fit``, ``evaluate``,
the vmapped seeds, ``restore`` and ``cnn-jax bench`` all assemble through here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from cnn_jax import config as config_lib
from cnn_jax import data, losses, models, optim
from cnn_jax.errors import UserError
from cnn_jax.train import state as state_lib
from cnn_jax.train.parallel import Runner


@dataclasses.dataclass
class Setup:
    """Everything built from a resolved config."""

    cfg: ml_collections.ConfigDict
    model: Any
    train: data.Split | None
    test: data.Split
    validation: data.Split | None  # for selection; None when data.validation is 0
    state: state_lib.TrainState  # the initial state (seed ``cfg.seed``)
    loss_fn: Any
    eval_loss_fn: Any
    steps_per_epoch: int
    total_steps: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.test.spec.shape)

    def sizes(self) -> dict[str, int]:
        """Examples per split (``summary.json``'s ``data``)."""
        return {
            "train": len(self.train) if self.train is not None else None,
            "validation": len(self.validation) if self.validation is not None else 0,
            "test": len(self.test),
        }


def model_options(cfg: ml_collections.ConfigDict) -> dict:
    opts = cfg.model.to_dict()
    opts.pop("name")
    return opts


def build(cfg: ml_collections.ConfigDict, *, with_train: bool = True, load=None) -> Setup:
    """Loads the data, creates the model, optimizer and initial state for resolved ``cfg``.

    ``load`` reads a split (the signature of :func:`cnn_jax.data.load`, e.g. a caching
    loader); ``None`` uses ``cnn_jax.data.load``, looked up at the call."""
    load = data.load if load is None else load
    data_dir = cfg.data.data_dir or data.default_data_dir()
    opts = data_options(cfg)
    test = load(cfg.data.name, cfg.data.test_split, data_dir, opts)
    spec = test.spec  # the batches' image shape; an image folder's classes
    train = validation = None
    if with_train or cfg.data.validation:
        # The hold-out is taken from the training split, so restoring a run for
        # evaluation rebuilds the same validation examples.
        full = load(cfg.data.name, cfg.data.train_split, data_dir, opts)
        if cfg.data.validation and spec.validation_split:  # the dataset's own (image folders)
            train, validation = full, load(cfg.data.name, "validation", data_dir, opts)
        else:
            train, validation = data.hold_out(full, cfg.data.validation)
        if not with_train:
            train = None
    n_train = len(train) if train is not None else cfg.data.batch_size
    if with_train and cfg.data.batch_size > n_train:
        raise UserError(
            f"data.batch_size {cfg.data.batch_size} is larger than the training split of "
            f"{cfg.data.name!r} ({n_train} examples); choose at most {n_train}"
        )
    spe = max(n_train // cfg.data.batch_size, 1)
    total = cfg.train.steps or cfg.train.epochs * spe
    model, state, loss_fn, eval_loss_fn = training_parts(cfg, spec.shape, spec.num_classes, total, spe)
    return Setup(cfg, model, train, test, validation, state, loss_fn, eval_loss_fn, spe, total)


class ProgramCache:
    """The model, optimizer and loss functions of the last config built, keyed by everything
    but the seed, and the step runners made for them: the seeds of one config (a sweep
    worker trains them one after another) share the same objects, so the runner's jitted
    steps are reused instead of compiled again for every seed (their static ``apply_fn`` is
    the same object). A new config replaces the parts and drops their runners."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        """Drops the parts and runners: the next build traces and compiles afresh (for a
        benchmark that compares programs built from one config under different options)."""
        self.key: tuple | None = None
        self.parts: tuple | None = None
        self.runners: dict[tuple, Runner] = {}

    def get_parts(self, key: tuple, make):
        if key != self.key:
            self.key, self.parts, self.runners = key, make(), {}
        return self.parts

    def get_runner(self, key: tuple, make) -> Runner:
        if key not in self.runners:
            self.runners[key] = make()
        return self.runners[key]


# This process's cache: every build and make_runner goes through it.
PROGRAMS = ProgramCache()


def _frozen(v):
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _frozen(x)) for k, x in v.items()))
    return v


def _parts_key(cfg, shape, num_classes, total, spe) -> tuple:
    flat = config_lib.flatten(cfg)
    for k in ("seed", "data.data_dir", *config_lib.RESUME_SAFE_KEYS):
        flat.pop(k, None)
    return (_frozen(flat), tuple(shape), num_classes, total, spe)


def data_options(cfg: ml_collections.ConfigDict) -> data.Options:
    """How this process reads the data (``data.*`` keys; a streamed split reads only this
    process's rows of each batch)."""
    return data.Options.of(cfg.data, process_index=jax.process_index(), process_count=jax.process_count())


def training_parts(cfg: ml_collections.ConfigDict, shape, num_classes: int, total: int, spe: int):
    """``(model, state, loss_fn, eval_loss_fn)`` for ``cfg`` on inputs of ``shape`` without
    touching data (``build`` and ``cnn-jax bench``); the state is ``cfg.seed``'s."""
    key = _parts_key(cfg, shape, num_classes, total, spe)
    model, tx, loss_fn, eval_loss_fn = PROGRAMS.get_parts(
        key, lambda: _make_parts(cfg, num_classes, total, spe))
    state = state_lib.create(
        model, tx, shape, cfg.seed,
        dynamic_loss_scale=cfg.model.get("dtype") == "float16",
        ema=cfg.train.ema_decay > 0,
    )
    return model, state, loss_fn, eval_loss_fn


def _make_parts(cfg, num_classes: int, total: int, spe: int):
    model = models.create(cfg.model.name, num_classes, **model_options(cfg))
    tx = optim.build(cfg.optim, total, spe)
    if cfg.train.on_nan == config_lib.ON_NAN_LOWER_LR:
        # A learning-rate multiplier that lives in (and is checkpointed with) opt_state.
        tx = optax.chain(tx, optax.inject_hyperparams(optax.scale)(step_size=1.0))
    loss = losses.LOSSES.get(cfg.train.loss)
    loss_fn = functools.partial(loss, num_classes=num_classes, label_smoothing=cfg.train.label_smoothing)
    eval_loss_fn = functools.partial(loss, num_classes=num_classes)
    return model, tx, loss_fn, eval_loss_fn


def initial_state(s: Setup, seed: int) -> state_lib.TrainState:
    """The initial state of ``s``'s model and optimizer for another ``seed``."""
    return state_lib.create(
        s.model, s.state.tx, s.input_shape, seed,
        dynamic_loss_scale=s.cfg.model.get("dtype") == "float16",
        ema=s.cfg.train.ema_decay > 0,
    )


# ``parallel.mode=auto`` on CPU host devices shards the batch only when each device gets at
# least this many multiply-adds per step (forward): measured on 2 cores at batch 128,
# sharding over 2 host devices made the seeds' CIFAR net (290 M per device) 1.4-1.6x
# faster and LeNet-5 (27 M per device) 0.85x as fast (benchmarks/RESULTS.md).
AUTO_SHARD_MIN_MACS = 100_000_000


def auto_mode(model, shape, batch_size: int) -> str:
    """``parallel.mode=auto``: ``single`` or ``sharded`` over several CPU host devices (one
    process) by the size of the step; elsewhere the Runner's rule (sharded over >1 device)."""
    devices = jax.devices()
    if len(devices) < 2 or jax.process_count() > 1 or any(d.platform != "cpu" for d in devices):
        return "auto"
    if batch_size % len(devices):
        return "single"
    from cnn_jax import summary

    macs = summary.summarize_model(model, tuple(shape)).total_macs * batch_size // len(devices)
    return "sharded" if macs >= AUTO_SHARD_MIN_MACS else "single"


def make_runner(cfg: ml_collections.ConfigDict, loss_fn, eval_loss_fn, model=None, shape=None) -> Runner:
    """The step runner for ``cfg`` (``model`` and input ``shape`` let ``parallel.mode=auto``
    choose by the size of the step, see :func:`auto_mode`)."""
    mode = cfg.parallel.mode
    if mode == "auto" and model is not None:
        mode = auto_mode(model, shape, cfg.data.batch_size)
    skip = cfg.train.on_nan == config_lib.ON_NAN_SKIP
    options = step_options(cfg)
    # a runner's jitted steps serve every seed of the config (the functions key by identity),
    # under the convolution settings and compile options they were traced and compiled with
    key = (mode, loss_fn, eval_loss_fn, skip, tuple(sorted(options.items())), _program_settings())
    return PROGRAMS.get_runner(key, lambda: Runner(mode, loss_fn, eval_loss_fn, skip_nonfinite=skip, **options))


def _program_settings() -> tuple:
    """What, besides the config, changes the step program a runner compiles: the
    convolution mode and cache files (``CNN_JAX_CONV*``) and XLA:CPU's compile options."""
    from cnn_jax import conv, conv_tuning

    env = tuple(os.environ.get(k, "") for k in (conv_tuning.ENV, conv_tuning.CACHE_ENV, conv_tuning.USER_CACHE_ENV))
    return env, tuple(sorted((conv.compiler_options() or {}).items()))


def step_options(cfg: ml_collections.ConfigDict) -> dict:
    """The train step's options for gradient accumulation and the moving average of the
    weights (:func:`cnn_jax.train.step.train_step`), only those that are on: with both off
    the step is the very function it was before they existed."""
    t, out = cfg.train, {}
    if t.grad_accum_steps > 1:
        out["accum_steps"] = int(t.grad_accum_steps)
    if t.ema_decay > 0:
        out.update(ema_decay=float(t.ema_decay), ema_warmup=bool(t.ema_warmup))
    return out


def eval_batch_size(cfg: ml_collections.ConfigDict, runner: Runner) -> int:
    """``data.eval_batch_size`` rounded up to a multiple of the runner's devices."""
    return -(-cfg.data.eval_batch_size // runner.num_devices) * runner.num_devices


def num_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
