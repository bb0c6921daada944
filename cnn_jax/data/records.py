"""A split read as it is batched: :class:`StreamSplit`, its labels (read once, cached next
to the prepared files) and :class:`RecordImages`, a picklable handle on a tfds ArrayRecord
split whose images are decoded when read (in each grain worker process, which opens the
records itself). :func:`open_split` makes one of an opened source; the batches are made by
:mod:`cnn_jax.data.streaming`."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from cnn_jax.data.decode import bad_record, decode_example, read_records
from cnn_jax.data.info import num_workers
from cnn_jax.data.registry import DatasetSpec, Options, stored_shape
from cnn_jax.data.transforms import BadImage
from cnn_jax.errors import UserError


class RecordImages:
    """The images of records ``indices`` of one tfds ArrayRecord split, decoded on read.

    Indexing with an array of positions gives the sub-collection of those records (what a
    validation hold-out takes), so a :class:`StreamSplit` subsets like an in-memory one.
    Picklable: each process opens the records itself on first read.
    """

    def __init__(self, spec: DatasetSpec, tfds_split: str, data_dir: str, stored: tuple,
                 image_size: int, raw: bool, indices: np.ndarray | None = None, n: int = 0):
        self.spec, self.tfds_split, self.data_dir = spec, tfds_split, data_dir
        self.stored, self.image_size, self.raw = tuple(stored), image_size, raw
        self.indices = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
        self._src = None
        self._src_owner = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_src"] = state["_src_owner"] = None
        return state

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple:
        """``(N, H, W, C)`` of the decoded images (``None`` for sizes that vary)."""
        return (len(self), *self.stored)

    def __getitem__(self, idx) -> RecordImages:
        sub = RecordImages(self.spec, self.tfds_split, self.data_dir, self.stored,
                           self.image_size, self.raw, self.indices[idx])
        sub._src, sub._src_owner = self._src, self._src_owner
        return sub

    def source(self):
        if self._src is None or self._src_owner != os.getpid():
            import tensorflow_datasets as tfds

            decoders = {"image": tfds.decode.SkipDecoding()} if self.raw else None
            self._src = tfds.data_source(self.spec.tfds_name, split=self.tfds_split,
                                         data_dir=self.data_dir, download=False, decoders=decoders)
            self._src_owner = os.getpid()
        return self._src

    def read(self, positions) -> tuple[list, list[tuple[int, str]]]:
        """``(examples, bad)``: the decoded image of each of ``positions`` (``None`` where
        it does not decode) and ``(record index, why)`` of each that did not."""
        record_ids = self.indices[np.asarray(positions, np.int64)]
        out, bad = [], []
        for i, r in read_records(self.source(), record_ids.tolist()):
            try:
                out.append(decode_example(r, self.stored[-1], self.image_size, self.raw))
            except BadImage as e:
                out.append(None)
                bad.append((int(i), str(e)))
        return out, bad

    def bad_record(self, index: int, why: str, split: str) -> UserError:
        return bad_record(self.spec, split, index, why)


@dataclasses.dataclass(frozen=True)
class StreamSplit:
    """A split read as it is batched: ``images`` (records, decoded by the workers),
    ``labels: i32[N]`` (read once, cached), ``spec`` (``spec.shape``: the batches' image
    shape) and the ``options`` it was opened with. ``bad`` collects the record indices
    skipped as undecodable (``data.skip_bad_images``) while batches are made."""

    images: RecordImages
    labels: np.ndarray
    spec: DatasetSpec
    options: Options = dataclasses.field(default_factory=Options)
    split: str = "train"
    why: str = ""  # why it streams (for the log and summary.json)
    bad: set = dataclasses.field(default_factory=set, compare=False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def streaming(self) -> bool:
        return True


def open_split(spec: DatasetSpec, out_spec: DatasetSpec, split: str, tfds_split: str,
               data_dir: str, options: Options, src, raw: bool, labels_cache: str | None,
               why: str) -> StreamSplit:
    """A :class:`StreamSplit` of an opened source: reads the labels (once; cached next to
    the prepared files) and checks the worker count."""
    num_workers(options.workers)
    labels = _labels(src, labels_cache)
    stored = stored_shape(spec, options)
    images = RecordImages(spec, tfds_split, data_dir, stored, options.image_size, raw, n=len(src))
    if not raw and options.workers:
        # tfds.testing.mock_data patches this process only: its records cannot be read
        # in worker processes.
        options = dataclasses.replace(options, workers=0)
    return StreamSplit(images, labels, out_spec, options, split, why)


def _labels(src, cache: str | None) -> np.ndarray:
    if cache is not None:
        try:
            labels = np.load(cache)
            if len(labels) == len(src):
                return labels
        except (OSError, ValueError):
            pass
    labels = np.fromiter((int(r["label"]) for _, r in read_records(src, range(len(src)))),
                         np.int32, count=len(src))
    if cache is not None:
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            tmp = f"{cache}.{os.getpid()}.tmp.npy"
            np.save(tmp, labels)
            os.replace(tmp, cache)
        except OSError:
            pass
    return labels
