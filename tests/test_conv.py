"""cnn_jax.conv: the CPU formulations equal lax.conv_general_dilated and its gradients."""

import functools

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import pytest
from jax import lax

from cnn_jax import conv, layers


def _ref(x, w, pads):
    return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=conv.DIMENSION_NUMBERS)


def _numpy_conv(x, w, pads):
    """Direct float64 loop: y[n, a, b, o] = sum_{i, j, c} xpad[n, a+i, b+j, c] w[i, j, c, o]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    kh, kw = w.shape[:2]
    ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    y = np.zeros((x.shape[0], ho, wo, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("nhwc,co->nhwo", xp[:, i : i + ho, j : j + wo, :], w[i, j])
    return y


CASES = [  # (x shape, w shape, pads): which path each one takes is asserted below
    ((3, 12, 12, 1), (5, 5, 1, 6), ((2, 2), (2, 2))),  # taps forward (LeNet-5 conv1)
    ((3, 9, 9, 6), (5, 5, 6, 16), ((0, 0), (0, 0))),  # row patches both ways (LeNet-5 conv2)
    ((2, 9, 7, 3), (3, 2, 3, 5), ((1, 2), (0, 1))),  # taps and col2im, uneven kernel, padding
    ((2, 8, 8, 3), (3, 3, 3, 40), ((1, 1), (1, 1))),  # RGB, more filters: XLA's forward, col2im
    ((2, 7, 8, 1), (3, 3, 1, 4), ((0, 1), (2, 0))),  # taps, uneven padding
    ((2, 6, 6, 16), (3, 3, 16, 8), ((1, 1), (1, 1))),  # XLA's convolution
]


def _paths(w_shape):
    """(forward, input gradient) of the default rule (``rows``), from the rule's constants."""
    _, _, cin, cout = w_shape
    taps, rows = cout <= conv.TAP_MAX_OUT.get(cin, 0), cin in conv.ROWS_IN and cout <= conv.ROWS_MAX_OUT
    dx = "rows" if rows else "col2im" if 1 < cin <= conv.COL2IM_MAX_IN else "xla"
    return ("taps" if taps else "rows" if rows else "xla"), dx


@pytest.mark.parametrize("xs,ws,pads", CASES)
def test_conv2d_matches_lax_and_numpy(xs, ws, pads):
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x = jnp.asarray(rng.normal(size=xs), jnp.float32)
    w = jnp.asarray(rng.normal(size=ws), jnp.float32)
    y = jax.jit(functools.partial(conv.conv2d, pads=pads))(x, w)
    np.testing.assert_allclose(y, _numpy_conv(x, w, pads), rtol=1e-5, atol=1e-4)
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    got = jax.jit(lambda x, w, g: jax.vjp(lambda a, b: conv.conv2d(a, b, pads), x, w)[1](g))(x, w, g)
    want = jax.vjp(lambda a, b: _ref(a, b, pads), x, w)[1](g)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_cases_cover_every_path():
    assert {_paths(ws) for _, ws, _ in CASES} == {
        ("taps", "xla"), ("taps", "col2im"), ("rows", "rows"), ("xla", "col2im"), ("xla", "xla")}
    assert all(conv.rule_choice(ws)[:2] == _paths(ws) for _, ws, _ in CASES)


def _has_loop(program: str) -> bool:
    return "stablehlo.while" in program


def _lowered(f, *args) -> str:
    """The program lowered for this (CPU) backend: the CPU formulations are chosen per
    platform at lowering (``lax.platform_dependent``), so a jaxpr holds every branch."""
    return jax.jit(f).lower(*args).as_text()


def test_tap_and_col2im_paths_are_taken_on_cpu():
    x, w = jnp.ones((2, 8, 8, 1)), jnp.ones((3, 3, 1, 4))
    text = _lowered(lambda x, w: conv.conv2d(x, w, ((1, 1), (1, 1))), x, w)
    assert _has_loop(text) and "stablehlo.convolution" not in text  # the forward is the tap loop
    x2, w2 = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 40))  # col2im's input gradient
    grad = _lowered(jax.grad(lambda x: conv.conv2d(x, w2, ((0, 0), (0, 0))).sum()), x2)
    assert _has_loop(grad)


def test_row_patches_are_taken_both_ways_with_their_barriers():
    """LeNet-5's second layer: no convolution and no loop, one matrix product each way,
    and the padded input (forward) and the row patches' gradient (backward) behind
    conditionals that XLA:CPU keeps in the compiled program."""
    x, w = jnp.ones((2, 14, 14, 6)), jnp.ones((5, 5, 6, 16))
    f = lambda x, w: conv.conv2d(x, w, ((0, 0), (0, 0)))  # noqa: E731
    text = _lowered(f, x, w)
    assert "stablehlo.convolution" not in text and text.count("stablehlo.dot_general") == 1
    assert jax.jit(f).lower(x, w).compile().as_text().count("conditional(") == 1
    dx = lambda x, w: jax.grad(lambda a: jnp.sum(f(a, w) ** 2))(x)  # noqa: E731
    text = _lowered(dx, x, w)
    assert "stablehlo.convolution" not in text and not _has_loop(text)
    assert jax.jit(dx).lower(x, w).compile().as_text().count("conditional(") == 2


def test_env_switch_gives_xla_convolution(monkeypatch):
    monkeypatch.setenv("CNN_JAX_CONV", "xla")
    x, w = jnp.ones((2, 8, 8, 1)), jnp.ones((3, 3, 1, 4))
    text = _lowered(lambda x, w: conv.conv2d(x, w, ((1, 1), (1, 1))), x, w)
    assert not _has_loop(text) and "stablehlo.convolution" in text


def test_vmapped_weights_match_per_seed_results():
    """The seeds study vmaps the step over parameters: the custom gradients must batch."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 10, 10, 6)), jnp.float32)
    ws = jnp.asarray(rng.normal(size=(3, 3, 3, 6, 4)), jnp.float32)
    loss = lambda w, x: jnp.sum(conv.conv2d(x, w, ((1, 1), (1, 1))) ** 2)  # noqa: E731
    batched = jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(0, None))(ws, x)
    for k in range(3):
        single = jax.grad(lambda w, x: jnp.sum(_ref(x, w, ((1, 1), (1, 1))) ** 2), argnums=(0, 1))(ws[k], x)
        for a, b in zip(batched, single):
            np.testing.assert_allclose(a[k], b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("padding,strides", [("SAME", 1), ("VALID", 1), ("SAME", 2), (((1, 2), (0, 1)), 1)])
def test_layer_conv_equals_flax_conv(padding, strides):
    """layers.Conv (own parameter creation, cnn_jax.conv) == flax's nn.Conv, same params."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 11, 11, 1)), jnp.float32)
    ours = layers.Conv(6, (5, 5), strides=strides, padding=padding)
    flax_conv = nn.Conv(6, (5, 5), strides=strides, padding=padding)
    v = ours.init(jax.random.PRNGKey(0), x)
    v_flax = flax_conv.init(jax.random.PRNGKey(0), x)
    assert jax.tree.map(jnp.shape, v) == jax.tree.map(jnp.shape, v_flax)
    np.testing.assert_array_equal(v["params"]["kernel"], v_flax["params"]["kernel"])
    np.testing.assert_allclose(ours.apply(v, x), flax_conv.apply(v, x), rtol=1e-5, atol=1e-5)
    g1 = jax.grad(lambda p: jnp.sum(jnp.sin(ours.apply({"params": p}, x))))(v["params"])
    g2 = jax.grad(lambda p: jnp.sum(jnp.sin(flax_conv.apply({"params": p}, x))))(v["params"])
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_compiler_options_on_cpu_turn_off_ynnpack():
    opts = conv.compiler_options()
    assert opts == {"xla_cpu_experimental_ynn_fusion_type": ""}
    args = jnp.ones((16, 15, 15, 32)), jnp.ones((3, 3, 32, 64))
    hlo = lambda **kw: jax.jit(lambda x, w: _ref(x, w, ((0, 0), (0, 0))), **kw).lower(*args).compile().as_text()  # noqa: E731
    assert "ynn_fusion" in hlo()  # jaxlib's default, which these options exist to turn off
    assert "ynn_fusion" not in hlo(compiler_options=opts)


@pytest.mark.parametrize("model, pool", [("lenet5", "gated"), ("simple_cnn", "strided_conv")])
def test_the_initialisation_program_compiled_for_speed_gives_the_same_variables(model, pool):
    """The init program's cheaper compile options change nothing: bit-identical parameters
    and optimizer state against XLA's defaults, for several seeds."""
    from cnn_jax import config as config_lib
    from cnn_jax.train import assemble, state as state_lib

    cheap = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}
    try:  # the installed XLA decides: jax 0.10's takes these options, jax 0.12's refuses them
        jax.jit(lambda a: a + 1, compiler_options=cheap).lower(1.0).compile()
        supported = True
    except Exception:  # noqa: BLE001  (XLA's error type for an unknown option varies)
        supported = False
    assert conv.init_compiler_options() == (cheap if supported else None)
    c = config_lib.base_config()
    c.model.name, c.model.pool, c.data.name = model, pool, "mnist5k"
    c = config_lib.resolve(c)
    m, tx, _, _ = assemble._make_parts(c, 10, 100, 10)  # (model, optimizer, losses)
    shape = (28, 28, 1)

    def init(key):
        pkey, dkey, qkey = jax.random.split(key, 3)
        v = m.init({"params": pkey, "dropout": dkey, "pool": qkey}, jnp.zeros((1, *shape)), train=False)
        return v, tx.init(v["params"])

    default = jax.jit(init)
    for seed in (0, 1, 7):
        s = state_lib.create(m, tx, shape, seed)
        v, opt = default(jax.random.key(seed, impl="rbg"))
        got = jax.tree.leaves((s.params, s.batch_stats, s.opt_state))
        want = jax.tree.leaves((v["params"], v.get("batch_stats", {}), opt))
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
