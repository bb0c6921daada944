"""RandAugment (Cubuk et al. 2020, "RandAugment: Practical automated data augmentation with
a reduced search space") on ``u8[H, W, C]`` images, with NumPy and Pillow.

:func:`rand_augment` applies ``n`` operations, each drawn uniformly (with replacement) from
the paper's fourteen (:data:`OPS`), all at the one magnitude ``m``. ``m`` is on the paper's
0-30 scale, where 10 is the strongest setting of AutoAugment's ranges: an operation's
parameter is linear in the level ``l = m / 10`` (as in the TensorFlow implementation the
paper used, and timm's with ``magnitude_max`` raised to 30), so ``m`` above 10 extrapolates.
``s`` is a random sign (±1, drawn per operation):

==============  ==========================================================================
identity        the image
autocontrast    ``ImageOps.autocontrast`` (each channel stretched to 0-255)
equalize        ``ImageOps.equalize`` (each channel's histogram equalised)
rotate          ``s * 30 l`` degrees (counter-clockwise positive) about the centre
solarize        pixels ``>= 256 - floor(256 l)`` (at least 0) inverted (``255 - x``); m = 0:
                none, m >= 10: all
color           ``ImageEnhance.Color``, factor ``max(0.1, 1 + s * 0.9 l)``
posterize       keep the ``8 - floor(4 l)`` high bits (clipped to 1-8): m = 0 keeps 8,
                m = 10 keeps 4
contrast        ``ImageEnhance.Contrast``, the same factor as color
brightness      ``ImageEnhance.Brightness``, the same factor
sharpness       ``ImageEnhance.Sharpness``, the same factor
shear_x         factor ``k = s * 0.3 l``: output ``(x, y)`` takes the input at
                ``(x + k (y - H / 2), y)`` (a shear about the centre row)
shear_y         output ``(x, y)`` takes the input at ``(x, y + k (x - W / 2))``
translate_x     ``s * round(0.45 l * W)`` whole pixels (positive: to the right)
translate_y     ``s * round(0.45 l * H)`` whole pixels (positive: down)
==============  ==========================================================================

Severity grows with ``m`` for every operation (solarize and posterize use timm's
"increasing" variants). Geometric operations resample bilinearly and fill the uncovered
area with grey 128. Grey (one-channel) images take every operation on their single channel;
color (saturation) is then the identity, a grey image having no colour to change.

Randomness: the operations and signs of one image come from one ``numpy`` generator (the
caller seeds it by ``(seed, step, row)``): per operation, an index in ``[0, 14)`` then a
uniform number (sign ``-1`` below 0.5), both drawn whatever the operation.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

OPS = ("identity", "autocontrast", "equalize", "rotate", "solarize", "color", "posterize",
       "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")
MAX_MAGNITUDE = 30  # the paper's scale: 0-30
FILL = 128  # grey: what geometric operations leave where no pixel maps
_ENHANCE = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast,
            "brightness": ImageEnhance.Brightness, "sharpness": ImageEnhance.Sharpness}


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _array(im: Image.Image) -> np.ndarray:
    a = np.asarray(im)
    return a[..., None] if a.ndim == 2 else a


def parameter(name: str, m: float, sign: int, size: tuple[int, int] = (0, 0)):
    """Operation ``name``'s parameter at magnitude ``m`` with sign ``sign`` (±1) on an
    image of ``size = (H, W)`` (the translations'); ``None`` for those that take none."""
    level = m / 10
    if name == "rotate":
        return sign * 30 * level
    if name == "solarize":
        return max(0, 256 - math.floor(256 * level))
    if name == "posterize":
        return min(8, max(1, 8 - math.floor(4 * level)))
    if name in _ENHANCE:
        return max(0.1, 1 + sign * 0.9 * level)
    if name in ("shear_x", "shear_y"):
        return sign * 0.3 * level
    if name == "translate_x":
        return sign * round(0.45 * level * size[1])
    if name == "translate_y":
        return sign * round(0.45 * level * size[0])
    return None


def solarize(image: np.ndarray, threshold: int) -> np.ndarray:
    return np.where(image >= threshold, 255 - image, image).astype(np.uint8)


def posterize(image: np.ndarray, bits: int) -> np.ndarray:
    return image & np.uint8((0xFF << (8 - bits)) & 0xFF)


def translate(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` moved ``dy`` rows down and ``dx`` columns right, grey where uncovered."""
    h, w = image.shape[:2]
    out = np.full_like(image, FILL)
    if abs(dy) < h and abs(dx) < w:
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            image[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def _affine(im: Image.Image, coeffs) -> Image.Image:
    fill = FILL if im.mode == "L" else (FILL,) * 3
    return im.transform(im.size, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=fill)


def apply(image: np.ndarray, name: str, m: float, sign: int = 1) -> np.ndarray:
    """Operation ``name`` at magnitude ``m`` (sign ``sign`` for the signed ones) on
    ``image: u8[H, W, C]`` (C = 1 or 3); a new array."""
    h, w = image.shape[:2]
    p = parameter(name, m, sign, (h, w))
    if name == "identity":
        return image.copy()
    if name == "solarize":
        return solarize(image, p)
    if name == "posterize":
        return posterize(image, p)
    if name == "translate_x":
        return translate(image, 0, p)
    if name == "translate_y":
        return translate(image, p, 0)
    im = _pil(image)
    if name == "autocontrast":
        out = ImageOps.autocontrast(im)
    elif name == "equalize":
        out = ImageOps.equalize(im)
    elif name in _ENHANCE:
        out = _ENHANCE[name](im).enhance(p)
    elif name == "rotate":
        fill = FILL if im.mode == "L" else (FILL,) * 3
        out = im.rotate(p, resample=Image.BILINEAR, fillcolor=fill)
    elif name == "shear_x":  # output (x, y) samples the input at (x + p (y - H/2), y)
        out = _affine(im, (1, p, -p * h / 2, 0, 1, 0))
    elif name == "shear_y":
        out = _affine(im, (1, 0, 0, p, 1, -p * w / 2))
    else:
        raise ValueError(f"unknown RandAugment operation {name!r}; choose one of: {', '.join(OPS)}")
    return _array(out)


def draws(rng: np.random.Generator, n: int) -> list[tuple[str, int]]:
    """The ``n`` ``(operation, sign)`` pairs of one image (see the module docstring)."""
    out = []
    for _ in range(n):
        name = OPS[int(rng.integers(0, len(OPS)))]
        out.append((name, -1 if rng.random() < 0.5 else 1))
    return out


def rand_augment(image: np.ndarray, rng: np.random.Generator, n: int, m: float) -> np.ndarray:
    """``n`` operations drawn from ``rng`` at magnitude ``m``, applied in turn."""
    for name, sign in draws(rng, n):
        image = apply(image, name, m, sign)
    return image
