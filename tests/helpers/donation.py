"""Does the caller's state survive a donated train step, in every parallel mode?

Executed in a subprocess by tests/test_parallel.py with forced host devices. For each mode
the caller's state is put on the devices twice (as ``create`` returns it, and first placed
where a restored checkpoint goes, ``Runner.state_sharding()``), one donated step runs, and
the caller's leaves are checked: none deleted, values unchanged. Prints one JSON line.
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import config as config_lib
from cnn_jax import losses, models, optim
from cnn_jax.train import state as state_lib
from cnn_jax.train.parallel import Runner


def check(mode: str, placed: bool) -> dict:
    model = models.create("mlp", 10, norm="batch", hidden=(32, 16))  # batch_stats too
    tx = optim.build(config_lib.base_config().optim, 10, 1)
    loss_fn = functools.partial(losses.softmax_cross_entropy, num_classes=10)
    r = Runner(mode, loss_fn, loss_fn)
    state = state_lib.create(model, tx, (8, 8, 1), seed=0)
    if placed:
        state = jax.device_put(state, r.state_sharding())
    # values kept through copies: np.asarray(leaf) would cache a host copy on the leaf,
    # and device_put then reads that instead of the buffer it used to alias
    before = [np.asarray(jnp.copy(x)) for x in jax.tree.leaves(state)]
    batch = 4 * r.num_devices
    rng = np.random.default_rng(0)
    b = {"image": rng.normal(size=(batch, 8, 8, 1)).astype(np.float32),
         "label": rng.integers(0, 10, batch).astype(np.int32)}
    dev_state, _ = r.train_step(r.put_state(state), r.put_batch(b))
    jax.block_until_ready(dev_state)
    leaves = jax.tree.leaves(state)
    deleted = sum(isinstance(x, jax.Array) and x.is_deleted() for x in leaves)
    changed = sum(
        not np.array_equal(np.asarray(x), y)
        for x, y in zip(leaves, before)
        if not (isinstance(x, jax.Array) and x.is_deleted())
    )
    return {"mode": r.mode, "devices": r.num_devices, "placed": placed, "leaves": len(leaves),
            "deleted": deleted, "changed": changed,
            "step": int(jax.device_get(r.get_state(dev_state)).step)}


if __name__ == "__main__":
    out = [check(m, p) for m in ("single", "pmap", "sharded") for p in (False, True)]
    print(json.dumps({"devices": jax.device_count(), "results": out}))
