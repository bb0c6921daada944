"""Seeded batching with grain: training stream with checkpointable state, full evaluation.

:func:`train_iterator` and :func:`eval_batches` take a split of either path: an in-memory
:class:`~cnn_jax.data.registry.Split` is batched here, a streamed
:class:`~cnn_jax.data.records.StreamSplit` by :mod:`cnn_jax.data.streaming` (the same
example order, :class:`~cnn_jax.data.batching.BatchOrder`, and the same transforms).

Training: an infinite grain ``MapDataset`` whose element ``step`` is the batch of that
step: the examples ``[step * B, (step + 1) * B)`` of the stream formed by one fresh
permutation per epoch (``numpy.random.default_rng([seed, ..., epoch])``), so each epoch
sees every example once, an epoch is ``N // B`` steps and a batch may straddle two epochs
(as in the Flax examples). Its iterator state (``{"next_index": step}``) is saved with
every checkpoint, so a resumed run sees exactly the batches an uninterrupted one would.

Evaluation sees every example exactly once: the last batch is padded with zeros and a
``mask`` marks the real examples (never dropped).
"""

from __future__ import annotations

from collections.abc import Iterator

import grain
import numpy as np

from cnn_jax.data import augment
from cnn_jax.data.batching import BatchOrder, check_batch_size
from cnn_jax.data.registry import Split
from cnn_jax.data.streaming import eval_batches as stream_eval_batches
from cnn_jax.data.streaming import train_iterator as stream_train_iterator
from cnn_jax.data.transforms import eval_views, normalize, pad_crop_flip
from cnn_jax.errors import UserError


def _normalize(images: np.ndarray, split: Split) -> np.ndarray:
    return normalize(images, split.spec.mean, split.spec.std)


def _augment(images: np.ndarray, rng: np.random.Generator, crop_padding: int, flip: bool):
    """Padded random crop (zero padding of ``crop_padding`` pixels) and horizontal flip."""
    return pad_crop_flip(images, rng, crop_padding, flip)


def train_dataset(
    split: Split,
    batch_size: int,
    seed: int,
    *,
    crop_padding: int = 0,
    flip: bool = False,
) -> grain.MapDataset:
    """Infinite training stream of ``{"image": f32[B,H,W,C], "label": i32[B]}`` batches
    (and ``"label_probs": f32[B, K]`` while batch mixing is on, :mod:`cnn_jax.data.mixing`).

    Augmentation draws from generators seeded by ``(seed, step)`` (and the row), so it is
    the same for the same seed and step, with or without a resume.
    """
    check_batch_size(len(split), batch_size)
    augment.check(split.options)
    order = BatchOrder(len(split), batch_size, seed)

    def make(step: int, _) -> dict[str, np.ndarray]:
        idx = order(step)
        return augment.train_batch(
            split.images[idx], split.labels[idx], seed=seed, step=step, first_row=0,
            total=batch_size, crop_padding=crop_padding, flip=flip, spec=split.spec,
            options=split.options,
        )

    # One element per step; its index is the step (the iterator state), the batch's
    # examples are computed with NumPy (grain's per-element shuffle cost 1.2 ms per batch
    # of 64, a quarter of a LeNet-5 step on 2 cores).
    return grain.MapDataset.range(1).repeat().map_with_index(make)


def train_iterator(split, batch_size: int, seed: int, *, state: dict | None = None,
                   normalized: bool = True, **aug):
    """The training batches of ``split`` (in memory or streamed): element ``i`` is the batch
    of step ``i``; ``state`` is a saved ``get_state()`` (``{"next_index": step}`` on both
    paths). A streamed split of a multi-process run yields this process's rows only.
    ``normalized=False`` lets a streamed split hand over its ``u8`` pixels (a quarter of the
    bytes through shared memory and to the devices), which the caller then normalises to
    :func:`cnn_jax.data.transforms.normalize`'s values (:func:`cnn_jax.train.parallel.normalizing`);
    in-memory batches are ``f32`` either way."""
    if split.streaming:
        return stream_train_iterator(split, batch_size, seed, state=state, normalized=normalized, **aug)
    it = iter(
        train_dataset(split, batch_size, seed, **aug).to_iter_dataset(
            grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
        )
    )
    if state is not None:
        it.set_state(state)
    return it


def num_eval_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def eval_batches(split, batch_size: int, normalized: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Every example exactly once, in order; the last batch zero-padded with ``mask``. A
    streamed split of a multi-process run yields this process's rows of each batch
    (``normalized``: as in :func:`train_iterator`)."""
    if batch_size < 1:
        raise UserError(f"eval_batch_size must be positive, got {batch_size}")
    if split.streaming:
        yield from stream_eval_batches(split, batch_size, normalized)
        return
    n = len(split)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        images = eval_views(split.images[start:stop], crop_size=split.options.crop_size,
                                       mean=split.spec.mean, std=split.spec.std)
        labels = split.labels[start:stop]
        mask = np.ones(stop - start, bool)
        pad = batch_size - (stop - start)
        if pad:
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
            labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
            mask = np.concatenate([mask, np.zeros(pad, bool)])
        yield {"image": images, "label": labels, "mask": mask}
