"""The "best" checkpoint is the step training selects: the first of equal validation
accuracies, so a resumed run restores the same best state it would have kept in memory."""

import jax.numpy as jnp

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
