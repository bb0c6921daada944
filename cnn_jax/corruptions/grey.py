"""The grey family: the 15 MNIST-C corruptions (Mu & Gilmer 2019) for 28x28 grey digits.

Regenerated from the definitions of the published recipe (``google-research/mnist-c``,
``corruptions.py``) in NumPy and SciPy only; the batched drawing, blurring and
edge-finding blocks are in :mod:`cnn_jax.corruptions.grey_draw`. MNIST-C applies each
corruption at one fixed strength; here each has five, in :data:`PARAMS`, and severity
:data:`PUBLISHED_SEVERITY` (3) is the published one (:data:`PUBLISHED`: the recipe
function's default, which its notebook calls on PIL digits), 1-2 milder and 4-5 stronger. Where the
recipe's code and its evident intent part, the code is followed, since its images are
MNIST-C (the glass blur's vertical-only blur, the zigzag's last point). Pixel values are
taken to 0-1 (``/255``), corrupted, and rounded back to ``u8``
(:func:`~cnn_jax.corruptions.base.to_u8`). Sizes other than 28x28 work: stripe widths and
shifts scale with the width (at least 1 px), lines span the image's own rows and columns,
the other parameters are in pixels as for 28x28.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage as ndi

from cnn_jax.corruptions import grey_draw as draw
from cnn_jax.corruptions.base import register, to_u8

PUBLISHED_SEVERITY = 3
REFERENCE = "Mu & Gilmer 2019, MNIST-C (google-research/mnist-c corruptions.py)"

# corruption -> its parameter at severities 1..5; PARAMS[name][2] is the published one.
PARAMS: dict[str, tuple] = {
    "shot_noise": (12, 6, 3, 2, 1),  # Poisson photons per unit of brightness (fewer: noisier)
    "impulse_noise": (0.06, 0.11, 0.17, 0.22, 0.27),  # fraction of pixels set to 0 or 255
    # (vertical blur sigma, max swap distance delta, swap passes)
    "glass_blur": ((0.5, 1, 1), (0.6, 1, 1), (0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3)),
    "motion_blur": ((4, 1), (7, 2), (10, 3), (15, 5), (15, 8)),  # (radius px, sigma px)
    "shear": (0.2, 0.3, 0.4, 0.6, 0.8),  # shear angle, radians (random sign)
    "scale": (0.9, 0.8, 0.7, 0.6, 0.5),  # zoom factor about the centre (< 1: smaller digit)
    "rotate": (0.2, 0.3, 0.4, 0.6, 0.8),  # rotation angle, radians (random sign)
    "brightness": (0.3, 0.4, 0.5, 0.6, 0.7),  # added to every pixel (0-1 scale)
    "translate": (1, 2, 3, 4, 5),  # shift in pixels along each axis (random signs)
    "stripe": (3, 5, 7, 9, 11),  # width in pixels of the inverted band at each side
    "fog": ((2.0, 2.0), (2.5, 1.7), (3.0, 1.4), (3.5, 1.3), (4.0, 1.2)),  # (strength, decay)
    # (mean, sd, sigma, threshold, mask sigma) of the liquid layer
    "spatter": ((0.65, 0.3, 1, 0.69, 1.5), (0.65, 0.3, 1, 0.67, 1.5), (0.65, 0.3, 1, 0.65, 1.5),
                (0.67, 0.4, 1, 0.65, 1.5), (0.70, 0.45, 1, 0.65, 1.5)),
    "dotted_line": (1.5, 1.9, 2.3, 2.8, 3.4),  # line profile width (px)
    "zigzag": (1.5, 1.9, 2.3, 2.8, 3.4),  # line profile width (px)
    "canny_edges": (0.6, 0.8, 1.0, 1.5, 2.0),  # smoothing sigma (px); thresholds 0.1 / 0.2
}
PUBLISHED = {name: values[PUBLISHED_SEVERITY - 1] for name, values in PARAMS.items()}


def _corruption(name: str, group: str):
    """Registers ``fn`` as grey corruption ``name`` (an empty batch comes back as it is)."""

    def deco(fn):
        @functools.wraps(fn)
        def corrupt(images, severity, rng):
            return images.copy() if len(images) == 0 else fn(images, severity, rng)

        return register(name, family="grey", group=group, reference=f"{REFERENCE}: {name}")(corrupt)

    return deco


def _unit(images: np.ndarray) -> np.ndarray:
    return images[..., 0].astype(np.float64) / 255.0


def _u8(x: np.ndarray) -> np.ndarray:
    return to_u8(np.clip(x, 0.0, 1.0) * 255.0)[..., None]


def _px(value: float, size: int) -> int:
    """A length of the recipe's 28-pixel geometry on an image ``size`` pixels wide (>= 1)."""
    return max(1, round(value * size / 28))


@_corruption("shot_noise", "noise")
def shot_noise(images, severity, rng):
    """Poisson (photon) noise: ``clip(Poisson(lam * x) / lam, 0, 1)`` on 0-1 pixels, ``lam``
    photons per unit of brightness (published ``lam = 3``). Black stays black; the mean
    is kept (up to the clip at 1) and the variance is ``x / lam``."""
    lam = PARAMS["shot_noise"][severity - 1]
    return _u8(rng.poisson(_unit(images) * lam) / lam)


@_corruption("impulse_noise", "noise")
def impulse_noise(images, severity, rng):
    """Salt and pepper: each pixel independently, with probability ``amount`` (published
    0.17), is set to 255 or 0 (1/2 each)."""
    amount = PARAMS["impulse_noise"][severity - 1]
    hit = rng.random(images.shape) < amount
    salt = rng.random(images.shape) < 0.5
    return np.where(hit, np.where(salt, 255, 0), images).astype(np.uint8)


@_corruption("glass_blur", "blur")
def glass_blur(images, severity, rng):
    """Glass blur ``(sigma, delta, passes)`` (published ``(0.7, 1, 2)``): Gaussian blur,
    quantised to ``u8`` by truncation, ``passes`` sweeps of random local pixel swaps at
    most ``delta`` away (:func:`~cnn_jax.corruptions.grey_draw.glass_shuffle`), blur
    again. The blur is along the rows only (vertical), as in the recipe: its
    ``gaussian(..., multichannel=True)`` on a 2-D digit takes the last axis for channels."""
    sigma, delta, passes = PARAMS["glass_blur"][severity - 1]
    x = np.floor(draw.blur(_unit(images), sigma, axes=(1,)) * 255).astype(np.uint8)
    x = draw.glass_shuffle(x, delta, passes, rng)
    return _u8(draw.blur(x / 255.0, sigma, axes=(1,)))


@_corruption("motion_blur", "blur")
def motion_blur(images, severity, rng):
    """ImageMagick's motion blur ``(radius, sigma)`` (published ``(10, 3)``) at an angle
    uniform in ±45 degrees from the horizontal, one per image: each pixel becomes the
    Gaussian-weighted mean of the ``2 radius + 1`` pixels on a ray from it
    (:func:`~cnn_jax.corruptions.grey_draw.line_blur`), so the digit smears to one side."""
    radius, sigma = PARAMS["motion_blur"][severity - 1]
    angles = rng.uniform(-45.0, 45.0, len(images))
    return _u8(draw.line_blur(_unit(images), radius, sigma, angles))


def _warp(x: np.ndarray, matrix) -> np.ndarray:
    """``f[N, H, W]`` resampled bilinearly at ``centre + matrix @ (p - centre)`` for each
    output pixel ``p`` (row, column), 0 outside the image (interpolated towards it)."""
    _, h, w = x.shape
    m = np.eye(3)
    m[1:, 1:] = matrix
    centre = np.array([0.0, (h - 1) / 2, (w - 1) / 2])
    return ndi.affine_transform(x, m, centre - m @ centre, order=1, mode="grid-constant", cval=0.0)


def _warp_signed(images, rng, matrix_of):
    """``images`` warped by ``matrix_of(+1)`` or ``matrix_of(-1)``, a random sign per image."""
    x = _unit(images)
    signs = rng.choice([-1, 1], len(x))
    out = np.empty_like(x)
    for s in (-1, 1):
        if (signs == s).any():
            out[signs == s] = _warp(x[signs == s], matrix_of(s))
    return _u8(out)


@_corruption("shear", "affine")
def shear(images, severity, rng):
    """scikit-image's shear by angle ``s`` (published 0.4 rad, random sign) about the image
    centre ``c``: output pixel ``(r, q)`` samples the input at row ``c + cos(s) (r - c)`` and
    column ``q - sin(s) (r - c)`` (bilinear, black outside)."""
    a = PARAMS["shear"][severity - 1]
    return _warp_signed(images, rng, lambda s: [[np.cos(s * a), 0.0], [-np.sin(s * a), 1.0]])


@_corruption("scale", "affine")
def scale(images, severity, rng):
    """Zoom about the centre by ``f`` (published 0.7: the digit shrinks to 70 %): output
    pixel ``p`` samples the input at ``c + (p - c) / f`` (bilinear, black outside)."""
    f = PARAMS["scale"][severity - 1]
    return _u8(_warp(_unit(images), np.eye(2) / f))


@_corruption("rotate", "affine")
def rotate(images, severity, rng):
    """Rotation by ``a`` (published 0.4 rad = 22.9 degrees, random sign) about the centre:
    output pixel ``(r, q)`` samples the input at ``c + R (p - c)`` with
    ``R = [[cos a, sin a], [-sin a, cos a]]`` in (row, column) (bilinear, black outside)."""
    a = PARAMS["rotate"][severity - 1]

    def matrix(s):
        cos, sin = np.cos(s * a), np.sin(s * a)
        return [[cos, sin], [-sin, cos]]

    return _warp_signed(images, rng, matrix)


@_corruption("brightness", "digital")
def brightness(images, severity, rng):
    """``clip(x + b, 0, 1)`` on 0-1 pixels (published ``b = 0.5``): the recipe adds ``b`` to
    the HSV value of the grey pixel, which for grey is exactly this."""
    b = PARAMS["brightness"][severity - 1]
    return _u8(_unit(images) + b)


@_corruption("translate", "affine")
def translate(images, severity, rng):
    """Shift by ``t`` pixels (published 3) along each axis, each sign random per image:
    output ``(r, q)`` is input ``(r + dy, q + dx)``, ``dy, dx = ±t``, black where that is
    outside."""
    n, h, w, _ = images.shape
    t = PARAMS["translate"][severity - 1]
    ty, tx = _px(t, h), _px(t, w)
    sy, sx = rng.choice([-1, 1], (2, n))
    out = np.zeros_like(images)
    for dy in (-ty, ty):
        for dx in (-tx, tx):
            sel = (sy * ty == dy) & (sx * tx == dx)
            src = images[sel, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
            out[sel, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)] = src
    return out


@_corruption("stripe", "digital")
def stripe(images, severity, rng):
    """Inverted bands (``255 - x``) of ``k`` columns at the left and at the right edge
    (published ``k = 7``: columns 0-6 and 21-27 of 28)."""
    w = images.shape[2]
    k = min(_px(PARAMS["stripe"][severity - 1], w), w // 2)
    out = images.copy()
    out[:, :, :k] = 255 - out[:, :, :k]
    out[:, :, w - k:] = 255 - out[:, :, w - k:]
    return out


@_corruption("fog", "overlay")
def fog(images, severity, rng):
    """Fog ``(strength, decay)`` (published ``(3.0, 1.4)``): the top-left ``H x W`` of a
    256x256 plasma fractal ``p`` per image (:func:`~cnn_jax.corruptions.grey_draw.plasma`)
    is added, ``x + strength p``, and rescaled by ``m / (m + strength)`` with ``m`` the
    image's maximum, so its brightest clean pixel stays at most ``m``: lower contrast."""
    strength, decay = PARAMS["fog"][severity - 1]
    x = _unit(images)
    n, h, w = x.shape
    size = max(256, 1 << int(np.ceil(np.log2(max(h, w)))))
    p = np.concatenate([draw.plasma(rng, min(16, n - i), decay, size)[:, :h, :w]
                        for i in range(0, n, 16)])  # 16 maps at a time: in the cache
    top = x.max(axis=(1, 2), keepdims=True)
    return _u8((x + strength * p) * top / (top + strength))


@_corruption("spatter", "overlay")
def spatter(images, severity, rng):
    """Mud spatter ``(mean, sd, sigma, threshold, mask sigma)`` (published
    ``(0.65, 0.3, 1, 0.65, 1.5)``): Gaussian noise ``N(mean, sd)`` blurred by ``sigma``; where
    it exceeds ``threshold`` a mask, blurred by ``mask sigma`` and kept where >= 0.8 (blob
    interiors); there the pixel is mixed with mud grey 63: ``x (1 - m) + 63/255 m``."""
    mean, sd, sigma, threshold, mask_sigma = PARAMS["spatter"][severity - 1]
    x = _unit(images)
    liquid = draw.blur(rng.normal(mean, sd, x.shape), sigma)
    m = draw.blur((liquid > threshold).astype(np.float64), mask_sigma)
    m = np.where(m >= 0.8, m, 0.0)
    return _u8(x * (1 - m) + 63 / 255 * m)


@_corruption("dotted_line", "overlay")
def dotted_line(images, severity, rng):
    """A dashed line (2 px on, 2 px off, starting off at column 0) across the image from
    column 0 to the last one, between random rows in ``[0, H - 1)`` at each end, added to
    the digit; its soft profile is 0 from ``width (1 - 1/e)`` px (published width 2.3:
    1.45 px) (:func:`~cnn_jax.corruptions.grey_draw.line_field`)."""
    width = PARAMS["dotted_line"][severity - 1]
    x = _unit(images)
    n, h, w = x.shape
    r0, r1 = rng.integers(0, h - 1, (2, n))
    line = draw.line_field(np.zeros(n), r0, np.full(n, w - 1.0), r1, (h, w), width)
    line[:, :, (np.arange(w) // 2) % 2 == 0] = 0.0
    return _u8(x + line)


@_corruption("zigzag", "overlay")
def zigzag(images, severity, rng):
    """A zigzag (teeth 2 px long and 2 px high) from column 2 to column ``W - 3``, starting at
    a random row, drawn with the dotted line's soft profile of ``width`` (published 2.3)
    and added to the digit (:func:`~cnn_jax.corruptions.grey_draw.zigzag_field`)."""
    width = PARAMS["zigzag"][severity - 1]
    x = _unit(images)
    return _u8(x + draw.zigzag_field(rng, len(x), x.shape[1:], width))


@_corruption("canny_edges", "digital")
def canny_edges(images, severity, rng):
    """The Canny edge map (255 on edges, 0 elsewhere) with smoothing ``sigma`` (published 1,
    scikit-image's default) and its default thresholds 0.1 / 0.2 on the Sobel magnitude
    of the 0-1 image (:func:`~cnn_jax.corruptions.grey_draw.canny`)."""
    sigma = PARAMS["canny_edges"][severity - 1]
    return (draw.canny(_unit(images), sigma) * np.uint8(255)).astype(np.uint8)[..., None]
