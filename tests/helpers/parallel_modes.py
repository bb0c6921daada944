"""Runs the same steps single-device, under pmap and as sharded jit; prints max differences.

Executed in a subprocess by tests/test_parallel.py with 8 forced host devices.
"""

import functools
import json
import os
import sys

import jax
import numpy as np

from cnn_jax import config as config_lib
from cnn_jax import losses, models, optim
from cnn_jax.train import state as state_lib
from cnn_jax.train.parallel import Runner

STEPS = int(os.environ.get("STEPS", "3"))


def run(mode, model_name, opts, shape, batch):
    model = models.create(model_name, 10, **opts)
    c = config_lib.base_config().optim
    c.name, c.learning_rate = "momentum", 0.05  # linear in the gradient: Adam would amplify
    tx = optim.build(c, 100, 10)                 # rounding noise in near-zero gradients
    state = state_lib.create(model, tx, shape, seed=0)
    loss_fn = functools.partial(losses.softmax_cross_entropy, num_classes=10)
    r = Runner(mode, loss_fn, loss_fn)
    r.check_batch_size(batch)
    dev_state = r.put_state(state)
    rng = np.random.default_rng(0)
    metrics = []
    for _ in range(STEPS):
        b = {"image": rng.normal(size=(batch, *shape)).astype(np.float32),
             "label": rng.integers(0, 10, batch).astype(np.int32)}
        dev_state, sums = r.train_step(dev_state, r.put_batch(b))
        metrics.append({k: float(v) for k, v in jax.device_get(sums).items()})
    eb = r.put_batch({**b, "mask": np.arange(batch) < batch - 3})
    ev = r.eval_step(dev_state, eb)
    host = jax.device_get(r.get_state(dev_state))
    pred = r.predict(dev_state, eb)  # the evaluation program's predicted classes, in row order
    variables = {"params": host.params, **({"batch_stats": host.batch_stats} if host.batch_stats else {})}
    by_hand = np.argmax(np.asarray(model.apply(variables, b["image"], train=False)), -1)
    return host, metrics, {k: float(v) for k, v in jax.device_get(ev).items()}, r.num_devices, (pred, by_hand)


def compare(model_name, opts, shape, batch):
    ref, ref_m, ref_e, _, (ref_pred, by_hand) = run("single", model_name, opts, shape, batch)
    out = {"single_predictions_match_apply": bool(np.array_equal(ref_pred, by_hand))}
    for mode in ("pmap", "sharded"):
        st, m, e, n, (pred, _) = run(mode, model_name, opts, shape, batch)
        # worst |a - b| / (atol + rtol |b|) with rtol 1e-5, atol 1e-6: <= 1 means allclose
        rel = lambda a, b: float(np.max(np.abs(a - b) / (1e-6 + 1e-5 * np.abs(b))))  # noqa: E731
        out[mode] = {
            "n": n,
            "params": max(jax.tree.leaves(jax.tree.map(rel, st.params, ref.params))),
            "batch_stats": max(jax.tree.leaves(jax.tree.map(rel, st.batch_stats, ref.batch_stats)) or [0.0]),
            "metrics": max(abs(a[k] - b[k]) / (1e-6 + 1e-5 * abs(b[k])) for a, b in zip(m, ref_m) for k in b),
            "eval": max(abs(e[k] - ref_e[k]) / (1e-6 + 1e-5 * abs(ref_e[k])) for k in ref_e),
            "step": int(st.step),
            "predictions": float(np.mean(pred == ref_pred)),  # agreement with single
        }
    return out


def main():
    cases = json.loads(sys.argv[1])  # [[model, opts, shape, batch], ...]
    print(json.dumps({"devices": jax.device_count(), "cases": [compare(*c) for c in cases]}))


if __name__ == "__main__":
    main()
