"""The CIFAR-10-C weather corruptions (``snow``, ``fog``, ``brightness``; frost is omitted, see
:mod:`cnn_jax.corruptions.colour`) and the extra ``spatter`` and ``saturate``, with the OpenCV
steps spatter needs (Canny edges, distance to the edges, histogram equalisation) re-written in
NumPy and SciPy. Constants: :data:`cnn_jax.corruptions.colour_ops.PARAMS`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cnn_jax.corruptions.base import to_u8
from cnn_jax.corruptions.colour_ops import (
    at,
    blur,
    box3,
    clipped_zoom,
    colour,
    gray,
    hsv_to_rgb,
    motion_blur,
    plasma_fractal,
    rgb_to_hsv,
    unit,
)

WATER = np.array([175, 238, 238]) / 255.0  # pale turquoise
MUD = np.array([63, 42, 20]) / 255.0  # mud brown
_SOBEL = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_EMBOSS = np.array([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
_TAN_22_5, _TAN_67_5 = np.tan(np.pi / 8), np.tan(3 * np.pi / 8)


# ---------------------------------------------------------------------------- weather


@colour("snow", "weather")
def snow(images, severity, rng):
    """``(mu, sd, zoom, t, radius, sigma, keep)``: a snow layer of ``N(mu, sd^2)`` values per
    pixel, zoomed by ``zoom`` about the centre, values below ``t`` zeroed, stored as ``u8``,
    motion-blurred as ImageMagick does (``radius``, ``sigma``, angle uniform in (-135, -45)
    degrees); the image is brightened towards ``max(x, 1.5 luma + 0.5)`` (weight
    ``1 - keep``) and the layer and its half-turn added, clipped to 0-1."""
    mu, sd, zoom, t, radius, sigma, keep = at("snow", severity)
    n, h, w, _ = images.shape
    layer = clipped_zoom(rng.normal(mu, sd, size=(n, h, w)), zoom)
    layer[layer < t] = 0
    layer = np.floor(np.clip(layer, 0, 1) * 255)
    layer = np.rint(motion_blur(layer, radius, sigma, rng.uniform(-135, -45, size=n))) / 255
    x = unit(images)
    x = keep * x + (1 - keep) * np.maximum(x, gray(x)[..., None] * 1.5 + 0.5)
    flakes = layer + layer[:, ::-1, ::-1]
    return to_u8(np.clip(x + flakes[..., None], 0, 1) * 255)


@colour("fog", "weather")
def fog(images, severity, rng):
    """``(s, decay)``: ``clip((x + s P) M / (M + s), 0, 1)`` with ``P`` a plasma fractal
    (diamond-square, 0-1, roughness ``decay``; the same for the three channels) and ``M`` the
    image's largest value."""
    s, decay = at("fog", severity)
    n, h, w, _ = images.shape
    x = unit(images)
    top = x.max(axis=(1, 2, 3), keepdims=True)
    haze = plasma_fractal(n, max(h, w), decay, rng)[:, :h, :w, None]
    return to_u8(np.clip((x + s * haze) * top / (top + s), 0, 1) * 255)


@colour("brightness", "weather")
def brightness(images, severity, rng):
    """HSV value ``V + c`` clipped to 0-1 (``c`` = 0.05-0.3), hue and saturation kept."""
    hsv = rgb_to_hsv(unit(images))
    hsv[..., 2] = np.clip(hsv[..., 2] + at("brightness", severity), 0, 1)
    return to_u8(np.clip(hsv_to_rgb(hsv), 0, 1) * 255)


# ------------------------------------------------------------------------------ extra


@colour("saturate", "extra")
def saturate(images, severity, rng):
    """HSV saturation ``S a + b`` clipped to 0-1 (``(a, b)`` per severity; grey pixels have
    hue 0, so ``b > 0`` tints them red), hue and value kept."""
    a, b = at("saturate", severity)
    hsv = rgb_to_hsv(unit(images))
    hsv[..., 1] = np.clip(hsv[..., 1] * a + b, 0, 1)
    return to_u8(np.clip(hsv_to_rgb(hsv), 0, 1) * 255)


@colour("spatter", "extra")
def spatter(images, severity, rng):
    """``(mu, sd, sigma, t, strength, mud)``: a liquid layer of ``N(mu, sd^2)`` values per
    pixel smoothed by a Gaussian of ``sigma``, values below ``t`` zeroed. Severities 1-3
    (water): the layer times a texture made from its Canny edges (see ``_water_texture``),
    scaled to peak ``strength``, times pale turquoise, added to the image. Severities 4-5
    (mud): the mask ``layer > t`` smoothed by a Gaussian of ``strength``, zeroed below 0.8,
    blends the image towards mud brown."""
    mu, sd, sigma, t, strength, mud = at("spatter", severity)
    n, h, w, _ = images.shape
    x = unit(images)
    liquid = blur(rng.normal(mu, sd, size=(n, h, w)), sigma)
    liquid[liquid < t] = 0
    if mud:
        m = blur((liquid > t).astype(np.float64), strength)
        m[m < 0.8] = 0
        m = m[..., None]
        return to_u8(np.clip(x * (1 - m) + m * MUD, 0, 1) * 255)
    m = liquid * _water_texture(liquid)
    peak = m.max(axis=(1, 2), keepdims=True)
    m = np.where(peak > 0, m / np.where(peak > 0, peak, 1), 0) * strength
    return to_u8(np.clip(x + m[..., None] * WATER, 0, 1) * 255)


def _water_texture(liquid: np.ndarray) -> np.ndarray:
    """The recipe's ripple texture of a ``[N, H, W]`` liquid layer: the distance (capped at 20)
    to the Canny edges (thresholds 50, 150) of the layer as ``u8``, 3 x 3 mean, histogram
    equalised, embossed (``[[-2,-1,0],[-1,1,1],[0,1,2]]``), 3 x 3 mean; ``u8`` steps as in
    the recipe (truncated after the first mean, rounded after the others)."""
    edges = canny(np.floor(np.clip(liquid, 0, 1) * 255), 50, 150)
    dist = np.floor(box3(edge_distance(edges, 20.0)))
    dist = equalize_hist(dist.astype(np.uint8)).astype(np.float64)
    dist = np.clip(np.rint(ndimage.correlate(dist, _EMBOSS[None], mode="mirror")), 0, 255)
    return np.rint(box3(dist))


def canny(images: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny edges ``bool[N, H, W]`` of ``[N, H, W]`` images on the 0-255 scale, as OpenCV's
    ``Canny(img, low, high)``: 3 x 3 Sobel gradients (edge pixels repeated), L1 magnitude,
    non-maximum suppression along the gradient's direction rounded to 45 degrees (zero
    outside the image), hysteresis: a pixel over ``low`` that survives is an edge if it is
    8-connected through such pixels to one over ``high``."""
    h, w = images.shape[1:]
    gx = ndimage.correlate(images, _SOBEL[None], mode="nearest")
    gy = ndimage.correlate(images, _SOBEL.T[None], mode="nearest")
    mag = np.abs(gx) + np.abs(gy)
    pad = np.pad(mag, ((0, 0), (1, 1), (1, 1)))

    def near(dr, dc):
        return pad[:, 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]

    ax, ay = np.abs(gx), np.abs(gy)
    across = (mag > near(0, -1)) & (mag >= near(0, 1))
    down = (mag > near(-1, 0)) & (mag >= near(1, 0))
    same = (gx < 0) == (gy < 0)
    diagonal = np.where(same, (mag > near(-1, -1)) & (mag > near(1, 1)),
                        (mag > near(-1, 1)) & (mag > near(1, -1)))
    peak = np.where(ay < ax * _TAN_22_5, across, np.where(ay > ax * _TAN_67_5, down, diagonal))
    candidate = peak & (mag > low)
    within = np.zeros((3, 3, 3), dtype=bool)
    within[1] = True  # 8-connected inside an image, never across images
    labels, count = ndimage.label(candidate, structure=within)
    kept = np.zeros(count + 1, dtype=bool)
    kept[labels[candidate & (mag > high)]] = True
    kept[0] = False
    return kept[labels]


def edge_distance(edges: np.ndarray, cap: float) -> np.ndarray:
    """Euclidean distance of each pixel to the nearest edge pixel of its image, capped at
    ``cap`` (``cap`` where an image has no edge)."""
    if not edges.any():
        return np.full(edges.shape, cap)
    # one transform for the batch: images lie cap + 1 apart, so none reaches into another
    dist = ndimage.distance_transform_edt(~edges, sampling=(cap + 1.0, 1.0, 1.0))
    return np.minimum(dist, cap)


def equalize_hist(images: np.ndarray) -> np.ndarray:
    """OpenCV's ``equalizeHist`` of each ``u8[H, W]`` of ``u8[N, H, W]``: value ``v`` goes to
    ``round(255 (cdf(v) - cdf(v0)) / (H W - cdf(v0)))`` with ``v0`` the image's smallest
    value (a constant image is kept)."""
    n = len(images)
    flat = images.reshape(n, -1).astype(np.int64)
    total = flat.shape[1]
    hist = np.bincount((flat + 256 * np.arange(n)[:, None]).ravel(), minlength=256 * n)
    hist = hist.reshape(n, 256)
    base = hist[np.arange(n), np.argmax(hist > 0, axis=1)][:, None]
    scale = 255.0 / np.maximum(total - base, 1)
    lut = np.clip(np.rint((np.cumsum(hist, axis=1) - base) * scale), 0, 255)
    lut = np.where(base == total, np.arange(256), lut)
    return np.take_along_axis(lut, flat, axis=1).reshape(images.shape).astype(np.uint8)
