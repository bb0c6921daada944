"""A training batch of either pipeline (:func:`train_batch`) and the checks of the
augmentation keys (:func:`check`).

A batch is made of the crop/flip views of :func:`~cnn_jax.data.transforms.train_views`;
with RandAugment or batch mixing on, between those views and normalisation:

1. RandAugment (:mod:`cnn_jax.data.randaugment`) on each example's ``u8`` view, drawn from
   ``numpy.random.default_rng([seed, RANDAUGMENT_STREAM, step, row])``, ``row`` the
   example's position in the global batch (as the random-resized crop's);
2. mixup or CutMix over the batch (:mod:`cnn_jax.data.mixing`), drawn from
   ``default_rng([seed, MIX_STREAM, step])``; the batch then also carries
   ``label_probs: f32[B, K]`` (soft labels), and ``label`` is the dominant one.

Every draw is a function of ``(seed, step, row)``, so a batch is the same on either path,
for any number of grain workers, and after a resume. With both off the batch is exactly the
views' (the same arrays, made the same way).
"""

from __future__ import annotations

import numbers

import numpy as np

from cnn_jax.data.mixing import Mixing, mix_images, mix_labels, paired_rows
from cnn_jax.data.randaugment import MAX_MAGNITUDE, rand_augment
from cnn_jax.data.transforms import finish, train_views
from cnn_jax.errors import UserError

RANDAUGMENT_STREAM = 0x2A9  # stream constant of the per-example RandAugment generators


def _number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check(d) -> None:
    """The augmentation keys of ``d`` (a config's ``data`` group or an
    :class:`~cnn_jax.data.registry.Options`): one-line :class:`UserError` for a bad value."""
    for key in ("mixup_alpha", "cutmix_alpha"):
        v = getattr(d, key)
        if not (_number(v) and v >= 0):
            raise UserError(f"data.{key} must be a number >= 0 (0 = off), got {v!r}")
    for key in ("mix_prob", "mix_switch_prob"):
        v = getattr(d, key)
        if not (_number(v) and 0 <= v <= 1):
            raise UserError(f"data.{key} must be a probability in [0, 1], got {v!r}")
    v = d.randaugment_n
    if not (isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0):
        raise UserError(f"data.randaugment_n must be an integer >= 0 (0 = off), got {v!r}")
    v = d.randaugment_m
    if not (_number(v) and 0 <= v <= MAX_MAGNITUDE):
        raise UserError(f"data.randaugment_m must be in [0, {MAX_MAGNITUDE}] (RandAugment's "
                        f"magnitude scale), got {v!r}")


def _views(examples, first_row: int, *, seed: int, step: int, total: int, crop_padding: int,
           flip: bool, spec, options) -> np.ndarray:
    """The ``u8`` views of rows ``[first_row, first_row + n)``, RandAugmented when on."""
    images = train_views(examples, seed=seed, step=step, first_row=first_row, total=total,
                         crop_size=options.crop_size, crop_padding=crop_padding, flip=flip,
                         mean=spec.mean, std=spec.std, normalized=False)
    n, m = options.randaugment_n, options.randaugment_m
    if n:
        images = np.stack([
            rand_augment(x, np.random.default_rng([seed, RANDAUGMENT_STREAM, step, first_row + j]), n, m)
            for j, x in enumerate(images)
        ])
    return images


def train_batch(examples, labels: np.ndarray, *, seed: int, step: int, first_row: int, total: int,
                crop_padding: int, flip: bool, spec, options, pair=None, alloc=None,
                normalized: bool = True) -> dict[str, np.ndarray]:
    """Rows ``[first_row, first_row + n)`` of training batch ``step`` (of ``total`` rows)
    from their decoded ``examples`` and ``labels``: ``{"image", "label"}``, plus
    ``"label_probs"`` while mixing is on. ``pair``: ``(examples, labels)`` of the global
    rows :func:`~cnn_jax.data.mixing.paired_rows` when these rows are not the whole batch
    (a process's share) and mixing is on. ``alloc``, ``normalized``: as in
    :func:`~cnn_jax.data.transforms.train_views`."""
    mixing = Mixing.of(options)
    if not options.randaugment_n and mixing is None:
        images = train_views(examples, seed=seed, step=step, first_row=first_row, total=total,
                             crop_size=options.crop_size, crop_padding=crop_padding, flip=flip,
                             mean=spec.mean, std=spec.std, alloc=alloc, normalized=normalized)
        return {"image": images, "label": labels}
    views = {"seed": seed, "step": step, "total": total, "crop_padding": crop_padding,
             "flip": flip, "spec": spec, "options": options}
    images = _views(examples, first_row, **views)
    out = {"label": labels}
    if mixing is not None:
        if first_row == 0 and len(images) == total:
            partners, partner_labels = images[::-1], labels[::-1]
        else:
            lo, _ = paired_rows(first_row, len(images), total)
            partners, partner_labels = _views(pair[0], lo, **views)[::-1], np.asarray(pair[1])[::-1]
        d = mixing.draw(seed, step, *images.shape[1:3])
        images = mix_images(images, partners, d)
        out["label"], out["label_probs"] = mix_labels(labels, partner_labels, d.lam, spec.num_classes)
    return {"image": finish(images, spec.mean, spec.std, alloc, normalized), **out}
