"""Reliability: preemption, hard kills, corruption, divergence, mismatch, locks, determinism,
and one clear line for each bad input through the real command line."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from helpers.hold import hold, wait_held

from cnn_jax import config as config_lib
from cnn_jax import train
from cnn_jax.errors import Diverged, UserError
from cnn_jax.train.checkpoint import Checkpoints
from cnn_jax.train.workdir import WorkdirLock

ROOT = os.path.dirname(os.path.dirname(__file__))
EXP = "experiments/lenet5_mnist.py"


def _cfg(data_dir, **over):
    c = config_lib.base_config()
    c.data.data_dir = data_dir
    c.data.name, c.model.name, c.data.batch_size = "digits", "mlp", 32
    c.train.steps, c.train.checkpoint_every_steps, c.train.log_every_steps = 12, 3, 3
    for k, v in over.items():
        group, key = k.split("__")
        with c[group].unlocked():
            c[group][key] = v
    return c


def _cli(data_dir, workdir, *extra, steps=40):
    return [sys.executable, "-m", "cnn_jax", "train", "--config", EXP, "--workdir", str(workdir),
            f"--config.data.data_dir={data_dir}", "--config.model.name=mlp",
            "--config.data.name=digits", "--config.data.batch_size=32",
            f"--config.train.steps={steps}", "--config.train.checkpoint_every_steps=2",
            "--config.train.log_every_steps=2", "--config.model.dropout=0.2", "--quiet", *extra]


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.pop("CNN_JAX_HOST_DEVICES", None)
    return env


def _read(path):
    with open(path) as f:
        return f.read()


def _params(workdir, data_dir_cfg):
    s = train.build(config_lib.resolve(data_dir_cfg))
    state, _, step = Checkpoints(os.path.join(workdir, "checkpoints"), read_only=True).restore(s.state)
    return jax.device_get(state.params), step


def _reference(data_dir, workdir, steps):
    """The uninterrupted run of the command _cli() builds, in this process (same results)."""
    from cnn_jax import cli

    assert cli.main(_cli(data_dir, workdir, steps=steps)[3:]) == 0


# A guard against a hung child process only, never a statement about speed: every wait in
# these tests is for observed progress (a logged step, a checkpoint, a lock taken).
HANG_S = 1800


def _wait(proc, what, predicate, log=None, poll=0.01):
    """Polls ``predicate()`` until it is true; fails if ``proc`` exits first (or hangs).

    ``log``: the file holding the process's stderr (else its stderr pipe, if any)."""
    deadline = time.monotonic() + HANG_S
    while not predicate():
        if proc.poll() is not None:
            err = _read(log) if log else proc.stderr.read() if proc.stderr else ""
            err = err[-3000:]
            pytest.fail(f"the run exited ({proc.returncode}) while waiting for {what}: {err}")
        if time.monotonic() > deadline:
            pytest.fail(f"the run hung: no {what} after {HANG_S} s")
        time.sleep(poll)


def _logged_steps(workdir):
    """Steps in ``metrics.jsonl`` (complete lines only: the writer may be mid-line)."""
    try:
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    return [json.loads(line)["step"] for line in text.split("\n")[:-1] if line.strip()]


def _newest_logged(workdir):
    return max(_logged_steps(workdir), default=0)


def _lock_holder(workdir):
    try:
        with open(os.path.join(workdir, ".lock")) as f:
            return int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


@pytest.mark.long  # .ci/run's long stage (over a minute on 2 cores)
def test_sigterm_saves_and_resume_is_exact(data_dir, tmp_path):
    ref = tmp_path / "ref"
    _reference(data_dir, ref, 400)
    wd = tmp_path / "run"
    # held inside its 30th batch (helpers/hold.py) while SIGTERM is sent: mid-run on any machine
    env, held, release = hold(tmp_path, batch=30)
    p = subprocess.Popen(_cli(data_dir, wd, steps=400), env={**_env(), **env}, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_held(p, held)
    seen = _newest_logged(wd)
    p.send_signal(signal.SIGTERM)
    release.touch()
    out, err = p.communicate(timeout=HANG_S)
    assert p.returncode == 75, err
    assert "preempted: SIGTERM received: saved a checkpoint at step" in err
    step = int(err.split("at step ")[1].split(";")[0])
    # the step it was at: no earlier than what it had logged, and it did not run to the end
    assert seen <= step < 400 and step in Checkpoints(str(wd / "checkpoints"), read_only=True).steps()
    p2 = subprocess.run(_cli(data_dir, wd, steps=400)[:-1], capture_output=True, text=True,
                        env=_env(), cwd=ROOT, timeout=HANG_S)
    assert p2.returncode == 0 and f"resuming from step {step}" in p2.stdout
    assert _read(wd / "metrics.jsonl") == _read(ref / "metrics.jsonl")
    a, b = json.loads(_read(wd / "summary.json")), json.loads(_read(ref / "summary.json"))
    assert a["test"] == b["test"] and a["train"] == b["train"]


def _one_life(cmd, wd, rng, gaps, stage):
    """Starts the run and SIGKILLs it at a random point between two observed events.

    The events of a life are: the process starts, it holds the workdir lock (config, data and
    model built), then each new step in ``metrics.jsonl`` (a checkpoint is written at every
    logged step here). The kill lands after the event ``stage`` names, a random fraction of the
    way to the next one (that gap as measured earlier on this machine), and never later than
    the next event itself, so every life advances the run by at most a few logged steps
    whatever the machine's speed. ``stage`` says between which events: ``start-up`` (process
    start to lock), ``restore`` (lock to the first new logged step) or ``training`` (after
    1-4 new logged steps, before the next); the first two need ``gaps`` measured by an
    earlier ``training`` life. Returns ``stage``.
    """
    floor = _newest_logged(wd)  # a life must log beyond this to count as progress
    after = rng.randint(1, 4)  # in "training": after this many new logged steps
    log = os.path.join(wd.parent, "life.err")
    with open(log, "w") as err:
        p = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    t0 = time.monotonic()
    try:
        if stage == "start-up":
            nxt = lambda: _lock_holder(wd) == p.pid  # noqa: E731
            budget = rng.random() * gaps["start-up"]
        else:
            _wait(p, "the workdir lock", lambda: _lock_holder(wd) == p.pid, log)
            t_lock = time.monotonic()
            gaps["start-up"] = t_lock - t0
            if stage == "restore":
                nxt = lambda: _newest_logged(wd) > floor  # noqa: E731
                budget = rng.random() * gaps["restore"]
            else:
                for k in range(after):
                    level = max(_newest_logged(wd), floor)
                    t_prev = time.monotonic()
                    _wait(p, "a newly logged step", lambda: _newest_logged(wd) > level, log)
                    gaps["restore" if k == 0 else "training"] = time.monotonic() - (t_lock if k == 0 else t_prev)
                level = _newest_logged(wd)
                nxt = lambda: _newest_logged(wd) > level  # noqa: E731
                budget = rng.random() * gaps.get("training", gaps["restore"])
        t_kill = time.monotonic() + budget
        while time.monotonic() < t_kill and not nxt() and p.poll() is None:
            time.sleep(0.005)
        assert p.poll() is None, f"the run exited by itself ({p.returncode}): {_read(log)[-3000:]}"
        p.kill()  # SIGKILL: no chance to clean up
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
    return stage


@pytest.mark.long  # .ci/run's long stage (over a minute on 2 cores)
def test_kill_9_at_random_moments_then_resume_is_exact(data_dir, tmp_path):
    # Ten lives, each SIGKILLed between two observed events (see _one_life): kills land in
    # start-up, restore, training and checkpoint writes (one every logged step) alike, and a
    # life never runs more than a few logged steps, so 240 steps outlast all ten on any machine.
    steps = 240
    ref = tmp_path / "ref"
    _reference(data_dir, ref, steps)
    wd = tmp_path / "run"
    rng = random.Random(1234)
    gaps: dict = {}
    # every kind of moment several times, in a seeded order; the first life measures the gaps
    rest = ["training"] * 3 + ["restore"] * 3 + ["start-up"] * 3
    rng.shuffle(rest)
    landed = [_one_life(_cli(data_dir, wd, steps=steps), wd, rng, gaps, stage)
              for stage in ["training", *rest]]
    kills = len(landed)
    newest = max(Checkpoints(str(wd / "checkpoints"), read_only=True).steps(), default=0)
    print(f"kill -9 count: {kills} ({', '.join(f'{s} {landed.count(s)}' for s in sorted(set(landed)))}); "
          f"newest checkpoint before the final run: step {newest} of {steps}")
    assert kills >= 8 and not os.path.exists(wd / "summary.json")
    assert 0 < newest < steps  # the lives left checkpoints behind, and work for the last one
    final = subprocess.run(_cli(data_dir, wd, steps=steps), capture_output=True, text=True, env=_env(),
                           cwd=ROOT, timeout=HANG_S)
    assert final.returncode == 0, final.stderr
    assert _read(wd / "metrics.jsonl") == _read(ref / "metrics.jsonl")
    a, b = json.loads(_read(wd / "summary.json")), json.loads(_read(ref / "summary.json"))
    assert a["resumed_from"] == newest
    assert a["test"] == b["test"] and a["train"] == b["train"]


def test_corrupt_newest_checkpoint_falls_back(data_dir, tmp_path, capsys):
    c = _cfg(data_dir)
    full = train.fit(c, str(tmp_path / "full"), progress=False)
    wd = tmp_path / "run"
    c9 = config_lib.apply_overrides(c, [("train.steps", "9")])
    train.fit(c9, str(wd), progress=False)
    newest = wd / "checkpoints" / "9"
    assert newest.is_dir()
    files = sorted(p for p in newest.rglob("*") if p.is_file() and p.stat().st_size > 100)
    for f in files:  # garble every data file of the newest checkpoint
        f.write_bytes(b"\0garbage" + f.read_bytes()[8:len(f.read_bytes()) // 2])
    out = train.fit(c, str(wd), progress=True, allow_config_change=True)
    err = capsys.readouterr().err
    assert "warning: checkpoint step 9 is corrupt" in err
    assert out["resumed_from"] == 6
    assert out["test"] == full["test"]
    assert os.listdir(wd / "corrupt_checkpoints")  # set aside, not deleted


def test_divergence_stops_naming_the_step_and_keeps_last_good(data_dir, tmp_path):
    c = _cfg(data_dir, optim__name="sgd", optim__learning_rate=1e12, train__checkpoint_every_steps=1)
    with pytest.raises(Diverged, match=r"loss is not finite at step (\d+); the last good checkpoint "
                                       r"\(step \d+\) is kept") as e:
        train.fit(c, str(tmp_path / "stop"), progress=False)
    assert Checkpoints(str(tmp_path / "stop" / "checkpoints"), read_only=True).steps()[-1] == e.value.step - 1
    params, _ = _params(str(tmp_path / "stop"), c)  # the last good checkpoint restores, finite
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
    skip = config_lib.apply_overrides(c, [("train.on_nan", "skip")])
    out = train.fit(skip, str(tmp_path / "skip"), progress=False)
    assert out["nonfinite_steps"] > 0
    params, _ = _params(str(tmp_path / "skip"), skip)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_lower_lr_recovers(data_dir, tmp_path):
    c = _cfg(data_dir, optim__name="sgd", optim__learning_rate=1e12, train__on_nan="lower_lr",
             train__nan_lr_factor=1e-12, train__nan_max_retries=2)
    out = train.fit(c, str(tmp_path / "run"), progress=False)
    assert np.isfinite(out["test"]["loss"]) and out["test"]["accuracy"] > 0.2


def test_restoring_into_another_model_names_the_paths(data_dir, tmp_path):
    c = _cfg(data_dir)
    train.fit(c, str(tmp_path / "run"), progress=False)
    other = config_lib.apply_overrides(c, [("model.hidden", "(64,)")])
    with pytest.raises(UserError, match=r"does not match this model \(only in checkpoint: params/fc2/bias"
                       r".*shape differs: .*params/fc1/kernel \(64, 256\) vs \(64, 64\)"):
        train.fit(other, str(tmp_path / "run"), progress=False, allow_config_change=True)


def test_workdir_lock_and_stale_lock(data_dir, tmp_path):
    c = _cfg(data_dir, train__steps=2)
    wd = tmp_path / "run"
    wd.mkdir()
    with WorkdirLock(str(wd)):
        with pytest.raises(UserError, match=rf"in use by another run \(pid {os.getpid()}\)"):
            train.fit(c, str(wd), progress=False)
    (wd / ".lock").write_text("999999\n")  # left by a dead process: no flock held
    assert train.fit(c, str(wd), progress=False)["steps"] == 2


def test_overwrite_needs_a_flag(data_dir, tmp_path):
    c = _cfg(data_dir, train__steps=3)
    train.fit(c, str(tmp_path / "run"), progress=False)
    other = config_lib.apply_overrides(c, [("seed", "5")])
    with pytest.raises(UserError, match="different config.*--overwrite"):
        train.fit(other, str(tmp_path / "run"), progress=False)
    out = train.fit(other, str(tmp_path / "run"), progress=False, overwrite=True)
    assert out["resumed_from"] == 0


def test_same_seed_bitwise_identical(data_dir, tmp_path):
    c = _cfg(data_dir, model__dropout=0.3, data__flip=True)
    a = train.fit(c, str(tmp_path / "a"), progress=False)
    b = train.fit(c, str(tmp_path / "b"), progress=False)
    assert a["test"] == b["test"] and _read(tmp_path / "a/metrics.jsonl") == _read(tmp_path / "b/metrics.jsonl")
    pa, _ = _params(str(tmp_path / "a"), c)
    pb, _ = _params(str(tmp_path / "b"), c)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)))


BAD = [
    (["--config.model.name=lenet6"], "unknown model 'lenet6'"),
    (["--config.model.pool=maxx"], "unknown pool 'maxx'"),
    (["--config.model.activation=rleu"], "unknown activation 'rleu'"),
    (["--config.optim.name=adan"], "unknown optimizer 'adan'"),
    (["--config.optim.schedule=cosin"], "unknown schedule 'cosin'"),
    (["--config.train.loss=hinge"], "unknown loss 'hinge'"),
    (["--config.data.name=mnist6k"], "unknown dataset 'mnist6k'"),
    (["--config.train.epohcs=3"], "did you mean 'train.epochs'?"),
    (["--config.model.activaton=tanh"], "did you mean 'model.activation'?"),
    (["--config.train.epochs=abc"], "is not a valid int"),
    (["--config.optim.learning_rate=fast"], "is not a valid float"),
    (["--config.data.batch_size=0"], "data.batch_size must be a positive integer, got 0"),
    (["--config.train.epochs=-2"], "train.epochs must be a non-negative integer, got -2"),
    (["--config.model.hidden=0,84"], "must hold positive sizes"),
    (["--config.data.batch_size=5000"], "data.batch_size 5000 is larger than the training split"),
    (["--config.model.pool_window=64"], "layer 'pool1' (64x64 window"),
    (["--config.model.padding=FULL"], "invalid padding 'FULL' for layer 'conv1'"),
    (["--config.model.pool_padding=full"], "invalid padding 'full'"),
    (["--config.data.test_split=test[:0]"], "split 'test[:0]' of dataset 'mnist5k' is empty"),
    (["--config.train.on_nan=ignore"], "invalid train.on_nan 'ignore'"),
    (["--config.parallel.mode=tpu"], "invalid parallel.mode 'tpu'"),
    (["--config.model.name=simple_cnn", "--config.data.name=digits"], "layer 'pool2'"),
    (["--config.data.name=cifar10", "DATA=missing"], "is not prepared in"),
    (["DATA=corrupt"], "cannot"),
    (["WORKDIR=/proc/cnn_jax_test"], "cannot create workdir"),
    (["--config.data.batch_size=33", "--config.parallel.mode=sharded", "DEVICES=2"],
     "data.batch_size 33 does not divide across 2 devices"),
    (["CONFIG=syntax"], "syntax error"),
    (["CONFIG=noget"], "defines no get_config"),
    (["--checkpoint=1"], "unrecognized arguments"),
]


SUBPROCESS = {0, 9, 23}  # plus every case that needs its own devices


@pytest.mark.parametrize("index", range(len(BAD)), ids=[str(i) for i in range(len(BAD))])
def test_bad_input_end_to_end(data_dir, tmp_path, capsys, index):
    """Each mistake: one line naming the value, exit 2, no traceback, nothing written."""
    args, message = BAD[index]
    env = _env()
    config, workdir, dd = EXP, str(tmp_path / "wd"), data_dir
    flags = []
    for a in args:
        if a.startswith("DATA="):
            dd = str(tmp_path / "data")
            if a == "DATA=corrupt":  # a prepared-looking mnist5k whose files are garbage
                import shutil

                shutil.copytree(os.path.join(data_dir, "mnist5k"), os.path.join(dd, "mnist5k"))
                for root, _, files in os.walk(dd):
                    for f in files:
                        if "array_record" in f:
                            with open(os.path.join(root, f), "wb") as fh:
                                fh.write(b"not an array record")
        elif a.startswith("WORKDIR="):
            workdir = a.split("=", 1)[1]
        elif a.startswith("DEVICES="):
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={a.split('=')[1]}"
        elif a.startswith("CONFIG="):
            config = str(tmp_path / "exp.py")
            with open(config, "w") as f:
                f.write("def get_config(:\n" if a == "CONFIG=syntax" else "x = 1\n")
        else:
            flags.append(a)
    # a run that is already there must survive every mistake untouched
    sentinel = tmp_path / "wd" / "keep.txt"
    if workdir == str(tmp_path / "wd"):
        sentinel.parent.mkdir()
        sentinel.write_text("precious")
    argv = ["train", "--config", config, "--workdir", workdir, f"--config.data.data_dir={dd}", *flags]
    if "XLA_FLAGS" in env or index in SUBPROCESS:  # a real process: exit status, no traceback
        p = subprocess.run([sys.executable, "-m", "cnn_jax", *argv], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=HANG_S)
        code, err = p.returncode, p.stderr
    else:  # the same entry point in this process (much faster)
        from cnn_jax import cli

        code = cli.main(argv)
        err = capsys.readouterr().err
    assert code == 2, (code, err[-2000:])
    lines = [x for x in err.strip().splitlines() if not x.startswith("WARNING")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert message in lines[0], lines[0]
    assert "Traceback" not in err
    if sentinel.parent.exists():
        assert sorted(os.listdir(sentinel.parent)) == ["keep.txt"] and sentinel.read_text() == "precious"
