"""Config files, dotted overrides, typing and validation errors."""

import textwrap

import pytest

from cnn_jax import config as config_lib
from cnn_jax import experiment as experiment_lib
from cnn_jax.errors import UserError


def _apply(*pairs):
    return config_lib.resolve(config_lib.apply_overrides(config_lib.base_config(), list(pairs)))


def test_overrides_are_typed():
    c = _apply(("train.epochs", "3"), ("optim.learning_rate", "0.1"), ("data.flip", "true"),
               ("model.pool", "avg"), ("model.hidden", "(100, 50)"), ("optim.scales", "0.2,0.3"))
    assert c.train.epochs == 3 and c.optim.learning_rate == 0.1 and c.data.flip is True
    assert c.model.pool == "avg" and tuple(c.model.hidden) == (100, 50)
    assert tuple(c.optim.scales) == (0.2, 0.3)


def test_model_name_override_is_applied_first():
    c = _apply(("model.hidden", "32"), ("model.name", "mlp"))
    assert c.model.name == "mlp" and tuple(c.model.hidden) == (32,)


@pytest.mark.parametrize(
    "pair,message",
    [
        (("train.epochs", "abc"), r"invalid value for train.epochs: 'abc' is not a valid int"),
        (("train.epoch", "3"), r"unknown config key 'train.epoch'; did you mean 'train.epochs'"),
        (("modell.pool", "avg"), r"unknown config key 'modell'; did you mean 'model'"),
        (("model.pool", "maxx"), r"unknown pool 'maxx'; did you mean 'max'.*choose one of"),
        (("model.activation", "relu7"), r"unknown activation 'relu7'.*choose one of:.*relu"),
        (("optim.name", "adamm"), r"unknown optimizer 'adamm'; did you mean 'adam'"),
        (("data.name", "cifar"), r"unknown dataset 'cifar'.*choose one of:.*cifar10"),
        (("model.name", "lenet"), r"unknown model 'lenet'.*lenet5"),
        (("data.batch_size", "0"), r"data.batch_size must be a positive integer, got 0"),
        (("train.epochs", "-1"), r"train.epochs must be a non-negative integer, got -1"),
        (("data.flip", "maybe"), r"invalid value for data.flip: 'maybe' is not a valid bool"),
        (("train", "3"), r"'train' is a group"),
    ],
)
def test_bad_overrides_are_clear(pair, message):
    with pytest.raises(UserError, match=message):
        _apply(pair)


def test_experiment_files(tmp_path):
    good = tmp_path / "good.py"
    good.write_text(textwrap.dedent("""
        from cnn_jax.config import base_config
        def get_config(arg="max"):
            c = base_config()
            c.model.pool = arg
            return c
    """))
    assert experiment_lib.load_experiment(str(good)).model.pool == "max"
    assert experiment_lib.load_experiment(f"{good}:avg").model.pool == "avg"
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config(:\n")
    with pytest.raises(UserError, match=r"bad.py:1: syntax error"):
        experiment_lib.load_experiment(str(bad))
    none = tmp_path / "none.py"
    none.write_text("x = 1\n")
    with pytest.raises(UserError, match="defines no get_config"):
        experiment_lib.load_experiment(str(none))
    with pytest.raises(UserError, match="does not exist"):
        experiment_lib.load_experiment(str(tmp_path / "missing.py"))


def test_json_round_trip_and_diff():
    c = _apply(("model.hidden", "(10, 20)"))
    back = config_lib.from_json(config_lib.to_json(c))
    assert config_lib.diff(c, back) == []
    other = _apply(("model.pool", "avg"))
    assert [k for k, _, _ in config_lib.diff(c, other)] == ["model.hidden", "model.pool"]
    ignored = _apply(("model.hidden", "(10, 20)"), ("data.data_dir", "/elsewhere"))
    assert config_lib.diff(c, ignored) == []


def test_shipped_experiments_resolve():
    import glob

    files = sorted(glob.glob("experiments/*.py"))
    assert files
    for f in files:
        config_lib.resolve(experiment_lib.load_experiment(f))


def test_pool_options_take_new_keys_from_the_command_line():
    c = _apply(("model.pool", "mixed"), ("model.pool_options.alpha", "0.3"))
    assert c.model.pool_options.alpha == 0.3
    with pytest.raises(UserError, match="unknown config key 'model.pool_option'"):
        _apply(("model.pool_option.alpha", "0.3"))


def test_switching_the_model_drops_options_it_lacks(tmp_path):
    from cnn_jax import models

    c = config_lib.apply_overrides(experiment_lib.load_experiment("experiments/lenet5_mnist.py"),
                                   [("model.name", "mlp")])
    assert set(c.model) - {"name"} <= set(models.options("mlp"))
    config_lib.resolve(c)
