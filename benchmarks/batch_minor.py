"""Batch-minor layouts for LeNet-5's training step on XLA:CPU, side by side with ``fit``'s step.

Question (issue 29): would moving the batch to the minor (vectorised) axis, so that the
6- and 16-channel layers of LeNet-5 vectorise over 128 images instead of over 6 or 16
channels, make the training step faster than ``fit``'s NHWC step? Each variant is the
whole step (forward, gradient, Adam) hand-written in plain JAX, compiled with ``fit``'s
XLA options; all variants start from the same parameters and batch, and their first losses
are checked equal (to float32 rounding) before anything is timed. Rounds alternate between
the variants in one process; the script prints the median and the minimum ms per step.

  NHWC xla          NHWC, ``lax.conv_general_dilated``, ``lax.reduce_window`` max pooling
  HWCN xla          the same program with the batch minor (HWCN)
  CHWN taps/taps    CHWN; both convolutions as unrolled sums of shifted taps
  CHWN taps/gemm    CHWN; conv1 as taps, conv2 as one patch matrix product
  CHWN gemm/gemm    CHWN; both convolutions as patch matrix products
  fit               ``fit``'s own step (``benchmarks/throughput.py``'s ``jax_step``)

  python benchmarks/batch_minor.py [--rounds 7] [--steps 30] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np


def conv_xla(x, w, pad, layout):
    from jax import lax

    return lax.conv_general_dilated(x, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=(layout, "HWIO", layout))


def conv_taps(x, w, pad, layout):
    """CHWN convolution as the sum over kernel taps and input channels of shifted planes."""
    import jax.numpy as jnp

    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw, cin, _ = w.shape
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    acc = None
    for i in range(kh):
        for j in range(kw):
            for c in range(cin):
                t = x[c : c + 1, i : i + oh, j : j + ow, :] * w[i, j, c][:, None, None, None]
                acc = t if acc is None else acc + t
    return acc


def conv_gemm(x, w, pad, layout):
    """CHWN convolution as one matrix product of the kernel with the patch matrix."""
    import jax.numpy as jnp

    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw, cin, cout = w.shape
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    patches = jnp.stack([x[c, i : i + oh, j : j + ow, :] for i in range(kh) for j in range(kw) for c in range(cin)])
    out = w.reshape(-1, cout).T @ patches.reshape(kh * kw * cin, -1)
    return out.reshape(cout, oh, ow, -1)


def hand_step(layout: str, conv1, conv2, opts):
    """LeNet-5 (6@5x5 SAME, pool, 16@5x5 VALID, pool, 120, 84, 10; ReLU) step in ``layout``."""
    import jax
    import optax
    from jax import lax

    spatial = {"NHWC": (1, 2), "HWCN": (0, 1), "CHWN": (1, 2)}[layout]
    channel = layout.index("C")
    to_hwc = {"NHWC": (0, 1, 2, 3), "HWCN": (3, 0, 1, 2), "CHWN": (3, 1, 2, 0)}[layout]

    def pool(y):
        win = [1, 1, 1, 1]
        win[spatial[0]] = win[spatial[1]] = 2
        return lax.reduce_window(y, -np.inf, lax.max, win, win, "VALID")

    def bias(b):
        shape = [1, 1, 1, 1]
        shape[channel] = -1
        return b.reshape(shape)

    def forward(p, x):
        y = pool(jax.nn.relu(conv1(x, p["w1"], 2, layout) + bias(p["b1"])))
        y = pool(jax.nn.relu(conv2(y, p["w2"], 0, layout) + bias(p["b2"])))
        f = y.transpose(to_hwc).reshape(y.shape[layout.index("N")], -1)  # (h, w, c) features
        h = jax.nn.relu(f @ p["d1"] + p["e1"])
        h = jax.nn.relu(h @ p["d2"] + p["e2"])
        return h @ p["d3"] + p["e3"]

    tx = optax.adam(1e-3)

    def step(p, s, x, y):
        loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(forward(p, x), y).mean()
        value, g = jax.value_and_grad(loss)(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, value

    return jax.jit(step, compiler_options=opts, donate_argnums=(0, 1)), tx


def variant_runner(layout, conv1, conv2, opts, x_nhwc, labels, params):
    import jax
    import jax.numpy as jnp

    step, tx = hand_step(layout, conv1, conv2, opts)
    perm = {"NHWC": (0, 1, 2, 3), "HWCN": (1, 2, 3, 0), "CHWN": (3, 1, 2, 0)}[layout]
    x = jnp.asarray(np.transpose(x_nhwc, perm))
    state = [jax.tree.map(jnp.array, params), None]
    state[1] = tx.init(state[0])
    state[0], state[1], first = step(state[0], state[1], x, labels)

    def run(steps: int) -> None:
        for _ in range(steps):
            state[0], state[1], value = step(state[0], state[1], x, labels)
        value.block_until_ready()

    return run, float(first)


VARIANTS = {
    "NHWC xla": ("NHWC", conv_xla, conv_xla),
    "HWCN xla": ("HWCN", conv_xla, conv_xla),
    "CHWN taps/taps": ("CHWN", conv_taps, conv_taps),
    "CHWN taps/gemm": ("CHWN", conv_taps, conv_gemm),
    "CHWN gemm/gemm": ("CHWN", conv_gemm, conv_gemm),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--pause", type=float, default=0.2, help="seconds of rest before each timed block")
    args = p.parse_args()
    from cnn_jax import runtime

    runtime.host_device_flags(["train"])
    import jax
    import jax.numpy as jnp

    from cnn_jax import conv

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import throughput

    cpu, isa = runtime.cpu_model()
    print(f"{cpu} ({', '.join(isa)}); jax {jax.__version__}; batch {args.batch_size}, "
          f"{args.rounds} interleaved rounds x {args.steps} steps")
    rng = np.random.default_rng(0)
    shapes = {"w1": (5, 5, 1, 6), "b1": (6,), "w2": (5, 5, 6, 16), "b2": (16,), "d1": (400, 120),
              "e1": (120,), "d2": (120, 84), "e2": (84,), "d3": (84, 10), "e3": (10,)}
    params = {k: (rng.normal(size=s) * 0.1).astype(np.float32) for k, s in shapes.items()}
    x = rng.normal(size=(args.batch_size, 28, 28, 1)).astype(np.float32)
    labels = jnp.asarray(rng.integers(0, 10, args.batch_size))
    runs, firsts = {}, {}
    for name, (layout, c1, c2) in VARIANTS.items():
        runs[name], firsts[name] = variant_runner(layout, c1, c2, conv.compiler_options(), x, labels, params)
    reference = firsts["NHWC xla"]
    for name, value in firsts.items():  # the same computation in every layout
        if not np.isclose(value, reference, rtol=1e-5):
            raise SystemExit(f"{name}: first loss {value} differs from NHWC's {reference}")
    print(f"first loss {reference:.6f} in every variant (rtol 1e-5)")
    runs["fit"] = throughput.jax_step("lenet5", (28, 28, 1), args.batch_size, "max", "auto")[0]
    times = throughput.alternate(runs, args.rounds, args.steps, args.pause)
    fit = statistics.median(times["fit"])
    for name, v in times.items():
        med = statistics.median(v)
        print(f"{name:>16}: median {med:7.2f} ms/step, min {min(v):7.2f}; {med / fit:5.2f}x fit's step time")


if __name__ == "__main__":
    main()
