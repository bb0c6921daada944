"""Standard tfds sources: preparing a dataset (:func:`prepare`) and opening a split's
records with ``tfds.data_source`` (:func:`open_source`, :func:`raw_source`), with one-line
errors for a dataset that is not prepared or a split that cannot be read."""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import shutil
import socket
import threading
import urllib.parse

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
    check_downloadable(spec, data_dir)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise UserError(
            f"preparing {name!r} needs TensorFlow: pip install 'cnn-jax[tf]' (and internet)"
        ) from None
    return _download_and_prepare(spec, data_dir)


def manual_dir(data_dir: str) -> str:
    """Where tfds looks for files downloaded by hand before it downloads them itself."""
    return os.path.join(data_dir, "downloads", "manual")


def check_downloadable(spec: DatasetSpec, data_dir: str, timeout: float = 8.0) -> None:
    """A one-line :class:`UserError` within ``timeout`` seconds unless every original file
    of ``spec`` is in the manual directory or the host of the first missing one answers:
    without network tfds would retry for minutes and leave partial files behind."""
    missing = [u for u in spec.downloads
               if not os.path.exists(os.path.join(manual_dir(data_dir), u.rsplit("/", 1)[1]))]
    if not missing:
        return
    url = urllib.parse.urlsplit(missing[0])
    port = url.port or (443 if url.scheme == "https" else 80)
    why = _unreachable(url.hostname, port, timeout)
    if why:
        files = ", ".join(u.rsplit("/", 1)[1] for u in missing)
        raise UserError(
            f"cannot download {spec.name!r}: {url.hostname} is not reachable ({why}); offline, "
            f"place the original {files} in {manual_dir(data_dir)}/ and run "
            f"`cnn-jax prepare {spec.name} --data-dir {data_dir}` again"
        )


def _unreachable(host: str, port: int, timeout: float) -> str:
    """Why ``host:port`` cannot be connected to within ``timeout`` s (``""`` if it can). The
    attempt runs in a thread: a name lookup without network can block longer than any
    socket timeout."""
    out: list[str] = []

    def attempt():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            out.append("")
        except OSError as e:
            out.append(e.strerror or type(e).__name__)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else f"no answer within {timeout:g} s"


def _download_and_prepare(spec: DatasetSpec, data_dir: str) -> str:
    """tfds's download and preparation; on failure the dataset's new directory and the
    partial downloads are removed and the error is one line."""
    import tensorflow_datasets as tfds

    root = os.path.join(data_dir, spec.tfds_name.split("/")[0])
    existed = os.path.exists(root)
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir, file_format="array_record")
    try:
        builder.download_and_prepare()
    except Exception as e:
        if not existed:
            shutil.rmtree(root, ignore_errors=True)
        for tmp in glob.glob(os.path.join(data_dir, "downloads", "**", "*.tmp.*"), recursive=True):
            shutil.rmtree(tmp, ignore_errors=True) if os.path.isdir(tmp) else os.remove(tmp)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"preparing {spec.name!r} failed: {first}") from e
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
