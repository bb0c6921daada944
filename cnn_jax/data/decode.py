"""Decoding a split into host memory: records read in chunks, images decoded (PNG/JPEG,
without TensorFlow), a corrupt record named by index, and the decoded arrays cached next to
the prepared files (keyed by those files, so a re-prepared dataset is decoded again)."""

from __future__ import annotations

import hashlib
import os

import numpy as np

from cnn_jax.data.registry import DatasetSpec, Options, Split, stored_shape
from cnn_jax.data.tfds_source import raw_source
from cnn_jax.data.transforms import BadImage, resize_square
from cnn_jax.data.transforms import decode as decode_image
from cnn_jax.errors import UserError

# Decoding a split's PNGs through tfds took 1.2 s of the 5.8 s from `cnn-jax train` to
# LeNet-5's first step on mnist5k; the decoded arrays are kept next to the prepared files,
# keyed by those files' names, sizes and modification times (so a re-prepared dataset is
# decoded again). An unwritable data directory just means no cache.
CACHE_DIR = ".cnn_jax_decoded"


def decoded_cache_path(spec: DatasetSpec, tfds_split: str, data_dir: str,
                        image_size: int = 0) -> str | None:
    root = os.path.join(data_dir, spec.tfds_name)
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != CACHE_DIR)
        for f in sorted(filenames):
            st = os.stat(os.path.join(dirpath, f))
            entries.append(f"{os.path.relpath(os.path.join(dirpath, f), root)}:{st.st_size}:{st.st_mtime_ns}")
    if not entries:
        return None
    head = [tfds_split] + ([f"image_size={image_size}"] if image_size else [])
    key = hashlib.sha256("\n".join([*head, *entries]).encode()).hexdigest()[:24]
    return os.path.join(root, CACHE_DIR, f"{key}.npz")


def labels_cache_path(decoded_cache: str | None) -> str | None:
    return None if decoded_cache is None else decoded_cache[: -len(".npz")] + ".labels.npy"


def write_decoded(path: str, split: Split) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, images=split.images, labels=split.labels,
                 bad=np.asarray(sorted(split.bad), np.int64))
        os.replace(tmp, path)
    except OSError:
        pass


def bad_record(spec: DatasetSpec, split: str, index: int, why: str) -> UserError:
    """The error for a record whose image does not decode (``data.skip_bad_images``)."""
    return UserError(
        f"record {index} of split {split!r} of dataset {spec.name!r} is not a readable image "
        f"({why}); set data.skip_bad_images=true to skip (and count) such records"
    )


def read_records(src, indices, chunk: int = 256):
    """The records ``indices`` of ``src`` in chunks (bounded memory), one by one."""
    indices = list(indices)
    for start in range(0, len(indices), chunk):
        part = indices[start:start + chunk]
        try:  # one batched read of the ArrayRecord files
            records = src.__getitems__(part)
        except (AttributeError, TypeError):  # sources without batched reads (tfds mock_data)
            records = [src[i] for i in part]
        yield from zip(part, records)


def decode_example(record: dict, channels: int, image_size: int, raw: bool) -> np.ndarray:
    """A record's image as ``u8[H, W, channels]`` (resized with ``image_size``); raises
    :class:`~cnn_jax.data.transforms.BadImage`."""
    image = record["image"]
    if raw:
        image = decode_image(image, channels)
    else:
        image = np.asarray(image, np.uint8)
        if image.ndim == 2:
            image = image[..., None]
    if image_size and image.shape[:2] != (image_size, image_size):
        image = resize_square(image, image_size)
    return image


def decode(spec: DatasetSpec, split: str, tfds_split: str, data_dir: str,
            options: Options | None = None, src=None, raw: bool = False) -> Split:
    options = options or Options()
    name = spec.name
    if src is None:
        src, raw = raw_source(spec, tfds_split, data_dir)
    n = len(src)
    if n == 0:
        raise UserError(f"split {split!r} of dataset {name!r} is empty")
    shape = stored_shape(spec, options)
    images = np.empty((n, *shape), np.uint8)
    labels = np.empty(n, np.int32)
    bad, k = [], 0
    try:
        for i, r in read_records(src, range(n)):
            try:
                image = decode_example(r, shape[-1], options.image_size, raw)
            except BadImage as e:
                if not options.skip_bad_images:
                    raise bad_record(spec, split, i, str(e)) from None
                bad.append(i)
                continue
            if image.shape != shape:
                raise UserError(
                    f"dataset {name!r} split {split!r} has images of shape {image.shape}, "
                    f"expected {shape}"
                )
            images[k], labels[k] = image, int(r["label"])
            k += 1
    except (RuntimeError, OSError, ValueError) as e:
        if isinstance(e, UserError):
            raise
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"cannot read dataset {name!r} from {data_dir}: its files are corrupt or truncated "
            f"({first}); delete {os.path.join(data_dir, spec.tfds_name)} and prepare it again"
        ) from None
    if k == 0:
        raise UserError(f"split {split!r} of dataset {name!r} has no readable image")
    if k < n:
        images, labels = images[:k], labels[:k]
    return Split(images=images, labels=labels, spec=spec, options=options, bad=frozenset(bad))
