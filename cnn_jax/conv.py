"""Stride-1 2-D convolution whose training step XLA:CPU runs fast.

``conv2d(x, w, pads)`` computes ``lax.conv_general_dilated`` for NHWC inputs, HWIO
kernels, stride 1, no dilation and one feature group (``layers.Conv`` routes such layers
here). On accelerators it *is* that operation. On the CPU backend its forward and its
input and kernel gradients may take another formulation, registered here (:data:`FORWARD`,
:data:`INPUT_GRAD`, :data:`KERNEL_GRAD`; a new one is one ``add``) and chosen per layer geometry by
:mod:`cnn_jax.conv_tuning` (``CNN_JAX_CONV=rows|auto|tuned|xla``: the fixed rules with
row patches, the default; the fixed rules before them; measured on this machine; or
XLA's convolution):

* ``taps`` (forward): a loop over the ``kh*kw*cin`` taps adding shifted, scaled copies of
  the input. XLA:CPU's convolution handles a tiny channel count on the minor axis badly:
  LeNet-5's 5x5x1x6 first layer, conv + ReLU + 2x2 max pooling at batch 128 on 2 cores
  of an AMD EPYC (AVX2): forward 8.2 -> 2.1 ms, with gradient 9.5 -> 3.5 ms;
* ``col2im`` (input gradient): one matrix product gives every tap's contribution, added
  into place by a loop over the taps, instead of XLA's transposed convolution (LeNet-5's
  6 -> 16 layer on that machine: 4.5 -> 2.0 ms);
* ``rows`` (forward): the padded input, materialised (:mod:`cnn_jax.barrier`), copied
  into row patches ``[N, Hp, Wo, kw*cin]`` (each row's ``kw``-wide windows), one matrix
  product with every kernel row, then a shifted sum; ``rows`` (input gradient): its
  adjoint, one matrix product and two unrolled shifted sums in the input's layout, no
  loop. LeNet-5's 6 -> 16 layer on an AMD EPYC with AVX-512 (2026-12-06): its whole step
  ran 0.87x as fast with XLA's forward and col2im, 0.93x with col2im alone;
* ``patches`` (kernel gradient): the shifted input planes copied into one matrix, then
  one matrix product with the output gradient.

Everything else stays XLA's. Every formulation is checked against
``lax.conv_general_dilated`` and its gradients in ``tests/test_conv.py`` and
``tests/test_conv_tuning.py``; ``benchmarks/RESULTS.md`` has the measurements.

:func:`compiler_options` are the XLA options of the jitted training and evaluation
programs on CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax import conv_tuning
from cnn_jax.barrier import CPU_ONLY_SCOPE, materialize
from cnn_jax.registry import Registry

Pads = tuple[tuple[int, int], tuple[int, int]]
DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
# The tap loop forward, by input channels: at most this many output channels. One input
# channel, <= 16 filters: LeNet-5's first layer (AMD EPYC, AVX2, 2026-11). Three (RGB),
# <= 32: the CIFAR net's first layer, whose whole step ran 1.08-1.10x faster with it than
# with XLA's convolution (AMD EPYC with AVX-512, 2026-12-06, benchmarks/RESULTS.md);
# single-channel layers with 32 filters (the simple CNN on MNIST) gained nothing there.
TAP_MAX_OUT = {1: 16, 3: 32}
COL2IM_MAX_IN = 8  # input gradient by col2im for 2..8 input channels (LeNet-5's second)
# Row patches (forward and input gradient) for 4..8 input channels and at most 16 filters:
# measured in the step on LeNet-5's 6 -> 16 layer only (alone, the forward is slower than
# XLA's convolution there, and 4x slower on an RGB layer with 64 filters), so other shapes
# keep XLA's forward and col2im.
ROWS_IN, ROWS_MAX_OUT = range(4, 9), 16


def _lax_conv(x: jax.Array, w: jax.Array, pads: Pads) -> jax.Array:
    return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=DIMENSION_NUMBERS)


def _tap_sum(x: jax.Array, w: jax.Array, pads: Pads) -> jax.Array:
    """``sum_{i,j,c} x_pad[:, i:i+Ho, j:j+Wo, c] * w[i, j, c, :]`` as a loop over the taps.

    A loop (over kernel rows), not a fully unrolled sum: XLA would fuse an unrolled sum
    into every consumer and recompute all ``kh*kw*C`` terms per element read (the
    max-pooling gradient reads each element again): LeNet-5's step ran at 1,730 img/s
    against 7,700 with XLA's convolution."""
    kh, kw, cin, cout = w.shape
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    n, ho, wo = x.shape[0], xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    wa = w.astype(acc_dtype).reshape(kh * kw * cin, cout)

    def tap(t, acc):
        i, rest = t // (kw * cin), t % (kw * cin)
        j, c = rest // cin, rest % cin
        plane = lax.dynamic_slice(xp, (0, i, j, c), (n, ho, wo, 1))
        return acc + plane.astype(acc_dtype) * wa[t]

    # One kernel row per iteration (measured: +9 % on LeNet-5's step against one tap).
    acc = lax.fori_loop(0, kh * kw * cin, tap, jnp.zeros((n, ho, wo, cout), acc_dtype), unroll=kw * cin)
    return acc.astype(jnp.result_type(x, w))


def _row_patches(x: jax.Array, w: jax.Array, pads: Pads) -> jax.Array:
    """The forward by row patches: ``R[n, h, wo, (j, c)] = x_pad[n, h, wo + j, c]`` (each
    padded row's ``kw``-wide windows side by side), one matrix product with every kernel
    row at once, ``Q[n, h, wo, i, :] = R[n, h, wo] @ w[i]``, then ``sum_i Q[:, i + ho, :,
    i]``. The padded input is materialised first: without it, XLA fused the producer of
    ``x`` (the previous layer's pooling) into the patch copy and the whole step ran 0.92x
    as fast as with XLA's convolution instead of 1.1x."""
    kh, kw, cin, cout = w.shape
    xp = materialize(jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0))))
    ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    rows = jnp.concatenate([xp[:, :, j : j + wo, :] for j in range(kw)], axis=-1)
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    w_rows = jnp.transpose(w.reshape(kh, kw * cin, cout), (1, 0, 2))  # [kw*cin, kh, cout]
    q = lax.dot_general(rows, w_rows, (((3,), (0,)), ((), ())), preferred_element_type=acc_dtype)
    out = q[:, 0:ho, :, 0]
    for i in range(1, kh):
        out = out + q[:, i : i + ho, :, i]
    return out.astype(jnp.result_type(x, w))


def _row_patches_input_grad(g: jax.Array, w: jax.Array, x_shape, pads: Pads) -> jax.Array:
    """``d conv / d x`` as the adjoint of :func:`_row_patches`: one matrix product gives
    every kernel row's patch gradient ``P[n, h, wo, i, (j, c)] = g[n, h, wo] @ w[i, j, c]^T``;
    the row patches' gradient ``dR[n, h + i] += P[n, h, :, i]`` (materialised), then the
    input's ``dx_pad[n, h, wo + j, c] += dR[n, h, wo, (j, c)]``; two unrolled sums, in the
    input's own layout, no loop."""
    kh, kw, cin, cout = w.shape
    _, ho, wo, _ = g.shape
    hp, wp = x_shape[1] + sum(pads[0]), x_shape[2] + sum(pads[1])
    acc_dtype = jnp.promote_types(g.dtype, jnp.float32)
    p = lax.dot_general(g, w.reshape(kh, kw * cin, cout), (((3,), (2,)), ((), ())),
                        preferred_element_type=acc_dtype)  # [N, Ho, Wo, kh, kw*cin]
    d_rows = sum(jnp.pad(p[:, :, :, i], ((0, 0), (i, hp - ho - i), (0, 0), (0, 0))) for i in range(kh))
    d_rows = materialize(d_rows)  # [N, Hp, Wo, kw*cin]
    dxp = sum(jnp.pad(d_rows[..., j * cin : (j + 1) * cin], ((0, 0), (0, 0), (j, wp - wo - j), (0, 0)))
              for j in range(kw))
    (top, _), (left, _) = pads
    return dxp[:, top : top + x_shape[1], left : left + x_shape[2], :].astype(g.dtype)


def _col2im_input_grad(g: jax.Array, w: jax.Array, x_shape, pads: Pads) -> jax.Array:
    """``d conv / d x``: one matrix product gives every tap's contribution
    ``[kh*kw, C, N, Ho, Wo]`` (channels-major, so the loop below works on long rows), then
    a loop adds each tap's piece into its window of the padded input gradient."""
    kh, kw, cin, cout = w.shape
    n, ho, wo, _ = g.shape
    acc_dtype = jnp.promote_types(g.dtype, jnp.float32)
    cols = lax.dot_general(w.reshape(kh * kw, cin, cout), g, (((2,), (3,)), ((), ())),
                           preferred_element_type=acc_dtype)
    hp, wp = x_shape[1] + sum(pads[0]), x_shape[2] + sum(pads[1])

    def tap(t, acc):
        i, j = t // kw, t % kw
        piece = lax.dynamic_index_in_dim(cols, t, 0, keepdims=False)
        window = lax.dynamic_slice(acc, (0, 0, i, j), (cin, n, ho, wo))
        return lax.dynamic_update_slice(acc, window + piece, (0, 0, i, j))

    acc = lax.fori_loop(0, kh * kw, tap, jnp.zeros((cin, n, hp, wp), acc_dtype), unroll=kw)
    (top, _), (left, _) = pads
    acc = acc[:, :, top : top + x_shape[1], left : left + x_shape[2]]
    return jnp.transpose(acc, (1, 2, 3, 0)).astype(g.dtype)


def _col2im_nhwc_input_grad(g: jax.Array, w: jax.Array, x_shape, pads: Pads) -> jax.Array:
    """:func:`_col2im_input_grad` with every tap's contribution and the sums in the
    input's own layout ``[N, H, W, C]``: no transposed result for XLA to fuse into its
    consumers (which then read it across the grain), at the price of short rows when C is
    small."""
    kh, kw, cin, cout = w.shape
    n, ho, wo, _ = g.shape
    acc_dtype = jnp.promote_types(g.dtype, jnp.float32)
    cols = lax.dot_general(g, w.reshape(kh * kw, cin, cout), (((3,), (2,)), ((), ())),
                           preferred_element_type=acc_dtype)  # [N, Ho, Wo, kh*kw, C]
    hp, wp = x_shape[1] + sum(pads[0]), x_shape[2] + sum(pads[1])

    def tap(t, acc):
        i, j = t // kw, t % kw
        piece = lax.dynamic_index_in_dim(cols, t, 3, keepdims=False)
        window = lax.dynamic_slice(acc, (0, i, j, 0), (n, ho, wo, cin))
        return lax.dynamic_update_slice(acc, window + piece, (0, i, j, 0))

    acc = lax.fori_loop(0, kh * kw, tap, jnp.zeros((n, hp, wp, cin), acc_dtype), unroll=kw)
    (top, _), (left, _) = pads
    return acc[:, top : top + x_shape[1], left : left + x_shape[2], :].astype(g.dtype)


def _patches_kernel_grad(x: jax.Array, g: jax.Array, w_shape, pads: Pads) -> jax.Array:
    """``d conv / d w``: a loop copies every tap's shifted input plane into one
    ``[kh*kw*cin, N*Ho*Wo]`` matrix (channels-major, so each copy is a long row), then one
    matrix product with ``g`` gives the whole kernel gradient."""
    kh, kw, cin, cout = w_shape
    n, ho, wo, _ = g.shape
    acc_dtype = jnp.promote_types(g.dtype, jnp.float32)
    xt = jnp.transpose(jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0))), (3, 0, 1, 2))

    def tap(t, cols):
        i, j = t // kw, t % kw
        plane = lax.dynamic_slice(xt, (0, 0, i, j), (cin, n, ho, wo))
        return lax.dynamic_update_slice(cols, plane[None], (t, 0, 0, 0, 0))

    cols = lax.fori_loop(0, kh * kw, tap, jnp.zeros((kh * kw, cin, n, ho, wo), x.dtype), unroll=kw)
    dw = lax.dot_general(cols.reshape(kh * kw * cin, n * ho * wo), g.reshape(n * ho * wo, cout),
                         (((1,), (0,)), ((), ())), preferred_element_type=acc_dtype)
    return dw.reshape(kh, kw, cin, cout).astype(g.dtype)


def _xla_kernel_grad(x: jax.Array, g: jax.Array, w_shape, pads: Pads) -> jax.Array:
    """``d conv / d w`` as XLA computes it (a convolution over the batch)."""
    zeros = jnp.zeros(w_shape, g.dtype)
    return jax.vjp(lambda w_: _lax_conv(x, w_, pads), zeros)[1](g)[0]


def _xla_input_grad(g: jax.Array, w: jax.Array, x_shape, pads: Pads) -> jax.Array:
    """``d conv / d x`` as XLA's transposed convolution."""
    zeros = jnp.zeros(x_shape, g.dtype)
    return jax.vjp(lambda x_: _lax_conv(x_, w, pads), zeros)[1](g)[0]


@dataclasses.dataclass(frozen=True)
class Formulation:
    """One way to compute a convolution's forward (``fn(x, w, pads)``), input gradient
    (``fn(g, w, x_shape, pads)``) or kernel gradient (``fn(x, g, w_shape, pads)``);
    ``applies(x_shape, w_shape)`` says for which shapes it is a candidate at all (the tuner
    times only those)."""

    fn: Callable
    applies: Callable = lambda x_shape, w_shape: True


FORWARD: Registry[Formulation] = Registry("convolution forward formulation")
INPUT_GRAD: Registry[Formulation] = Registry("convolution input-gradient formulation")
FORWARD.add("xla", Formulation(_lax_conv))
# The tap loop runs kh*kw*cin iterations over the whole output: only for few taps.
FORWARD.add("taps", Formulation(_tap_sum, lambda xs, ws: ws[0] * ws[1] * ws[2] <= 75))
# One input channel is the tap loop's case; the row patches hold kw copies of the input.
FORWARD.add("rows", Formulation(_row_patches, lambda xs, ws: ws[2] > 1))
INPUT_GRAD.add("xla", Formulation(_xla_input_grad))
INPUT_GRAD.add("col2im", Formulation(_col2im_input_grad, lambda xs, ws: ws[2] > 1))
INPUT_GRAD.add("col2im_nhwc", Formulation(_col2im_nhwc_input_grad, lambda xs, ws: ws[2] > 1))
INPUT_GRAD.add("rows", Formulation(_row_patches_input_grad, lambda xs, ws: ws[2] > 1))
KERNEL_GRAD: Registry[Formulation] = Registry("convolution kernel-gradient formulation")
KERNEL_GRAD.add("xla", Formulation(_xla_kernel_grad))
# The patch matrix holds kh*kw*cin copies of the input: only for few taps.
KERNEL_GRAD.add("patches", Formulation(_patches_kernel_grad, lambda xs, ws: ws[0] * ws[1] * ws[2] <= 75))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv(x, w, pads: Pads, fwd: str, dx: str, dw: str):
    with jax.named_scope(CPU_ONLY_SCOPE):
        return FORWARD.get(fwd).fn(x, w, pads)


def _conv_fwd(x, w, pads, fwd, dx, dw):
    return _conv(x, w, pads, fwd, dx, dw), (x, w)


def _conv_bwd(pads, fwd, dx, dw, res, g):
    x, w = res
    if dx == "xla" and dw == "xla":
        # XLA's own gradients; the input's is dropped by XLA when, as usual, x is the image.
        return jax.vjp(lambda x_, w_: _lax_conv(x_, w_, pads), x, w)[1](g)
    if dw == "xla":
        gw = jax.vjp(lambda w_: _lax_conv(x, w_, pads), w)[1](g)[0]
    else:
        with jax.named_scope(CPU_ONLY_SCOPE):
            gw = KERNEL_GRAD.get(dw).fn(x, g, w.shape, pads)
    if dx == "xla":
        gx = jax.vjp(lambda x_: _lax_conv(x_, w, pads), x)[1](g)[0]
    else:
        with jax.named_scope(CPU_ONLY_SCOPE):
            gx = INPUT_GRAD.get(dx).fn(g, w, x.shape, pads)
    return gx, gw


_conv.defvjp(_conv_fwd, _conv_bwd)


def auto_rule_choice(w_shape) -> tuple[str, str, str]:
    """``CNN_JAX_CONV=auto``: the fixed rules as they stood before row patches (measured on
    AMD EPYCs, 2026-11 and 12; commit a3ef6fe), kept unchanged so that a study pinned to them
    (``Study(conv="auto")``) computes what it computed then: the tap loop for one input
    channel and at most 16 filters or three and at most 32 (:data:`TAP_MAX_OUT`), col2im
    for the input gradient of 2..8 input channels, XLA's convolution otherwise."""
    _, _, cin, cout = w_shape
    fwd = "taps" if cout <= TAP_MAX_OUT.get(cin, 0) else "xla"
    return fwd, ("col2im" if 1 < cin <= COL2IM_MAX_IN else "xla"), "xla"


def rule_choice(w_shape) -> tuple[str, str, str]:
    """``CNN_JAX_CONV=rows`` (the default): :func:`auto_rule_choice`, with row patches,
    forward and input gradient, for 4..8 input channels and at most 16 filters
    (:data:`ROWS_IN`; LeNet-5's second layer, 2026-12-06). They sum in another order than
    XLA's convolution and col2im, so they change a result's last digits."""
    fwd, dx, dw = auto_rule_choice(w_shape)
    _, _, cin, cout = w_shape
    return ("rows", "rows", dw) if cin in ROWS_IN and cout <= ROWS_MAX_OUT else (fwd, dx, dw)


def rule_sets() -> dict:
    """The modes of fixed rules, ``{name: rule(w_shape)}`` (looked up when called, so a
    benchmark may replace :func:`rule_choice`)."""
    return {"rows": rule_choice, "auto": auto_rule_choice}


def candidates(geom) -> dict[str, list[str]]:
    """``{part: the formulations that apply to geom}`` (a :class:`cnn_jax.conv_tuning.
    Geometry`) for each of :data:`cnn_jax.conv_tuning.PARTS`."""
    x_shape = (geom.batch(), *geom.in_hw, geom.kernel[2])
    regs = dict(zip(conv_tuning.PARTS, (FORWARD, INPUT_GRAD, KERNEL_GRAD)))
    return {p: [n for n in r.names() if r.get(n).applies(x_shape, geom.kernel)] for p, r in regs.items()}


def measure(geom) -> dict:
    """Times every candidate for ``geom`` on this CPU (random inputs at
    :meth:`cnn_jax.conv_tuning.Geometry.batch`, each jitted with the training step's
    compile options, timed in alternating rounds by :func:`cnn_jax.conv_tuning.time_calls`)
    and returns the cache entry: each part's choice and its median milliseconds per call."""
    rng = np.random.default_rng(0)
    names = candidates(geom)
    n = geom.batch()
    x_shape = (n, *geom.in_hw, geom.kernel[2])
    x = jnp.asarray(rng.normal(size=x_shape), geom.dtype)
    w = jnp.asarray(rng.normal(size=geom.kernel), geom.dtype)
    g = jnp.asarray(rng.normal(size=_lax_conv(x, w, geom.pads).shape), geom.dtype)
    opts, pads = compiler_options(), geom.pads
    jit = lambda f: jax.jit(f, compiler_options=opts)  # noqa: E731
    fns = {
        "forward": {k: jit(lambda x, w, f=FORWARD.get(k).fn: f(x, w, pads)) for k in names["forward"]},
        "input_grad": {k: jit(lambda g, w, f=INPUT_GRAD.get(k).fn: f(g, w, x_shape, pads))
                       for k in names["input_grad"]},
        "kernel_grad": {k: jit(lambda x, g, f=KERNEL_GRAD.get(k).fn: f(x, g, geom.kernel, pads))
                        for k in names["kernel_grad"]},
    }
    args = {"forward": (x, w), "input_grad": (g, w), "kernel_grad": (x, g)}
    entry: dict = {"batch": n, "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for part in conv_tuning.PARTS:
        ms = conv_tuning.time_calls(fns[part], args[part])
        entry[part], entry[f"{part}_ms"] = conv_tuning.winner(ms), ms
    return entry


def conv2d(x: jax.Array, w: jax.Array, pads: Pads) -> jax.Array:
    """Stride-1 NHWC x HWIO convolution with explicit ``((top, bottom), (left, right))``
    non-negative padding, in the formulation :func:`cnn_jax.conv_tuning.choose` picks
    for its shape on this machine (``CNN_JAX_CONV``)."""
    pads = tuple((int(a), int(b)) for a, b in pads)
    if min(min(p) for p in pads) < 0:
        return _lax_conv(x, w, pads)
    fwd, dx, dw = conv_tuning.choose(x.shape, w.shape, pads, x.dtype, rules=rule_sets(), measure=measure)
    if (fwd, dx, dw) == ("xla", "xla", "xla"):
        return _lax_conv(x, w, pads)
    # Chosen per platform when the program is lowered (a program traced on a CPU host and
    # exported for cuda or tpu gets XLA's convolution; tests/test_lowering.py).
    return lax.platform_dependent(
        x, w, cpu=lambda x, w: _conv(x, w, pads, fwd, dx, dw),
        default=lambda x, w: _lax_conv(x, w, pads))


# XLA:CPU in jaxlib 0.10 hands convolutions to YNNPACK by default; on the shapes of these
# networks they ran 1.5-6x slower than XLA's own (Eigen) convolutions (the CIFAR net's
# second layer: forward 12.7 -> 4.9 ms, kernel gradient 20.4 -> 7.7 ms), so the training
# and evaluation programs turn it off.
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


# The initialisation program runs once per seed, so only its compile time matters: at LLVM
# optimisation level 1 with XLA:CPU's older loop emitters it compiled in 0.65x the time
# (the pooling study's 18 configurations: 9.4 s against 14.6 s on one core without a cache)
# to bit-identical variables (5 seeds each). Level 0 was faster still but not identical.
_INIT_CPU_OPTIONS = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}


@functools.cache
def _cpu_options_supported(options: frozenset) -> bool:
    try:
        jax.jit(lambda a: a + 1, compiler_options=dict(options)).lower(1.0).compile()
    except Exception:  # an XLA without the option: keep its defaults
        return False
    return True


def _on_cpu(options: dict) -> dict | None:
    if jax.default_backend() != "cpu" or not _cpu_options_supported(frozenset(options.items())):
        return None
    return dict(options)


def environment() -> dict:
    """The convolution part of a run's numeric environment: the mode, the formulation of
    every geometry this process traced (:func:`cnn_jax.conv_tuning.record`) and the
    steps' XLA compile options."""
    record = conv_tuning.record()
    return {"conv": record["mode"], "conv_choices": record["choices"], "compiler_options": compiler_options() or {}}


def compiler_options() -> dict | None:
    """XLA options for the jitted training/evaluation programs (``None``: the defaults)."""
    return _on_cpu(_CPU_OPTIONS)


def init_compiler_options() -> dict | None:
    """XLA options for the jitted initialisation program (``None``: the defaults)."""
    return _on_cpu(_INIT_CPU_OPTIONS)
