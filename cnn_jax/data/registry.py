"""Dataset registry and loading through ``tfds.data_source``."""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
from collections.abc import Callable

import numpy as np

from cnn_jax.errors import UserError
from cnn_jax.registry import Registry

log = logging.getLogger(__name__)


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

    @property
    def fixed_size(self) -> bool:
        """All images have the same size (``shape`` has no ``None``)."""
        return None not in self.shape


@dataclasses.dataclass(frozen=True)
class Options:
    """How :func:`load` reads a split and how batches are made of it (the ``data.*`` keys).

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


def _not_prepared(spec: DatasetSpec, data_dir: str, why: str = "") -> UserError:
    how = spec.prepare_hint.format(data_dir=data_dir, name=spec.name) if spec.prepare_hint else (
        "prepare it on a machine with internet and the tf "
        f"extra: pip install 'cnn-jax[tf]' && cnn-jax prepare {spec.name} --data-dir {data_dir}"
        " (then copy the directory here)"
    )
    return UserError(
        f"dataset {spec.name!r} (tfds '{spec.tfds_name}') is not prepared in {data_dir}"
        f"{' (' + why + ')' if why else ''}; {how}"
    )


def prepare(name: str, data_dir: str | None = None) -> str:
    """Prepares dataset ``name`` as ArrayRecord in ``data_dir``; returns its directory.

    Embedded datasets are built offline from the arrays shipped in their wheels (PNG via
    Pillow, no TensorFlow). Standard tfds datasets are downloaded and prepared by tfds,
    which needs TensorFlow (the ``tf`` extra) and internet.
    """
    spec = DATASETS.get(name)
    data_dir = data_dir or default_data_dir()
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create data directory {data_dir!r}: {e.strerror}") from None
    import tensorflow_datasets as tfds

    if spec.builder is not None:
        builder = spec.builder(data_dir=data_dir, file_format="array_record")
        if not builder.is_prepared():
            # Sweep workers may prepare concurrently: one writer at a time.
            with open(os.path.join(data_dir, f".{spec.tfds_name}.lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                builder = spec.builder(data_dir=data_dir, file_format="array_record")
                if not builder.is_prepared():
                    log.info("preparing embedded dataset %s in %s", name, data_dir)
                    tfds.disable_progress_bar()  # a few seconds of work: no bars
                    builder.download_and_prepare(
                        download_config=tfds.download.DownloadConfig(
                            compute_stats=tfds.download.ComputeStatsMode.SKIP
                        )
                    )
        return str(builder.data_dir)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise UserError(
            f"preparing {name!r} needs TensorFlow: pip install 'cnn-jax[tf]' (and internet)"
        ) from None
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    return str(builder.data_dir)


def _source(spec: DatasetSpec, split: str, data_dir: str, raw: bool = False):
    """``tfds.data_source`` of ``split``; ``raw``: images as their encoded bytes."""
    import tensorflow_datasets as tfds

    if spec.builder is not None:
        prepare(spec.name, data_dir)
    decoders = {"image": tfds.decode.SkipDecoding()} if raw else None
    try:
        # download=False: without network a real download retries for minutes.
        return tfds.data_source(spec.tfds_name, split=split, data_dir=data_dir, download=False,
                                decoders=decoders)
    except Exception as e:  # tfds raises several types for "not there"; diagnose below
        try:
            prepared = tfds.builder(spec.tfds_name, data_dir=data_dir).is_prepared()
        except Exception:
            prepared = False
        if not prepared:
            raise _not_prepared(spec, data_dir) from None
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "0 length" in msg:
            raise UserError(f"split {split!r} of dataset {spec.name!r} is empty") from None
        raise UserError(
            f"cannot read split {split!r} of dataset {spec.name!r} in {data_dir} ({msg}); "
            "valid splits are tfds split expressions such as 'train', 'test', 'train[:90%]'"
        ) from None


def raw_source(spec: DatasetSpec, split: str, data_dir: str):
    """``(source, raw)``: the split's records with images as encoded bytes (``raw``), or
    decoded by tfds where a source cannot skip decoding (``tfds.testing.mock_data``)."""
    src = _source(spec, split, data_dir, raw=True)
    try:
        if len(src):
            src[0]
        return src, True
    except Exception:  # noqa: BLE001  (a mock source encodes fake images with TensorFlow)
        return _source(spec, split, data_dir), False


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


def load(name: str, split: str, data_dir: str | None = None, options: Options | None = None):
    """Reads split ``split`` (``"train"``, ``"test"``, ``"validation"`` or a tfds split
    expression such as ``"train[:90%]"``) of dataset ``name``.

    Returns a :class:`Split` decoded into host memory, or a
    :class:`~cnn_jax.data.streaming.StreamSplit` whose examples are decoded when batches
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
    from cnn_jax.data import decode

    cache = decode.decoded_cache_path(spec, tfds_split, data_dir, options.image_size)
    if cache is not None and str(options.in_memory).lower() != "false":
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
    src, raw = raw_source(spec, tfds_split, data_dir)
    n = len(src)
    if n == 0:
        raise UserError(f"split {split!r} of dataset {name!r} is empty")
    in_memory, why = choose_path(spec, split, n, options)
    log.info("dataset %s split %s: %s (%s)", name, split, "in memory" if in_memory else "streaming", why)
    if not in_memory:
        from cnn_jax.data import streaming

        return streaming.open_split(spec, out_spec, split, tfds_split, data_dir, options, src, raw,
                                    decode.labels_cache_path(cache), why)
    split_data = decode.decode(spec, split, tfds_split, data_dir, options, src, raw)
    split_data = dataclasses.replace(split_data, spec=out_spec, options=options)
    if cache is not None:
        decode.write_decoded(cache, split_data)
    return split_data


# Standard tfds datasets (prepared with `cnn-jax prepare NAME` where TensorFlow and internet are).
for _spec in [
    DatasetSpec("mnist", "mnist", 10, (28, 28, 1), (0.1307,), (0.3081,)),
    DatasetSpec("fashion_mnist", "fashion_mnist", 10, (28, 28, 1), (0.2860,), (0.3530,)),
    DatasetSpec(
        "cifar10", "cifar10", 10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    ),
    DatasetSpec(
        "cifar100", "cifar100", 100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    ),
    DatasetSpec(
        "svhn_cropped", "svhn_cropped", 10, (32, 32, 3), (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
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
