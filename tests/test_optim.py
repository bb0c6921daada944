"""Optimizers and schedules from config."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax import config as config_lib
from cnn_jax import optim
from cnn_jax.errors import UserError


@pytest.mark.parametrize("name", optim.OPTIMIZERS.names())
def test_every_optimizer_minimises_a_quadratic(name):
    c = config_lib.base_config().optim
    c.name, c.learning_rate = name, 0.05
    tx = optim.build(c, total_steps=200, steps_per_epoch=10)
    params = {"w": jnp.array([3.0, -2.0])}
    state = tx.init(params)
    for _ in range(200):
        grads = {"w": 2 * params["w"]}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    assert float(jnp.abs(params["w"]).max()) < 0.5


def test_schedules():
    c = config_lib.base_config().optim
    c.learning_rate = 1.0
    c.schedule = "piecewise"
    c.boundaries, c.scales = (0.5, 0.75), (0.1, 0.1)
    s = optim.schedule(c, 100, 10)
    assert np.isclose(s(10), 1.0) and np.isclose(s(60), 0.1) and np.isclose(s(90), 0.01)
    c.schedule = "cosine"
    s = optim.schedule(c, 100, 10)
    assert np.isclose(s(0), 1.0) and np.isclose(s(50), 0.5) and np.isclose(s(100), 0.0)
    c.schedule, c.warmup_steps = "warmup_cosine", 10
    s = optim.schedule(c, 100, 10)
    assert np.isclose(s(0), 0.0) and np.isclose(s(5), 0.5) and np.isclose(s(10), 1.0)
    c.boundaries, c.scales, c.schedule = (0.5,), (0.1, 0.2), "piecewise"
    with pytest.raises(UserError, match="same length"):
        optim.schedule(c, 100, 10)


def test_gradient_clipping_bounds_the_update():
    c = config_lib.base_config().optim
    c.name, c.learning_rate, c.grad_clip_norm = "sgd", 1.0, 1.0
    tx = optim.build(c, 10, 10)
    p = {"w": jnp.zeros(2)}
    u, _ = tx.update({"w": jnp.array([30.0, 40.0])}, tx.init(p), p)
    np.testing.assert_allclose(u["w"], [-0.6, -0.8], rtol=1e-6)
