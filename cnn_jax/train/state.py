"""The training state: parameters, BatchNorm statistics, optimizer state, step, rng."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from cnn_jax import conv as conv_ops
from cnn_jax.config import WEIGHTS  # noqa: F401  (raw, ema: the weights a state can evaluate)


class TrainState(train_state.TrainState):
    """``flax.training.train_state.TrainState`` plus ``batch_stats`` and a base ``rng``.

    Fields: ``step``, ``params``, ``batch_stats`` (``{}`` for models without BatchNorm),
    ``opt_state``, ``rng`` (a raw ``uint32[2]`` key; the key of step ``s`` is
    ``fold_in(rng, s)``, so randomness does not depend on where a run was resumed),
    ``loss_scale``, ``ema`` and the static ``apply_fn`` and ``tx``.
    """

    batch_stats: Any = None
    rng: jax.Array | None = None
    # float16 training: f32[2] = (loss scale, finite steps since the last change); else None.
    loss_scale: jax.Array | None = None
    # train.ema_decay > 0: the exponential moving average of the weights, {"params": ...,
    # "batch_stats": ...} (same structure, dtypes and layout as the raw ones), updated after
    # every optimizer step and checkpointed with them; None (no leaves at all) when off.
    ema: Any = None


def create(
    model: nn.Module,
    tx: optax.GradientTransformation,
    input_shape: tuple[int, ...],
    seed: int,
    *,
    dynamic_loss_scale: bool = False,
    ema: bool = False,
) -> TrainState:
    """Initialises ``model`` on zeros of ``(1, *input_shape)`` and wraps it in a state
    (with ``ema``: its moving average of the weights, starting at the initial weights).

    One ``seed`` drives everything: the init key (``rbg``) and the base key of the
    per-step (dropout, pooling, …) randomness (threefry, split from ``PRNGKey(seed)``).
    """
    _, base = jax.random.split(jax.random.PRNGKey(seed))
    # Initialisation draws from the "rbg" generator (XLA's RngBitGenerator): its program
    # compiles in a fraction of threefry's (LeNet-5's init: 2.6-2.9 s -> 1.0-1.2 s without
    # a compilation cache), which is most of a fresh process's time to its first step.
    init_key = jax.random.key(seed, impl="rbg")

    # The optimizer state is initialised in the same program (TrainState.create would run
    # tx.init op by op: a dozen small programs to compile for every new model).
    variables, opt_state, average = _initializer(model, tx, tuple(input_shape), ema)(init_key)
    return TrainState(
        # a strongly typed int32 from the start: the state of every later step, a host copy
        # and a restored checkpoint then share one signature (a weakly typed 0 made the test
        # evaluation of the best checkpoint compile the evaluation program a second time)
        step=np.zeros((), np.int32),
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        tx=tx,
        opt_state=opt_state,
        rng=base,
        loss_scale=jnp.array([2.0**15, 0.0], jnp.float32) if dynamic_loss_scale else None,
        ema=average,
    )




def with_weights(state: TrainState, weights: str = "raw") -> TrainState:
    """``state`` whose ``params`` and ``batch_stats`` are its raw weights (``"raw"``: the
    state itself) or their moving average (``"ema"``): what an evaluation of those weights
    runs (same structure, so the same compiled evaluation program)."""
    if weights == "raw":
        return state
    if state.ema is None:
        raise ValueError("this train state keeps no moving average of its weights (train.ema_decay=0)")
    return state.replace(params=state.ema["params"], batch_stats=state.ema["batch_stats"])


def scale_lr(state: TrainState, factor: float) -> TrainState:
    """Multiplies the injected learning-rate scale (``train.on_nan="lower_lr"``) by ``factor``."""
    def injected(x):  # optax's Inject(Stateful)HyperparamsState
        return hasattr(x, "hyperparams") and hasattr(x, "_replace")

    def visit(x):
        if injected(x):
            return x._replace(hyperparams={**x.hyperparams, "step_size": x.hyperparams["step_size"] * factor})
        return x

    return state.replace(opt_state=jax.tree.map(visit, state.opt_state, is_leaf=injected))


def abstract(state: TrainState, sharding=None) -> dict:
    """Shape/dtype (and optional sharding) structure of the checkpointed part of ``state``,
    the target for restoring a checkpoint whatever devices it was saved from."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
        if hasattr(x, "shape") else x,
        to_pytree(state),
    )


def to_pytree(state: TrainState) -> dict:
    """The checkpointed fields of ``state`` as a plain dict."""
    return {
        "step": state.step,
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
        "rng": state.rng,
        **({"loss_scale": state.loss_scale} if state.loss_scale is not None else {}),
        # (getattr: a state-like object of fewer fields, e.g. one saved before it existed)
        **({"ema": state.ema} if getattr(state, "ema", None) is not None else {}),
    }


def from_pytree(state: TrainState, tree: dict) -> TrainState:
    """``state`` with its checkpointed fields replaced by ``tree``."""
    return state.replace(**tree)


# The jitted initialisers of the last few models: the seeds of one config (same model object,
# see cnn_jax.train.assemble) share one compiled program instead of compiling it per seed.
_INITS: dict = {}


def _initializer(model, tx, input_shape: tuple[int, ...], ema: bool):
    key = (id(model), id(tx), input_shape, ema)
    if key not in _INITS:  # (an entry holds its model and tx, so their ids stay theirs)
        if len(_INITS) >= 4:
            _INITS.pop(next(iter(_INITS)))

        def init(key):
            pkey, dkey, qkey = jax.random.split(key, 3)
            variables = model.init(
                {"params": pkey, "dropout": dkey, "pool": qkey},
                jnp.zeros((1, *input_shape), jnp.float32),
                train=False,
            )
            average = None
            if ema:  # (copies: the train step donates the state, the average its own buffers)
                average = jax.tree.map(jnp.copy, {"params": variables["params"],
                                                  "batch_stats": variables.get("batch_stats", {})})
            return variables, tx.init(variables["params"]), average

        compiled = jax.jit(init, compiler_options=conv_ops.init_compiler_options())
        _INITS[key] = (compiled, model, tx)
    return _INITS[key][0]
