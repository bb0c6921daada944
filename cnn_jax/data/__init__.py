"""Datasets: a registry of embedded offline datasets, standard tfds datasets (MNIST to
ImageNet) and image folders of your own.

All of them are read the same way, through ``tfds.data_source`` (ArrayRecord, random
access, no TensorFlow at run time), and take one of two paths behind one interface
(:func:`load`, :func:`train_iterator`, :func:`eval_batches`): decoded once into host memory
(:class:`Split`, fastest for small sets) or streamed (:class:`StreamSplit`: read, decoded
and augmented per batch in grain worker processes, :mod:`cnn_jax.data.streaming`). Both
make the same batches for the same seed and step (:mod:`cnn_jax.data.transforms`); the
iterator state ``{"next_index": step}`` is checkpointed (:mod:`cnn_jax.data.pipeline`).
:class:`SplitCache` loads each split once for a process that loads it again and again.

The modules, imports pointing one way only (down this list):

* loading: ``loading`` (the path each split takes, :func:`load`, :func:`batch_spec`),
  ``split_cache`` (:class:`SplitCache`), ``pipeline`` (batches of either path; in memory here),
  ``streaming`` (batches of a streamed split, grain workers);
* sources: ``records`` (:class:`StreamSplit`, records decoded when read), ``decode``
  (decoding a split into memory, its cache), ``embedded`` and ``image_folder`` (datasets
  that register themselves), ``tfds_source`` (:func:`prepare`, opening tfds sources);
* types and helpers: ``registry`` (:class:`DatasetSpec`, :class:`Options`, :class:`Split`,
  :data:`DATASETS`, the standard tfds datasets), ``batching`` (the example order of both
  pipelines), ``info`` (:func:`describe`, the worker count), ``augment`` (a training
  batch of both pipelines: ``transforms``, then ``randaugment`` and batch ``mixing``),
  ``validation``, ``writer``, ``shm_pool``.

No module below imports this package's ``__init__``. This package imports no flax and no
optax.
"""

from cnn_jax.data import embedded as _embedded  # noqa: F401  (registers mnist5k, digits)
from cnn_jax.data import image_folder as _image_folder  # noqa: F401  (registers image_folder)
from cnn_jax.data.split_cache import SplitCache
from cnn_jax.data.info import describe, describe_all, describe_line
from cnn_jax.data.loading import batch_spec, load
from cnn_jax.data.pipeline import eval_batches, num_eval_batches, train_iterator
from cnn_jax.data.records import StreamSplit
from cnn_jax.data.registry import (
    DATASETS,
    DatasetSpec,
    Options,
    Split,
    default_data_dir,
    names,
)
from cnn_jax.data.tfds_source import prepare
from cnn_jax.data.validation import hold_out

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Options",
    "batch_spec",
    "Split",
    "SplitCache",
    "StreamSplit",
    "default_data_dir",
    "describe",
    "describe_all",
    "describe_line",
    "eval_batches",
    "hold_out",
    "load",
    "names",
    "num_eval_batches",
    "prepare",
    "train_iterator",
]
