"""The "best" checkpoint is the step training selects: the first of equal validation
accuracies, so a resumed run restores the same best state it would have kept in memory."""

import jax.numpy as jnp
import pytest

from cnn_jax.train.checkpoint import Checkpoints


class _State:  # the checkpointed fields of a TrainState
    def __init__(self, v):
        self.step, self.params, self.batch_stats = jnp.int32(0), {"w": jnp.full((3,), v)}, {}
        self.opt_state, self.rng, self.loss_scale = (), jnp.zeros((2,), jnp.uint32), None

    def replace(self, **kw):
        new = _State(0.0)
        new.__dict__.update({**self.__dict__, **kw})
        return new


def test_ties_keep_the_earliest_best_step(tmp_path):
    ck = Checkpoints(str(tmp_path / "ckpt"), keep_latest=1, keep_best=1)
    for step, acc in [(10, 0.5), (20, 0.75), (30, 0.75), (40, 0.75), (50, 0.6)]:
        ck.save(step, _State(float(step)), {"iterator": None, "pending": None}, {"accuracy": acc})
    ck.wait()
    assert ck.best_step() == 20
    assert ck.steps() == [20, 50]  # the best and the latest survive
    state, _, step = ck.restore(_State(0.0), "best")
    assert step == 20 and float(state.params["w"][0]) == 20.0
    ck.close()


def _end_cfg(data_dir, **train_keys):
    from cnn_jax import config as config_lib

    c = config_lib.base_config()
    c.data.data_dir, c.data.name, c.model.name = data_dir, "digits", "mlp"
    c.data.batch_size, c.train.steps, c.train.eval_every_epochs = 128, 60, 1  # 10 steps an epoch
    c.train.log_every_steps, c.train.checkpoint_evals, c.optim.learning_rate = 5, "end", 0.003
    for k, v in train_keys.items():
        c.train[k] = v
    return c


def test_end_only_checkpoints_write_the_best_and_the_final_state(data_dir, tmp_path):
    """checkpoint_evals="end": no save at the evaluations; at the end the best state (kept in
    memory since its evaluation) and the final one; both restore to what the run reported."""
    from cnn_jax import train

    out = train.fit(_end_cfg(data_dir), str(tmp_path / "run"), progress=False)
    best = out["best"]["step"]
    assert best is not None and best < 60  # the test needs a best before the end
    # the best state's test evaluation ran the program the validation compiled (a host copy
    # of the state has the training state's signature)
    runner = out.runner
    assert runner._eval._cache_size() == 1 and runner._train._cache_size() == 1
    ck = Checkpoints(str(tmp_path / "run" / "checkpoints"), read_only=True)
    assert ck.steps() == [best, 60] and ck.best_step() == best
    ck.close()
    assert train.evaluate(str(tmp_path / "run"), "best")["accuracy"] == out["best"]["test_accuracy"]
    assert train.evaluate(str(tmp_path / "run"))["accuracy"] == out["test"]["accuracy"]


def test_end_only_checkpoints_resume_exactly_with_the_same_best(data_dir, tmp_path, interrupt):
    """A run stopped after a checkpoint_every save (the pending best written just before it)
    resumes to the uninterrupted run's metrics and best checkpoint."""
    import json

    from cnn_jax import train

    c = _end_cfg(data_dir, checkpoint_every_steps=50)
    full = train.fit(c, str(tmp_path / "full"), progress=False)
    interrupt.at(55)  # after the save at step 50
    with pytest.raises(interrupt.Stop):
        train.fit(c, str(tmp_path / "part"), progress=False)
    interrupt.restore()
    ck = Checkpoints(str(tmp_path / "part" / "checkpoints"), read_only=True)
    saved = ck.steps()
    ck.close()
    assert full["best"]["step"] < 50 and saved == [full["best"]["step"], 50]  # the best went first
    resumed = train.fit(c, str(tmp_path / "part"), progress=False)
    assert resumed["resumed_from"] == 50
    assert resumed["best"] == full["best"] and resumed["test"] == full["test"]
    lines = lambda run: [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert lines("part") == lines("full")


def test_vmapped_seeds_checkpoint_at_the_end_as_fit_does(data_dir, tmp_path):
    """checkpoint_evals="end" under vmapped seeds: each seed's checkpoints are its best and
    final states, at the steps fit saves them."""
    from cnn_jax import train
    from cnn_jax.train import vmap as seeds_lib

    cfgs = []
    for seed in (0, 1):
        c = _end_cfg(data_dir)
        c.seed = seed
        cfgs.append(c)
    outs = seeds_lib.fit_seeds(cfgs, [str(tmp_path / f"vmap{i}") for i in (0, 1)])
    for i, (c, o) in enumerate(zip(cfgs, outs)):
        ref = train.fit(c, str(tmp_path / f"fit{i}"), progress=False)
        assert o["status"] == "done" and o["result"].summary["best"]["step"] == ref["best"]["step"]
        steps = []
        for run in (f"vmap{i}", f"fit{i}"):
            ck = Checkpoints(str(tmp_path / run / "checkpoints"), read_only=True)
            steps.append(ck.steps())
            ck.close()
        assert steps[0] == steps[1] == sorted({ref["best"]["step"], 60})


def test_a_later_seeds_first_step_is_timed_as_a_step(data_dir, tmp_path):
    """The second seed of a config reuses the first one's compiled training program, so its
    first step compiles nothing and counts among the timed steps (summary.json says which)."""
    from cnn_jax import train

    first = train.fit(_end_cfg(data_dir, steps=20), str(tmp_path / "s0"), progress=False)
    c = _end_cfg(data_dir, steps=20)
    c.seed = 1
    second = train.fit(c, str(tmp_path / "s1"), progress=False)
    assert first["first_step_compiled"] is True and second["first_step_compiled"] is False
    assert 0 < second["step_seconds"] <= second["train_seconds"]
    # the images/s of the timed steps: all 20 of the second seed, 19 of the first
    for out, timed in ((first, 19), (second, 20)):
        assert out["images_per_second"] == pytest.approx(
            timed * 128 / out["step_seconds"], rel=1e-6)
