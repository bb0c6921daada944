"""Optimizers and learning-rate schedules from config, built from optax.

``build(cfg, total_steps, steps_per_epoch)`` returns an ``optax.GradientTransformation``:
``clip_by_global_norm`` (if ``grad_clip_norm > 0``) → the optimizer with its schedule.
``weight_decay`` is decoupled for ``adamw`` and added to the gradient (L2) for the others.
"""

from __future__ import annotations

from collections.abc import Callable

import optax

from cnn_jax.errors import UserError
from cnn_jax.registry import Registry

OPTIMIZERS: Registry[Callable[..., optax.GradientTransformation]] = Registry("optimizer")
SCHEDULES: Registry[Callable[..., optax.Schedule]] = Registry("schedule")


@OPTIMIZERS.register("sgd")
def _sgd(lr, c):
    return optax.sgd(lr)


@OPTIMIZERS.register("momentum")
def _momentum(lr, c):
    return optax.sgd(lr, momentum=c.momentum, nesterov=False)


@OPTIMIZERS.register("nesterov")
def _nesterov(lr, c):
    return optax.sgd(lr, momentum=c.momentum, nesterov=True)


@OPTIMIZERS.register("adam")
def _adam(lr, c):
    return optax.adam(lr, b1=c.b1, b2=c.b2, eps=c.eps)


@OPTIMIZERS.register("adamw", decoupled_weight_decay=True)
def _adamw(lr, c):
    return optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(lr, c):
    return optax.rmsprop(lr, decay=c.rms_decay, eps=c.eps, momentum=c.momentum or None)


@SCHEDULES.register("constant")
def _constant(c, total, spe):
    return optax.constant_schedule(c.learning_rate)


@SCHEDULES.register("cosine")
def _cosine(c, total, spe):
    return optax.cosine_decay_schedule(c.learning_rate, max(total, 1))


@SCHEDULES.register("warmup_cosine")
def _warmup_cosine(c, total, spe):
    warmup = c.warmup_steps or c.warmup_epochs * spe
    return optax.warmup_cosine_decay_schedule(
        0.0, c.learning_rate, warmup_steps=warmup, decay_steps=max(total, warmup + 1)
    )


@SCHEDULES.register("piecewise")
def _piecewise(c, total, spe):
    """``boundaries`` are fractions of training in (0, 1) (e.g. ``(0.5, 0.75)``) or step
    counts (> 1); ``scales`` multiply the learning rate at each boundary."""
    bounds, scales = tuple(c.boundaries), tuple(c.scales)
    if len(bounds) != len(scales):
        raise UserError(
            f"optim.boundaries {bounds} and optim.scales {scales} must have the same length"
        )
    steps = [int(b * total) if 0 < b < 1 else int(b) for b in bounds]
    return optax.piecewise_constant_schedule(c.learning_rate, dict(zip(steps, scales)))


def schedule(c, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
    return SCHEDULES.get(c.schedule)(c, total_steps, steps_per_epoch)


def build(c, total_steps: int, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimizer described by config group ``optim``."""
    make = OPTIMIZERS.get(c.name)
    lr = schedule(c, total_steps, steps_per_epoch)
    parts = []
    if c.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(c.grad_clip_norm))
    # Optimizers that decay weights themselves declare it; for the others it is an L2 term.
    if c.weight_decay > 0 and not OPTIMIZERS.meta(c.name, "decoupled_weight_decay", False):
        parts.append(optax.add_decayed_weights(c.weight_decay))
    parts.append(make(lr, c))
    return optax.chain(*parts) if len(parts) > 1 else parts[0]
