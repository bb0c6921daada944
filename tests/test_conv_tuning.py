"""cnn_jax.conv_tuning: every registered formulation equals lax.conv_general_dilated and its
gradients; the rules are the default; the measured choice (CNN_JAX_CONV=tuned) is cached (a second process measures nothing), obeyed as
cached, independent of the batch, shared by a sweep's trials and recorded."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax import conv, conv_tuning
from cnn_jax.errors import UserError
from helpers.numerics import clean_env

ROOT = os.path.dirname(os.path.dirname(__file__))


def _ref(x, w, pads):
    return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=conv.DIMENSION_NUMBERS)


def _random_case(rng):
    kh, kw = (int(v) for v in rng.integers(1, 6, 2))
    cin, cout = int(rng.integers(1, 7)), int(rng.integers(1, 9))
    pads = tuple(tuple(int(p) for p in rng.integers(0, 3, 2)) for _ in range(2))
    h, w = int(rng.integers(kh, kh + 8)), int(rng.integers(kw, kw + 8))
    return (int(rng.integers(1, 4)), h, w, cin), (kh, kw, cin, cout), pads


CASES = [_random_case(np.random.default_rng(seed)) for seed in range(6)]


COMBOS = [(f, d, k) for f in conv.FORWARD.names() for d in conv.INPUT_GRAD.names() for k in conv.KERNEL_GRAD.names()]


@pytest.mark.parametrize("fwd,dx,dw", COMBOS)
def test_every_formulation_equals_lax_and_its_gradients_on_random_shapes(fwd, dx, dw):
    for i, (xs, ws, pads) in enumerate(CASES):
        rng = np.random.default_rng(100 + i)
        x = jnp.asarray(rng.normal(size=xs), jnp.float32)
        w = jnp.asarray(rng.normal(size=ws), jnp.float32)
        f = jax.jit(lambda x, w, pads=pads: conv._conv(x, w, pads, fwd, dx, dw))
        y = f(x, w)
        np.testing.assert_allclose(y, _ref(x, w, pads), rtol=1e-5, atol=1e-4, err_msg=str((xs, ws, pads)))
        g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
        ours = functools.partial(conv._conv, pads=pads, fwd=fwd, dx=dx, dw=dw)
        got = jax.jit(lambda x, w, g, f=ours: jax.vjp(f, x, w)[1](g))(x, w, g)
        want = jax.vjp(functools.partial(_ref, pads=pads), x, w)[1](g)
        for have, expected in zip(got, want):
            np.testing.assert_allclose(have, expected, rtol=1e-5, atol=1e-4, err_msg=str((xs, ws, pads)))


def test_the_random_cases_reach_every_formulation_as_a_candidate():
    """Each registered formulation applies to at least one random case (so the tuner may
    pick it for such a shape), and each case has XLA's among its candidates."""
    seen = {p: set() for p in conv_tuning.PARTS}
    for xs, ws, pads in CASES:
        geom = conv_tuning.Geometry(xs[1:3], ws, pads, "float32")
        for part, names in conv.candidates(geom).items():
            assert "xla" in names
            seen[part] |= set(names)
    assert seen == {"forward": set(conv.FORWARD.names()), "input_grad": set(conv.INPUT_GRAD.names()),
                    "kernel_grad": set(conv.KERNEL_GRAD.names())}


@pytest.fixture
def tuned(tmp_path, monkeypatch):
    """Tuned mode with a sweep file and a user file of this test's own; a fresh memo."""
    files = {"sweep": tmp_path / "sweep" / "conv.json", "user": tmp_path / "user" / "conv.json"}
    monkeypatch.setenv(conv_tuning.ENV, "tuned")
    monkeypatch.setenv(conv_tuning.CACHE_ENV, str(files["sweep"]))
    monkeypatch.setenv(conv_tuning.USER_CACHE_ENV, str(files["user"]))
    monkeypatch.setattr(conv_tuning, "_memo", {})
    monkeypatch.setattr(conv_tuning, "_used", {})
    monkeypatch.setattr(conv_tuning, "measured", [])
    return files


def _grad_program(batch, ws=(3, 3, 2, 4), pads=((1, 1), (1, 1))):
    x, w = jnp.ones((batch, 9, 9, ws[2])), jnp.ones(ws)
    return jax.jit(jax.grad(lambda x, w: jnp.sum(conv.conv2d(x, w, pads) ** 2), argnums=(0, 1))).lower(x, w).as_text()


def _entries(file):
    (machine,) = json.loads(file.read_text())["machines"].values()
    return machine


def test_tuned_measures_once_per_geometry_whatever_the_batch_and_writes_both_files(tuned):
    _grad_program(3)
    _grad_program(7)  # the same layer at another batch: the same choice, nothing measured
    key = "3x3x2->4 on 9x9 pad 1,1,1,1 float32"
    assert conv_tuning.measured == [key]
    entry = _entries(tuned["sweep"])[key]
    assert _entries(tuned["user"])[key] == entry
    names = conv.candidates(conv_tuning.Geometry((9, 9), (3, 3, 2, 4), ((1, 1), (1, 1)), "float32"))
    for part in conv_tuning.PARTS:
        assert set(entry[f"{part}_ms"]) == set(names[part])
        assert entry[part] == conv_tuning.winner(entry[f"{part}_ms"])
    choice = "/".join(entry[p] for p in conv_tuning.PARTS)
    assert conv_tuning.record() == {"mode": "tuned", "choices": {key: choice}}


def test_winner_needs_a_margin_over_xla():
    assert conv_tuning.winner({"xla": 1.0, "taps": 0.85}) == "xla"  # too close: XLA's
    assert conv_tuning.winner({"xla": 1.0, "taps": 0.7, "patches": 0.6}) == "patches"
    assert conv_tuning.winner({"xla": 1.0, "taps": 1.5}) == "xla"


SECOND_PROCESS = """
import json, jax, jax.numpy as jnp
from cnn_jax import conv, conv_tuning
x, w = jnp.ones((5, 9, 9, 2)), jnp.ones((3, 3, 2, 4))
jax.jit(jax.grad(lambda x: jnp.sum(conv.conv2d(x, w, ((1, 1), (1, 1))))) ).lower(x)
print(json.dumps({"measured": conv_tuning.measured, "record": conv_tuning.record()}))
"""


def test_a_second_process_reads_the_cache_and_measures_nothing(tuned):
    _grad_program(3)
    first = conv_tuning.record()
    env = {**os.environ, "PYTHONPATH": ROOT}
    p = subprocess.run([sys.executable, "-c", SECOND_PROCESS], env=env, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out == {"measured": [], "record": first}
    # the user's file alone serves another sweep's empty file (copied into it)
    other = tuned["sweep"].parent / "other.json"
    p = subprocess.run([sys.executable, "-c", SECOND_PROCESS], env={**env, conv_tuning.CACHE_ENV: str(other)},
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0 and json.loads(p.stdout.strip().splitlines()[-1]) == out, p.stderr[-2000:]
    assert _entries(other) == _entries(tuned["user"])


@pytest.mark.parametrize("fwd,dx,dw", [("taps", "col2im", "patches"), ("xla", "xla", "xla"),
                                       ("xla", "col2im", "xla"), ("xla", "xla", "patches")])
def test_the_cached_choice_is_what_the_program_computes(tuned, fwd, dx, dw):
    """A hand-written cache decides: the tap loop and col2im appear in the program exactly
    when the file says so (no measuring), and the result equals XLA's."""
    key = "3x3x2->4 on 9x9 pad 1,1,1,1 float32"
    tuned["sweep"].parent.mkdir(parents=True)
    tuned["sweep"].write_text(json.dumps({"format": 1, "machines": {conv_tuning.machine_key(): {
        key: {"forward": fwd, "input_grad": dx, "kernel_grad": dw}}}}))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, 2)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3, 2, 4)), jnp.float32)
    fwd_text = jax.jit(lambda x, w: conv.conv2d(x, w, ((1, 1), (1, 1)))).lower(x, w).as_text()
    grad_x = jax.grad(lambda x: jnp.sum(conv.conv2d(x, w, ((1, 1), (1, 1))) ** 2))
    grad_w = jax.grad(lambda w: jnp.sum(conv.conv2d(x, w, ((1, 1), (1, 1))) ** 2))
    grad_text = jax.jit(grad_x).lower(x).as_text()
    grad_w_text = jax.jit(grad_w).lower(w).as_text()
    assert conv_tuning.measured == []
    assert ("stablehlo.while" in fwd_text) == (fwd == "taps")
    assert ("stablehlo.while" in grad_text) == (fwd == "taps" or dx == "col2im")
    assert ("stablehlo.while" in grad_w_text) == (fwd == "taps" or dw == "patches")
    np.testing.assert_allclose(jax.jit(grad_x)(x), jax.grad(lambda x: jnp.sum(_ref(x, w, ((1, 1), (1, 1))) ** 2))(x),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(jax.jit(grad_w)(w), jax.grad(lambda w: jnp.sum(_ref(x, w, ((1, 1), (1, 1))) ** 2))(w),
                               rtol=1e-5, atol=1e-4)


def test_an_unreadable_cache_is_measured_again_and_rewritten(tuned):
    tuned["sweep"].parent.mkdir(parents=True)
    tuned["sweep"].write_text("{not json")
    _grad_program(2)
    assert len(conv_tuning.measured) == 1 and len(_entries(tuned["sweep"])) == 1


def test_the_rules_are_the_default(monkeypatch):
    monkeypatch.delenv(conv_tuning.ENV, raising=False)
    assert conv_tuning.mode() == "rows"
    assert conv_tuning.choose((2, 28, 28, 1), (5, 5, 1, 6), ((2, 2), (2, 2)), "float32", rules=conv.rule_sets(),
                              measure=None) == ("taps", "xla", "xla")


@pytest.mark.parametrize("mode, lenet_second", [("rows", ("rows", "rows", "xla")),
                                                ("auto", ("xla", "col2im", "xla"))])
def test_each_rule_mode_keeps_its_rules(monkeypatch, mode, lenet_second):
    # `auto` is the rule set before row patches, frozen (studies pinned to it reproduce); `rows`
    # adds them for 4..8 input channels and <= 16 filters (LeNet-5's second layer)
    monkeypatch.setenv(conv_tuning.ENV, mode)
    choose = functools.partial(conv_tuning.choose, rules=conv.rule_sets(), measure=None)
    assert choose((2, 14, 14, 6), (5, 5, 6, 16), ((0, 0), (0, 0)), "float32") == lenet_second
    for w_shape, expected in [((5, 5, 1, 6), ("taps", "xla", "xla")), ((5, 5, 3, 32), ("taps", "col2im", "xla")),
                              ((3, 3, 32, 64), ("xla", "xla", "xla")), ((3, 3, 8, 32), ("xla", "col2im", "xla"))]:
        assert choose((2, 16, 16, w_shape[2]), w_shape, ((1, 1), (1, 1)), "float32") == expected


def test_modes_auto_rows_and_xla_measure_nothing(tuned, monkeypatch):
    for mode in ("rows", "auto", "xla"):
        monkeypatch.setenv(conv_tuning.ENV, mode)
        _grad_program(2)
    assert conv_tuning.measured == [] and not tuned["sweep"].exists()
    assert conv_tuning.record()["choices"] == {"3x3x2->4 on 9x9 pad 1,1,1,1 float32": "xla/col2im/xla"}  # (auto's rule)


def test_a_bad_mode_is_one_line_error_naming_the_choices():
    env = {**os.environ, "PYTHONPATH": ROOT, conv_tuning.ENV: "fastest"}
    p = subprocess.run([sys.executable, "-m", "cnn_jax", "bench", "--steps", "1"], env=env,
                       capture_output=True, text=True, check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert "CNN_JAX_CONV='fastest'" in p.stderr and "rows, auto, tuned, xla" in p.stderr


SWEEP = '''
from cnn_jax import study
from cnn_jax.config import base_config

def get_config():
    c = base_config()
    c.data.name, c.data.data_dir, c.model.name, c.data.batch_size = "mnist5k", {data_dir!r}, "lenet5", 32
    c.data.eval_batch_size, c.train.steps = 200, 4
    return c

def get_sweep():
    return study.Study(study.grid({{"model.pool": ["max", "avg"]}}), seeds=1,
                       baseline={{"model.pool": "max"}}, analyses={{}})
'''


def test_a_sweeps_workers_share_one_measured_choice_recorded_in_each_trial(tmp_path, data_dir):
    exp = tmp_path / "exp.py"
    exp.write_text(SWEEP.format(data_dir=data_dir))
    wd = tmp_path / "sweep"
    env = clean_env(ROOT)
    env.pop(conv_tuning.CACHE_ENV, None)
    env.update({conv_tuning.ENV: "tuned", conv_tuning.USER_CACHE_ENV: "off"})
    p = subprocess.run([sys.executable, "-m", "cnn_jax", "sweep", str(exp), "--workdir", str(wd), "--workers", "2"],
                       env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    table = _entries(wd / ".cache" / "conv.json")
    assert {"5x5x1->6 on 28x28 pad 2,2,2,2 float32", "5x5x6->16 on 14x14 pad 0,0,0,0 float32"} <= set(table)
    want = {k: "/".join(e[p] for p in conv_tuning.PARTS) for k, e in table.items()}
    for trial in os.listdir(wd / "trials"):
        numerics = json.loads((wd / "trials" / trial / "summary.json").read_text())["numerics"]
        assert numerics["conv"] == "tuned"
        assert numerics["conv_choices"] == {k: v for k, v in want.items() if k in numerics["conv_choices"]}
        assert set(numerics["conv_choices"]) == set(table)  # (training and evaluation: one geometry each)
    report = (wd / "report.md").read_text()
    assert ("Convolutions (forward/input/kernel gradient" in report) == any(v != "xla/xla/xla" for v in want.values())
    assert "computed differently by different trials" not in report


def test_a_study_pinned_to_a_mode_runs_every_trial_in_it(tmp_path, data_dir):
    # the pooling study pins `auto`, whose rules its published numbers were computed with;
    # the pin reaches the worker processes whatever CNN_JAX_CONV the sweeping shell sets
    exp = tmp_path / "exp.py"
    exp.write_text(SWEEP.format(data_dir=data_dir).replace("analyses={}", 'analyses={}, conv="auto"'))
    wd = tmp_path / "sweep"
    env = {**clean_env(ROOT), conv_tuning.ENV: "rows", conv_tuning.USER_CACHE_ENV: "off"}
    p = subprocess.run([sys.executable, "-m", "cnn_jax", "sweep", str(exp), "--workdir", str(wd), "--workers", "1"],
                       env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "the study pins its convolutions to 'auto' (Study.conv); CNN_JAX_CONV=rows is not used" in p.stdout
    for trial in os.listdir(wd / "trials"):
        numerics = json.loads((wd / "trials" / trial / "summary.json").read_text())["numerics"]
        assert numerics["conv"] == "auto"
        assert numerics["conv_choices"]["5x5x6->16 on 14x14 pad 0,0,0,0 float32"] == "xla/col2im/xla"  # rows: rows/rows


def test_a_bad_study_mode_is_one_line_naming_the_modes():
    from cnn_jax import study

    with pytest.raises(UserError) as e:
        study.Study(study.grid({"model.pool": ["max"]}), conv="fastest")
    assert str(e.value) == ("Study.conv='fastest' is not a convolution mode; choose one of: rows, auto, tuned, xla "
                            "(or None: CNN_JAX_CONV's)")


def test_the_report_names_a_geometry_two_tuned_trials_computed_differently(tmp_path):
    from cnn_jax.study.reporting import protocol

    geom = "5x5x1->6 on 28x28 pad 2,2,2,2 float32"
    for name, choice, mode in (("a", "taps/xla/xla", "tuned"), ("b", "xla/xla/xla", "tuned"),
                               ("c", "taps/xla/patches", "auto")):  # (auto's choices are not listed)
        d = tmp_path / "trials" / name
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"numerics": {"conv": mode, "conv_choices": {geom: choice}}}))
    text = protocol._conv_sentence(protocol._recorded(str(tmp_path), ["a", "b", "c"]))
    assert f"`{geom}` taps/xla/xla or xla/xla/xla." in text
    assert text.endswith(" 1 geometry was computed differently by different trials.")
    assert protocol._conv_sentence(protocol._recorded(str(tmp_path), ["b", "c"])) == ""  # only XLA's among tuned trials


def test_the_report_names_a_geometry_trials_of_one_rule_mode_computed_differently(tmp_path):
    # trials recorded as `auto` before its rules gained row patches (as they did for a while)
    from cnn_jax.study.reporting import protocol

    first, second = "5x5x1->6 on 28x28 pad 2,2,2,2 float32", "5x5x6->16 on 14x14 pad 0,0,0,0 float32"
    for name, choice in (("a", "xla/col2im/xla"), ("b", "rows/rows/xla"), ("c", "xla/col2im/xla")):
        d = tmp_path / "trials" / name
        d.mkdir(parents=True)
        numerics = {"conv": "auto", "conv_choices": {first: "taps/xla/xla", second: choice}}
        (d / "summary.json").write_text(json.dumps({"numerics": numerics}))
    text = protocol._conv_sentence(protocol._recorded(str(tmp_path), ["a", "b", "c"]))
    assert text == (" Trials of one convolution mode computed these geometries differently (forward/input/kernel "
                    f"gradient): `{second}` rows/rows/xla or xla/col2im/xla.")
    assert protocol._conv_sentence(protocol._recorded(str(tmp_path), ["a", "c"])) == ""
