"""The corruptions analysis: a trained model's error grows with severity, the record's
mean and details agree, the corrupted sets are shared (computed once per process), and bad
options are one-line errors before anything runs (exit 2, nothing written)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cnn_jax import analyses
from cnn_jax.analyses import corruptions as analysis
from cnn_jax.errors import UserError


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    from cnn_jax import config as config_lib
    from cnn_jax import train

    c = config_lib.base_config()
    c.data.data_dir, c.data.name, c.model.name = data_dir, "mnist5k", "lenet5"
    c.data.batch_size, c.data.eval_batch_size, c.train.steps = 64, 100, 150
    d = str(tmp_path_factory.mktemp("run"))
    return train.fit(c, d, progress=False), d


def test_error_grows_with_severity_and_the_record_adds_up(trained):
    from cnn_jax.study.execution import measure

    out, d = trained
    spec = analyses.resolve({"corruptions": {"images": 200, "state": "final"}})
    rec = measure.run(spec, out, d)["corruptions"]
    det = rec["details"]
    assert det["family"] == "grey" and det["images"] == 200 and det["severities"] == [1, 2, 3, 4, 5]
    from cnn_jax import corruptions

    assert sorted(det["accuracy"]) == corruptions.names("grey")
    acc = np.array(list(det["accuracy"].values()))  # [corruption, severity]
    assert rec["values"]["corruption_accuracy"] == pytest.approx(acc.mean())
    # the clean accuracy on the same 200 images is the trial's own on them
    assert det["clean"] > 0.8
    # averaged over corruptions, the error at severity 5 exceeds that at 1, and the mean
    # error rises from each severity to the next but one
    err = 1 - acc.mean(axis=0)
    assert err[4] > err[0] and all(err[s + 2] > err[s] for s in range(3))
    assert np.mean(1 - acc) > 1 - det["clean"]


def test_the_corrupted_sets_are_made_once_and_are_the_same_for_every_trial():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, 28, 28, 1), dtype=np.uint8)
    before = analysis._corrupted.cache_info().misses
    a = analysis.corrupted_sets(images, ["shot_noise"], [2], 0)
    b = analysis.corrupted_sets(images.copy(), ["shot_noise"], [2], 0)
    assert a is b and analysis._corrupted.cache_info().misses == before + 1
    c = analysis.corrupted_sets(images, ["shot_noise"], [2], 1)
    assert not np.array_equal(a["shot_noise", 2], c["shot_noise", 2])


@pytest.mark.parametrize("options, message", [
    ({"severities": [0]}, r"severity 0; choose from: 1, 2, 3, 4, 5"),
    ({"severities": [2, 6]}, r"severity 6; choose from"),
    ({"corruptions": ["shot_nois"]}, r"unknown corruption 'shot_nois'.*choose from: .*shot_noise"),
    ({"images": -1}, r"option 'images' is -1"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(UserError, match=message) as e:
        analyses.resolve({"corruptions": options})
    assert "\n" not in str(e.value)


BAD_STUDIES = [
    ("mnist5k", {"corruptions": {"corruptions": ["contrast"]}},
     "corruption 'contrast' is for colour images, these are grey; choose one of: "),
    ("cifar10", {"corruptions": {"corruptions": ["stripe"]}},
     "corruption 'stripe' is for grey images, these are colour; choose one of: "),
    ("mnist5k", {"corruptions": {"corruptions": ["frost"]}}, "unknown corruption 'frost'"),
    ("mnist5k", {"corruptions": {"severities": [7]}}, "severity 7; choose from: 1, 2, 3, 4, 5"),
    ("mnist5k", {"shift_consistency": {"fill": "mirror"}},
     "option 'fill' is 'mirror'; choose one of: zero, circular"),
    ("mnist5k", {"equivariance": {"fill": "mirror"}}, "'mirror'"),
]


@pytest.mark.parametrize("dataset, spec, message", BAD_STUDIES)
def test_a_bad_analysis_stops_the_sweep_before_anything_is_written(tmp_path, data_dir, dataset,
                                                                   spec, message):
    exp = tmp_path / "exp.py"
    exp.write_text(textwrap.dedent(f'''
        from cnn_jax import study
        from cnn_jax.config import base_config

        def get_config(arg=""):
            c = base_config()
            c.data.name, c.model.name, c.train.steps = {dataset!r}, "lenet5", 5
            return c

        def get_sweep(arg=""):
            return study.Study(study.grid({{"model.pool": ["max", "avg"]}}), seeds=1,
                               analyses={spec!r})
    '''))
    wd = tmp_path / "w"
    env = {**os.environ, "CNN_JAX_TEST_DATA_DIR": data_dir}
    out = subprocess.run([sys.executable, "-m", "cnn_jax", "sweep", str(exp), "--workdir", str(wd)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert message in lines[0]
    assert not wd.exists()


def test_sets_predicted_back_to_back_give_each_sets_own_accuracy():
    """Sets predicted in chunks of several (one set per chunk, some, all) give each set's
    accuracy alone: a fake model that predicts the decile of each image's mean intensity."""
    import dataclasses
    from types import SimpleNamespace

    from cnn_jax.data import Split
    from cnn_jax.data.registry import DATASETS

    spec = dataclasses.replace(DATASETS.get("mnist5k"), shape=(4, 4, 1), mean=(0.0,), std=(1.0,))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=30)
    sets = [rng.integers(0, 256, size=(30, 4, 4, 1), dtype=np.uint8) for _ in range(7)]

    def predict(images):  # normalised images in [0, 1]: the decile of their mean
        return np.clip((np.asarray(images).mean(axis=(1, 2, 3)) * 10).astype(int), 0, 9)

    test = Split(images=sets[0], labels=labels, spec=spec)
    ctx = SimpleNamespace(predict=predict, batch_size=8, setup=SimpleNamespace(test=test))
    want = [float(np.mean(predict(s / np.float32(255)) == labels)) for s in sets]
    assert len(set(want)) > 2  # the sets differ
    for chunk_batches in (1, 4, 100):
        assert analysis.accuracies(ctx, sets, labels, chunk_batches) == pytest.approx(want)
