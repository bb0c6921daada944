"""Loading a split: which path it takes (:func:`choose_path`: decoded into host memory or
streamed), :func:`load` itself and :func:`batch_spec` (the spec a split's batches carry).

The top of :mod:`cnn_jax.data` with :mod:`~cnn_jax.data.pipeline`,
:mod:`~cnn_jax.data.streaming` and :mod:`~cnn_jax.data.split_cache`: it reads through the
sources (:mod:`~cnn_jax.data.tfds_source`, :mod:`~cnn_jax.data.decode`,
:mod:`~cnn_jax.data.records`), which build on :mod:`~cnn_jax.data.registry`.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

import cnn_jax.data.decode as decode
from cnn_jax.data.records import open_split
from cnn_jax.data.registry import (
    DATASETS,
    IN_MEMORY_CHOICES,
    DatasetSpec,
    Options,
    Split,
    batch_shape,
    default_data_dir,
    stored_shape,
)
from cnn_jax.data.tfds_source import raw_source
from cnn_jax.errors import UserError

log = logging.getLogger(__name__)


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.3g} GB"


def _available_memory() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (``None`` where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def choose_path(spec: DatasetSpec, split: str, n: int, options: Options) -> tuple[bool, str]:
    """``(in_memory, why)`` for a split of ``n`` examples, decided before any decoding from
    the estimated decoded size ``n × H × W × C`` bytes."""
    mode = str(options.in_memory).lower()
    if mode not in IN_MEMORY_CHOICES:
        raise UserError(f"invalid data.in_memory {options.in_memory!r}; choose one of: auto, true, false")
    stored = stored_shape(spec, options)
    est = n * int(np.prod(stored)) if None not in stored else None
    limit = options.max_memory_gb * 1e9
    avail = _available_memory()
    if mode == "false":
        return False, "data.in_memory=false"
    if mode == "true":
        if est is None:
            raise UserError(
                f"data.in_memory=true needs images of one size, but dataset {spec.name!r} has "
                "images of varying sizes; set data.image_size to resize them when decoded, or "
                "data.in_memory=auto to stream them"
            )
        if est > limit or (avail is not None and est > avail):
            room = (f"data.max_memory_gb={options.max_memory_gb:g}" if est > limit
                    else f"the {_gb(avail)} of memory available")
            raise UserError(
                f"data.in_memory=true: split {split!r} of dataset {spec.name!r} would take "
                f"~{_gb(est)} decoded ({n} images of {'x'.join(map(str, stored))}), more than "
                f"{room}; set data.in_memory=auto (streams it), a smaller data.image_size, or "
                "a larger data.max_memory_gb"
            )
        return True, f"decoded ~{_gb(est)}, data.in_memory=true"
    if est is None:
        return False, "images of varying sizes"
    if est > limit:
        return False, f"decoded ~{_gb(est)} > data.max_memory_gb={options.max_memory_gb:g}"
    if avail is not None and est > avail // 2:
        return False, f"decoded ~{_gb(est)} > half the {_gb(avail)} of memory available"
    return True, f"decoded ~{_gb(est)} <= data.max_memory_gb={options.max_memory_gb:g}"


def batch_spec(name: str, data_dir: str | None = None, options: Options | None = None) -> DatasetSpec:
    """Dataset ``name``'s spec with ``shape`` the shape of its batches' images under
    ``options`` (``crop_size``, ``image_size``; an image folder scanned, and converted once,
    as :func:`load` would): what a model summary or benchmark of that data takes."""
    options = options or Options()
    spec = DATASETS.get(name)
    if spec.resolve is not None:
        spec = spec.resolve(options, data_dir or default_data_dir())
    return dataclasses.replace(spec, shape=batch_shape(spec, options))


def _from_decoded_cache(cache: str, name: str, spec: DatasetSpec, out_spec: DatasetSpec,
                        split: str, options: Options) -> Split | None:
    """The split as decoded before (``cache``, written by an earlier :func:`load`) when it
    is there, readable, has no skipped record unless ``skip_bad_images``, and takes the
    in-memory path; else ``None`` (decide and decode from the records)."""
    try:
        with np.load(cache) as z:
            bad = frozenset(z["bad"].tolist()) if "bad" in z else frozenset()
            if bad and not options.skip_bad_images:
                raise KeyError  # decode again: that reports the bad record
            labels = z["labels"]
            in_memory, why = choose_path(spec, split, len(labels) + len(bad), options)
            if in_memory:  # (the images are read only now)
                log.info("dataset %s split %s: in memory (%s)", name, split, why)
                return Split(images=z["images"], labels=labels, spec=out_spec, options=options,
                             bad=bad)
    except (OSError, KeyError, ValueError):
        pass  # not written yet (or unreadable): decide and decode below
    return None


def load(name: str, split: str, data_dir: str | None = None, options: Options | None = None):
    """Reads split ``split`` (``"train"``, ``"test"``, ``"validation"`` or a tfds split
    expression such as ``"train[:90%]"``) of dataset ``name``.

    Returns a :class:`~cnn_jax.data.registry.Split` decoded into host memory, or a
    :class:`~cnn_jax.data.records.StreamSplit` whose examples are decoded when batches
    are made (``options.in_memory``; see :func:`choose_path`). Both feed
    :func:`~cnn_jax.data.pipeline.train_iterator` and
    :func:`~cnn_jax.data.pipeline.eval_batches` alike.
    """
    options = options or Options()
    spec = DATASETS.get(name)
    data_dir = data_dir or default_data_dir()
    if spec.resolve is not None:  # an image folder: converted (once) into data_dir
        spec = spec.resolve(options, data_dir)
    tfds_split = {"train": spec.train_split, "test": spec.test_split,
                  "validation": spec.validation_split}.get(split) or split
    out_spec = dataclasses.replace(spec, shape=batch_shape(spec, options))
    cache = decode.decoded_cache_path(spec, tfds_split, data_dir, options.image_size)
    if cache is not None and str(options.in_memory).lower() != "false":
        cached = _from_decoded_cache(cache, name, spec, out_spec, split, options)
        if cached is not None:
            return cached
    src, raw = raw_source(spec, tfds_split, data_dir)
    n = len(src)
    if n == 0:
        raise UserError(f"split {split!r} of dataset {name!r} is empty")
    in_memory, why = choose_path(spec, split, n, options)
    log.info("dataset %s split %s: %s (%s)", name, split, "in memory" if in_memory else "streaming", why)
    if not in_memory:
        return open_split(spec, out_spec, split, tfds_split, data_dir, options, src, raw,
                          decode.labels_cache_path(cache), why)
    split_data = decode.decode(spec, split, tfds_split, data_dir, options, src, raw)
    split_data = dataclasses.replace(split_data, spec=out_spec, options=options)
    if cache is not None:
        decode.write_decoded(cache, split_data)
    return split_data
