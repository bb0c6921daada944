"""Pure per-device train and eval steps.

Written once with an optional ``axis_name``: under ``jax.pmap`` gradients, BatchNorm
statistics (computed over the global batch via :func:`cnn_jax.layers.batch_axis`) and
metrics are reduced over that axis; with ``axis_name=None`` the same function runs on one
device or as a global-view sharded ``jit`` (where XLA partitions the global computation).
The step never branches on a model, pool or dataset name: those are resolved when the
``apply_fn`` and ``loss_fn`` are built.

Metrics are returned as sums (``loss``, ``correct``, ``correct5``, ``nonfinite``) and a
``count`` so that they add up exactly over batches, devices and padded (masked)
evaluation batches; ``first_nonfinite`` (the first step whose loss or gradients were not
finite, or ``NO_STEP``) combines by minimum — see :func:`combine`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from cnn_jax.layers import batch_axis
from cnn_jax.train.state import TrainState

LossFn = Callable[[jax.Array, jax.Array], jax.Array]  # (logits, labels) -> f32[B]
NO_STEP = 2**31 - 1
# Weight of auxiliary classifiers' losses (models sow their logits into the "aux_logits"
# collection in training mode, e.g. GoogLeNet's with aux_logits=True): 0.3 as in
# Szegedy et al. 2015 and torchvision.
AUX_LOSS_WEIGHT = 0.3
# Gradient accumulation's scan over micro-batches, unrolled (k copies of the pass in one
# program): on XLA:CPU a rolled scan (a while loop) ran LeNet-5's accumulated step about 4x
# and a small CIFAR CNN's about 7x slower than the unrolled one; against optax.MultiSteps
# see benchmarks/RESULTS.md ("Gradient accumulation"). Read when a step is traced.
ACCUM_UNROLL = True


def _sums(logits: jax.Array, labels: jax.Array, loss: jax.Array, mask: jax.Array) -> dict:
    mask = mask.astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    k = min(5, logits.shape[-1])
    topk = lax.top_k(logits, k)[1]
    correct5 = jnp.any(topk == labels[:, None], axis=-1).astype(jnp.float32)
    return {
        "loss": jnp.sum(loss * mask),
        "correct": jnp.sum(correct * mask),
        "correct5": jnp.sum(correct5 * mask),
        "count": jnp.sum(mask),
    }


def _variables(state: TrainState, params) -> dict:
    v = {"params": params}
    if state.batch_stats:
        v["batch_stats"] = state.batch_stats
    return v


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def train_step(
    state: TrainState,
    batch: dict,
    *,
    loss_fn: LossFn,
    axis_name: str | None = None,
    skip_nonfinite: bool = False,
    accum_steps: int = 1,
    ema_decay: float = 0.0,
    ema_warmup: bool = False,
) -> tuple[TrainState, dict]:
    """One optimisation step on ``batch = {"image": f32[B,H,W,C], "label": i32[B]}``.

    Randomness (dropout, stochastic pooling) uses ``fold_in(state.rng, state.step)``
    (and the device index under ``axis_name``). With ``skip_nonfinite`` a step whose loss
    or gradients are not finite leaves parameters, optimizer state, BatchNorm statistics
    and their moving average unchanged (the step counter still advances).

    ``accum_steps`` k > 1: the batch is split into k micro-batches (rows ``j::k``, so each
    is spread over all devices) whose mean gradient makes the one optimizer step, see
    :func:`_accumulated`. ``ema_decay`` > 0: ``state.ema`` moves towards the new weights
    after the step, see :func:`_ema_update`. The defaults leave the step as it was.
    """
    grads, logits, loss, batch_stats, scale = _gradients(state, batch, loss_fn, axis_name, accum_steps)
    finite = jnp.all(jnp.isfinite(loss))
    grads_finite = _all_finite(grads) if (skip_nonfinite or scale is not None) else finite
    if axis_name is not None:
        finite = lax.pmin(finite.astype(jnp.int32), axis_name).astype(bool)
        grads_finite = lax.pmin(grads_finite.astype(jnp.int32), axis_name).astype(bool)
    if skip_nonfinite:
        finite = finite & grads_finite
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    if scale is not None:
        new_state = _scale_update(state, new_state, scale, grads_finite)
    if skip_nonfinite:
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        new_state = new_state.replace(
            params=jax.tree.map(keep, new_state.params, state.params),
            opt_state=jax.tree.map(keep, new_state.opt_state, state.opt_state),
            batch_stats=jax.tree.map(keep, new_state.batch_stats, state.batch_stats),
        )
    if ema_decay:
        applied = (finite if skip_nonfinite else True) & (grads_finite if scale is not None else True)
        new_state = _ema_update(state, new_state, ema_decay, ema_warmup, applied)
    metrics = _sums(logits, batch["label"], loss, jnp.ones_like(batch["label"]))
    if axis_name is not None:
        metrics = lax.psum(metrics, axis_name)
    metrics["nonfinite"] = (~finite).astype(jnp.float32)
    metrics["first_nonfinite"] = jnp.where(finite, NO_STEP, state.step + 1).astype(jnp.int32)
    return new_state, metrics


def ema_decay_at(n, decay: float, warmup: bool):
    """The decay of the moving average's update ``n`` (0 for the first optimizer step):
    ``decay``, or with ``warmup`` ``min(decay, (1 + n) / (10 + n))`` (TensorFlow's
    ``ExponentialMovingAverage(num_updates=n)``, timm's warm-up): early averages forget
    the random initialisation faster."""
    if not warmup:
        return jnp.float32(decay)
    n = jnp.asarray(n).astype(jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + n) / (10.0 + n))


def _ema_update(state: TrainState, new_state: TrainState, decay: float, warmup: bool, applied):
    """``new_state`` with ``ema`` = ``d * ema + (1 - d) * weights`` (``optax.incremental_update``
    with step size ``1 - d``) over the parameters and BatchNorm statistics after the step,
    ``d`` from :func:`ema_decay_at` at update ``state.step``; unchanged where the update
    was not ``applied`` (a skipped non-finite step)."""
    d = ema_decay_at(state.step, decay, warmup)
    target = {"params": new_state.params, "batch_stats": new_state.batch_stats}
    ema = optax.incremental_update(target, state.ema, 1.0 - d)
    if applied is not True:
        ema = jax.tree.map(lambda new, old: jnp.where(applied, new, old), ema, state.ema)
    return new_state.replace(ema=ema)


def _gradients(state: TrainState, batch: dict, loss_fn: LossFn, axis_name, accum_steps: int = 1):
    """The gradients of the mean loss (plus the auxiliary classifiers'), the logits,
    per-example losses and new BatchNorm statistics of one training step, averaged over
    ``axis_name``, and the float16 loss scale (``None`` without one; the gradients are
    unscaled)."""
    key = jax.random.fold_in(state.rng, state.step)
    if axis_name is not None:
        key = jax.random.fold_in(key, lax.axis_index(axis_name))
    scale = state.loss_scale[0] if state.loss_scale is not None else None
    if accum_steps == 1:
        grads, logits, loss, batch_stats = _micro_gradients(state, batch, loss_fn, axis_name, key, scale)
    else:
        grads, logits, loss, batch_stats = _accumulated(state, batch, loss_fn, axis_name, key, scale,
                                                        accum_steps)
    if scale is not None:  # dynamic loss scaling (float16): unscale, check, adapt
        grads = jax.tree.map(lambda g: g / scale, grads)
    if axis_name is not None:
        grads = lax.pmean(grads, axis_name)
        batch_stats = lax.pmean(batch_stats, axis_name)
    return grads, logits, loss, batch_stats, scale


def _micro_gradients(state: TrainState, batch: dict, loss_fn: LossFn, axis_name, key, scale):
    """The (scaled) gradients, logits, per-example losses and new BatchNorm statistics of
    one forward and backward pass over ``batch`` from ``state``'s weights. A mixed batch
    (mixup/CutMix) carries soft targets, ``label_probs``, which the loss takes instead of
    the one-hot labels (``label`` is then the dominant label, for accuracy)."""
    dropout_key, pool_key = jax.random.split(key)
    soft = {"label_probs": batch["label_probs"]} if "label_probs" in batch else {}

    def compute_loss(params):
        with batch_axis(axis_name):
            logits, updates = state.apply_fn(
                _variables(state, params),
                batch["image"],
                train=True,
                mutable=["batch_stats", "aux_logits"],
                rngs={"dropout": dropout_key, "pool": pool_key},
            )
        loss = loss_fn(logits.astype(jnp.float32), batch["label"], **soft)
        mean = jnp.mean(loss)
        for aux in jax.tree.leaves(updates.get("aux_logits", {})):
            mean = mean + AUX_LOSS_WEIGHT * jnp.mean(loss_fn(aux.astype(jnp.float32), batch["label"], **soft))
        return (mean * scale if scale is not None else mean), (logits, loss, updates)

    grads, (logits, loss, updates) = jax.grad(compute_loss, has_aux=True)(state.params)
    batch_stats = updates.get("batch_stats", state.batch_stats) if state.batch_stats else state.batch_stats
    return grads, logits, loss, batch_stats


def _accumulated(state: TrainState, batch: dict, loss_fn: LossFn, axis_name, key, scale, k: int):
    """Gradient accumulation: :func:`_micro_gradients` over the k micro-batches ``batch[j::k]``
    in a ``lax.scan`` (one compiled pass, whatever k), their mean gradient (that of the whole
    batch's mean loss). Each micro-batch is normalised by its own BatchNorm statistics and
    updates the running statistics in order (k updates per optimizer step, as k small
    steps would); its randomness is ``fold_in(key, j)``. Logits and losses come back in
    the batch's row order."""
    def split(x):  # [B, ...] -> [k, B/k, ...]: micro-batch j holds rows j, j + k, ...
        return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)

    def merge(x):  # the inverse of split
        return jnp.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:])

    def micro(carry, xs):
        # micro-batch j waits for j - 1's gradients: one micro-batch's activations live at
        # a time (the memory accumulation is for), not all k passes scheduled side by side
        carry, xs = lax.optimization_barrier((carry, xs))
        total, batch_stats = carry
        j, mb = xs
        grads, logits, loss, batch_stats = _micro_gradients(
            state.replace(batch_stats=batch_stats), mb, loss_fn, axis_name, jax.random.fold_in(key, j), scale)
        return (jax.tree.map(jnp.add, total, grads), batch_stats), (logits, loss)

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    micro_batches = jax.tree.map(split, batch)
    (total, batch_stats), (logits, loss) = lax.scan(
        micro, (zeros, state.batch_stats), (jnp.arange(k), micro_batches),
        unroll=ACCUM_UNROLL)
    grads = jax.tree.map(lambda g: g / k, total)
    return grads, merge(logits), merge(loss), batch_stats


def _scale_update(state: TrainState, new_state: TrainState, scale, grads_finite) -> TrainState:
    """Dynamic loss scaling (float16): on an overflow of the scaled gradients the update is
    skipped and the scale halved; after 2,000 finite steps the scale doubles (the usual
    rule)."""
    good = state.loss_scale[1] + 1
    grow = good >= 2000
    new_scale = jnp.where(
        grads_finite,
        jnp.stack([jnp.where(grow, scale * 2, scale), jnp.where(grow, 0.0, good)]),
        jnp.stack([jnp.maximum(scale / 2, 1.0), jnp.float32(0.0)]),
    )
    keep = lambda new, old: jnp.where(grads_finite, new, old)  # noqa: E731
    return new_state.replace(
        params=jax.tree.map(keep, new_state.params, state.params),
        opt_state=jax.tree.map(keep, new_state.opt_state, state.opt_state),
        loss_scale=new_scale,
    )


PREDICTION = "prediction"  # eval_step's per-example output (not a sum)


def eval_step(
    state: TrainState, batch: dict, *, loss_fn: LossFn, axis_name: str | None = None
) -> dict:
    """Metric sums on ``batch`` (with ``mask``: padded examples count for nothing), and the
    ``prediction`` of every row (``i32[B]``, padded rows included)."""
    with batch_axis(axis_name):
        logits = state.apply_fn(_variables(state, state.params), batch["image"], train=False)
    loss = loss_fn(logits, batch["label"])
    metrics = _sums(logits, batch["label"], loss, batch.get("mask", jnp.ones_like(batch["label"])))
    if axis_name is not None:
        metrics = lax.psum(metrics, axis_name)
    # the predicted classes too: analyses that need predictions (shift consistency) run this
    # same compiled program instead of compiling one of their own
    metrics[PREDICTION] = jnp.argmax(logits, -1).astype(jnp.int32)
    return metrics


def combine(a: dict | None, b: dict) -> dict:
    """Accumulates metric dicts: sums add, ``first_*`` entries take the minimum (one
    compiled program per call, not one per entry: fewer dispatches per training step)."""
    if a is None:
        return b
    return _combine(a, b)


@jax.jit
def _combine(a: dict, b: dict) -> dict:
    return {k: jnp.minimum(a[k], b[k]) if k.startswith("first_") else a[k] + b[k] for k in b}


def summarize(sums: dict) -> dict:
    """Means from metric sums: ``loss``, ``accuracy``, ``top5``, ``count``."""
    n = max(float(sums["count"]), 1.0)
    return {
        "loss": float(sums["loss"]) / n,
        "accuracy": float(sums["correct"]) / n,
        "top5": float(sums["correct5"]) / n,
        "count": int(sums["count"]),
    }
