"""The pooling library: every kind against an independent NumPy float64 reference, closed
forms, finite-difference gradients, sampling frequencies, the reshape fast path against
``lax.reduce_window`` (values and gradients with ties), heads, errors, and every kind at
every pooling site of the registered models."""

from __future__ import annotations

import functools
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from cnn_jax import models, pooling
from cnn_jax import train as train_lib
from cnn_jax.errors import ShapeError, UserError
from cnn_jax.losses import LOSSES
from cnn_jax.pooling import GlobalPool, Pool
from cnn_jax.pooling.stochastic import fmp_boundaries as _fmp_boundaries

fmp_boundaries = jax.jit(_fmp_boundaries, static_argnums=(0, 1, 2, 4))

@pytest.fixture(autouse=True, scope="module")
def _fast_compile():
    """Less XLA optimisation: every computation here is tiny and runs a few times, so
    compile time is what counts."""
    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", old)


# ---------------------------------------------------------------------------------------
# Jitted entry points: one compilation per configuration instead of one per operation
# (op-by-op dispatch compiles every primitive for every new shape, which dominates here).
# ---------------------------------------------------------------------------------------


def _freeze(v):
    return tuple(_freeze(a) for a in v) if isinstance(v, (list, tuple)) else v


@functools.cache
def _jit_pool(kind, window, strides, padding, train, opts):
    def f(x, rng):
        return pooling.pool(x, kind, window, strides, padding, train=train, rng=rng, **dict(opts))

    return jax.jit(f)


def pool(x, kind, window=(2, 2), strides=None, padding="VALID", *, train=False, rng=None, **opts):
    """:func:`cnn_jax.pooling.pool` under ``jax.jit``."""
    opts = tuple(sorted((k, _freeze(v)) for k, v in opts.items()))
    f = _jit_pool(kind, _freeze(window), _freeze(strides), _freeze(padding), train, opts)
    return f(jnp.asarray(x), rng)


def japply(layer, variables, x, train=False, rngs=None):
    """``layer.apply`` under ``jax.jit``."""
    return jax.jit(layer.apply, static_argnames="train")(variables, x, train=train, rngs=rngs)


# ---------------------------------------------------------------------------------------
# Independent NumPy references (float64, plain loops over windows)
# ---------------------------------------------------------------------------------------


def ref_pads(padding, hw, window, strides):
    """Explicit pads, written independently of normalize_padding (XLA SAME: extra at end)."""
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        pads = []
        for n, k, s in zip(hw, window, strides):
            out = math.ceil(n / s)
            total = max((out - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return tuple(tuple(p) for p in padding)


def ref_pool(arrays, window, strides, padding, reduce):
    """``reduce(*window_values)`` for every window; window values are ``[B, K, C]`` in
    row-major window order with NaN where the window covers padding."""
    arrays = [np.asarray(a, np.float64) for a in arrays]
    b, h, w, c = arrays[0].shape
    (kh, kw), (sh, sw) = window, strides
    (pt, pb), (pl, pr) = ref_pads(padding, (h, w), window, strides)
    padded = [np.pad(a, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=np.nan)
              for a in arrays]
    ho = (h + pt + pb - kh) // sh + 1
    wo = (w + pl + pr - kw) // sw + 1
    out = np.zeros((b, ho, wo, c))
    for i in range(ho):
        for j in range(wo):
            vs = [p[:, i * sh: i * sh + kh, j * sw: j * sw + kw, :].reshape(b, kh * kw, c)
                  for p in padded]
            out[:, i, j, :] = reduce(*vs)
    return out


def _zero_nan(v):
    return np.where(np.isnan(v), 0.0, v)


def r_max(v):
    return np.nanmax(v, axis=1)


def r_avg(include_pad):
    return lambda v: np.nansum(v, axis=1) / (v.shape[1] if include_pad else np.sum(~np.isnan(v), 1))


def r_lp(p, include_pad=False):
    def f(v):
        s = np.nansum(np.abs(v) ** p, axis=1)
        n = v.shape[1] if include_pad else np.sum(~np.isnan(v), 1)
        return (s / n) ** (1.0 / p)
    return f


def r_stochastic_eval(v):
    a = np.maximum(_zero_nan(v), 0.0)
    s = a.sum(1)
    return np.where(s > 0, (a * a).sum(1) / np.where(s > 0, s, 1), 0.0)


def r_softpool(v):
    m = np.nanmax(v, axis=1, keepdims=True)
    e = np.where(np.isnan(v), 0.0, np.exp(_zero_nan(v) - m))
    return (e * _zero_nan(v)).sum(1) / e.sum(1)


def r_mixed(a):
    a = np.asarray(a, np.float64)
    return lambda v: a * r_max(v) + (1 - a) * r_avg(False)(v)


def r_gated(omega):
    """omega: [K] (shared) or [K, C]."""
    def f(v):
        om = omega if omega.ndim == 2 else omega[:, None]
        g = 1 / (1 + np.exp(-(np.sum(_zero_nan(v) * om[None], axis=1))))
        return g * r_max(v) + (1 - g) * r_avg(False)(v)
    return f


def r_weighted(v, wts):
    return np.nansum(v * wts, axis=1) / np.nansum(wts, axis=1)


def ref_conv(x, kernel, bias, strides, pads):
    """Cross-correlation with zero padding, ``kernel: [kh, kw, Cin, Cout]``."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    kh, kw = kernel.shape[:2]
    sh, sw = strides
    ho = (xp.shape[1] - kh) // sh + 1
    wo = (xp.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * sh: i * sh + kh, j * sw: j * sw + kw, :]
            out[:, i, j, :] = np.einsum("bhwc,hwco->bo", patch, kernel)
    return out + np.asarray(bias, np.float64)


def cases(seed: int, n: int = 4, *, max_window: int = 3):
    """Random (x, window, strides, padding): VALID, SAME, explicit, explicit, VALID, SAME;
    cases 0 and 3 non-overlapping (strides == window, the fast path)."""
    rs = np.random.RandomState(seed)
    out = []
    for t in range(n):
        window = tuple(int(k) for k in rs.randint(1, max_window + 1, size=2))
        strides = window if t % 3 == 0 else tuple(int(s) for s in rs.randint(1, 4, size=2))
        hw = tuple(int(k + rs.randint(0, 6)) for k in window)
        shape = (int(rs.randint(1, 3)), *hw, int(rs.randint(1, 4)))
        form = ("VALID", "SAME", "explicit")[t % 3] if t < 3 else ("explicit", "VALID", "SAME")[t % 3]
        if form == "explicit":
            padding = tuple((int(rs.randint(0, k)), int(rs.randint(0, k))) for k in window)
        else:
            padding = form
        out.append((rs.randn(*shape).astype(np.float32), window, strides, padding))
    return out


def _seed(name: str) -> int:
    return zlib.crc32(name.encode()) % 10_000


# ---------------------------------------------------------------------------------------
# Registry, closed forms, errors
# ---------------------------------------------------------------------------------------

KINDS = {"max", "avg", "lp", "stochastic", "mixed", "gated", "strided_conv", "blur",
         "max_blur", "softpool", "lip", "fractional_max"}
HEADS = {"avg", "max", "avg_max", "concat_avg_max", "gem", "spp"}


def test_registry_lists_every_kind_and_head():
    assert KINDS <= set(pooling.names())
    assert HEADS <= set(pooling.head_names())
    assert len(pooling.names()) + len(pooling.head_names()) >= 16


def test_avg_closed_form_same_padding_with_and_without_counting_padding():
    x = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    with_pad = pool(x, "avg", 2, 1, "SAME", count_include_pad=True)
    without = pool(x, "avg", 2, 1, "SAME", count_include_pad=False)
    np.testing.assert_allclose(with_pad.ravel(), [2.5, 1.5, 1.75, 1.0])
    np.testing.assert_allclose(without.ravel(), [2.5, 3.0, 3.5, 4.0])
    assert np.allclose(pool(x, "avg", 2, 1, "SAME").ravel(), without.ravel())  # default


def test_same_padding_puts_the_odd_pad_at_the_end():
    assert pooling.normalize_padding("SAME", (5, 4), (2, 3), (2, 1)) == ((0, 1), (1, 1))
    x = jnp.arange(5.0).reshape(1, 5, 1, 1)
    # windows [0,1], [2,3], [4,pad]: the pad is at the bottom
    np.testing.assert_allclose(pool(x, "max", (2, 1), None, "SAME").ravel(), [1, 3, 4])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x: pool(x, "maxx"), r"unknown pool 'maxx'; did you mean 'max'\?; choose one of: avg, "),
        (lambda x: pool(x, "lp", q=2), r"pool 'lp' has no option 'q'; valid options: count_include_pad, p"),
        (lambda x: pool(x, "lp", p=0.5), r"pool 'lp': p must be a number >= 1, got 0.5"),
        (lambda x: pool(x, "mixed", alpha=1.5), r"alpha must be in \[0, 1\], got 1.5"),
        (lambda x: pool(x, "blur", size=8), r"size must be an int in 1..7, got 8"),
        (lambda x: pool(x, "fractional_max", alpha=3.0), r"alpha must be in \(1, 2\], got 3.0"),
        (lambda x: pool(x, "fractional_max", sequence="x"), r"choose one of: pseudo, random"),
        (lambda x: pool(x, "gated"), r"pool 'gated' has learned parameters: use .*Pool"),
        (lambda x: pool(x, "stochastic", train=True), r"samples in training mode: pass rng="),
        (lambda x: pool(x, "max", padding="FULL"), r"invalid padding 'FULL'; choose 'VALID', 'SAME'"),
        (lambda x: pool(x, "max", window=0), r"window must be a positive int"),
    ],
)
def test_user_errors_name_the_bad_value_and_the_choices(call, match):
    with pytest.raises(UserError, match=match):
        call(jnp.ones((1, 4, 4, 1)))


def test_module_errors():
    x = jnp.ones((1, 4, 4, 2))
    with pytest.raises(UserError, match=r"pool 'mixed' has no option 'alpa'; did you mean 'alpha'"):
        Pool("mixed", options={"alpa": 0.3}).init(jax.random.PRNGKey(0), x)
    with pytest.raises(UserError, match=r"invalid learn 'all'; choose one of: none, layer, channel"):
        Pool("mixed", options={"learn": "all"}).init(jax.random.PRNGKey(0), x)
    with pytest.raises(UserError, match=r"head pool 'spp' has no option 'level'"):
        GlobalPool("spp", {"level": (1,)}).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ShapeError, match=r"layer 'p' \(3x3 window"):
        Pool("max", 3, name="p").init(jax.random.PRNGKey(0), jnp.ones((1, 2, 2, 1)))


# ---------------------------------------------------------------------------------------
# Functional kinds against the references
# ---------------------------------------------------------------------------------------

FUNCTIONAL = [
    ("max", {}, r_max),
    ("avg", {}, r_avg(False)),
    ("avg", {"count_include_pad": True}, r_avg(True)),
    ("lp", {"p": 1.0}, r_lp(1.0)),
    ("lp", {"p": 2.0}, r_lp(2.0)),
    ("lp", {"p": 3.5, "count_include_pad": True}, r_lp(3.5, True)),
    ("stochastic", {}, r_stochastic_eval),
    ("softpool", {}, r_softpool),
    ("mixed", {"alpha": 0.3}, r_mixed(0.3)),
]


@pytest.mark.parametrize("kind,opts,reduce", FUNCTIONAL,
                         ids=[f"{k}-{o}" for k, o, _ in FUNCTIONAL])
def test_functional_kinds_match_reference(kind, opts, reduce):
    for x, window, strides, padding in cases(_seed(kind)):
        got = pool(x, kind, window, strides, padding, **opts)
        want = ref_pool([x], window, strides, padding, reduce)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6,
                                   err_msg=f"{kind} w={window} s={strides} {padding}")


def test_lp_large_p_tends_to_max_of_abs_and_zero_windows_are_zero_with_zero_grad():
    x = jnp.asarray(np.random.RandomState(0).randn(2, 4, 4, 3), jnp.float32) * 50.0
    np.testing.assert_allclose(pool(x, "lp", p=200.0), pool(jnp.abs(x), "max"), rtol=2e-2)
    assert np.all(np.isfinite(pool(x * 1e3, "lp", p=30.0)))  # no overflow (scaled)
    z = jnp.zeros((1, 2, 2, 1))
    g = jax.grad(lambda z: pool(z, "lp", p=2.0).sum())(z)
    assert float(pool(z, "lp").sum()) == 0.0 and np.all(g == 0)


def test_softpool_is_stable_for_large_and_mixed_magnitudes():
    x = jnp.array([[1000.0, 999.0], [-1000.0, 0.0]]).reshape(1, 2, 2, 1)
    e = np.exp([0.0, -1.0])
    np.testing.assert_allclose(pool(x, "softpool").ravel(), [(1000 * e[0] + 999 * e[1]) / e.sum()],
                               rtol=1e-6)
    # all very negative: exp(x) underflows to 0/0 without the shift
    v = np.array([-1000.0, -1001.0, -1002.0, -1003.0])
    w = np.exp(v - v.max())
    np.testing.assert_allclose(pool(jnp.asarray(v, jnp.float32).reshape(1, 2, 2, 1), "softpool"
                                    ).ravel(), [(v * w).sum() / w.sum()], rtol=1e-6)


def test_stochastic_eval_defines_negative_and_zero_windows():
    x = jnp.array([[-1.0, -2.0], [0.0, -3.0]]).reshape(1, 2, 2, 1)  # all clamped to 0
    assert float(pool(x, "stochastic").ravel()[0]) == 0.0
    assert float(pool(x, "stochastic", train=True, rng=jax.random.PRNGKey(0)).ravel()[0]) == 0.0
    g = jax.grad(lambda x: pool(x, "stochastic").sum())(x)
    assert np.all(np.isfinite(g)) and np.all(g == 0)
    y = jnp.array([[-5.0, 2.0], [0.0, 1.0]]).reshape(1, 2, 2, 1)  # the -5 counts as 0
    np.testing.assert_allclose(pool(y, "stochastic").ravel(), [(4 + 1) / 3])


def test_stochastic_training_samples_with_probability_a_over_sum():
    vals = np.array([0.5, 1.0, 0.0, -1.0, 2.5, 1.5], np.float32)  # a 2x3 window
    n = 40_000
    x = jnp.broadcast_to(jnp.asarray(vals.reshape(1, 2, 3, 1)), (n, 2, 3, 1))
    y = np.asarray(pool(x, "stochastic", (2, 3), train=True, rng=jax.random.PRNGKey(7))).ravel()
    a = np.maximum(vals, 0)
    p = a / a.sum()
    assert set(np.unique(y)) <= set(a[a > 0])  # only positive elements are ever sampled
    for v, pv in zip(a, p):
        if v == 0:
            continue
        freq = np.mean(y == v)
        sigma = math.sqrt(pv * (1 - pv) / n)
        assert abs(freq - pv) < 4 * sigma, (v, freq, pv)
    # different keys give different samples, the same key the same
    y2 = pool(x[:64], "stochastic", (2, 3), train=True, rng=jax.random.PRNGKey(8))
    y3 = pool(x[:64], "stochastic", (2, 3), train=True, rng=jax.random.PRNGKey(8))
    assert np.array_equal(y2, y3) and not np.array_equal(y2, y[:64].reshape(y2.shape))


def test_stochastic_training_outputs_a_window_element_and_routes_the_gradient_to_it():
    for x, window, strides, padding in cases(3):
        x = np.abs(x) + 0.1  # distinct positive values
        key = jax.random.PRNGKey(0)
        f = functools.partial(pool, kind="stochastic", window=window, strides=strides,
                              padding=padding, train=True, rng=key)
        y, vjp = jax.vjp(f, jnp.asarray(x))
        (g,) = vjp(jnp.ones_like(y))
        y, g = np.asarray(y, np.float64), np.asarray(g)
        (pt, _), (pl, _) = ref_pads(padding, x.shape[1:3], window, strides)
        for b, i, j, c in np.ndindex(*y.shape):
            r0, c0 = i * strides[0] - pt, j * strides[1] - pl
            win = x[b, max(r0, 0): r0 + window[0], max(c0, 0): c0 + window[1], c]
            assert np.isclose(win, y[b, i, j, c]).sum() == 1  # one of its window's values
        # the gradient goes to sampled elements only, 1 per output
        assert g.sum() == pytest.approx(y.size)
        assert np.all(np.isin(x[g > 0], y)) and np.all(g == np.round(g))


# ---------------------------------------------------------------------------------------
# Kinds with parameters, against the references with the module's actual parameters
# ---------------------------------------------------------------------------------------


def _init_random(layer, x, seed=0):
    """Variables of ``layer`` with every parameter random (so that the reference comparison
    exercises them); shapes from ``jax.eval_shape``, values from NumPy."""
    shapes = jax.eval_shape(lambda: layer.init(
        {"params": jax.random.PRNGKey(seed), "pool": jax.random.PRNGKey(1)}, x))
    rs = np.random.RandomState(seed)
    return jax.tree.map(lambda s: jnp.asarray(0.5 * rs.randn(*s.shape), s.dtype), shapes)


def _sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, np.float64)))


LEARNED = [
    ("mixed", {"learn": "layer"}),
    ("mixed", {"learn": "channel"}),
    ("gated", {}),
    ("gated", {"per_channel": True}),
    ("lp", {"learn": "layer", "p": 2.5}),
    ("lp", {"learn": "channel"}),
    ("strided_conv", {}),
    ("lip", {}),
    ("lip", {"logit_kernel": 1, "bound": 4.0}),
]


def _learned_reference(kind, opts, params, x, window, strides, padding):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"]["impl"])
    hw = x.shape[1:3]
    if kind == "mixed":
        return ref_pool([x], window, strides, padding, r_mixed(_sigmoid(p["a_logit"])))
    if kind == "gated":
        om = p["omega"].reshape(window[0] * window[1], -1) if opts.get("per_channel") \
            else p["omega"].reshape(-1)
        return ref_pool([x], window, strides, padding, r_gated(om))
    if kind == "lp":
        pv = 1 + np.log1p(np.exp(p["rho"]))
        return ref_pool([x], window, strides, padding, r_lp(pv))
    if kind == "strided_conv":
        return ref_conv(x, p["kernel"], p["bias"], strides, ref_pads(padding, hw, window, strides))
    if kind == "lip":
        k = opts.get("logit_kernel", 3)
        same = ((k - 1) // 2, k - 1 - (k - 1) // 2)
        logit = ref_conv(x, p["logit"]["kernel"], p["logit"]["bias"], (1, 1), (same, same))
        wts = np.exp(opts.get("bound", 12.0) * _sigmoid(logit))
        return ref_pool([x, wts], window, strides, padding, r_weighted)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,opts", LEARNED, ids=[f"{k}-{o}" for k, o in LEARNED])
def test_learned_kinds_match_reference_with_their_parameters(kind, opts):
    for t, (x, window, strides, padding) in enumerate(cases(_seed(kind) + 1)):
        layer = Pool(kind, window, strides, padding, opts)
        variables = _init_random(layer, jnp.asarray(x), seed=t)
        got = japply(layer, variables, jnp.asarray(x))
        want = _learned_reference(kind, opts, variables, x, window, strides, padding)
        np.testing.assert_allclose(got, want, rtol=5e-5, atol=5e-5,
                                   err_msg=f"{kind} {opts} w={window} s={strides} {padding}")


def test_parameter_paths_live_under_impl_and_have_the_documented_shapes():
    x = jnp.ones((1, 6, 6, 4))
    shapes = {}
    for kind, opts in [("mixed", {}), ("mixed", {"learn": "channel"}), ("gated", {}),
                       ("gated", {"per_channel": True}), ("lp", {"learn": "layer", "p": 3.0}),
                       ("strided_conv", {}), ("lip", {}), ("lp", {}), ("mixed", {"learn": "none"})]:
        v = jax.eval_shape(lambda kind=kind, opts=opts: Pool(kind, 2, options=opts).init(
            jax.random.PRNGKey(0), x))
        shapes[(kind, str(opts))] = jax.tree.map(lambda a: a.shape, v.get("params", {}))
    assert shapes[("mixed", "{}")] == {"impl": {"a_logit": ()}}
    assert shapes[("mixed", "{'learn': 'channel'}")] == {"impl": {"a_logit": (4,)}}
    assert shapes[("gated", "{}")] == {"impl": {"omega": (2, 2)}}
    assert shapes[("gated", "{'per_channel': True}")] == {"impl": {"omega": (2, 2, 4)}}
    assert shapes[("lp", "{'learn': 'layer', 'p': 3.0}")] == {"impl": {"rho": ()}}
    assert shapes[("strided_conv", "{}")] == {"impl": {"kernel": (2, 2, 4, 4), "bias": (4,)}}
    assert shapes[("lip", "{}")] == {"impl": {"logit": {"kernel": (3, 3, 4, 4), "bias": (4,)}}}
    assert shapes[("lp", "{}")] == {} and shapes[("mixed", "{'learn': 'none'}")] == {}


def test_learned_parameters_start_where_documented():
    x = jnp.asarray(np.random.RandomState(0).randn(2, 6, 6, 3), jnp.float32)
    v = Pool("mixed", options={"alpha": 0.2}).init(jax.random.PRNGKey(0), x)
    assert float(jax.nn.sigmoid(v["params"]["impl"]["a_logit"])) == pytest.approx(0.2)
    np.testing.assert_allclose(Pool("mixed", options={"alpha": 0.2}).apply(v, x),
                               pool(x, "mixed", alpha=0.2), rtol=1e-6, atol=1e-6)
    v = Pool("gated").init(jax.random.PRNGKey(0), x)  # omega = 0: gate 1/2
    np.testing.assert_allclose(Pool("gated").apply(v, x), pool(x, "mixed", alpha=0.5), rtol=1e-6,
                               atol=1e-6)
    v = Pool("lp", options={"learn": "channel", "p": 3.0}).init(jax.random.PRNGKey(0), x)
    np.testing.assert_allclose(Pool("lp", options={"learn": "channel", "p": 3.0}).apply(v, x),
                               pool(x, "lp", p=3.0), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Anti-aliasing
# ---------------------------------------------------------------------------------------


def ref_blur(x, size, strides, out_hw):
    """The first ``out_hw`` outputs of the authors' Downsample on a reflect-extended input."""
    x = np.asarray(x, np.float64)
    a = np.array([math.comb(size - 1, k) for k in range(size)], np.float64)
    filt = np.outer(a, a) / np.outer(a, a).sum()
    left = (size - 1) // 2
    big = 40
    xp = np.pad(x, ((0, 0), (left, big), (left, big), (0, 0)), mode="reflect")
    out = np.zeros((x.shape[0], *out_hw, x.shape[3]))
    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            r, c = i * strides[0], j * strides[1]
            out[:, i, j, :] = np.einsum("bhwc,hw->bc", xp[:, r: r + size, c: c + size, :], filt)
    return out


def authors_blurpool(x, size, stride):
    """Zhang's Downsample exactly: reflect pad [(f-1)//2, ceil((f-1)/2)], strided conv."""
    x = np.asarray(x, np.float64)
    a = np.array([math.comb(size - 1, k) for k in range(size)], np.float64)
    filt = np.outer(a, a) / np.outer(a, a).sum()
    lo, hi = (size - 1) // 2, math.ceil((size - 1) / 2)
    xp = np.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)), mode="reflect")
    ho = (xp.shape[1] - size) // stride + 1
    wo = (xp.shape[2] - size) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, x.shape[3]))
    for i in range(ho):
        for j in range(wo):
            out[:, i, j, :] = np.einsum(
                "bhwc,hw->bc", xp[:, i * stride: i * stride + size, j * stride: j * stride + size], filt)
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_blur_matches_reference_and_the_authors_blurpool_with_same_padding(size):
    for x, window, strides, padding in cases(10 + size):
        pads = ref_pads(padding, x.shape[1:3], window, strides)
        out_hw = tuple((n + p[0] + p[1] - k) // s + 1
                       for n, p, k, s in zip(x.shape[1:3], pads, window, strides))
        got = pool(x, "blur", window, strides, padding, size=size)
        np.testing.assert_allclose(got, ref_blur(x, size, strides, out_hw), rtol=1e-5, atol=1e-5)
    x = np.random.RandomState(size).randn(2, 9, 8, 3).astype(np.float32)
    got = pool(x, "blur", 2, 2, "SAME", size=size)
    np.testing.assert_allclose(got, authors_blurpool(x, size, 2), rtol=1e-5, atol=1e-5)


def test_blur_filters_are_binomial():
    from cnn_jax.pooling.antialias import binomial_filter

    assert np.allclose(binomial_filter(3) * 4, [1, 2, 1])
    assert np.allclose(binomial_filter(7) * 64, [1, 6, 15, 20, 15, 6, 1])
    x = jnp.zeros((1, 7, 7, 1)).at[0, 3, 3, 0].set(1.0)  # impulse response, stride 1
    np.testing.assert_allclose(pool(x, "blur", 1, 1, "SAME", size=3)[0, 2:5, 2:5, 0],
                               np.outer([1, 2, 1], [1, 2, 1]) / 16, rtol=1e-6)


@pytest.mark.parametrize("size", [1, 3, 4])
def test_max_blur_is_dense_max_then_blur(size):
    for x, window, strides, padding in cases(20 + size):
        pads = ref_pads(padding, x.shape[1:3], window, strides)
        dense = ref_pool([x], window, (1, 1), pads, r_max)
        out_hw = tuple((n + p[0] + p[1] - k) // s + 1
                       for n, p, k, s in zip(x.shape[1:3], pads, window, strides))
        got = pool(x, "max_blur", window, strides, padding, size=size)
        assert got.shape[1:3] == out_hw  # the size of max pooling at the same site
        np.testing.assert_allclose(got, ref_blur(dense, size, strides, out_hw), rtol=1e-5, atol=1e-5)
        if size == 1:
            np.testing.assert_array_equal(got, pool(x, "max", window, strides, padding))


# ---------------------------------------------------------------------------------------
# Fractional max pooling
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,alpha", [(1, 1.5), (28, math.sqrt(2)), (10, 2.0), (13, 2 ** (1 / 3))])
def test_fmp_sequences(n, alpha):
    out = math.ceil(n / alpha)
    for kind in ("pseudo", "random"):
        a = np.asarray(fmp_boundaries(n, out, kind, jax.random.PRNGKey(n), 64))
        assert a.shape == (64, out + 1)
        assert np.all(a[:, 0] == 0) and np.all(a[:, -1] == n)
        assert set(np.unique(np.diff(a, axis=1))) <= {1, 2}
    # evaluation: the pseudo-random sequence with u = 1/2, from the float formula
    ev = np.asarray(fmp_boundaries(n, out, "pseudo", None, 1))[0]
    ap = n / out
    want = [math.ceil(ap * (i + 0.5)) - math.ceil(ap * 0.5) for i in range(out + 1)]
    assert list(ev) == want
    # training pseudo sequences are those of the float formula for some u in (0, 1)
    tr = np.asarray(fmp_boundaries(n, out, "pseudo", jax.random.PRNGKey(1), 32))
    us = (np.arange(n) + 0.5) / n  # one u per equivalence class
    formula = {tuple(math.ceil(ap * (i + u)) - math.ceil(ap * u) for i in range(out + 1)) for u in us}
    assert {tuple(r) for r in tr} <= formula


def _decode(y, h, w):
    """Row and column of each output of a max over ``x = row * w + col``."""
    y = np.asarray(y[0, :, :, 0]).astype(int)
    return y // w, y % w


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("sequence", ["pseudo", "random"])
def test_fractional_max_regions(sequence, overlapping):
    h, w = 11, 9
    x = jnp.arange(h * w, dtype=jnp.float32).reshape(1, h, w, 1)  # increasing: max = corner
    opts = {"sequence": sequence, "overlapping": overlapping}
    ho, wo = math.ceil(h / math.sqrt(2)), math.ceil(w / math.sqrt(2))
    seen = set()
    for seed in range(8):
        y = pool(x, "fractional_max", train=True, rng=jax.random.PRNGKey(seed), **opts)
        assert y.shape == (1, ho, wo, 1)
        rows, cols = _decode(y, h, w)
        a = rows[:, 0] + (0 if overlapping else 1)  # region ends: a_i - 1 (disjoint), a_i
        # every row of outputs shares the same row boundary, every column the same one
        assert np.all(rows == rows[:, :1]) and np.all(cols == cols[:1, :])
        a_full = np.concatenate([[0], a])
        if overlapping:  # the last region is clipped to the input
            assert a[-1] == h - 1
            a_full[-1] = h
        else:
            assert a[-1] == h
        assert set(np.diff(a_full)) <= {1, 2}
        seen.add(tuple(a))
    assert len(seen) > 1  # training draws differ
    ev = [pool(x, "fractional_max", **opts) for _ in range(2)]
    assert np.array_equal(ev[0], ev[1])  # evaluation is fixed
    bounds = np.asarray(fmp_boundaries(h, ho, "pseudo", None, 1))[0]
    want = (bounds[1:] - (0 if overlapping else 1)).clip(max=h - 1)
    np.testing.assert_array_equal(_decode(ev[0], h, w)[0][:, 0], want)


def test_fractional_max_reference_on_random_input():
    x = np.random.RandomState(0).randn(2, 10, 7, 3).astype(np.float32)
    for overlapping in (False, True):
        y = pool(x, "fractional_max", overlapping=overlapping)
        r = np.asarray(fmp_boundaries(10, 8, "pseudo", None, 1))[0]
        c = np.asarray(fmp_boundaries(7, 5, "pseudo", None, 1))[0]
        want = np.zeros((2, 8, 5, 3))
        for i in range(8):
            for j in range(5):
                r1 = min(r[i + 1], 9) + 1 if overlapping else r[i + 1]
                c1 = min(c[j + 1], 6) + 1 if overlapping else c[j + 1]
                want[:, i, j] = x[:, r[i]: r1, c[j]: c1].max(axis=(1, 2))
        np.testing.assert_array_equal(y, want)


# ---------------------------------------------------------------------------------------
# The reshape fast path: identical to lax.reduce_window, ties included
# ---------------------------------------------------------------------------------------


def _rw(x, init, op, window, strides, padding):
    pads = pooling.normalize_padding(padding, x.shape[1:3], window, strides)
    return lax.reduce_window(x, init, op, (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0)))


@pytest.mark.parametrize("seed,overlapping", [(0, False), (1, True)])
def test_fast_max_equals_reduce_window_values_and_gradients_with_ties(seed, overlapping):
    rs = np.random.RandomState(seed)
    for t in range(6):
        window = tuple(int(k) for k in rs.randint(2 if overlapping else 1, 4, size=2))
        strides = tuple(int(rs.randint(1, k)) for k in window) if overlapping else window
        shape = (2, int(window[0] * rs.randint(1, 4) + rs.randint(0, 3)),
                 int(window[1] * rs.randint(1, 4) + rs.randint(0, 3)), 3)
        padding = ["VALID", "SAME", tuple((int(rs.randint(0, k)),) * 2 for k in window)][t % 3]
        # small integers and ReLU zeros: many ties
        x = jnp.asarray(np.maximum(rs.randint(-2, 3, size=shape), 0), jnp.float32)
        v = jnp.asarray(rs.randn(*shape), jnp.float32)
        fast = functools.partial(pooling.pool, kind="max", window=window, strides=strides,
                                 padding=padding)
        slow = functools.partial(_rw, init=-jnp.inf, op=lax.max, window=window, strides=strides,
                                 padding=padding)

        @functools.partial(jax.jit, static_argnums=(3, 4))
        def both(x, ct, v, fast, slow):
            y1, vjp1 = jax.vjp(fast, x)
            y2, vjp2 = jax.vjp(slow, x)
            # forward mode works too (the fast path is a custom JVP) and agrees with the
            # reverse-mode Jacobian of reduce_window (whose own forward mode,
            # select_and_gather, may pick another tied element)
            jvp1 = jax.jvp(fast, (x,), (v,))[1]
            jac = jax.jacrev(slow)(x).reshape(y2.size, -1)
            return y1, vjp1(ct)[0], y2, vjp2(ct)[0], jvp1.ravel(), jac @ v.ravel()

        ct = jnp.asarray(rs.randn(*jax.eval_shape(slow, x).shape), jnp.float32)
        y1, g1, y2, g2, jvp1, jvp2 = both(x, ct, v, fast, slow)
        np.testing.assert_array_equal(y1, y2)
        if overlapping:  # an input in several windows sums their cotangents in another order
            np.testing.assert_allclose(g1, g2, rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(g1, g2)
        np.testing.assert_allclose(jvp1, jvp2, rtol=1e-6, atol=1e-6)


def test_fast_max_gives_a_tied_window_gradient_to_its_first_element_in_row_major_order():
    x = jnp.array([[1.0, 3.0, 0.0, 0.0], [3.0, 2.0, 0.0, 0.0]]).reshape(1, 2, 4, 1)
    g = jax.grad(lambda x: pool(x, "max").sum())(x)[0, :, :, 0]
    np.testing.assert_array_equal(g, [[0, 1, 1, 0], [0, 0, 0, 0]])


def test_fast_avg_and_sum_equal_reduce_window():
    rs = np.random.RandomState(0)
    for padding, window in [("VALID", (2, 2)), ("SAME", (2, 3)), (((1, 2), (0, 1)), (1, 3))]:
        if True:
            x = jnp.asarray(rs.randn(2, 7, 8, 3), jnp.float32)
            ones = jnp.ones((1, 7, 8, 1))
            count = _rw(ones, 0.0, lax.add, window, window, padding)

            @jax.jit
            def both(x, ct, window=window, padding=padding, count=count):
                out = []
                for inc in (False, True):
                    fast = functools.partial(pooling.pool, kind="avg", window=window,
                                             padding=padding, count_include_pad=inc)
                    div = window[0] * window[1] if inc else jnp.maximum(count, 1.0)

                    def slow(x, div=div, window=window, padding=padding):
                        return _rw(x, 0.0, lax.add, window, window, padding) / div

                    for f in (fast, slow):
                        y, vjp = jax.vjp(f, x)
                        out += [y, vjp(ct)[0]]
                return out

            ct = jnp.asarray(rs.randn(*count.shape[1:3]), jnp.float32)[None, :, :, None]
            y1, g1, y2, g2, y3, g3, y4, g4 = both(x, jnp.broadcast_to(ct, (2, *ct.shape[1:3], 3)))
            for a, b in [(y1, y2), (g1, g2), (y3, y4), (g3, g4)]:
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
            # a window entirely in the padding (pad >= window) averages to 0
            assert np.all(np.where(count == 0, y1 == 0, True))


def test_fast_path_is_taken_exactly_for_non_overlapping_windows():
    def prims(window, strides):
        jaxpr = jax.make_jaxpr(jax.grad(lambda x: pool(x, "max", window, strides).sum()))(
            jnp.ones((1, 8, 8, 1)))
        return str(jaxpr)

    assert "select_and_scatter" not in prims(2, 2) and "reduce_window" not in prims(2, 2)
    assert "select_and_scatter" not in prims((2, 3), (2, 3))
    # overlapping windows: the strided views (windows._overlapping_max), whose backward pass
    # XLA:CPU runs about 40x faster than reduce_window's select-and-scatter
    assert "select_and_scatter" not in prims(3, 2) and "reduce_window" not in prims((2, 2), (1, 1))


# ---------------------------------------------------------------------------------------
# Gradients against finite differences; jit and vmap
# ---------------------------------------------------------------------------------------

ALL_SETUPS = [  # (kind, options, padding, window, strides)
    ("max", {}, "SAME", (3, 2), (2, 2)),
    ("max", {}, "VALID", (2, 2), (2, 2)),
    ("avg", {}, ((1, 0), (0, 1)), (2, 2), (1, 2)),
    ("lp", {"p": 3.0}, "SAME", (2, 3), (2, 2)),
    ("lp", {"learn": "channel", "p": 2.0}, "VALID", (2, 2), (2, 2)),
    ("stochastic", {}, "SAME", (2, 2), (2, 1)),
    ("mixed", {"learn": "channel"}, ((0, 1), (1, 0)), (2, 2), (2, 2)),
    ("gated", {"per_channel": True}, "SAME", (3, 3), (2, 2)),
    ("gated", {}, "VALID", (2, 2), (2, 2)),
    ("strided_conv", {}, "SAME", (3, 3), (2, 2)),
    ("blur", {"size": 4}, "SAME", (2, 2), (2, 2)),
    ("max_blur", {"size": 3}, "VALID", (2, 2), (2, 2)),
    ("softpool", {}, ((1, 1), (0, 1)), (2, 2), (2, 1)),
    ("lip", {}, "VALID", (3, 3), (2, 2)),
    ("fractional_max", {"overlapping": True}, "VALID", (2, 2), (2, 2)),
    ("fractional_max", {"sequence": "random"}, "VALID", (2, 2), (2, 2)),
]


def test_every_kind_is_covered_by_the_gradient_setups():
    assert {k for k, *_ in ALL_SETUPS} == set(pooling.names())


@pytest.mark.parametrize("kind,opts,padding,window,strides", ALL_SETUPS,
                         ids=[f"{s[0]}-{s[1]}" for s in ALL_SETUPS])
def test_gradients_match_finite_differences_under_jit_and_vmap(kind, opts, padding, window,
                                                              strides):
    """Directional derivatives (input and parameters, evaluation and training mode with a
    fixed 'pool' key) against central differences in float64, all computed inside one
    ``jax.jit``; ``jax.vmap`` over a stack of batches (values and gradients) against a loop."""
    rs = np.random.RandomState(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rs.rand(2, 7, 6, 3) + 0.05, jnp.float64)  # positive, distinct
        layer = Pool(kind, window, strides, padding, opts)
        variables = _init_random(layer, x.astype(jnp.float32))
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables.get("params", {}))
        key = jax.random.PRNGKey(3)
        eps = 1e-6

        def loss(params, x, train):
            y = layer.apply({"params": params}, x, train=train, rngs={"pool": key})
            return jnp.sum(y * jnp.cos(jnp.arange(y.size).reshape(y.shape)))

        @jax.jit
        def check(params, x, vxs, vps):
            """(analytic, finite-difference) directional derivatives along each direction,
            for x and for the parameters, in evaluation and training mode."""
            out = []
            for train in (False, True):
                f = functools.partial(loss, train=train)
                gp, gx = jax.grad(f, argnums=(0, 1))(params, x)
                for vx, vp in zip(vxs, vps):
                    fd = (f(params, x + eps * vx) - f(params, x - eps * vx)) / (2 * eps)
                    out.append((jnp.vdot(gx, vx), fd))
                    if params:
                        plus = jax.tree.map(lambda a, d: a + eps * d, params, vp)
                        minus = jax.tree.map(lambda a, d: a - eps * d, params, vp)
                        fd = (f(plus, x) - f(minus, x)) / (2 * eps)
                        an = sum(jnp.vdot(a, d) for a, d in
                                 zip(jax.tree.leaves(gp), jax.tree.leaves(vp)))
                        out.append((an, fd))
                        # every parameter gets a gradient
                        out.append((jnp.min(jnp.stack([jnp.abs(a).max() for a in jax.tree.leaves(gp)])) > 0, 1.0))
            # vmap over a stack of 3 batches equals a loop (values and input gradients)
            xs = jnp.stack([x, x[::-1], x * 2.0])
            ev = functools.partial(loss, params, train=True)
            vals, grads = jax.vmap(jax.value_and_grad(ev))(xs)
            for i in range(3):
                v_i, g_i = jax.value_and_grad(ev)(xs[i])
                out.append((vals[i], v_i))
                out.append((jnp.max(jnp.abs(grads[i] - g_i)), 0.0))
            return out

        vxs = [jnp.asarray(rs.randn(*x.shape)) for _ in range(2)]
        vps = [jax.tree.map(lambda a: jnp.asarray(rs.randn(*a.shape)), params) for _ in range(2)]
        for an, fd in check(params, x, vxs, vps):
            assert float(an) == pytest.approx(float(fd), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_every_kind_and_head_keeps_the_compute_dtype(dtype):
    x = jax.ShapeDtypeStruct((2, 8, 8, 3), dtype)
    rngs = {"params": jax.random.PRNGKey(0), "pool": jax.random.PRNGKey(1)}
    for kind in pooling.names():
        layer = Pool(kind)
        v = jax.eval_shape(layer.init, rngs, x)
        for train in (False, True):
            y = jax.eval_shape(functools.partial(layer.apply, train=train, rngs=rngs), v, x)
            assert y.dtype == dtype, (kind, train)
    for head in pooling.head_names():
        layer = GlobalPool(head)
        v = jax.eval_shape(layer.init, rngs, x)
        assert jax.eval_shape(layer.apply, v, x).dtype == dtype, head


def test_pool_rng_stream_drives_stochastic_kinds():
    x = jnp.asarray(np.random.RandomState(0).rand(2, 8, 8, 3), jnp.float32)
    for kind in [k for k in pooling.names() if pooling.POOLS.get(k).stochastic]:
        layer = Pool(kind)
        v = layer.init(jax.random.PRNGKey(0), x)
        f = jax.jit(layer.apply, static_argnames="train")
        a = f(v, x, train=True, rngs={"pool": jax.random.PRNGKey(1)})
        b = f(v, x, train=True, rngs={"pool": jax.random.PRNGKey(1)})
        c = f(v, x, train=True, rngs={"pool": jax.random.PRNGKey(2)})
        assert np.array_equal(a, b) and not np.array_equal(a, c), kind
        assert np.array_equal(f(v, x), f(v, x))  # eval: no rng needed


# ---------------------------------------------------------------------------------------
# Global heads
# ---------------------------------------------------------------------------------------


def ref_spp(x, levels, mode="max"):
    x = np.asarray(x, np.float64)
    b, h, w, _ = x.shape
    out = []
    for lv in levels:
        for i in range(lv):
            for j in range(lv):
                r0, r1 = (i * h) // lv, math.ceil((i + 1) * h / lv)
                c0, c1 = (j * w) // lv, math.ceil((j + 1) * w / lv)
                cell = x[:, r0:r1, c0:c1, :]
                out.append(cell.max(axis=(1, 2)) if mode == "max" else cell.mean(axis=(1, 2)))
    return np.stack(out, axis=1).reshape(b, -1)


HEAD_REFS = {
    "avg": lambda x, p: x.mean(axis=(1, 2)),
    "max": lambda x, p: x.max(axis=(1, 2)),
    "avg_max": lambda x, p: x.mean(axis=(1, 2)) + x.max(axis=(1, 2)),
    "concat_avg_max": lambda x, p: np.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], -1),
    "gem": lambda x, p: (np.maximum(x, 1e-6) ** p["impl"]["p"]).mean(axis=(1, 2))
    ** (1 / p["impl"]["p"]),
    "spp": lambda x, p: ref_spp(x, (1, 2, 4)),
}


@pytest.mark.parametrize("head", pooling.head_names())
def test_heads_match_reference(head):
    assert head in HEAD_REFS, f"add a reference for new head {head!r}"
    x = np.random.RandomState(0).rand(2, 5, 7, 3).astype(np.float32)
    layer = GlobalPool(head)
    v = layer.init(jax.random.PRNGKey(0), jnp.asarray(x))
    got = japply(layer, v, jnp.asarray(x))
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), v.get("params", {}))
    np.testing.assert_allclose(got, HEAD_REFS[head](x.astype(np.float64), params), rtol=1e-5,
                               atol=1e-6)
    g = jax.jit(jax.grad(lambda x: jnp.sum(layer.apply(v, x) ** 2)))(jnp.asarray(x))
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0


def test_gem_p1_is_avg_p_is_learned_from_3_and_large_p_tends_to_max():
    x = jnp.asarray(np.random.RandomState(0).rand(2, 5, 5, 4) + 0.01, jnp.float32)
    v = GlobalPool("gem").init(jax.random.PRNGKey(0), x)
    assert float(v["params"]["impl"]["p"]) == 3.0
    g = jax.grad(lambda v: GlobalPool("gem").apply(v, x).sum())(v)
    assert float(jnp.abs(g["params"]["impl"]["p"])) > 0  # p is learned
    v1 = jax.tree.map(lambda a: jnp.ones_like(a), v)
    np.testing.assert_allclose(GlobalPool("gem").apply(v1, x), x.mean(axis=(1, 2)), rtol=1e-5)
    fixed = GlobalPool("gem", {"p": 1.0, "learn": False})
    assert fixed.init(jax.random.PRNGKey(0), x) == {}
    np.testing.assert_allclose(fixed.apply({}, x), x.mean(axis=(1, 2)), rtol=1e-5)
    big = GlobalPool("gem", {"p": 200.0, "learn": False}).apply({}, x)
    # (mean x^p)^(1/p) >= max * 25^(-1/p) = 0.984 max on 25 positions
    np.testing.assert_allclose(big, x.max(axis=(1, 2)), rtol=0.02)


@pytest.mark.parametrize("hw", [(13, 9), (6, 6), (1, 3)])
def test_spp_output_size_is_independent_of_the_input_size(hw):
    x = jnp.asarray(np.random.RandomState(0).randn(2, *hw, 5), jnp.float32)
    for levels in [(1, 2, 4), (1, 2, 3, 6)]:
        y = GlobalPool("spp", {"levels": levels}).apply({}, x)
        assert y.shape == (2, 5 * sum(lv * lv for lv in levels))
        np.testing.assert_allclose(y, ref_spp(x, levels), rtol=1e-6)
    y = GlobalPool("spp", {"mode": "avg"}).apply({}, x)
    np.testing.assert_allclose(y, ref_spp(x, (1, 2, 4), "avg"), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Every kind at every pooling site of every registered model
# ---------------------------------------------------------------------------------------

# One model by default (every kind at both of its sites: compiling a training step costs
# ~2 s of CPU each); every other model with pooling sites under -m slow.
FAST_MODELS = {"lenet5"}


def _pooling_models():
    return [m for m in models.names() if "pool" in models.options(m)]


def _model_options(name: str, kind: str) -> dict:
    opts = models.options(name)
    out = {"pool": kind}
    if "width" in opts:
        out["width"] = 0.125
    if "downsample" in opts:  # models that pool only with downsample="pool"
        out["downsample"] = "pool"
    if "aux_logits" in opts:
        out["aux_logits"] = False
    return out


def _input_for(name: str, kind: str):
    """``(model, input_shape)``: 28x28x1 if the model takes it, else resized input."""
    opts = _model_options(name, kind)
    for shape, resize in [((28, 28, 1), None), ((28, 28, 1), (64, 64)), ((28, 28, 1), (128, 128)),
                          ((28, 28, 1), (227, 227))]:
        if resize is not None:
            if "resize_to" not in models.options(name):
                break
            opts = {**opts, "resize_to": resize}
        model = models.create(name, 10, **opts)
        try:
            jax.eval_shape(lambda m=model, s=shape: m.init(
                {"params": jax.random.PRNGKey(0), "pool": jax.random.PRNGKey(0),
                 "dropout": jax.random.PRNGKey(0)}, jnp.zeros((2, *s)), train=False))
            return model, shape
        except ShapeError:
            continue
    pytest.skip(f"{name}: no small input found")


def _param_paths(tree) -> set[str]:
    return {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _one_train_step(name: str, kind: str):
    """Initialisation, evaluation and one training step, compiled as one program."""
    model, shape = _input_for(name, kind)
    loss_fn = functools.partial(LOSSES.get("softmax_cross_entropy"), num_classes=10)
    rngs = {"params": jax.random.PRNGKey(0), "pool": jax.random.PRNGKey(1),
            "dropout": jax.random.PRNGKey(2)}

    @jax.jit
    def run(batch):
        v = model.init(rngs, batch["image"][:1], train=False)
        state = train_lib.TrainState.create(
            apply_fn=model.apply, params=v["params"], batch_stats=v.get("batch_stats", {}),
            tx=optax.sgd(0.05), rng=jax.random.PRNGKey(3))
        logits = model.apply(v, batch["image"], train=False)
        new, metrics = train_lib.train_step(state, batch, loss_fn=loss_fn)
        return state.params, new.params, logits, metrics

    rs = np.random.RandomState(0)
    batch = {"image": jnp.asarray(rs.rand(4, *shape), jnp.float32),
             "label": jnp.asarray(rs.randint(0, 10, 4), jnp.int32)}
    old, new, logits, metrics = run(batch)
    assert logits.shape == (4, 10) and np.all(np.isfinite(logits))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["count"]) == 4
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(new))
    assert any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new)))
    # Pooling parameters live under <site>/impl; every other parameter path is the same as
    # with max pooling.
    paths = _param_paths(new)
    pool_paths = {p for p in paths if "'impl'" in p}
    base, _ = _input_for(name, "max")
    base_params = jax.eval_shape(lambda: base.init(rngs, jnp.zeros((1, *shape)), train=False))
    assert paths - pool_paths == _param_paths(base_params["params"])
    has_params = bool(jax.tree.leaves(jax.eval_shape(lambda: Pool(kind).init(
        {"params": jax.random.PRNGKey(0), "pool": jax.random.PRNGKey(0)}, jnp.ones((1, 4, 4, 2))))))
    assert bool(pool_paths) == has_params, pool_paths


@pytest.mark.parametrize("kind", pooling.names())
@pytest.mark.parametrize("name", sorted(FAST_MODELS))
def test_every_kind_trains_in_the_fast_models(name, kind):
    assert name in models.names()
    _one_train_step(name, kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", pooling.names())
@pytest.mark.parametrize("name", [m for m in _pooling_models() if m not in FAST_MODELS])
def test_every_kind_trains_in_every_model_with_pooling_sites(name, kind):
    _one_train_step(name, kind)
