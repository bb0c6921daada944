"""fit / evaluate end to end on the embedded data; exact resume; the pure steps."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import config as config_lib
from cnn_jax import losses, models, optim, train
from cnn_jax.errors import UserError


def _cfg(data_dir, **over):
    c = config_lib.base_config()
    c.data.data_dir = data_dir
    for k, v in over.items():
        group, key = k.split("__")
        with c[group].unlocked():
            c[group][key] = v
    return c


def test_fit_learns_far_above_chance(data_dir, tmp_path):
    c = _cfg(data_dir, model__name="lenet5", data__batch_size=64, train__epochs=2)
    out = train.fit(c, str(tmp_path / "run"), progress=False)
    assert out["test"]["count"] == 1000  # every test image, once
    assert out["test"]["accuracy"] > 0.8  # chance is 0.1
    # 10 % of the 4,000 training digits are held out for validation
    assert out["steps"] == 2 * (3600 // 64) and out["params"] == 61_706
    assert out["data"] == {"train": 3600, "validation": 400, "test": 1000}
    assert out["validation"]["count"] == 400 and out["best"]["selected_by"] == "validation"
    assert out["best"]["step"] in (56, 112) and out["best"]["test_accuracy"] is not None
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "validation"] == [56, 112]
    # the test split is read at the end only: the final state (and the best one if earlier)
    assert {r["step"] for r in rows if r["split"] == "test"} == {112, out["best"]["step"]}
    assert isinstance(out, train.FitResult) and out.state.step == 112
    files = set(os.listdir(tmp_path / "run"))
    assert {"config.json", "metrics.jsonl", "summary.json", "checkpoints", "tensorboard"} <= files
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "run" / "tensorboard"))
    saved = config_lib.from_json((tmp_path / "run" / "config.json").read_text())
    assert saved.model.name == "lenet5" and tuple(saved.model.hidden) == (120, 84)
    # evaluate restores what fit trained
    ev = train.evaluate(str(tmp_path / "run"), "latest")
    assert ev["step"] == out["steps"]
    assert ev["accuracy"] == pytest.approx(out["test"]["accuracy"])
    assert ev["loss"] == pytest.approx(out["test"]["loss"], rel=1e-5)
    best = train.evaluate(str(tmp_path / "run"), "best")
    assert best["step"] == out["best"]["step"]
    assert best["accuracy"] == pytest.approx(out["best"]["test_accuracy"])
    with pytest.raises(UserError, match=r"no checkpoint at step 5 in .*; available: 56, 112"):
        train.evaluate(str(tmp_path / "run"), "5")


def _resume_cfg(data_dir):
    # dropout, augmentation and several log/checkpoint points exercise every source of
    # randomness and state that a resume must restore
    return _cfg(
        data_dir, data__name="digits", model__name="mlp", data__batch_size=32,
        data__crop_padding=1, data__flip=True, train__steps=14, train__checkpoint_every_steps=4,
        train__log_every_steps=3, train__eval_every_epochs=1, optim__schedule="cosine",
    )


def test_resume_after_interruption_is_exact(data_dir, tmp_path, interrupt):
    c = _resume_cfg(data_dir)
    c.model.dropout = 0.3
    full = train.fit(c, str(tmp_path / "full"), progress=False)
    interrupt.at(11)  # after the checkpoint at step 8
    with pytest.raises(interrupt.Stop):
        train.fit(c, str(tmp_path / "resumed"), progress=False)
    interrupt.restore()
    resumed = train.fit(c, str(tmp_path / "resumed"), progress=False)
    assert resumed["resumed_from"] == 8
    assert resumed["test"] == full["test"]  # bitwise-equal metrics
    assert resumed["train"] == full["train"]

    def lines(run):
        with open(tmp_path / run / "metrics.jsonl") as f:
            return [json.loads(x) for x in f]

    assert lines("resumed") == lines("full")
    a = train.evaluate(str(tmp_path / "full"))
    b = train.evaluate(str(tmp_path / "resumed"))
    assert a == b


def test_resume_with_a_different_config_is_refused(data_dir, tmp_path):
    c = _resume_cfg(data_dir)
    c.train.steps = 2
    train.fit(c, str(tmp_path / "run"), progress=False)
    c2 = config_lib.apply_overrides(c, [("optim.learning_rate", "0.5")])
    with pytest.raises(UserError, match=r"different config \(optim.learning_rate: 0.001 -> 0.5\)"):
        train.fit(c2, str(tmp_path / "run"), progress=False)
    c3 = config_lib.apply_overrides(c, [("train.steps", "4")])
    out = train.fit(c3, str(tmp_path / "run"), progress=False, allow_config_change=True)
    assert out["resumed_from"] == 2 and out["steps"] == 4


def test_pure_train_step_reduces_loss_on_a_fixed_batch():
    model = models.create("lenet5", 10)
    c = config_lib.base_config().optim
    tx = optim.build(c, 100, 10)
    state = train.create_train_state(model, tx, (28, 28, 1), seed=0)
    assert isinstance(state, train.TrainState) and state.batch_stats == {}
    loss_fn = functools.partial(losses.softmax_cross_entropy, num_classes=10)
    step = jax.jit(functools.partial(train.train_step, loss_fn=loss_fn))
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(16, 28, 28, 1)).astype(np.float32),
             "label": rng.integers(0, 10, 16).astype(np.int32)}
    first = None
    for _ in range(30):
        state, m = step(state, batch)
        first = first if first is not None else float(m["loss"]) / 16
    final = train.summarize(jax.device_get(m))
    assert final["loss"] < 0.5 * first and int(state.step) == 30
    ev = train.summarize(jax.device_get(jax.jit(functools.partial(train.eval_step, loss_fn=loss_fn))(
        state, {**batch, "mask": jnp.arange(16) < 8})))
    assert ev["count"] == 8


def test_same_seed_same_params_different_seed_different(data_dir):
    model = models.create("mlp", 10, hidden=(8,))
    tx = optim.build(config_lib.base_config().optim, 10, 10)
    a = train.create_train_state(model, tx, (8, 8, 1), seed=1)
    b = train.create_train_state(model, tx, (8, 8, 1), seed=1)
    c = train.create_train_state(model, tx, (8, 8, 1), seed=2)
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a.params, b.params))
    assert not np.array_equal(a.params["fc1"]["kernel"], c.params["fc1"]["kernel"])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_training_learns_and_keeps_float32_params(data_dir, tmp_path, dtype):
    c = _cfg(data_dir, model__name="lenet5", data__batch_size=64, train__steps=60,
             train__log_every_steps=10)
    c.model.dtype = dtype
    out = train.fit(c, str(tmp_path / dtype), progress=False)
    lines = [json.loads(x) for x in open(tmp_path / dtype / "metrics.jsonl")]
    losses_ = [x["loss"] for x in lines if x["split"] == "train"]
    assert losses_[-1] < 0.5 * losses_[0]  # it learns
    assert out["test"]["accuracy"] > 0.6
    s = train.build(config_lib.resolve(c))
    from cnn_jax.train.checkpoint import Checkpoints

    state, _, _ = Checkpoints(str(tmp_path / dtype / "checkpoints"), read_only=True).restore(s.state)
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype("float32")}
    assert {x.dtype for x in jax.tree.leaves(state.opt_state) if hasattr(x, "dtype") and x.ndim} == {jnp.dtype("float32")}
    if dtype == "float16":
        assert state.loss_scale is not None and float(state.loss_scale[0]) >= 1.0
    feats = models.features(s.model, {"params": state.params}, jnp.zeros((1, 28, 28, 1)))
    assert feats["conv1"].dtype == jnp.dtype(dtype)  # computed in low precision


def test_auxiliary_classifiers_are_trained_with_weight_0_3():
    """Aux heads sown into "aux_logits" (GoogLeNet's, with aux_logits=True) enter the loss
    as 0.3 × their loss."""
    import flax.linen as nn

    class TwoHeads(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            h = nn.Dense(8, name="trunk")(x.reshape(x.shape[0], -1))
            if train:
                self.sow("aux_logits", "heads", {"aux1": nn.Dense(3, name="aux1")(h)},
                         reduce_fn=lambda a, b: {**a, **b}, init_fn=dict)
            else:
                nn.Dense(3, name="aux1")(h)
            return nn.Dense(3, name="main")(h)

    model = TwoHeads()
    c = config_lib.base_config().optim
    c.name, c.learning_rate = "sgd", 1.0
    state = train.create_train_state(model, optim.build(c, 10, 10), (2, 2, 1), seed=0)
    loss_fn = functools.partial(losses.softmax_cross_entropy, num_classes=3)
    batch = {"image": np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1) / 8,
             "label": np.array([1, 2], np.int32)}
    new, _ = jax.jit(functools.partial(train.train_step, loss_fn=loss_fn))(state, batch)

    def total(params):
        h = batch["image"].reshape(2, -1) @ params["trunk"]["kernel"] + params["trunk"]["bias"]
        main = h @ params["main"]["kernel"] + params["main"]["bias"]
        aux = h @ params["aux1"]["kernel"] + params["aux1"]["bias"]
        return jnp.mean(loss_fn(main, batch["label"])) + 0.3 * jnp.mean(loss_fn(aux, batch["label"]))

    expected = jax.tree.map(lambda p, g: p - g, state.params, jax.grad(total)(state.params))
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(new.params["aux1"]["bias"] - state.params["aux1"]["bias"]).max()) > 1e-3


def test_combine_adds_sums_and_keeps_the_first_nonfinite_step():
    from cnn_jax.train import step as step_lib

    a = {"loss": jnp.float32(1.5), "count": jnp.float32(4), "first_nonfinite": jnp.int32(7)}
    b = {"loss": jnp.float32(2.0), "count": jnp.float32(8), "first_nonfinite": jnp.int32(step_lib.NO_STEP)}
    assert step_lib.combine(None, b) is b
    out = jax.device_get(step_lib.combine(a, b))
    assert float(out["loss"]) == 3.5 and float(out["count"]) == 12.0
    assert int(out["first_nonfinite"]) == 7
    # a resumed run's pending sums come back from JSON as NumPy scalars
    out = jax.device_get(step_lib.combine({k: np.asarray(v) for k, v in a.items()}, b))
    assert float(out["loss"]) == 3.5 and int(out["first_nonfinite"]) == 7


def test_multi_process_dispatch_waits_for_the_step_before_last():
    from cnn_jax.train.evaluation import pace

    class Output:  # records when the loop waits for it
        def __init__(self, name, log):
            self.name, self.log = name, log

        def block_until_ready(self):
            self.log.append(self.name)
            return self

    log: list = []
    steps = [Output(f"step{i}", log) for i in range(4)]
    in_flight = None
    for i, out in enumerate(steps):
        in_flight = pace(in_flight, out, True)
        assert log == [f"step{j}" for j in range(i)]  # dispatching step i waited for i - 1
    in_flight = None
    for out in steps:  # one process: never waits
        in_flight = pace(in_flight, out, False)
    assert in_flight is None and len(log) == 3
