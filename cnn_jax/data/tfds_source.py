"""Standard tfds sources: preparing a dataset (:func:`prepare`) and opening a split's
records with ``tfds.data_source`` (:func:`open_source`, :func:`raw_source`), with one-line
errors for a dataset that is not prepared or a split that cannot be read."""

from __future__ import annotations

import fcntl
import logging
import os

from cnn_jax.data.registry import DATASETS, DatasetSpec, default_data_dir
from cnn_jax.errors import UserError

log = logging.getLogger(__name__)


def not_prepared(spec: DatasetSpec, data_dir: str, why: str = "") -> UserError:
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


def open_source(spec: DatasetSpec, split: str, data_dir: str, raw: bool = False):
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
            raise not_prepared(spec, data_dir) from None
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
    src = open_source(spec, split, data_dir, raw=True)
    try:
        if len(src):
            src[0]
        return src, True
    except Exception:  # noqa: BLE001  (a mock source encodes fake images with TensorFlow)
        return open_source(spec, split, data_dir), False
