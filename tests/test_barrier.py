"""cnn_jax.barrier.materialize: the identity in value, gradient and vmap, and a conditional
that XLA:CPU keeps in the compiled program (what makes it a barrier), CPU only."""

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.barrier import CPU_ONLY_SCOPE, materialize
from cnn_jax.pooling import windows


def test_materialize_is_identity_in_value_gradient_and_vmap():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(3, 5, 4)), jnp.float32)
    f = lambda v: jnp.sin(materialize(v * 2.0)) + 1.0  # noqa: E731
    np.testing.assert_array_equal(jax.jit(f)(x), jnp.sin(x * 2.0) + 1.0)
    np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(f(v) ** 2))(x),
                               jax.grad(lambda v: jnp.sum((jnp.sin(v * 2.0) + 1.0) ** 2))(x), rtol=1e-6)
    # Under vmap the predicate stays a scalar: the conditional survives (a batched one
    # would become a select, which XLA fuses away).
    vm = jax.jit(jax.vmap(f))
    np.testing.assert_array_equal(vm(x), jnp.sin(x * 2.0) + 1.0)
    assert vm.lower(x).compile().as_text().count("conditional(") == 1
    for odd in (jnp.zeros((0, 3)), jnp.arange(4), jnp.full((2,), -0.0), jnp.full((2,), jnp.nan)):
        np.testing.assert_array_equal(jax.jit(materialize)(odd), odd)


def test_lowered_for_accelerators_it_is_the_plain_value():
    """The CPU program holds the barrier (its name scope), one exported for cuda does not."""
    f = jax.jit(lambda v: materialize(v * 2.0))
    x = jnp.ones((4, 4))
    text = {p: jax.export.export(f, platforms=[p])(x).mlir_module() for p in ("cpu", "cuda")}
    assert CPU_ONLY_SCOPE in text["cpu"] and CPU_ONLY_SCOPE not in text["cuda"]


def test_max_pooling_keeps_its_window_index_for_the_backward_pass():
    """The one-byte window index is computed in the forward and read back by the
    backward pass (a conditional of s8 in the compiled gradient), not recomputed there."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 3)), jnp.float32)
    f = lambda v: jnp.sum(windows.window_max(v, (2, 2), (2, 2), ((0, 0), (0, 0))) ** 2)  # noqa: E731
    text = jax.jit(jax.grad(f)).lower(x).compile().as_text()
    assert any("conditional(" in line and "s8[" in line.split("conditional(")[0] for line in text.splitlines())
