"""`cnn-jax prepare` of a standard tfds dataset without network: one line naming the host and
the manual route, exit 2, within seconds, and no partial dataset left behind."""

import os
import subprocess
import sys
import types

import pytest

from cnn_jax import data
from cnn_jax.data import registry, tfds_source
from cnn_jax.errors import UserError

UNREACHABLE = registry.DatasetSpec(
    "offline_test", "cifar10", 10, (32, 32, 3), (0.5,) * 3, (0.25,) * 3,
    downloads=("https://archive.invalid/files/cifar-10-binary.tar.gz",),  # .invalid never resolves
)


def test_an_unreachable_host_is_one_line_naming_it_and_the_manual_route(tmp_path):
    with pytest.raises(UserError) as e:
        tfds_source.check_downloadable(UNREACHABLE, str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "archive.invalid is not reachable" in msg
    assert os.path.join(str(tmp_path), "downloads", "manual") in msg
    assert "cifar-10-binary.tar.gz" in msg
    assert os.listdir(tmp_path) == []  # nothing written


def test_the_original_files_in_the_manual_directory_need_no_network(tmp_path):
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    (manual / "cifar-10-binary.tar.gz").write_bytes(b"not checked here")
    tfds_source.check_downloadable(UNREACHABLE, str(tmp_path))  # no host asked: no error


def test_a_failed_download_removes_the_partial_dataset(tmp_path, monkeypatch):
    """What tfds leaves when its download dies (the dataset's directory, a .tmp download) is
    removed, and the error is one line."""
    import tensorflow_datasets as tfds

    d = str(tmp_path)

    def dying_builder(name, data_dir, file_format):
        def download_and_prepare():
            os.makedirs(os.path.join(data_dir, "cifar10", "3.0.2"), exist_ok=True)
            part = os.path.join(data_dir, "downloads", "www.cs.toronto.edu_kriz_cifar.tmp.1234")
            os.makedirs(part, exist_ok=True)
            raise ConnectionError("Max retries exceeded with url\nlong traceback text")

        return types.SimpleNamespace(download_and_prepare=download_and_prepare)

    monkeypatch.setattr(tfds, "builder", dying_builder)
    with pytest.raises(UserError, match=r"^preparing 'cifar10' failed: Max retries exceeded with url$"):
        tfds_source._download_and_prepare(data.DATASETS.get("cifar10"), d)
    assert not os.path.exists(os.path.join(d, "cifar10"))
    assert os.listdir(os.path.join(d, "downloads")) == []


def test_prepare_cifar10_offline_from_the_command_line(tmp_path):
    """The command itself (on these machines the download host is not reachable; where it
    is, the command goes on to ask for TensorFlow, which the test environment lacks)."""
    d = tmp_path / "d"
    out = subprocess.run([sys.executable, "-m", "cnn_jax", "prepare", "cifar10", "--data-dir", str(d)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "cifar-10-binary.tar.gz" in lines[0] or "needs TensorFlow" in lines[0]
    assert not (d / "cifar10").exists()
