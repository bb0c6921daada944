"""The published CIFAR-10-C severity constants and the image operations the colour
corruptions share (:mod:`cnn_jax.corruptions.colour` registers the corruptions).

Everything here works on a batch: float images ``[N, H, W, C]`` (or single-channel layers
``[N, H, W]``) on the 0-1 scale, the batch axis first. The operations re-create, in NumPy and
SciPy, what the published recipe (Hendrycks & Dietterich 2019, ``make_cifar_c.py``) takes from
scikit-image, OpenCV and ImageMagick: HSV conversion, Gaussian filtering, the anti-aliased disk
kernel, ImageMagick's motion-blur line kernel, the centre zoom and the plasma fractal.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

# The CIFAR-10-C constants of ``make_cifar_c.py``, one entry per severity 1-5 (the meaning of
# each tuple is in the docstring of the corruption of the same name).
PARAMS: dict[str, tuple] = {
    # noise
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # std on the 0-1 scale
    "shot_noise": (500, 250, 100, 75, 50),  # Poisson events per unit intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # fraction of values set to 0 or 1
    # blur
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # radius, alias
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # ImageMagick radius, sigma
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),  # zoom factors np.arange(1, end, 0.01)
    # weather (frost omitted: see cnn_jax.corruptions.colour)
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95),
             (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # strength, wibble decay
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    # digital
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor on the deviation from the mean
    # alpha, sigma, affine jitter as fractions of the image side (x 32 = the recipe's pixels)
    "elastic_transform": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                          (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # side of the intermediate image / side
    "jpeg_compression": (80, 65, 58, 50, 40),  # Pillow JPEG quality
    # extra (the benchmark's four held-out corruptions)
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),  # std of the multiplicative noise
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),  # sigma in pixels
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0),
                (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0),
                (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),  # S * a + b
}

REFERENCE = ("Hendrycks & Dietterich 2019, CIFAR-10-C (hendrycks/robustness, "
             "ImageNet-C/create_c/make_cifar_c.py)")


def colour(name: str, group: str):
    """``@colour(name, group)``: registers a colour-family corruption of CIFAR-10-C's
    ``group`` with this module's :data:`REFERENCE`."""
    from cnn_jax.corruptions.base import register

    return register(name, family="colour", group=group, reference=REFERENCE)


def at(name: str, severity: int):
    """Corruption ``name``'s parameter at ``severity`` (1-5) from :data:`PARAMS`."""
    return PARAMS[name][severity - 1]


def unit(images: np.ndarray) -> np.ndarray:
    """``u8`` images as float64 on the 0-1 scale."""
    return images.astype(np.float64) / 255.0


def spatial(x: np.ndarray, value, rest=0):
    """A per-axis tuple for ``x`` (batch first): ``value`` on the two image axes, ``rest`` on
    the batch axis and on a channel axis if there is one."""
    return (rest, value, value) + (rest,) * (x.ndim - 3)


def blur(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """Each image (and channel) of ``x`` filtered by a Gaussian of ``sigma`` pixels: what
    ``skimage.filters.gaussian`` does (edge pixels repeated, 4 sigma kernel by default)."""
    return ndimage.gaussian_filter(x, spatial(x, float(sigma)), mode=mode, truncate=truncate)


def box3(x: np.ndarray) -> np.ndarray:
    """OpenCV's ``blur(x, (3, 3))``: the 3 x 3 mean, borders reflected about the edge pixel."""
    return ndimage.uniform_filter(x, spatial(x, 3, 1), mode="mirror")


def gray(x: np.ndarray) -> np.ndarray:
    """The luma ``0.299 R + 0.587 G + 0.114 B`` of ``[..., 3]`` images (OpenCV's RGB2GRAY)."""
    return x @ np.array([0.299, 0.587, 0.114])


def rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """``[..., 3]`` RGB on 0-1 to HSV on 0-1 (hue 0 and saturation 0 for grey pixels), the
    convention of ``skimage.color.rgb2hsv`` and of ``colorsys``."""
    v = x.max(-1)
    delta = v - x.min(-1)
    grey = delta == 0
    safe = np.where(grey, 1.0, delta)
    r, g, b = np.moveaxis(x, -1, 0)
    h = np.where(r == v, (g - b) / safe, np.where(g == v, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = np.where(grey, 0.0, (h / 6.0) % 1.0)
    s = np.where(grey, 0.0, delta / np.where(v == 0, 1.0, v))
    return np.stack([h, s, v], axis=-1)


# Per hue sector (0-5): which of (v, p, q, t) gives R, G and B.
_SECTOR = np.array([[0, 3, 1], [2, 0, 1], [1, 0, 3], [1, 2, 0], [3, 1, 0], [0, 1, 2]])


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_hsv` (the textbook six-sector formula)."""
    h, s, v = np.moveaxis(hsv, -1, 0)
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    candidates = np.stack([v, v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)], axis=-1)
    pick = _SECTOR[sector.astype(np.int64) % 6]
    return np.take_along_axis(candidates, pick, axis=-1)


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The recipe's defocus kernel: the pixels within ``radius`` of the centre, normalised to
    sum 1, then smoothed by a 3 x 3 Gaussian of sigma ``alias_blur`` (5 x 5 for radii over 8)
    against aliasing; cut to its non-zero support."""
    half = max(8, math.ceil(radius))
    ax = np.arange(-half, half + 1)
    disk = (ax[:, None] ** 2 + ax[None, :] ** 2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    k = 1 if radius <= 8 else 2
    taps = np.exp(-(np.arange(-k, k + 1) ** 2) / (2.0 * alias_blur**2))
    taps /= taps.sum()
    kernel = ndimage.correlate(disk, np.outer(taps, taps), mode="mirror")
    keep = math.floor(radius) + k
    return kernel[half - keep:half + keep + 1, half - keep:half + keep + 1]


def motion_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's ``MotionBlurImage(radius, sigma, angle)`` of each image of ``x`` (one
    angle in degrees per image): ``2 ceil(radius) + 1`` taps ``i`` weighted by
    ``exp(-i^2 / 2 sigma^2)`` (normalised), tap ``i`` reading the pixel offset by
    ``(ceil(i sin a - 1/2), ceil(i cos a - 1/2))`` (rows, columns), edge pixels repeated
    outside the image. The blur trails on one side only."""
    n, h, w = x.shape[:3]
    width = 2 * math.ceil(radius) + 1
    taps = np.arange(width)
    weights = np.exp(-(taps**2) / (2.0 * sigma**2))
    weights /= weights.sum()
    a = np.deg2rad(np.asarray(angles, dtype=np.float64))[:, None]
    drow = np.ceil(taps * np.sin(a) - 0.5).astype(np.int64)  # [N, width]
    dcol = np.ceil(taps * np.cos(a) - 0.5).astype(np.int64)
    batch = np.arange(n)[:, None, None]
    out = np.zeros(x.shape, dtype=np.float64)
    for i in range(width):
        rows = np.clip(np.arange(h)[None, :] + drow[:, i:i + 1], 0, h - 1)
        cols = np.clip(np.arange(w)[None, :] + dcol[:, i:i + 1], 0, w - 1)
        out += weights[i] * x[batch, rows[:, :, None], cols[:, None, :]]
    return out


def zoom_matrix(size: int, factor: float) -> np.ndarray:
    """``[size, size]`` matrix of the recipe's ``clipped_zoom`` along one axis: crop the
    central ``ceil(size / factor)`` pixels, zoom them by ``factor`` with linear interpolation
    (``scipy.ndimage.zoom(order=1)``: corner pixels stay corners), keep the central ``size``."""
    crop = math.ceil(size / factor)
    top = (size - crop) // 2
    out = round(crop * factor)
    trim = (out - size) // 2
    coord = np.arange(out) * ((crop - 1) / (out - 1) if out > 1 else 0.0)
    lo = np.clip(np.floor(coord).astype(np.int64), 0, max(crop - 2, 0))
    frac = coord - lo
    m = np.zeros((out, size))
    rows = np.arange(out)
    np.add.at(m, (rows, top + lo), 1 - frac)
    np.add.at(m, (rows, top + np.minimum(lo + 1, crop - 1)), frac)
    return m[trim:trim + size]


def clipped_zoom(planes: np.ndarray, factor: float) -> np.ndarray:
    """Each image plane ``[..., H, W]`` (image axes last) zoomed by ``factor`` about its
    centre and cropped to its size (:func:`zoom_matrix` along rows and columns)."""
    rows = zoom_matrix(planes.shape[-2], factor)
    cols = zoom_matrix(planes.shape[-1], factor)
    return rows @ planes @ cols.T


def plasma_fractal(n: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` diamond-square height maps ``[n, size, size]`` scaled to 0-1 (the recipe's
    ``plasma_fractal``; ``size`` is rounded up to a power of two and the maps cut to it).

    Starting from a zero corner on a wrapped-around grid of side ``step``: each square's
    centre becomes the mean of its four corners plus ``wibble * U(-wibble, wibble)``, then
    each edge midpoint the mean of its four diamond neighbours plus the same; ``step`` halves
    and ``wibble`` (100 at first) is divided by ``decay`` until the grid is full."""
    side = 1 << max(size - 1, 1).bit_length()
    m = np.zeros((n, side, side))
    step, wibble = side, 100.0

    def jittered(total):
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = m[:, ::step, ::step]
        around = corners + np.roll(corners, -1, axis=1)
        m[:, half::step, half::step] = jittered(around + np.roll(around, -1, axis=2))
        centres, corners = m[:, half::step, half::step], m[:, ::step, ::step]
        m[:, ::step, half::step] = jittered(centres + np.roll(centres, 1, axis=1)
                                            + corners + np.roll(corners, -1, axis=2))
        m[:, half::step, ::step] = jittered(centres + np.roll(centres, 1, axis=2)
                                            + corners + np.roll(corners, -1, axis=1))
        step //= 2
        wibble /= decay
    m -= m.min(axis=(1, 2), keepdims=True)
    m /= m.max(axis=(1, 2), keepdims=True)
    return m[:, :size, :size]
