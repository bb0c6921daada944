"""The validation split and selection: stratified, seeded, the same for every trial seed;
the test split never chooses anything; selection without validation is refused."""

import dataclasses
import json

import numpy as np
import pytest

from cnn_jax import config as config_lib
from cnn_jax import data, train
from cnn_jax.data.validation import holdout_size, stratified_holdout
from cnn_jax.errors import UserError
from cnn_jax.train import assemble


def _cfg(data_dir, **over):
    c = config_lib.base_config()
    c.model.name = "mlp"
    c.model.hidden = (32,)
    c.data.name = "digits"
    c.data.data_dir = data_dir
    c.data.batch_size = 32
    c.train.steps = 40
    c.train.eval_every_epochs = 1
    c.train.log_every_steps = 10
    for k, v in over.items():
        config_lib.set_value(c, k, v)
    return c


def test_hold_out_is_disjoint_stratified_and_seed_free():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    tr, va = stratified_holdout(labels, 10)
    assert len(va) == 10 and len(set(tr) & set(va)) == 0 and sorted([*tr, *va]) == list(range(100))
    counts = np.bincount(labels[va], minlength=4)
    exact = np.array([50, 30, 15, 5]) * 10 / 100
    assert (counts >= 1).all() and (np.abs(counts - exact) <= 1).all()  # every class, in proportion
    assert np.array_equal(stratified_holdout(labels, 10)[1], va)  # no hidden randomness


def test_validation_is_the_same_for_every_trial_seed(data_dir):
    s0 = assemble.build(config_lib.resolve(_cfg(data_dir, seed=0)))
    s1 = assemble.build(config_lib.resolve(_cfg(data_dir, seed=7)))
    assert np.array_equal(s0.validation.images, s1.validation.images)
    assert np.array_equal(s0.validation.labels, s1.validation.labels)
    assert s0.sizes() == {"train": 1294, "validation": 144, "test": 359}
    # disjoint from train: no validation image is a training image
    train_rows = {img.tobytes() for img in s0.train.images}
    assert not any(img.tobytes() in train_rows for img in s0.validation.images)


@pytest.mark.parametrize("value,match", [
    (-0.1, "must be a fraction in \\(0, 1\\), a whole count"),
    (1.5, "neither a fraction in \\(0, 1\\) nor a whole count"),
    (5000, "holds out the whole training split"),
])
def test_bad_validation_values(value, match):
    with pytest.raises(UserError, match=match):
        holdout_size(value, 1438)


def test_a_validation_split_that_empties_a_class_is_refused():
    with pytest.raises(UserError, match="leaves class 3 .* with no validation example"):
        stratified_holdout(np.repeat(np.arange(4), [50, 30, 15, 1]), 10)


def test_selection_cannot_see_the_test_split(data_dir, tmp_path, monkeypatch):
    a = train.fit(_cfg(data_dir), str(tmp_path / "a"), progress=False)
    real_load = data.load

    def permuted(name, split, *args, **kw):  # the same test images with shuffled labels
        s = real_load(name, split, *args, **kw)
        if split == "test":
            s = dataclasses.replace(s, labels=np.random.default_rng(0).permutation(s.labels))
        return s

    monkeypatch.setattr(data, "load", permuted)
    b = train.fit(_cfg(data_dir), str(tmp_path / "b"), progress=False)
    assert a["best"]["step"] == b["best"]["step"]  # chosen on validation alone
    assert a["best"]["validation_accuracy"] == b["best"]["validation_accuracy"]
    assert a["test"]["accuracy"] != b["test"]["accuracy"]  # the test split did change
    rows = lambda d: [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r for r in rows("a") if r["split"] == "validation"] == [
        r for r in rows("b") if r["split"] == "validation"]


def test_selection_follows_the_validation_split(data_dir, tmp_path):
    a = train.fit(_cfg(data_dir, **{"data.validation": 0.1}), str(tmp_path / "a"), progress=False)
    b = train.fit(_cfg(data_dir, **{"data.validation": 0.3}), str(tmp_path / "b"), progress=False)
    assert a["data"]["validation"] == 144 and b["data"]["validation"] == 431
    assert a["validation"]["count"] != b["validation"]["count"]


def test_early_stopping_on_validation(data_dir, tmp_path):
    out = train.fit(_cfg(data_dir, **{"train.steps": 400, "train.early_stopping_patience": 1,
                                      "optim.learning_rate": 0.05}),
                    str(tmp_path / "es"), progress=False)
    evals = [json.loads(x) for x in (tmp_path / "es" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in evals if r["split"] == "validation"]
    if out["stopped_early"]:  # stopped one evaluation after its best
        assert val[-1]["step"] == out["steps"] and out["best"]["step"] == val[-2]["step"]
        assert val[-1]["accuracy"] <= out["best"]["validation_accuracy"]
    else:  # never failed to improve: it trained everything
        assert out["steps"] == 400 and all(b["accuracy"] > a["accuracy"] for a, b in zip(val, val[1:]))


def test_selection_without_validation_is_refused(data_dir, tmp_path):
    with pytest.raises(UserError, match="train.keep_best=1 selects on the validation split"):
        train.fit(_cfg(data_dir, **{"data.validation": 0.0}), str(tmp_path / "x"), progress=False)
    assert not (tmp_path / "x").exists()
    with pytest.raises(UserError, match="early_stopping_patience=3 selects on the validation"):
        config_lib.resolve(_cfg(data_dir, **{"data.validation": 0.0, "train.keep_best": 0,
                                             "train.early_stopping_patience": 3}))
    out = train.fit(_cfg(data_dir, **{"data.validation": 0.0, "train.keep_best": 0}),
                    str(tmp_path / "off"), progress=False)
    assert out["validation"] is None and out["data"]["validation"] == 0 and out["best"]["step"] is None
