"""Your own images (``data.name=image_folder``): conversion once, cached by content; the
same pipeline as every dataset; one clear line (exit 2, nothing written) for each bad
folder, through the real command line."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers.hold import hold, wait_held
from PIL import Image

from cnn_jax import data
from cnn_jax.data import image_folder
from cnn_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(__file__))
EXP = "experiments/lenet5_mnist.py"
CLASSES = ("cat", "dog", "owl")


def _image(rng, label: int, size=(12, 12), grey=False) -> np.ndarray:
    h, w = size
    img = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
    img[..., label] += 150  # one colour per class: learnable in a few steps
    return img.mean(-1).astype(np.uint8) if grey else img


def make_folder(root, per_class=70, classes=CLASSES, corrupt=True, size=(12, 12), grey=False,
                layout=("",)) -> str:
    """``per_class`` images per class, alternately PNG and JPEG (and, with ``corrupt``, one
    file of junk named like a PNG) in ``root/<split>/<class>`` for each split of ``layout``."""
    rng = np.random.default_rng(0)
    for split in layout:
        for label, c in enumerate(classes):
            d = os.path.join(root, split, c)
            os.makedirs(d, exist_ok=True)
            for i in range(per_class):
                ext = "png" if i % 2 else "jpg"
                Image.fromarray(_image(rng, label, size, grey)).save(os.path.join(d, f"{i:03d}.{ext}"))
    if corrupt:
        with open(os.path.join(root, layout[0], classes[0], "broken.png"), "wb") as f:
            f.write(b"\x89PNG this is not really a png")
    return str(root)


def _opts(path, **kw):
    return data.Options(path=str(path), **kw)


def test_a_flat_folder_becomes_train_and_a_stratified_test_split(tmp_path):
    folder = make_folder(tmp_path / "imgs", corrupt=False)
    d = str(tmp_path / "data")
    train = data.load("image_folder", "train", d, _opts(folder))
    test = data.load("image_folder", "test", d, _opts(folder))
    assert train.spec.num_classes == 3 and train.spec.shape == (12, 12, 3)
    assert len(train) + len(test) == 210
    assert list(np.bincount(test.labels)) == [14, 14, 14]  # 20 % of each class
    # normalisation statistics of the training split
    x = train.images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(train.spec.mean, x.mean(0), atol=1e-5)
    np.testing.assert_allclose(train.spec.std, x.std(0), atol=1e-5)
    # the pixels are the files' (PNG exactly; the JPEGs as Pillow decodes them)
    on_disk = {np.asarray(Image.open(os.path.join(folder, c, f)).convert("RGB")).tobytes()
               for c in CLASSES for f in os.listdir(os.path.join(folder, c))}
    assert {im.tobytes() for im in np.concatenate([train.images, test.images])} == on_disk
    # the same conversion again, and the streamed path reads it alike
    assert data.load("image_folder", "train", d, _opts(folder)).spec == train.spec
    st = data.load("image_folder", "train", d, _opts(folder, in_memory="false", workers=0))
    a = next(data.train_iterator(train, 32, seed=0, flip=True))
    b = next(data.train_iterator(st, 32, seed=0, flip=True))
    np.testing.assert_array_equal(a["image"], b["image"])


def test_conversion_is_cached_and_follows_the_folder(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "imgs", per_class=6, corrupt=False)
    d = str(tmp_path / "data")
    first = data.load("image_folder", "train", d, _opts(folder)).spec
    monkeypatch.setattr(image_folder, "_write", lambda *a: pytest.fail("converted again"))
    assert data.load("image_folder", "test", d, _opts(folder)).spec == first
    monkeypatch.undo()
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(os.path.join(folder, "owl", "new.png"))
    second = data.load("image_folder", "train", d, _opts(folder)).spec
    assert second.tfds_name != first.tfds_name
    assert sorted(os.listdir(d)) == sorted(["downloads", second.tfds_name,
                                            f".{second.tfds_name.rsplit('_', 1)[0]}.lock"])
    # data.image_size is part of the conversion: resized (shorter side, centre crop)
    small = data.load("image_folder", "train", d, _opts(folder, image_size=8))
    assert small.spec.shape == (8, 8, 3) and small.images.shape[1:] == (8, 8, 3)


def test_train_validation_test_folders_grey_and_resized(tmp_path):
    folder = make_folder(tmp_path / "imgs", per_class=5, corrupt=False, grey=True,
                         layout=("train", "validation", "test"))
    # a second size: needs data.image_size
    Image.fromarray(np.zeros((20, 16), np.uint8)).save(os.path.join(folder, "test", "dog", "big.png"))
    d = str(tmp_path / "data")
    with pytest.raises(UserError, match=r"images of several sizes .* set data.image_size"):
        data.load("image_folder", "train", d, _opts(folder))
    opts = _opts(folder, image_size=10)
    train, val, test = (data.load("image_folder", s, d, opts) for s in ("train", "validation", "test"))
    assert train.spec.validation_split == "validation" and train.spec.shape == (10, 10, 1)
    assert (len(train), len(val), len(test)) == (15, 15, 16)
    assert list(np.bincount(test.labels)) == [5, 6, 5]


def test_skip_bad_images_skips_and_counts(tmp_path):
    folder = make_folder(tmp_path / "imgs", per_class=4)
    spec = data.load("image_folder", "train", str(tmp_path / "d"), _opts(folder, skip_bad_images=True)).spec
    assert spec.skipped_files == ("cat/broken.png",)


def _train_cmd(folder, d, workdir, *extra, steps=24):
    return [sys.executable, "-m", "cnn_jax", "train", "--config", EXP, "--workdir", str(workdir),
            "--config.model.name=mlp", "--config.data.name=image_folder",
            f"--config.data.path={folder}", f"--config.data.data_dir={d}",
            "--config.data.skip_bad_images=true", "--config.data.batch_size=16",
            "--config.data.validation=15", "--config.data.flip=true",
            f"--config.train.steps={steps}", "--config.train.checkpoint_every_steps=2",
            "--config.train.log_every_steps=2", "--config.train.eval_every_epochs=5", *extra]


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.pop("CNN_JAX_HOST_DEVICES", None)
    return env


def _read(path):
    with open(path) as f:
        return f.read()


def test_an_image_folder_trains_end_to_end_and_resumes_exactly(tmp_path):
    folder = make_folder(tmp_path / "imgs")  # 210 PNG/JPEG images in 3 classes, one corrupt file
    d = tmp_path / "data"
    ref = subprocess.run(_train_cmd(folder, d, tmp_path / "ref", "--quiet"), check=False, capture_output=True,
                         text=True, env=_env(), cwd=ROOT, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    s = json.loads(_read(tmp_path / "ref" / "summary.json"))
    assert s["pipeline"]["skipped_images"] == 1 and s["pipeline"]["train"]["path"] == "in_memory"
    assert s["data"] == {"train": 153, "validation": 15, "test": 42}
    assert s["test"]["count"] == 42 and s["test"]["accuracy"] > 0.9  # three colours
    # a second run, stopped by SIGTERM mid-run, then resumed: the run is held inside its 8th
    # batch while the signal is sent (helpers/hold.py), so it cannot finish first
    wd = tmp_path / "run"
    env, held, release = hold(tmp_path, batch=8)
    p = subprocess.Popen(_train_cmd(folder, d, wd, "--quiet"), env={**_env(), **env}, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_held(p, held)
    p.send_signal(signal.SIGTERM)
    release.touch()
    _, err = p.communicate(timeout=600)
    assert p.returncode == 75, err[-3000:]
    again = subprocess.run(_train_cmd(folder, d, wd), check=False, capture_output=True, text=True, env=_env(),
                           cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from step" in again.stdout and "1 unreadable images skipped" in again.stdout
    assert _read(wd / "metrics.jsonl") == _read(tmp_path / "ref" / "metrics.jsonl")
    a = json.loads(_read(wd / "summary.json"))
    assert a["test"] == s["test"] and a["train"] == s["train"]


_CASES = {
    "missing": "image folder '{f}' does not exist",
    "empty": "image folder '{f}' is empty: it needs one subfolder of images per class",
    "one_class": "image folder '{f}' has 1 class folder (cat); a classifier needs at least 2",
    "empty_class": "class folder '{f}/owl' of '{f}' has no images; add images or remove the folder",
    "unreadable": "cannot read image '{f}/cat/broken.png' (cannot identify image file",
    "not_an_image": "cannot read image '{f}/dog/notes.txt' (cannot identify image file",
    "mixed_sizes": "image folder '{f}' has images of several sizes (cat/000.jpg is 12x12, "
                   "owl/big.png is 16x20); set data.image_size to resize them all",
    "mixed_channels": "image folder '{f}' mixes grey and colour images (owl/grey.png is grey, "
                      "cat/000.jpg is colour); convert them to one kind",
}


def _bad_folder(kind: str, root) -> str:
    f = str(root / kind)
    if kind == "missing":
        return f
    os.makedirs(f)
    if kind == "empty":
        return f
    if kind == "one_class":
        return make_folder(f, per_class=2, classes=("cat",), corrupt=False)
    make_folder(f, per_class=2, corrupt=kind == "unreadable")
    if kind == "empty_class":
        for name in os.listdir(os.path.join(f, "owl")):
            os.remove(os.path.join(f, "owl", name))
    elif kind == "not_an_image":
        with open(os.path.join(f, "dog", "notes.txt"), "w") as fh:
            fh.write("some notes")
    elif kind == "mixed_sizes":
        Image.fromarray(np.zeros((20, 16, 3), np.uint8)).save(os.path.join(f, "owl", "big.png"))
    elif kind == "mixed_channels":
        Image.fromarray(np.zeros((12, 12), np.uint8)).save(os.path.join(f, "owl", "grey.png"))
    return f


_MANY_CLI_RUNS = textwrap.dedent("""
    import contextlib, io, json, sys
    from cnn_jax import cli
    out = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(argv)
        out.append([code, err.getvalue()])
    print(json.dumps(out))
""")


def test_each_bad_folder_is_one_line_exit_2_and_nothing_written(tmp_path):
    # cnn_jax.cli.main, what the cnn-jax console script runs, once per case in one process
    folders = {kind: _bad_folder(kind, tmp_path) for kind in _CASES}
    argvs = [["train", "--config", EXP, "--workdir", str(tmp_path / f"wd_{kind}"),
              "--config.data.name=image_folder", f"--config.data.path={f}",
              f"--config.data.data_dir={tmp_path / ('data_' + kind)}", "--quiet"]
             for kind, f in folders.items()]
    argvs.append(argvs[0][:5] + ["--config.data.name=image_folder", "--quiet"])  # no data.path
    p = subprocess.run([sys.executable, "-c", _MANY_CLI_RUNS, json.dumps(argvs)], check=False, capture_output=True,
                       text=True, env=_env(), cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads(p.stdout.strip().splitlines()[-1])
    for (kind, f), (code, err) in zip(folders.items(), results):
        assert code == 2, (kind, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: " + _CASES[kind].format(f=f)), (kind, err)
        assert not os.path.exists(tmp_path / f"wd_{kind}") and not os.path.exists(tmp_path / f"data_{kind}")
    code, err = results[-1]
    assert code == 2 and err.strip() == ("error: data.name=image_folder needs data.path=DIR, a folder of "
                                         "class subfolders of images (or of train/validation/test folders "
                                         "of them)")
