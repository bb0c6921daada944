"""Foundation models: shapes, pinned parameter counts, options, intermediates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import models
from cnn_jax.errors import ShapeError, UserError


def _count(model, shape):
    v = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape))))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(v["params"]))


@pytest.mark.parametrize(
    "name,opts,shape,expected",
    [
        # 156 + 2,416 + 48,120 + 10,164 + 850 (conv1 SAME, conv2 VALID, 5x5x16 flattened)
        ("lenet5", dict(activation="tanh", pool="avg"), (28, 28, 1), 61_706),
        ("lenet5", dict(hidden=(120, 100)), (28, 28, 1), 48_120 + 156 + 2_416 + 12_100 + 1_010),
        # 896 + 18,496 + 36,928 + 65,600 + 650
        ("simple_cnn", {}, (32, 32, 3), 122_570),
        ("mlp", dict(hidden=(100,)), (28, 28, 1), 784 * 100 + 100 + 100 * 10 + 10),
    ],
)
def test_pinned_parameter_counts(name, opts, shape, expected):
    assert _count(models.create(name, 10, **opts), shape) == expected


@pytest.mark.parametrize("name", ["mlp", "lenet5", "simple_cnn"])
def test_output_shape_and_intermediates(name):
    model = models.create(name, num_classes=7)
    x = jnp.ones((3, 28, 28, 1))
    variables = model.init(jax.random.PRNGKey(0), x)
    logits = model.apply(variables, x, train=False)
    assert logits.shape == (3, 7)
    feats = models.features(model, variables, x)
    assert "logits" in feats and np.allclose(feats["logits"], logits)
    if name != "mlp":
        assert feats["conv1"].shape[0] == 3 and feats["pool1"].ndim == 4


def test_lenet5_layer_shapes_follow_the_seed():
    model = models.create("lenet5", 10)
    x = jnp.ones((1, 28, 28, 1))
    feats = models.features(model, model.init(jax.random.PRNGKey(0), x), x)
    assert feats["conv1"].shape == (1, 28, 28, 6)  # SAME
    assert feats["pool1"].shape == (1, 14, 14, 6)
    assert feats["conv2"].shape == (1, 10, 10, 16)  # VALID
    assert feats["pool2"].shape == (1, 5, 5, 16)


def test_unknown_option_and_name_errors():
    with pytest.raises(UserError, match="no option 'activaton'.*did you mean 'activation'"):
        models.create("lenet5", 10, activaton="tanh")
    with pytest.raises(UserError, match="unknown model 'lenet'.*choose one of:.*lenet5"):
        models.create("lenet", 10)


def test_too_small_input_names_the_layer():
    model = models.create("simple_cnn", 10)
    with pytest.raises(ShapeError, match="layer 'pool2'"):
        jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1))))


def test_activation_choice_changes_the_function():
    x = jnp.linspace(-1, 1, 28 * 28).reshape(1, 28, 28, 1)
    outs = []
    for act in ("relu", "tanh", "sigmoid"):
        m = models.create("lenet5", 10, activation=act)
        outs.append(m.apply(m.init(jax.random.PRNGKey(0), x), x))
    assert not np.allclose(outs[0], outs[1]) and not np.allclose(outs[1], outs[2])
