"""Figures of a run and the shift-consistency measure."""

import os
from pathlib import Path

import numpy as np
import pytest

from cnn_jax import cli, data, train
from cnn_jax import config as config_lib
from cnn_jax.viz import plots, shift


def _split(images, labels=None):
    spec = data.DatasetSpec("toy", "toy", 2, images.shape[1:], (0.0,), (1 / 255,))
    labels = np.zeros(len(images), np.int32) if labels is None else labels
    return data.Split(images=images.astype(np.uint8), labels=labels, spec=spec)


def test_shift_images_moves_with_zero_fill():
    x = np.arange(1, 10, dtype=np.uint8).reshape(1, 3, 3, 1)
    down_right = shift.shift_images(x, [1], [1])[0, ..., 0]
    assert down_right.tolist() == [[0, 0, 0], [0, 1, 2], [0, 4, 5]]
    up_left = shift.shift_images(x, [-1], [-2])[0, ..., 0]
    assert up_left.tolist() == [[6, 0, 0], [9, 0, 0], [0, 0, 0]]
    assert (shift.shift_images(x, [0], [0]) == x).all()
    dy, dx = shift.random_shifts(1000, 3, seed=0)
    assert dy.shape == (2, 1000) and dy.min() == -3 and dy.max() == 3 and dx.min() == -3
    assert (shift.random_shifts(1000, 3, seed=0)[0] == dy).all()


def _column_of_brightest(x):
    """A toy classifier: class 1 if the brightest pixel is in columns >= 2, else 0."""
    flat = x[..., 0].reshape(len(x), -1)
    col = np.argmax(flat, axis=1) % x.shape[2]
    return (col >= 2).astype(int)


def test_shift_consistency_by_hand():
    # four 1x5 images, one bright pixel each, at columns 0, 2, 3, 4
    imgs = np.zeros((4, 1, 5, 1), np.uint8)
    for i, c in enumerate([0, 2, 3, 4]):
        imgs[i, 0, c, 0] = 200
    split = _split(imgs)
    dy = np.zeros((2, 4), int)
    # shift A: none; shift B: one pixel left. Predictions A: 0,1,1,1. B: pixel at -1 (gone:
    # all zeros -> argmax 0 -> class 0), 1, 2, 3 -> 0,0,1,1. Agreement: yes, no, yes, yes.
    dx = np.array([[0, 0, 0, 0], [-1, -1, -1, -1]])
    assert shift.consistency_under(_column_of_brightest, split, dy, dx) == pytest.approx(0.75)
    # zero shift: any classifier agrees with itself
    rnd = np.random.default_rng(0).integers(0, 255, (50, 6, 6, 1))
    assert shift.shift_consistency(_column_of_brightest, _split(rnd), max_shift=0) == 1.0
    # a classifier that ignores position is perfectly consistent; one that reads a fixed
    # pixel of random images is not
    assert shift.shift_consistency(lambda x: (x.sum((1, 2, 3)) > 0).astype(int), split, 3) == 1.0
    assert (
        shift.shift_consistency(lambda x: (x[:, 3, 3, 0] > 127).astype(int), _split(rnd), 3) < 0.8
    )


def test_confusion_and_per_class_by_hand():
    labels = np.array([0, 0, 1, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0, 2])
    m = plots.confusion_matrix(labels, preds, 4)
    assert m.tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    acc = plots.per_class_accuracy(labels, preds, 4)
    assert acc[:3] == pytest.approx([0.5, 2 / 3, 1.0]) and np.isnan(acc[3])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    c = config_lib.base_config()
    c.model.name = "lenet5"
    c.data.data_dir = data_dir
    c.data.batch_size = 32
    c.train.steps = 4
    c.train.log_every_steps = 2
    d = str(tmp_path_factory.mktemp("viz") / "run")
    train.fit(c, d, progress=False)
    return d


def _png_size(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def test_viz_writes_every_figure(run_dir, tmp_path, capsys):
    out = str(tmp_path / "figs")
    code = cli.main(["viz", "--workdir", run_dir, "--out", out, "--image-index", "3"])
    printed = capsys.readouterr().out.split()
    assert code == 0
    names = sorted(os.path.basename(p) for p in printed)
    assert names == [
        "confusion.png",
        "curves.png",
        "features_3.png",
        "filters.png",
        "per_class.png",
    ]
    for p in printed:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize(p) > 5000
        w, h = _png_size(p)
        assert w > 200 and h > 150
    # the feature-map figure has a row per recorded layer: it is much taller than wide rows
    w, h = _png_size(os.path.join(out, "features_3.png"))
    assert h > 600


def test_viz_pieces_from_the_restored_model(run_dir):
    model, variables, test, step = plots._restore(run_dir, "latest")
    assert step == 4
    layer, k = plots.first_conv_kernel(variables["params"])
    assert layer == "conv1" and k.shape == (5, 5, 1, 6)
    from cnn_jax import models

    x = next(data.eval_batches(test, 2))["image"][:1]
    feats = models.features(model, variables, x)
    assert {"conv1", "pool1", "conv2", "pool2", "logits"} <= set(feats)


def test_viz_errors(run_dir, tmp_path, capsys):
    code = cli.main(["viz", "--workdir", run_dir, "--what", "features", "--image-index", "5000"])
    err = capsys.readouterr().err
    assert code == 2 and "--image-index 5000 is out of range: the test split has 1000 images" in err
    code = cli.main(["viz", "--workdir", str(tmp_path)])
    assert code == 2 and "is not a run directory (no config.json)" in capsys.readouterr().err


def test_a_sweeps_shift_analysis_runs_the_trials_own_evaluation_program(data_dir, tmp_path):
    """The worker predicts shifted images with the evaluation program the trial compiled (no
    compilation of its own) and gets the consistency a separately jitted predictor gets."""
    from cnn_jax.study.execution import measure
    from cnn_jax.train import assemble

    c = config_lib.base_config()
    c.data.data_dir, c.data.name, c.model.name = data_dir, "mnist5k", "lenet5"
    c.data.batch_size, c.train.steps, c.data.eval_batch_size = 64, 30, 100
    out = train.fit(c, str(tmp_path / "run"), progress=False)
    s = out.setup
    runner = assemble.make_runner(s.cfg, s.loss_fn, s.eval_loss_fn, s.model, s.input_shape)
    compiled = runner._eval._cache_size()
    from cnn_jax import analyses

    spec = analyses.resolve({"shift_consistency": {"max_shift": 2, "seed": 0, "state": "final"}})
    rec = measure.run(spec, out)
    got = {**rec["shift_consistency"]["values"], "shift_max": rec["shift_consistency"]["options"]["max_shift"]}
    assert runner._eval._cache_size() == compiled
    fn = shift.predictor(s.model)
    v = shift.variables_of(out.state)
    ref = shift.shift_consistency(lambda x: fn(v, x), s.test, max_shift=2, seed=0)
    assert got["shift_consistency"] == pytest.approx(ref, abs=1.5 / len(s.test))  # an argmax tie at most
    assert got["shift_max"] == 2 and 0.2 < got["shift_consistency"] <= 1.0


def test_shift_protocols_circular_and_diagonal():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 255, size=(5, 7, 6, 2)).astype(np.uint8)
    dy, dx = np.array([1, -2, 0, 3, -7]), np.array([-1, 2, 5, 0, 13])
    got = shift.shift_images(x, dy, dx, fill="circular")
    for i in range(5):  # against np.roll, image by image
        np.testing.assert_array_equal(got[i], np.roll(x[i], (dy[i], dx[i]), axis=(0, 1)))
    # zero fill and circular agree on what stays inside the image
    zero = shift.shift_images(x, dy[:1], dx[:1])[0]
    np.testing.assert_array_equal(zero[1:, :-1], got[0][1:, :-1])
    assert (zero[0] == 0).all() and (zero[:, -1] == 0).all()
    # diagonal: dx = dy, and the same dy as the default protocol draws (same seed)
    dy_d, dx_d = shift.random_shifts(100, 3, seed=0, diagonal=True)
    assert (dy_d == dx_d).all() and (dy_d == shift.random_shifts(100, 3, seed=0)[0]).all()
    with pytest.raises(ValueError, match="choose one of: zero, circular"):
        shift.shift_images(x, dy, dx, fill="reflect")


def test_a_shift_protocol_that_does_not_exist_is_a_one_line_error():
    from cnn_jax import analyses
    from cnn_jax.errors import UserError

    with pytest.raises(UserError, match=r"option 'fill' is 'reflect'; choose one of: zero, circular"):
        analyses.resolve({"shift_consistency": {"fill": "reflect"}})
    with pytest.raises(UserError, match=r"option 'max_shift' is -1"):
        analyses.resolve({"shift_consistency": {"max_shift": -1}})
    opts = analyses.resolve({"shift_consistency": {"fill": "circular", "diagonal": True}})["shift_consistency"]
    text = analyses.get("shift_consistency").describe(opts)
    assert "along the diagonal only (circular shifts, wrapping round;" in text
