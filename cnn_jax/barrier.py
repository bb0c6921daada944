"""A fusion barrier that XLA:CPU keeps: :func:`materialize`.

XLA fuses a cheap elementwise producer into each of its consumers and recomputes it there.
Usually that saves memory traffic; on CPU it can cost more than it saves, when the
producer is read many times (the previous layer's pooling, copied into a convolution's
patches) or recomputed inside a larger backward fusion (max pooling's window index, rebuilt
from the activations for every element of the 4x larger gradient).
``lax.optimization_barrier`` does not prevent it on CPU: XLA:CPU's pipeline removes the
barrier. A conditional does: its result is a buffer of its own. :func:`materialize` wraps
a value in one whose predicate is always true but known only at run time, and whose two
branches give the same value, so it is the identity in value, under ``vmap`` (the predicate
stays one scalar: a batched predicate would turn the conditional into a select that XLA
fuses away) and under differentiation (tangents pass through). It is a CPU measure: on
other platforms (where a conditional may cost a device-to-host synchronisation) the
program holds the plain value (``lax.platform_dependent``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

# The name scope of CPU-only code (here and in cnn_jax.conv): a program lowered for another
# platform must not contain it (cnn_jax.lowering checks).
CPU_ONLY_SCOPE = "cnn_jax_cpu_only"


@jax.custom_batching.custom_vmap
def _materialize_batched(v: jax.Array) -> jax.Array:
    bits = v.reshape(-1)[0]
    if jnp.issubdtype(v.dtype, jnp.floating):
        bits = lax.bitcast_convert_type(bits, jnp.dtype(f"int{8 * v.dtype.itemsize}"))
    # Always true (``bits | 1`` is odd), but only known at run time; both branches give v.
    return lax.cond((bits | 1) != 0, lambda u: u, lambda u: u + jnp.zeros((), u.dtype), v)


@_materialize_batched.def_vmap
def _materialize_vmap(axis_size, in_batched, v):
    # Under vmap the predicate stays one scalar: a batched one would turn the conditional
    # into a select of both branches, which XLA fuses away again.
    return _materialize_batched(v), in_batched[0]


@jax.custom_jvp
def materialize(v: jax.Array) -> jax.Array:
    """``v`` (a float or integer array), computed once into a buffer of its own instead of
    being fused into, and recomputed by, each consumer. Other dtypes and empty arrays are
    returned as they are."""
    if v.size == 0 or not (jnp.issubdtype(v.dtype, jnp.floating) or jnp.issubdtype(v.dtype, jnp.integer)):
        return v

    def on_cpu(u):
        with jax.named_scope(CPU_ONLY_SCOPE):
            return _materialize_batched(u)

    return lax.platform_dependent(v, cpu=on_cpu, default=lambda u: u)


@materialize.defjvp
def _materialize_jvp(primals, tangents):
    return materialize(primals[0]), tangents[0]
