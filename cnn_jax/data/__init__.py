"""Datasets: a registry of embedded offline datasets and standard tfds datasets.

All of them are read the same way: ``tfds.data_source`` (ArrayRecord, random access, no
TensorFlow at run time) decoded once into host memory, then batched by a seeded ``grain``
pipeline whose iterator state is checkpointed (see :mod:`cnn_jax.data.pipeline`).

This package imports no flax and no optax.
"""

from cnn_jax.data.registry import DATASETS, DatasetSpec, Split, default_data_dir, load, names, prepare
from cnn_jax.data.pipeline import eval_batches, num_eval_batches, train_iterator
from cnn_jax.data.validation import hold_out
from cnn_jax.data import embedded as _embedded  # noqa: F401  (registers mnist5k, digits)

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Split",
    "default_data_dir",
    "eval_batches",
    "hold_out",
    "load",
    "names",
    "num_eval_batches",
    "prepare",
    "train_iterator",
]
