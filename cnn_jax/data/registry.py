"""Dataset registry and loading through ``tfds.data_source``."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
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


@dataclasses.dataclass(frozen=True)
class Split:
    """A split decoded into host memory: ``images: u8[N, H, W, C]``, ``labels: i32[N]``."""

    images: np.ndarray
    labels: np.ndarray
    spec: DatasetSpec

    def __len__(self) -> int:
        return len(self.labels)


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
    return UserError(
        f"dataset {spec.name!r} (tfds '{spec.tfds_name}') is not prepared in {data_dir}"
        f"{' (' + why + ')' if why else ''}; prepare it on a machine with internet and the tf "
        f"extra: pip install 'cnn-jax[tf]' && cnn-jax prepare {spec.name} --data-dir {data_dir}"
        " (then copy the directory here)"
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


def _source(spec: DatasetSpec, split: str, data_dir: str):
    import tensorflow_datasets as tfds

    if spec.builder is not None:
        prepare(spec.name, data_dir)
    try:
        # download=False: without network a real download retries for minutes.
        return tfds.data_source(spec.tfds_name, split=split, data_dir=data_dir, download=False)
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


def load(name: str, split: str, data_dir: str | None = None) -> Split:
    """Reads split ``split`` (``"train"``, ``"test"`` or a tfds split expression such as
    ``"train[:90%]"``) of dataset ``name`` into host memory."""
    spec = DATASETS.get(name)
    data_dir = data_dir or default_data_dir()
    tfds_split = {"train": spec.train_split, "test": spec.test_split}.get(split, split)
    cache = _decoded_cache_path(spec, tfds_split, data_dir)
    if cache is not None:
        try:
            with np.load(cache) as z:
                return Split(images=z["images"], labels=z["labels"], spec=spec)
        except (OSError, KeyError, ValueError):
            pass  # not written yet (or unreadable): decode and write it below
    split_data = _decode(spec, split, tfds_split, data_dir)
    if cache is not None:
        _write_decoded(cache, split_data)
    return split_data


# Decoding a split's PNGs through tfds took 1.2 s of the 5.8 s from `cnn-jax train` to
# LeNet-5's first step on mnist5k; the decoded arrays are kept next to the prepared files,
# keyed by those files' names, sizes and modification times (so a re-prepared dataset is
# decoded again). An unwritable data directory just means no cache.
_CACHE_DIR = ".cnn_jax_decoded"


def _decoded_cache_path(spec: DatasetSpec, tfds_split: str, data_dir: str) -> str | None:
    root = os.path.join(data_dir, spec.tfds_name)
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != _CACHE_DIR)
        for f in sorted(filenames):
            st = os.stat(os.path.join(dirpath, f))
            entries.append(f"{os.path.relpath(os.path.join(dirpath, f), root)}:{st.st_size}:{st.st_mtime_ns}")
    if not entries:
        return None
    key = hashlib.sha256("\n".join([tfds_split, *entries]).encode()).hexdigest()[:24]
    return os.path.join(root, _CACHE_DIR, f"{key}.npz")


def _write_decoded(path: str, split: Split) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, images=split.images, labels=split.labels)
        os.replace(tmp, path)
    except OSError:
        pass


def _decode(spec: DatasetSpec, split: str, tfds_split: str, data_dir: str) -> Split:
    name = spec.name
    src = _source(spec, tfds_split, data_dir)
    n = len(src)
    if n == 0:
        raise UserError(f"split {split!r} of dataset {name!r} is empty")
    try:
        try:  # one batched read of the ArrayRecord files
            records = src.__getitems__(list(range(n)))
        except (AttributeError, TypeError):  # sources without batched reads (e.g. tfds mock_data)
            records = [src[i] for i in range(n)]
        images = np.stack([np.asarray(r["image"]) for r in records]).astype(np.uint8)
    except (RuntimeError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"cannot read dataset {name!r} from {data_dir}: its files are corrupt or truncated "
            f"({first}); delete {os.path.join(data_dir, spec.tfds_name)} and prepare it again"
        ) from None
    if images.ndim == 3:
        images = images[..., None]
    labels = np.asarray([r["label"] for r in records], dtype=np.int32)
    if images.shape[1:] != spec.shape:
        raise UserError(
            f"dataset {name!r} split {split!r} has images of shape {images.shape[1:]}, "
            f"expected {spec.shape}"
        )
    return Split(images=images, labels=labels, spec=spec)


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
