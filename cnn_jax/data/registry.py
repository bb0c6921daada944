"""The bottom of :mod:`cnn_jax.data`: what a dataset is and how it is read.

:class:`DatasetSpec` (one registered dataset), :class:`Options` (the ``data.*`` keys),
:class:`Split` (a split decoded into host memory), the registry :data:`DATASETS` with
:func:`register` and :func:`names`, the shape rules (:func:`stored_shape`,
:func:`batch_shape`), :func:`default_data_dir`, and the standard tfds datasets' specs
(prepared with ``cnn-jax prepare NAME``). Embedded datasets and image folders register
their own specs (:mod:`cnn_jax.data.embedded`, :mod:`cnn_jax.data.image_folder`).

Nothing here imports another module of :mod:`cnn_jax.data`: the sources
(:mod:`~cnn_jax.data.tfds_source`, :mod:`~cnn_jax.data.decode`,
:mod:`~cnn_jax.data.records`) build on it, and the loading modules
(:mod:`~cnn_jax.data.loading`, :mod:`~cnn_jax.data.pipeline`,
:mod:`~cnn_jax.data.streaming`) on those.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from cnn_jax.errors import UserError
from cnn_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How to read one dataset.

    Attributes:
      name: registry name.
      tfds_name: the tfds name read with ``tfds.data_source``.
      num_classes: number of labels.
      shape: image shape ``(H, W, C)``.
      mean, std: per-channel statistics of the training images in [0, 1] (normalisation).
      train_split, test_split: tfds split names.
      builder: for embedded datasets, the tfds builder class that prepares it offline;
        ``None`` for standard tfds datasets (prepared with ``cnn-jax prepare``).
    """

    name: str
    tfds_name: str
    num_classes: int
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_split: str = "train"
    test_split: str = "test"
    builder: Callable | None = None
    validation_split: str | None = None  # a validation split of its own (image folders)
    prepare_hint: str = ""  # how to prepare it where `cnn-jax prepare` alone cannot
    resolve: Callable | None = None  # (options, data_dir) -> the concrete spec (image folders)
    skipped_files: tuple[str, ...] = ()  # bad files left out when it was converted
    # The original files tfds downloads to prepare it (checked for reachability first; the
    # offline route is to place them in DATA_DIR/downloads/manual/ under these file names).
    downloads: tuple[str, ...] = ()

    @property
    def fixed_size(self) -> bool:
        """All images have the same size (``shape`` has no ``None``)."""
        return None not in self.shape


@dataclasses.dataclass(frozen=True)
class Options:
    """How :func:`~cnn_jax.data.loading.load` reads a split and how batches are made of it
    (the ``data.*`` keys).

    Attributes:
      in_memory: ``"auto"`` (decode into host memory when the decoded split fits in
        ``max_memory_gb``, else stream), ``"true"`` or ``"false"`` (always stream).
      max_memory_gb: the most host memory (10^9 bytes) one decoded split may take.
      workers: grain worker processes that decode and augment a streamed split (0: in the
        calling thread).
      crop_size: > 0: ImageNet-style views of that size (random-resized crop for training,
        resize and centre crop for evaluation); 0: the images as stored.
      image_size: > 0: every image resized to ``image_size`` × ``image_size`` when decoded
        (shorter side, centre crop); image folders are resized when converted.
      path: the folder of an ``image_folder`` dataset.
      skip_bad_images: skip (and count) images that do not decode instead of stopping.
      process_index, process_count: this JAX process and how many there are; a streamed
        split reads only this process's rows of every global batch.
      mixup_alpha, cutmix_alpha, mix_prob, mix_switch_prob: batch mixing of training
        batches (:mod:`cnn_jax.data.mixing`; both alphas 0: off).
      randaugment_n, randaugment_m: RandAugment of training examples, ``n`` operations at
        magnitude ``m`` on the 0-30 scale (:mod:`cnn_jax.data.randaugment`; ``n = 0``: off).
    """

    in_memory: str = "auto"
    max_memory_gb: float = 4.0
    workers: int = 2
    crop_size: int = 0
    image_size: int = 0
    path: str = ""
    skip_bad_images: bool = False
    process_index: int = 0
    process_count: int = 1
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    randaugment_n: int = 0
    randaugment_m: float = 9

    @classmethod
    def of(cls, data_cfg, **extra) -> Options:
        """The options named in a config's ``data`` group (``extra`` overrides)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: data_cfg[k] for k in names if k in data_cfg}
        values.update(extra)
        return cls(**values)


IN_MEMORY_CHOICES = ("auto", "true", "false")


@dataclasses.dataclass(frozen=True)
class Split:
    """A split decoded into host memory: ``images: u8[N, H, W, C]``, ``labels: i32[N]``.

    ``spec.shape`` is the shape of the images its batches carry (``crop_size`` views when
    ``options.crop_size`` is set); ``bad`` holds the record indices skipped as undecodable.
    """

    images: np.ndarray
    labels: np.ndarray
    spec: DatasetSpec
    options: Options = dataclasses.field(default_factory=Options)
    bad: frozenset = frozenset()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def streaming(self) -> bool:
        return False


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register(spec: DatasetSpec) -> DatasetSpec:
    DATASETS.add(spec.name, spec)
    return spec


def names() -> list[str]:
    """The registered dataset names."""
    return DATASETS.names()


def default_data_dir() -> str:
    """``$CNN_JAX_DATA_DIR``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    return os.path.expanduser(
        os.environ.get("CNN_JAX_DATA_DIR")
        or os.environ.get("TFDS_DATA_DIR")
        or "~/tensorflow_datasets"
    )


def stored_shape(spec: DatasetSpec, options: Options) -> tuple:
    """The shape of a decoded example: ``spec.shape``, or ``image_size`` × ``image_size``."""
    c = spec.shape[-1]
    if options.image_size:
        return (options.image_size, options.image_size, c)
    return tuple(spec.shape)


def batch_shape(spec: DatasetSpec, options: Options) -> tuple[int, int, int]:
    """The shape of the images of a batch; checks ``crop_size`` against the images."""
    stored = stored_shape(spec, options)
    crop = options.crop_size
    if crop:
        if None not in stored[:2] and crop > min(stored[:2]):
            h, w = stored[:2]
            how = ("a larger data.image_size" if options.image_size else
                   f"data.image_size >= {crop} to resize them first")
            raise UserError(
                f"data.crop_size {crop} is larger than the {h}x{w} images of dataset "
                f"{spec.name!r}{' (after data.image_size)' if options.image_size else ''}; "
                f"choose data.crop_size <= {min(h, w)} or set {how}"
            )
        return (crop, crop, stored[-1])
    if None in stored:
        raise UserError(
            f"dataset {spec.name!r} has images of varying sizes; set data.crop_size "
            "(ImageNet-style crops, e.g. 224) and/or data.image_size (resize when decoded)"
        )
    return tuple(stored)


# Standard tfds datasets (prepared with `cnn-jax prepare NAME` where TensorFlow and internet are).
# The files each tfds builder downloads (tensorflow_datasets 4.9: image_classification/
# mnist.py, cifar.py; datasets/svhn_cropped/).
_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_TORONTO = "https://www.cs.toronto.edu/~kriz/"
for _spec in [
    DatasetSpec("mnist", "mnist", 10, (28, 28, 1), (0.1307,), (0.3081,),
                downloads=tuple("https://storage.googleapis.com/cvdf-datasets/mnist/" + f
                                for f in _IDX)),
    DatasetSpec("fashion_mnist", "fashion_mnist", 10, (28, 28, 1), (0.2860,), (0.3530,),
                downloads=tuple("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/" + f
                                for f in _IDX)),
    DatasetSpec(
        "cifar10", "cifar10", 10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        downloads=(_TORONTO + "cifar-10-binary.tar.gz",),
    ),
    DatasetSpec(
        "cifar100", "cifar100", 100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
        downloads=(_TORONTO + "cifar-100-binary.tar.gz",),
    ),
    DatasetSpec(
        "svhn_cropped", "svhn_cropped", 10, (32, 32, 3), (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
        downloads=tuple(f"http://ufldl.stanford.edu/housenumbers/{s}_32x32.mat"
                        for s in ("train", "test", "extra")),
    ),
]:
    register(_spec)

# ImageNet-style datasets: JPEGs of varying sizes (set data.crop_size and/or data.image_size),
# normalised with the ImageNet training statistics; evaluated on the validation split.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
for _name, _tfds in [
    ("imagenette", "imagenette/full-size-v2"),  # 10 ImageNet classes (fast.ai)
    ("imagenette_320", "imagenette/320px-v2"),  # shorter side 320
    ("imagenette_160", "imagenette/160px-v2"),  # shorter side 160
]:
    register(DatasetSpec(_name, _tfds, 10, (None, None, 3), IMAGENET_MEAN, IMAGENET_STD,
                         test_split="validation"))
register(DatasetSpec(
    "imagenet2012", "imagenet2012", 1000, (None, None, 3), IMAGENET_MEAN, IMAGENET_STD,
    test_split="validation",
    prepare_hint=(
        "it cannot be downloaded automatically: download ILSVRC2012_img_train.tar and "
        "ILSVRC2012_img_val.tar from https://image-net.org (after registering) into "
        "{data_dir}/downloads/manual, then, on a machine with the tf extra: pip install "
        "'cnn-jax[tf]' && cnn-jax prepare {name} --data-dir {data_dir} (tfds writes "
        "ArrayRecord files there)"
    ),
))
