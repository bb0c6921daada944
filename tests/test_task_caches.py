"""A process that runs several trials keeps explicit caches, not patched library functions:
each split is decoded once (data.SplitCache handed to fit as its loader) and the seeds of a
config share one set of built parts and step runners (train.assemble.PROGRAMS)."""

from cnn_jax import data, study
from cnn_jax.data import loading
from cnn_jax.train import assemble

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
    c.train.steps = 6
    c.train.log_every_steps = 3
    c.train.eval_every_epochs = 1
    return c


def get_sweep():
    return study.Study(study.grid({{"model.activation": ["relu", "tanh"]}}), seeds=2,
                       shift_consistency=0)
"""


def test_a_sweep_process_decodes_each_split_once(tmp_path, data_dir, monkeypatch):
    calls = []
    real = loading.load

    def counting(name, split, *args, **kwargs):
        calls.append((name, split))
        return real(name, split, *args, **kwargs)

    monkeypatch.setattr(loading, "load", counting)
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT.format(data_dir=data_dir))
    out = study.run(str(exp), str(tmp_path / "sweep"), workers=0, report=False, log=lambda s: None)
    assert out["done"] == 4
    # four trials, one dataset: every split it uses went through the cache (counted here,
    # below data.load) and was decoded exactly once
    assert {s for _, s in calls} >= {"train", "test"} and len(calls) == len(set(calls))
    assert data.load is real  # the sweep patched nothing


def test_the_seeds_of_a_config_share_the_built_parts_and_runner(data_dir):
    from cnn_jax import config as config_lib

    def build(seed, activation="relu"):
        c = config_lib.base_config()
        c.model.name, c.model.hidden, c.model.activation = "mlp", (8,), activation
        c.data.name, c.data.data_dir, c.seed = "digits", data_dir, seed
        s = assemble.build(config_lib.resolve(c))
        return s, assemble.make_runner(s.cfg, s.loss_fn, s.eval_loss_fn)

    a, ra = build(0)
    b, rb = build(1)
    assert a.model is b.model and a.loss_fn is b.loss_fn and ra is rb  # shared across seeds
    assert a.state.params is not b.state.params  # each seed its own initialisation
    c, rc = build(0, "tanh")  # another config: new parts, and its own runner
    assert c.model is not a.model and rc is not ra
    assert assemble.PROGRAMS.runners == {k: v for k, v in assemble.PROGRAMS.runners.items() if v is rc}


def test_a_runner_is_not_reused_under_other_convolution_settings_or_after_clear(data_dir, monkeypatch):
    """The cache keys runners by what changes the compiled step besides the config (the
    convolution mode, its cache files, the compile options); ``clear`` drops everything."""
    from cnn_jax import config as config_lib
    from cnn_jax import conv_tuning

    c = config_lib.base_config()
    c.model.name, c.model.hidden = "mlp", (8,)
    c.data.name, c.data.data_dir = "digits", data_dir
    s = assemble.build(config_lib.resolve(c))
    runner = lambda: assemble.make_runner(s.cfg, s.loss_fn, s.eval_loss_fn)  # noqa: E731
    monkeypatch.setenv(conv_tuning.ENV, "auto")
    auto = runner()
    assert runner() is auto
    monkeypatch.setenv(conv_tuning.ENV, "xla")
    xla = runner()
    assert xla is not auto and runner() is xla
    assemble.PROGRAMS.clear()
    assert assemble.PROGRAMS.parts is None and runner() is not xla
