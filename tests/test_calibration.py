"""The calibration analysis (ECE, NLL, Brier) against hand-computed cases, an independent
NumPy/SciPy reference and, end to end, the trial's own test loss."""

import numpy as np
import pytest
from scipy import special

from cnn_jax import analyses
from cnn_jax.analyses import calibration
from cnn_jax.errors import UserError


def test_ece_by_hand():
    # 15 bins of width 1/15: 0.95 -> bin 14 (twice, one right), 0.55 -> bin 8 (right),
    # 0.25 -> bin 3 (wrong): 2/4 |0.5 - 0.95| + 1/4 |1 - 0.55| + 1/4 |0 - 0.25| = 0.4
    got = calibration.ece([0.95, 0.95, 0.55, 0.25], [1, 0, 1, 0], bins=15)
    assert got == pytest.approx(0.4, abs=1e-12)
    # each bin's accuracy equal to its confidence: perfectly calibrated
    conf = np.array([0.8] * 5 + [0.4] * 5)
    correct = np.array([1, 1, 1, 1, 0] + [1, 1, 0, 0, 0])
    assert calibration.ece(conf, correct, bins=10) == pytest.approx(0.0, abs=1e-12)
    # one bin: |accuracy - mean confidence|
    assert calibration.ece([0.3, 0.9], [1, 1], bins=1) == pytest.approx(0.4, abs=1e-12)
    assert calibration.ece([], [], bins=15) == 0.0


def _ece_reference(confidence, correct, bins):
    """Binned with np.digitize on explicit edges (right-closed bins), a second formulation."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            out += sel.mean() * abs(np.mean(correct[sel]) - np.mean(confidence[sel]))
    return out


def test_ece_nll_brier_against_an_independent_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10)) * 3
    labels = rng.integers(0, 10, size=500)
    log_p = special.log_softmax(logits, axis=1)
    p = np.exp(log_p)
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == labels).astype(float)
    for bins in (1, 10, 15):
        assert calibration.ece(conf, correct, bins) == pytest.approx(_ece_reference(conf, correct, bins), abs=1e-12)
    assert calibration.nll(log_p, labels) == pytest.approx(
        np.mean([-np.log(p[i, y]) for i, y in enumerate(labels)]), rel=1e-12)
    onehot = np.zeros_like(p)
    onehot[np.arange(500), labels] = 1
    assert calibration.brier(p, labels) == pytest.approx(np.mean(np.sum((p - onehot) ** 2, axis=1)), rel=1e-12)
    # by hand: p = (0.7, 0.2, 0.1), label 0 -> 0.3^2 + 0.2^2 + 0.1^2 = 0.14
    assert calibration.brier([[0.7, 0.2, 0.1]], [0]) == pytest.approx(0.14, abs=1e-12)
    assert calibration.nll(np.log([[0.7, 0.2, 0.1]]), [1]) == pytest.approx(-np.log(0.2), abs=1e-12)


def test_calibration_of_a_trained_trial_matches_its_test_loss(tmp_path, data_dir):
    """The analysis's NLL on the final state is the trial's own test cross-entropy."""
    from cnn_jax import config as config_lib
    from cnn_jax import train
    from cnn_jax.study.execution import measure

    c = config_lib.base_config()
    c.data.data_dir, c.data.name, c.model.name, c.data.batch_size = data_dir, "digits", "mlp", 32
    c.train.steps = 30
    out = train.fit(c, str(tmp_path / "run"), progress=False)
    spec = analyses.resolve({"calibration": {"state": "final"}})
    rec = measure.run(spec, out, str(tmp_path / "run"))["calibration"]
    v = rec["values"]
    assert rec["measured"] == {"state": "final", "step": 30}
    assert v["nll"] == pytest.approx(out.summary["test"]["loss"], rel=1e-5)
    assert 0 <= v["ece"] <= 1 and 0 <= v["brier"] <= 2
    # the reliability diagram's bins are kept (analysis.json's details) and hold every image
    assert sum(rec["details"]["count"]) == len(out.setup.test)


def test_bad_bins_is_a_one_line_error_when_the_study_is_planned():
    with pytest.raises(UserError, match=r"analysis 'calibration': option 'bins' is 0; choose a number"):
        analyses.resolve({"calibration": {"bins": 0}})


def test_reliability_bins_sum_to_the_ece():
    """The diagram's bins, by hand on four images, and the ECE recomputed from them."""
    conf, correct = [0.95, 0.95, 0.55, 0.25], [1, 0, 1, 0]
    r = calibration.reliability(conf, correct, bins=15)
    assert r["count"][14] == 2 and r["count"][8] == 1 and r["count"][3] == 1 and sum(r["count"]) == 4
    assert r["confidence"][14] == pytest.approx(1.9) and r["correct"][14] == 1
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.1, 1.0, 300)
    correct = (rng.uniform(size=300) < conf).astype(float)
    r = calibration.reliability(conf, correct, bins=15)
    n = np.array(r["count"])
    used = n > 0
    from_bins = np.sum(np.abs(np.array(r["correct"])[used] - np.array(r["confidence"])[used])) / n.sum()
    assert from_bins == pytest.approx(calibration.ece(conf, correct, 15), abs=1e-12)
