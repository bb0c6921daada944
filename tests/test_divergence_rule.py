"""Which trials count is decided on training and validation loss, never on the test split:
a non-finite final test loss alone does not mark a trial diverged."""

import math
import types

import pytest

from cnn_jax import train
from cnn_jax.study.execution import task


def _fit_returning(monkeypatch, **losses):
    summary = {"steps": 12, **{split: {"loss": loss, "accuracy": 0.5} for split, loss in losses.items()}}
    monkeypatch.setattr(train, "fit", lambda *a, **k: types.SimpleNamespace(summary=summary))


def test_a_non_finite_test_loss_alone_is_not_a_divergence(monkeypatch):
    _fit_returning(monkeypatch, train=0.3, validation=0.4, test=math.nan)
    assert task._fit_single(None, "unused")["status"] == "done"


@pytest.mark.parametrize("split", ["train", "validation"])
def test_a_non_finite_training_or_validation_loss_is(monkeypatch, split):
    _fit_returning(monkeypatch, **{"train": 0.3, "validation": 0.4, "test": 0.5, split: math.inf})
    out = task._fit_single(None, "unused")
    assert out["status"] == "diverged" and out["error"] == f"training diverged: final {split} loss is inf"
    assert out["step"] == 12


def test_no_validation_split_reads_training_loss_only(monkeypatch):
    monkeypatch.setattr(train, "fit", lambda *a, **k: types.SimpleNamespace(
        summary={"steps": 3, "train": {"loss": 0.3}, "validation": None, "test": {"loss": math.nan}}))
    assert task._fit_single(None, "unused")["status"] == "done"
