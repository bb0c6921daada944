"""Batched building blocks of the grey (MNIST-C style) corruptions, in NumPy and SciPy only.

Every function works on a whole batch ``f[N, H, W]`` of images on the 0-1 scale (or
``u8`` where stated) and takes its random numbers from a ``numpy.random.Generator``, so
:mod:`cnn_jax.corruptions.grey` stays a table of definitions. Written from the
definitions of Mu & Gilmer 2019 and of the libraries their recipe calls (scikit-image's
Canny detector, ImageMagick's motion blur), not from their code.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

LINE_WIDTH = 2.3  # the recipe's line profile: it reaches 0 at 2.3 * (1 - 1/e) = 1.45 px


def blur(x: np.ndarray, sigma: float, mode: str = "nearest", axes=(1, 2)) -> np.ndarray:
    """Gaussian blur of ``f[N, H, W]`` along ``axes`` only (never across images), with the
    scikit-image defaults the recipe used (edge mode ``nearest``, truncated at 4 sigma)."""
    s = [0.0] * x.ndim
    for a in axes:
        s[a] = sigma
    return ndi.gaussian_filter(x, s, mode=mode, truncate=4.0)


def plasma(rng: np.random.Generator, n: int, decay: float, size: int = 256) -> np.ndarray:
    """``n`` diamond-square height maps ``f32[n, size, size]`` on 0-1 (``size`` a power of two).

    A map starts at 0 in its corner; each halving of the step sets the centres of the
    squares (then the edge midpoints, the diamonds) to the mean of their four neighbours
    (periodic) plus a uniform draw in ``±w**2``, with ``w`` starting at 100 and divided by
    ``decay`` at each level: a smaller ``decay`` gives more fine-scale texture. Each map is
    finally stretched to span 0-1.
    """
    m = np.zeros((n, size, size), np.float32)
    step, w = size, 100.0

    def noisy(total):  # in place: total / 4 + U(-w^2, w^2)
        noise = rng.random(total.shape, np.float32)
        noise *= 2 * w * w
        noise -= w * w
        total *= 0.25
        total += noise
        return total

    def wrap(a, first):  # a with one more row and column, periodic, after or before it
        if first:
            a = np.concatenate([a[:, -1:], a], 1)
            return np.concatenate([a[:, :, -1:], a], 2)
        a = np.concatenate([a, a[:, :1]], 1)
        return np.concatenate([a, a[:, :, :1]], 2)

    while step >= 2:
        h = step // 2
        c = wrap(m[:, ::step, ::step], first=False)  # corners; c[i + 1] is the next one
        total = c[:, :-1, :-1] + c[:, 1:, :-1]
        total += c[:, :-1, 1:]
        total += c[:, 1:, 1:]
        m[:, h::step, h::step] = noisy(total)
        d = wrap(m[:, h::step, h::step], first=True)  # centres; d[i] is the previous one
        total = d[:, 1:, 1:] + d[:, :-1, 1:]  # top-edge midpoints: centres below, above,
        total += c[:, :-1, :-1]  # corners left
        total += c[:, :-1, 1:]  # and right
        m[:, ::step, h::step] = noisy(total)
        total = d[:, 1:, 1:] + d[:, 1:, :-1]  # left-edge midpoints: centres right, left,
        total += c[:, :-1, :-1]  # corners above
        total += c[:, 1:, :-1]  # and below
        m[:, h::step, ::step] = noisy(total)
        step, w = h, w / decay
    m -= m.min(axis=(1, 2), keepdims=True)
    m /= m.max(axis=(1, 2), keepdims=True)
    return m


def line_field(c0, r0, c1, r1, shape, width: float = LINE_WIDTH) -> np.ndarray:
    """``f[N, H, W]``: the recipe's soft line through ``(c0, r0)`` and ``(c1, r1)`` (column,
    row; arrays of N) on 0-1. A pixel at vertical distance ``d`` from the line gets
    ``clip(1 + log(1 - d / width), 0, 1)`` (1 on it, 0 from ``d = width * (1 - 1/e)``); only
    columns ``floor(c0) <= c < ceil(c1)`` are drawn, and a vertical segment (``c0 == c1``)
    draws nothing."""
    h, w = shape
    c0, r0, c1, r1 = (np.asarray(v, np.float64)[:, None, None] for v in (c0, r0, c1, r1))
    flat = c1 == c0
    slope = (r1 - r0) / np.where(flat, 1.0, c1 - c0)
    cols, rows = np.arange(w)[None, None, :], np.arange(h)[None, :, None]
    d = np.minimum(np.abs(rows - (slope * (cols - c0) + r0)), width - 1e-10)
    v = np.clip(np.log1p(-d / width) + 1, 0, 1)
    inside = (cols >= np.floor(c0)) & (cols < np.ceil(c1)) & ~flat
    return np.where(inside, v, 0.0)


def zigzag_field(rng: np.random.Generator, n: int, shape, width: float,
                 tooth: float = 2.0, margin: int = 2) -> np.ndarray:
    """``f[N, H, W]``: a zigzag per image, the recipe's: from column ``margin`` to
    ``W - 1 - margin``, starting at a random row ``r0`` in ``[0, H - 1)`` and heading for row
    ``r0 + k``, ``k`` in ``[-5, 5)``, at angle ``theta``, over a length ``d``. Along that
    direction the path runs from ``(0, 0)`` through the peaks ``((2j + 1) a, (-1)^j b)``
    (``a = b = tooth``) up to ``d``, then to ``(d, r_K / (2 (d - 2a floor(d / 2a))))``
    (``r_K`` the last peak's height; no such point when that remainder is 0). Its segments
    are drawn with :func:`line_field` and summed."""
    h, w = shape
    c0, c1 = margin, w - 1 - margin
    r0 = rng.integers(0, h - 1, n).astype(np.float64)
    r1 = r0 + rng.integers(-5, 5, n)
    theta = np.arctan((r1 - r0) / (c1 - c0))
    d = (c1 - c0) / np.cos(theta)  # the path's length along its direction
    j = np.arange(max(int((d.max() / tooth - 1) // 2), 0) + 1)[None, :]
    last = ((2 * j + 1) * tooth <= d[:, None]).sum(1, keepdims=True) - 1  # -1: no peak
    jj = np.minimum(j, last)  # peaks past the last repeat it: empty segments
    t = np.where(jj >= 0, (2 * jj + 1) * tooth, 0.0)
    r = np.where(jj >= 0, np.where(jj % 2 == 0, tooth, -tooth), 0.0)
    rest = (d - 2 * tooth * np.floor(d / (2 * tooth)))[:, None]
    t_end = np.where(rest > 0, d[:, None], t[:, -1:])
    r_end = np.where(rest > 0, r[:, -1:] / (2 * np.where(rest > 0, rest, 1.0)), r[:, -1:])
    t = np.concatenate([np.zeros((n, 1)), t, t_end], 1)
    r = np.concatenate([np.zeros((n, 1)), r, r_end], 1)
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    cs, rs = t * cos - r * sin + c0, t * sin + r * cos + r0[:, None]
    out = np.zeros((n, h, w))
    for k in range(1, t.shape[1]):
        out += line_field(cs[:, k - 1], rs[:, k - 1], cs[:, k], rs[:, k], shape, width)
    return out


def glass_shuffle(x: np.ndarray, delta: int, iterations: int,
                  rng: np.random.Generator) -> np.ndarray:
    """``u8[N, H, W]`` with pixels locally swapped, the recipe's way: ``iterations`` passes
    over rows ``H - delta`` down to ``delta + 1`` and, within each, columns ``W - delta`` down to
    ``delta + 1``; at each position, with probability 1/2, the pixel is swapped with the one
    ``(dy, dx)`` away, ``dy, dx`` uniform in ``[-delta, delta)``. Sequential (a pixel can move
    again), vectorised over the batch."""
    n, h, w = x.shape
    flat = x.reshape(n, h * w).copy()
    pos = [(r, c) for r in range(h - delta, delta, -1) for c in range(w - delta, delta, -1)]
    move = rng.random((iterations, len(pos), n)) < 0.5
    dy, dx = rng.integers(-delta, delta, (2, iterations, len(pos), n)) * move
    idx = np.arange(n)
    for it in range(iterations):
        for p, (r, c) in enumerate(pos):
            src, dst = r * w + c, (r + dy[it, p]) * w + (c + dx[it, p])
            a, b = flat[:, src].copy(), flat[idx, dst]
            flat[:, src] = b
            flat[idx, dst] = a
    return flat.reshape(n, h, w)


def line_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """``f[N, H, W]`` blurred along a line, ImageMagick's ``-motion-blur radius x sigma+angle``:
    ``out(p) = sum_i k_i x(p + o_i)`` for ``i = 0 .. 2 ceil(radius)``, with weights
    ``k_i ~ exp(-i^2 / 2 sigma^2)`` (summing to 1) and offsets ``o_i`` the pixel nearest to
    ``i`` steps along the angle (degrees from the +column axis towards +row; rounded
    half down), the image extended by its edge pixels. One angle per image."""
    n, h, w = x.shape
    width = int(2 * np.ceil(radius) + 1)
    i = np.arange(width)
    k = np.exp(-(i * i) / (2.0 * sigma * sigma))
    k /= k.sum()
    a = np.deg2rad(np.asarray(angles, np.float64))[:, None]
    ox = np.ceil(i * np.cos(a) - 0.5).astype(np.int64)  # [N, width] column offsets
    oy = np.ceil(i * np.sin(a) - 0.5).astype(np.int64)
    pad = width
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="edge").reshape(n, -1)
    wp = w + 2 * pad
    base = ((np.arange(h)[:, None] + pad) * wp + np.arange(w)[None, :] + pad).reshape(1, -1)
    out = np.zeros((n, h * w))
    for j in range(width):
        out += k[j] * np.take_along_axis(xp, base + (oy[:, j] * wp + ox[:, j])[:, None], axis=1)
    return out.reshape(n, h, w)


def canny(x: np.ndarray, sigma: float = 1.0, low: float = 0.1, high: float = 0.2) -> np.ndarray:
    """``bool[N, H, W]``: Canny edges of ``f[N, H, W]`` (0-1 scale), as scikit-image computes
    them. 1. Gaussian smoothing (zero outside, renormalised by the smoothed all-ones mask);
    2. Sobel gradients ``gy`` (rows) and ``gx`` (columns), magnitude ``hypot``; 3. non-maximum
    suppression: a pixel (not on the border, gradient non-zero) is kept where its magnitude
    is at least the magnitude interpolated at one step forward and one step back along the
    gradient; 4. hysteresis: kept pixels of magnitude >= ``low`` form 8-connected
    components, and those holding one of magnitude >= ``high`` are the edges."""
    _, h, w = x.shape
    norm = ndi.gaussian_filter(np.ones((h, w)), sigma, mode="constant")
    s = ndi.gaussian_filter(x.astype(np.float64), (0, sigma, sigma), mode="constant") / norm
    gy, gx = sobel(s, axis=1), sobel(s, axis=2)
    mag = np.hypot(gy, gx)
    peak = suppress_non_maxima(mag, gy, gx)
    strong = peak & (mag >= high)
    weak = peak & (mag >= low)
    within = np.zeros((3, 3, 3), bool)
    within[1] = True  # 8-connectivity inside each image, none across images
    labels, count = ndi.label(weak, within)
    keep = np.zeros(count + 1, bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    return keep[labels]


def sobel(x: np.ndarray, axis: int) -> np.ndarray:
    """The Sobel derivative of ``f[N, H, W]`` along ``axis`` (1: rows, 2: columns): ``[-1, 0, 1]``
    along it, ``[1, 2, 1]`` along the other spatial axis (``ndimage.sobel`` would smooth
    across the images too), edges reflected."""
    d = ndi.correlate1d(x, [-1.0, 0.0, 1.0], axis=axis, mode="reflect")
    return ndi.correlate1d(d, [1.0, 2.0, 1.0], axis=3 - axis, mode="reflect")


def suppress_non_maxima(mag: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """``bool[N, H, W]``: the Canny step 3 of :func:`canny`. Along the gradient the line
    leaves the 3x3 neighbourhood between an axis neighbour and a diagonal one; the
    magnitude there is interpolated linearly by ``min(|gy|,|gx|) / max(|gy|,|gx|)``."""
    n, h, w = mag.shape
    m = np.pad(mag, ((0, 0), (1, 1), (1, 1)))
    ay, ax = np.abs(gy), np.abs(gx)
    steep = ay >= ax  # the line crosses the row above/below
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(steep, ax / ay, ay / ax)
    sy, sx = np.sign(gy).astype(int), np.sign(gx).astype(int)
    sy, sx = np.where(sy == 0, 1, sy), np.where(sx == 0, 1, sx)
    # axis step (ay0, ax0) and diagonal step (sy, sx), forward along the gradient
    ay0, ax0 = np.where(steep, sy, 0), np.where(steep, 0, sx)
    nn, rr, cc = np.ogrid[:n, 1:h + 1, 1:w + 1]

    def at(dr, dc):
        return m[nn, rr + dr, cc + dc]

    ahead = (1 - t) * at(ay0, ax0) + t * at(sy, sx)
    behind = (1 - t) * at(-ay0, -ax0) + t * at(-sy, -sx)
    inner = np.zeros((h, w), bool)
    inner[1:-1, 1:-1] = True
    return inner & (mag > 0) & (mag >= ahead) & (mag >= behind)
