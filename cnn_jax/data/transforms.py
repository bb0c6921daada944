"""Image decoding and augmentation, shared by the in-memory and the streaming pipeline.

Both pipelines turn a dataset's examples into batches with these functions, so the two
give the same batch for the same seed and step. An *example* is a decoded image
(``u8[H, W, C]``), resized to ``image_size`` × ``image_size`` when that is set
(:func:`resize_square`). A training batch then applies, in order:

1. with ``crop_size``: ImageNet-style :func:`random_resized_crop` per example, drawn from
   ``numpy.random.default_rng([seed, RRC_STREAM, step, row])``, ``row`` the example's
   position in the *global* batch (so the draw is the same on any host, worker or resume);
2. CIFAR-style :func:`pad_crop_flip` over the batch (padded random crop, horizontal flip),
   drawn from ``default_rng([seed, AUGMENT_STREAM, step])`` for the whole global batch;
3. :func:`normalize` with the dataset's channel statistics.

With RandAugment or batch mixing on, :func:`cnn_jax.data.augment.train_batch` applies them
to these views' ``u8`` pixels between steps 2 and 3.

An evaluation batch applies :func:`center_crop` (with ``crop_size``) and :func:`normalize`.

Resampling is Pillow's bilinear filter, which averages over the source pixels a target
pixel covers when it shrinks an image (antialiased, like ``torchvision``'s default).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

# Stream constants of the per-step random generators (see the module docstring).
AUGMENT_STREAM = 0xA06
RRC_STREAM = 0x55C
# The usual ImageNet ranges (Szegedy et al. 2015, "Going deeper with convolutions"; the
# defaults of torchvision's RandomResizedCrop and of the Flax ImageNet example).
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
# Evaluation: resize the shorter side to crop_size / EVAL_CROP_FRACTION, centre crop.
EVAL_CROP_FRACTION = 0.875


class BadImage(ValueError):
    """Bytes that do not decode to an image (the message says why)."""


def decode(data: bytes, channels: int) -> np.ndarray:
    """PNG/JPEG (any format Pillow reads) bytes → ``u8[H, W, channels]``; 1 channel is
    grey ("L"), 3 is RGB (palette, alpha and CMYK images are converted)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            mode = "L" if channels == 1 else "RGB"
            if im.mode != mode:
                im = im.convert(mode)
            a = np.asarray(im)
    except Image.UnidentifiedImageError:
        raise BadImage("not an image format Pillow reads") from None
    except Exception as e:  # noqa: BLE001  (Pillow raises many types for bad data)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadImage(first) from None
    return a[..., None] if a.ndim == 2 else a


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _array(im: Image.Image) -> np.ndarray:
    a = np.asarray(im)
    return a[..., None] if a.ndim == 2 else a


def _resize_box(image: np.ndarray, size: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """The region ``box = (left, top, right, bottom)`` of ``image`` resampled to
    ``size`` × ``size`` (one resampling, no intermediate image)."""
    h, w = image.shape[:2]
    if box == (0, 0, w, h) and (h, w) == (size, size):
        return image
    return _array(_pil(image).resize((size, size), Image.BILINEAR, box=box))


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """``u8[H, W, C]`` → ``u8[size, size, C]``: the shorter side resized to ``size`` and the
    longer one centre-cropped to it (the aspect ratio is kept)."""
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) / 2, (w - s) / 2
    return _resize_box(image, size, (left, top, left + s, top + s))


def random_resized_crop(
    image: np.ndarray,
    rng: np.random.Generator,
    size: int,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
) -> np.ndarray:
    """Inception-style random-resized crop: a region of ``scale`` × the image's area and
    aspect ratio in ``ratio`` (log-uniform), at a uniform position, resized to
    ``size`` × ``size``. Ten tries, then the centre crop of the ratio nearest the image's
    (the algorithm of torchvision's ``RandomResizedCrop``)."""
    h, w = image.shape[:2]
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            return _resize_box(image, size, (left, top, left + cw, top + ch))
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
    return _resize_box(image, size, (left, top, left + cw, top + ch))


def center_crop(image: np.ndarray, size: int, fraction: float = EVAL_CROP_FRACTION) -> np.ndarray:
    """The standard ImageNet evaluation view: the shorter side resized to
    ``round(size / fraction)``, then the central ``size`` × ``size`` (one resampling of the
    corresponding region of the original)."""
    h, w = image.shape[:2]
    short = round(size / fraction)
    side = size * min(h, w) / short  # the crop's side in original pixels
    top, left = (h - side) / 2, (w - side) / 2
    return _resize_box(image, size, (left, top, left + side, top + side))


def _draws(rng: np.random.Generator, crop_padding: int, flip: bool, total: int, rows: slice):
    """The pad-crop offsets and flip choices of batch rows ``rows`` (drawn for all
    ``total``, in this order: row offsets, column offsets, flips)."""
    dy = dx = mask = None
    if crop_padding > 0:
        dy = rng.integers(0, 2 * crop_padding + 1, total)[rows]
        dx = rng.integers(0, 2 * crop_padding + 1, total)[rows]
    if flip:
        mask = (rng.random(total) < 0.5)[rows]
    return dy, dx, mask


def _pad_crop(images: np.ndarray, p: int, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
    ys = dy[:, None] + np.arange(h)[None, :]  # [n, h]
    xs = dx[:, None] + np.arange(w)[None, :]  # [n, w]
    return padded[np.arange(n)[:, None, None], ys[:, :, None], xs[:, None, :]]


def pad_crop_flip(
    images: np.ndarray,
    rng: np.random.Generator,
    crop_padding: int,
    flip: bool,
    first_row: int = 0,
    total: int | None = None,
) -> np.ndarray:
    """Padded random crop (zero padding of ``crop_padding`` pixels) and horizontal flip of
    ``images: u8[n, H, W, C]``, rows ``[first_row, first_row + n)`` of a batch of ``total``
    (default ``n``): the draws are made for the whole batch, so a host or worker holding a
    part of it applies exactly what one holding all of it would."""
    n = len(images)
    total = n if total is None else total
    dy, dx, mask = _draws(rng, crop_padding, flip, total, slice(first_row, first_row + n))
    images = _pad_crop(images, crop_padding, dy, dx) if crop_padding > 0 else images.copy()
    if flip:
        images[mask] = images[mask][:, :, ::-1]
    return images


def normalize(images: np.ndarray, mean, std, out: np.ndarray | None = None) -> np.ndarray:
    """``u8[..., C]`` → ``f32``: ``(x / 255 - mean) / std`` per channel (into ``out`` if
    given; in place, without temporaries)."""
    if out is None:
        out = images.astype(np.float32)
    else:
        np.copyto(out, images, casting="unsafe")
    out *= np.float32(1 / 255)
    out -= np.asarray(mean, np.float32)
    out /= np.asarray(std, np.float32)
    return out


def train_views(
    examples: list[np.ndarray] | np.ndarray,
    *,
    seed: int,
    step: int,
    first_row: int,
    total: int,
    crop_size: int,
    crop_padding: int,
    flip: bool,
    mean,
    std,
    alloc=None,
    normalized: bool = True,
) -> np.ndarray:
    """Training batch ``f32[n, H, W, C]`` from decoded ``examples`` (rows
    ``[first_row, first_row + n)`` of global batch ``step`` of ``total`` rows); ``alloc``
    (a ``(shape, dtype)`` → array function) provides the output array. ``normalized=False``:
    the ``u8`` pixels, for the devices to normalise (:func:`normalize`'s arithmetic)."""
    if crop_size:
        examples = [
            random_resized_crop(x, np.random.default_rng([seed, RRC_STREAM, step, first_row + j]), crop_size)
            for j, x in enumerate(examples)
        ]
    dy = dx = mask = None
    if crop_padding or flip:
        rng = np.random.default_rng([seed, AUGMENT_STREAM, step])
        dy, dx, mask = _draws(rng, crop_padding, flip, total, slice(first_row, first_row + len(examples)))
    if crop_padding:
        images = _pad_crop(_stacked(examples), crop_padding, dy, dx)
        if flip:
            images[mask] = images[mask][:, :, ::-1]
    elif flip:  # flipped views, copied once by the stacking
        images = np.stack([x[:, ::-1] if m else x for x, m in zip(examples, mask)])
    else:
        images = _stacked(examples)
    return finish(images, mean, std, alloc, normalized)


def finish(images: np.ndarray, mean, std, alloc, normalized: bool) -> np.ndarray:
    """Normalised ``f32`` (``normalized``) or the ``u8`` pixels themselves, into ``alloc``'s
    array when given (``alloc(shape, dtype)``)."""
    if normalized:
        return normalize(images, mean, std, None if alloc is None else alloc(images.shape, np.float32))
    if alloc is None:
        return images
    out = alloc(images.shape, np.uint8)
    np.copyto(out, images)
    return out


def _stacked(examples) -> np.ndarray:
    return examples if isinstance(examples, np.ndarray) else np.stack(examples)


def eval_views(examples: list[np.ndarray] | np.ndarray, *, crop_size: int, mean, std,
               alloc=None, normalized: bool = True) -> np.ndarray:
    """Evaluation batch ``f32[n, H, W, C]`` (``u8`` unless ``normalized``) from decoded
    ``examples``."""
    if crop_size:
        examples = [center_crop(x, crop_size) for x in examples]
    return finish(_stacked(examples), mean, std, alloc, normalized)
