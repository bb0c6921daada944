"""Per-arm tuning: each arm's tuned value is chosen on validation with tuning seeds that are
never study seeds, then the study seeds run with it; resumable; errors."""

import json
import os
import subprocess
import sys

import pytest

from cnn_jax import rundir, study
from cnn_jax.errors import UserError
from cnn_jax.study import store

EXPERIMENT = """
from cnn_jax import study
from cnn_jax.config import base_config


def get_config():
    c = base_config()
    c.model.name = "mlp"
    c.model.hidden = (16,)
    c.data.name = "digits"
    c.data.data_dir = {data_dir!r}
    c.data.batch_size = 32
    c.train.steps = 10
    c.train.log_every_steps = 5
    c.train.eval_every_epochs = 1
    return c


def get_sweep():
    return study.Study(study.grid({{"model.activation": ["relu", "tanh"]}}), seeds=2,
                       baseline={{"model.activation": "relu"}}, shift_consistency=0,
                       tune={{"optim.learning_rate": [1e-4, 3e-2]}}, tune_seeds={tune_seeds})
"""


def _experiment(tmp_path, data_dir, tune_seeds="2"):
    path = tmp_path / "tuned.py"
    path.write_text(EXPERIMENT.format(data_dir=data_dir, tune_seeds=tune_seeds))
    return str(path)


def test_each_arm_gets_the_value_its_tuning_seeds_validate_best(tmp_path, data_dir):
    wd = str(tmp_path / "sweep")
    out = study.run(_experiment(tmp_path, data_dir), wd, workers=0, plots=False, log=lambda s: None)
    rec = store.load_sweep(wd)
    tune = [t for t in rec["trials"] if t.get("phase") == "tune"]
    final = [t for t in rec["trials"] if t.get("phase") != "tune"]
    assert len(tune) == 2 * 2 * 2 and len(final) == 2 * 2 and out["trials"] == 12
    # the run reports the time it spent in training steps against its wall time
    assert 0 < out["step_seconds"] < out["wall_seconds"] and 0 < out["overhead"] < 1
    assert {t["seed"] for t in tune} == {1000, 1001} and {t["seed"] for t in final} == {0, 1}
    # the choice, recomputed from the tuning trials' own summaries (validation only)
    for act in ("relu", "tanh"):
        means = {}
        for lr in (1e-4, 3e-2):
            accs = [rundir.read_summary(os.path.join(wd, "trials", t["name"]))["best"]["validation_accuracy"]
                    for t in tune if t["point"] == {"model.activation": act, "optim.learning_rate": lr}]
            means[lr] = sum(accs) / len(accs)
        best = max(means, key=means.get)
        chosen = {t["point"]["optim.learning_rate"] for t in final if t["point"]["model.activation"] == act}
        assert chosen == {best}, (act, means)
        cfgs = [json.load(open(os.path.join(wd, "trials", t["name"], "config.json")))
                for t in final if t["point"]["model.activation"] == act]
        assert {c["optim"]["learning_rate"] for c in cfgs} == {best}
    assert 3e-2 in {t["point"]["optim.learning_rate"] for t in final}  # 1e-4 barely learns in 10 steps
    report = open(os.path.join(wd, "report.md")).read()
    assert "## Tuning per arm" in report and "**chosen**" in report
    df = study.results(wd)
    assert len(df) == 4 and set(df.seed) == {0, 1}  # tuning trials are not results
    # a re-run does no new work
    again = study.run(_experiment(tmp_path, data_dir), wd, workers=0, plots=False, log=lambda s: None)
    assert again["ran"] == 0 and again["skipped"] == 12


def test_tuning_seeds_never_overlap_the_study_seeds(tmp_path, data_dir):
    exp = _experiment(tmp_path, data_dir, tune_seeds="[1, 7]")
    wd = tmp_path / "bad"
    p = subprocess.run([sys.executable, "-m", "cnn_jax", "sweep", exp, "--workdir", str(wd)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "tune_seeds [1, 7] overlap the study seeds [0, 1] at [1]" in p.stderr
    assert not wd.exists()


def test_a_tuned_key_cannot_also_be_swept():
    with pytest.raises(UserError, match="tune key 'model.pool' is also swept"):
        study.Study(study.grid({"model.pool": ["max", "avg"]}), tune={"model.pool": ["max"]})
    with pytest.raises(UserError, match="must map config keys to lists"):
        study.Study(study.grid({"model.pool": ["max"]}), tune={})


def test_a_value_with_a_failed_tuning_seed_is_not_chosen_on_the_strength_of_the_other():
    """Two tuning seeds: 3e-2 diverged on one and scored best on the other; 1e-4 finished on
    both. 1e-4 is chosen, and the table says how many seeds of each finished."""
    from cnn_jax.study import tuning

    s = study.Study(study.grid({"model.activation": ["relu"]}), seeds=2,
                    tune={"optim.learning_rate": [1e-4, 3e-2]}, tune_seeds=2)
    chosen, table = tuning.choose(s, {(0, 0): [0.80, 0.82], (0, 1): [0.95]})
    assert chosen == [{"optim.learning_rate": 1e-4}]
    assert [(r["n"], r["seeds"], r["chosen"]) for r in table] == [(2, 2, True), (1, 2, False)]
    # with every seed finished the better mean wins again
    chosen, _ = tuning.choose(s, {(0, 0): [0.80, 0.82], (0, 1): [0.95, 0.90]})
    assert chosen == [{"optim.learning_rate": 3e-2}]
    # and where no value finished all its seeds, the best mean of what finished
    chosen, _ = tuning.choose(s, {(0, 0): [0.80], (0, 1): [0.95]})
    assert chosen == [{"optim.learning_rate": 3e-2}]
