"""The streaming path: examples read, decoded and augmented per batch in grain workers.

For splits too large to decode into host memory (ImageNet), or whenever
``data.in_memory=false``. A :class:`~cnn_jax.data.records.StreamSplit` holds the split's
labels and a :class:`~cnn_jax.data.records.RecordImages`, a picklable handle on the tfds
ArrayRecord records (opened with ``tfds.data_source`` in each process, images kept as their
PNG/JPEG bytes; :mod:`cnn_jax.data.records`). Batches are made here, by a grain pipeline::

    MapDataset.range(start, ∞).map(batch of step)  →  to_iter_dataset  →  mp_prefetch

so each element is a whole batch, assembled in one of ``data.workers`` worker processes:
the batch's records are read, decoded with Pillow, transformed and normalised there
(:mod:`cnn_jax.data.transforms`, the same code as the in-memory path), and handed to the
training process through shared memory, in blocks each worker reuses
(:mod:`cnn_jax.data.shm_pool`). grain gives worker ``w`` of ``W`` the steps
``w, w + W, ...`` and interleaves their outputs back in step order, each worker holding at
most one finished batch ahead (memory is bounded by ``W`` times a few batches, the pooled
blocks, plus the workers' own footprint, whatever the dataset's size).

Determinism: a batch is a function of ``(seed, step)`` alone — the example order is the
in-memory path's (:class:`~cnn_jax.data.batching.BatchOrder`) and every random draw is
seeded by ``(seed, step, row)``, RandAugment's and batch mixing's included
(:mod:`cnn_jax.data.augment`) — so the stream is the same for any number of workers,
with or without a resume, and equal to the in-memory path's. The iterator state is
``{"next_index": step}`` as on the in-memory path: a resumed run rebuilds the pipeline
from that step (with any worker count).

Several JAX processes: process ``p`` of ``k`` reads only rows ``[p B / k, (p + 1) B / k)``
of every global batch (training and evaluation); the draws are made for the global batch,
so the rows are those one process would have made. With batch mixing on, a process also
reads (and augments) the rows its rows are paired with (:func:`~cnn_jax.data.mixing.paired_rows`,
another process's share).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator

import grain
import numpy as np

from cnn_jax.data.augment import check as check_augment
from cnn_jax.data.augment import train_batch
from cnn_jax.data.batching import BatchOrder, check_batch_size
from cnn_jax.data.info import num_workers
from cnn_jax.data.mixing import Mixing, paired_rows
from cnn_jax.data.records import (  # noqa: F401  (RecordImages, open_split: re-exported)
    RecordImages,
    StreamSplit,
    open_split,
)
from cnn_jax.data.registry import Options
from cnn_jax.data.shm_pool import Returns, unlink_worker_blocks, worker_array
from cnn_jax.data.transforms import eval_views
from cnn_jax.errors import UserError

log = logging.getLogger(__name__)

BAD_KEY = "_bad_records"  # a batch's undecodable records (popped before it leaves here)
_FOREVER = 1 << 62  # the training stream's length (steps)


def _rows(options: Options, batch_size: int) -> tuple[int, int]:
    """This process's rows ``[lo, hi)`` of a global batch."""
    p, k = options.process_index, options.process_count
    return p * batch_size // k, (p + 1) * batch_size // k


def _fill_bad(examples: list, labels: np.ndarray) -> tuple[list, np.ndarray]:
    """Training rows whose image did not decode take the next decodable row's example
    (cyclically, within the batch), so the batch keeps its size deterministically."""
    good = [j for j, x in enumerate(examples) if x is not None]
    if not good:
        raise UserError("no image of a training batch decodes: the dataset's files look corrupt")
    labels = labels.copy()
    for j, x in enumerate(examples):
        if x is None:
            src = next((g for g in good if g > j), good[0])
            examples[j], labels[j] = examples[src], labels[src]
    return examples, labels


class _TrainBatch:
    """Step → this process's rows of that step's training batch (runs in a worker)."""

    def __init__(self, split: StreamSplit, batch_size: int, seed: int, crop_padding: int, flip: bool,
                 normalized: bool = True):
        self.normalized = normalized
        self.images, self.labels, self.split = split.images, split.labels, split.split
        self.spec, self.options = split.spec, split.options
        self.batch_size, self.seed = batch_size, seed
        self.crop_padding, self.flip = crop_padding, flip
        self.order = BatchOrder(len(split), batch_size, seed)
        self.lo, self.hi = _rows(split.options, batch_size)

    def _read(self, idx: np.ndarray):
        """``(examples, labels, bad)`` of split positions ``idx``."""
        examples, bad = self.images.read(idx)
        labels = self.labels[idx]
        if bad:
            if not self.options.skip_bad_images:
                raise self.images.bad_record(*bad[0], self.split)
            examples, labels = _fill_bad(examples, labels)
        return examples, labels, bad

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        step = int(step)
        order = self.order(step)
        examples, labels, bad = self._read(order[self.lo:self.hi])
        pair = None
        if Mixing.of(self.options) is not None and (self.lo, self.hi) != (0, self.batch_size):
            # a process's share of the batch: its rows' partners are another process's
            lo, hi = paired_rows(self.lo, self.hi - self.lo, self.batch_size)
            pair = self._read(order[lo:hi])[:2]
        batch = train_batch(
            examples, labels, seed=self.seed, step=step, first_row=self.lo, total=self.batch_size,
            crop_padding=self.crop_padding, flip=self.flip, spec=self.spec, options=self.options,
            pair=pair, alloc=_output_array(), normalized=self.normalized,
        )
        return {**batch, BAD_KEY: np.asarray([i for i, _ in bad], np.int64)}


class _EvalBatch:
    """Batch number → this process's rows of that evaluation batch, zero-padded past the
    end of the split, with ``mask`` (undecodable images skipped with ``skip_bad_images``
    are masked out)."""

    def __init__(self, split: StreamSplit, batch_size: int, normalized: bool = True):
        self.normalized = normalized
        self.images, self.labels, self.split = split.images, split.labels, split.split
        self.spec, self.options = split.spec, split.options
        self.batch_size, self.n = batch_size, len(split)
        self.lo, self.hi = _rows(split.options, batch_size)

    def __call__(self, b: int) -> dict[str, np.ndarray]:
        start = int(b) * self.batch_size
        rows = np.arange(start + self.lo, start + self.hi)
        real = rows[rows < self.n]
        examples, bad = self.images.read(real)
        if bad and not self.options.skip_bad_images:
            raise self.images.bad_record(*bad[0], self.split)
        mask = np.zeros(len(rows), bool)
        alloc = _output_array() or np.zeros
        dtype = np.float32 if self.normalized else np.uint8
        images = alloc((len(rows), *self.spec.shape), dtype)  # a reused block: not zeros
        ok = [j for j, x in enumerate(examples) if x is not None]
        missing = np.setdiff1d(np.arange(len(rows)), ok)
        images[missing] = 0  # the padding and skipped images
        if ok:
            views = {"crop_size": self.options.crop_size, "mean": self.spec.mean, "std": self.spec.std,
                     "normalized": self.normalized}
            if len(ok) == len(examples):  # straight into the batch
                eval_views(examples, **views, alloc=lambda shape, _: images[: shape[0]])
            else:
                images[ok] = eval_views([examples[j] for j in ok], **views)
            mask[ok] = True
        labels = np.zeros(len(rows), np.int32)
        labels[: len(real)] = self.labels[real]
        return {"image": images, "label": labels, "mask": mask,
                BAD_KEY: np.asarray([i for i, _ in bad], np.int64)}


def _output_array():
    """In a grain worker, a batch's images are written straight into shared memory (a block
    the worker reuses, :mod:`cnn_jax.data.shm_pool`), which grain then hands over without
    copying them (a copy of a 224 x 224 batch of 128 floats took 52 ms, a fifth of making
    it); elsewhere ``None`` (ordinary arrays)."""
    try:
        from grain._src.python.dataset.transformations.process_prefetch import is_in_worker_process
        from grain._src.python.ipc.shared_memory_array import SharedMemoryArray  # noqa: F401
    except ImportError:  # another grain version: grain copies the arrays itself
        return None
    if not is_in_worker_process():
        return None
    return worker_array


def _grain_setup() -> None:
    # grain 0.2.18's multiprocessing reads absl flags, which fail unless parsed; cnn_jax
    # parses its own command line (argparse), so absl's stay at their defaults. Traceback
    # filtering off: it appends lines to the message of an exception from a worker.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    grain.config.update("py_traceback_filtering", "off")


def _one_line(e: UserError) -> UserError:
    """A user error raised in a worker, as the one line it was (whatever grain added)."""
    return UserError(str(e).split("\n")[0])


def _worker_init(index: int, count: int) -> None:
    """In each worker: exit when the training process is gone (a kill -9 leaves no
    orphans decoding forever)."""
    parent = os.getppid()

    def watch():
        import time

        while os.getppid() == parent:
            time.sleep(0.5)
        unlink_worker_blocks()
        os._exit(0)

    threading.Thread(target=watch, name="cnn_jax-parent-watch", daemon=True).start()


def _pipeline(make, start: int, stop: int, workers: int):
    _grain_setup()
    ds = grain.MapDataset.range(start, stop).map(make)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    if workers:
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=1),
            worker_init_fn=_worker_init,
        )
    return iter(it)


def _received(batch: dict, returns: Returns) -> dict:
    """A batch from a worker: its pooled shared-memory blocks go back to the worker once
    their arrays are garbage, any other block is unlinked at once (``Returns.receive``)."""
    for v in batch.values():
        returns.receive(v)
    return batch


class StreamIterator:
    """The training batches of a :class:`StreamSplit` from step ``next_index`` on, made by
    grain workers. ``get_state()`` is ``{"next_index": step}``, as on the in-memory path;
    ``set_state`` restarts the pipeline there."""

    def __init__(self, split: StreamSplit, make: _TrainBatch, next_index: int = 0):
        self._split, self._make = split, make
        self._next = int(next_index)
        self._it, self._returns = None, Returns()
        self.workers, _ = num_workers(split.options.workers)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._it is None:
            self._it = _pipeline(self._make, self._next, _FOREVER, self.workers)
        try:
            batch = _received(next(self._it), self._returns)
        except UserError as e:
            raise _one_line(e) from None
        bad = batch.pop(BAD_KEY, None)
        if bad is not None and len(bad):
            self._split.bad.update(int(i) for i in bad)
        self._next += 1
        return batch

    def get_state(self) -> dict:
        return {"next_index": self._next}

    def set_state(self, state: dict) -> None:
        self.close()
        self._next = int(state["next_index"])

    def close(self) -> None:
        it, self._it = self._it, None
        if it is not None and hasattr(it, "close"):
            it.close()
        self._returns.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110  (at interpreter shutdown modules are gone)
            pass


def train_iterator(split: StreamSplit, batch_size: int, seed: int, *, state: dict | None = None,
                   crop_padding: int = 0, flip: bool = False, normalized: bool = True) -> StreamIterator:
    check_batch_size(len(split), batch_size)
    check_augment(split.options)
    if batch_size % split.options.process_count:
        raise UserError(
            f"data.batch_size {batch_size} does not divide across "
            f"{split.options.process_count} processes")
    make = _TrainBatch(split, batch_size, seed, crop_padding, flip, normalized)
    return StreamIterator(split, make, (state or {}).get("next_index", 0))


def eval_batches(split: StreamSplit, batch_size: int, normalized: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Every example of ``split`` once (this process's rows of each global batch)."""
    workers, _ = num_workers(split.options.workers)
    n_batches = -(-len(split) // batch_size)
    it = _pipeline(_EvalBatch(split, batch_size, normalized), 0, n_batches, min(workers, n_batches))
    returns = Returns()
    try:
        while True:
            try:
                batch = _received(next(it), returns)
            except StopIteration:
                return
            except UserError as e:
                raise _one_line(e) from None
            bad = batch.pop(BAD_KEY, None)
            if bad is not None and len(bad):
                split.bad.update(int(i) for i in bad)
            yield batch
    finally:
        if hasattr(it, "close"):
            it.close()
        returns.close()
