"""The cost analysis: parameters and MACs from the model summary, the side-by-side timing
(against a fake clock, so that nothing here depends on the machine's speed), and the
baseline's model built from the study's baseline values."""

import numpy as np
import pytest

from cnn_jax import analyses
from cnn_jax.analyses import cost


class _Clock:
    """A clock that only the timed functions move: A costs 3 units a call, B 1 unit."""

    def __init__(self):
        self.now, self.calls = 0.0, []

    def __call__(self):
        return self.now

    def fn(self, name, units):
        def run(x):
            self.now += units
            self.calls.append(name)
            return x

        return run


def test_side_by_side_times_alternately_with_the_order_reversed(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(cost.time, "perf_counter", clock)
    x = np.zeros((4, 2))
    a, b = cost.side_by_side([clock.fn("a", 3.0), clock.fn("b", 1.0)], x, repeats=4, batches=2)
    # per image: 3 units a call / 4 images, and 1 / 4
    assert a == pytest.approx(0.75) and b == pytest.approx(0.25)
    # a warm-up call each, then rounds a a b b | b b a a | a a b b | b b a a
    assert clock.calls[:2] == ["a", "b"]
    assert clock.calls[2:] == list("aabb" "bbaa" "aabb" "bbaa")


def test_cost_of_a_trained_trial(tmp_path, data_dir):
    from cnn_jax import config as config_lib
    from cnn_jax import train
    from cnn_jax.study.execution import measure
    from cnn_jax.summary import summarize_model

    c = config_lib.base_config()
    c.data.data_dir, c.data.name, c.model.name, c.model.pool = data_dir, "mnist5k", "lenet5", "avg"
    c.data.eval_batch_size, c.train.steps = 100, 5
    out = train.fit(c, str(tmp_path / "run"), progress=False)
    spec = analyses.resolve({"cost": {"state": "final", "baseline": {"model.pool": "max"},
                                      "repeats": 2, "batches": 1}})
    rec = measure.run(spec, out, str(tmp_path / "run"))["cost"]
    d = rec["details"]
    assert rec["values"] == {}
    s = summarize_model(out.setup.model, tuple(out.setup.input_shape))
    assert d["params"] == out.summary["params"] == s.total_params and d["macs"] == s.total_macs > 0
    assert d["batch"] == 100 and d["inference_us"] > 0 and d["baseline_inference_us"] > 0
    assert d["inference_ratio"] == pytest.approx(d["inference_us"] / d["baseline_inference_us"])


def test_the_study_fills_in_its_baseline():
    from cnn_jax import study

    s = study.Study(study.grid({"model.pool": ["max", "avg"]}), seeds=1,
                    baseline={"model.pool": "max"}, analyses={"cost": {}})
    assert s.analysis_spec()["cost"]["baseline"] == {"model.pool": "max"}
    given = study.Study(study.grid({"model.pool": ["max", "avg"]}), seeds=1,
                        baseline={"model.pool": "max"},
                        analyses={"cost": {"baseline": {"model.pool": "avg"}}})
    assert given.analysis_spec()["cost"]["baseline"] == {"model.pool": "avg"}
