"""Datasets: a registry of embedded offline datasets, standard tfds datasets (MNIST to
ImageNet) and image folders of your own.

All of them are read the same way, through ``tfds.data_source`` (ArrayRecord, random
access, no TensorFlow at run time), and take one of two paths behind one interface
(:func:`load`, :func:`train_iterator`, :func:`eval_batches`): decoded once into host memory
(:class:`Split`, fastest for small sets) or streamed (:class:`StreamSplit`: read, decoded
and augmented per batch in grain worker processes, :mod:`cnn_jax.data.streaming`). Both
make the same batches for the same seed and step (:mod:`cnn_jax.data.transforms`); the
iterator state ``{"next_index": step}`` is checkpointed (:mod:`cnn_jax.data.pipeline`).

This package imports no flax and no optax.
"""

from cnn_jax.data import embedded as _embedded  # noqa: F401  (registers mnist5k, digits)
from cnn_jax.data import image_folder as _image_folder  # noqa: F401  (registers image_folder)
from cnn_jax.data.paths import describe, describe_all, describe_line
from cnn_jax.data.pipeline import eval_batches, num_eval_batches, train_iterator
from cnn_jax.data.registry import (
    DATASETS,
    DatasetSpec,
    Options,
    Split,
    batch_spec,
    default_data_dir,
    load,
    names,
    prepare,
)
from cnn_jax.data.streaming import StreamSplit
from cnn_jax.data.validation import hold_out

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Options",
    "batch_spec",
    "Split",
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
