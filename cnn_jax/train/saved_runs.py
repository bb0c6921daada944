"""Saved run directories: their config, a restored checkpoint, an evaluation of it, and
where a resumed ``fit`` begins.

(Not named ``restore``: a submodule of that name would shadow ``cnn_jax.train.restore``.)
"""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections

from cnn_jax import config as config_lib
from cnn_jax import data, rundir
from cnn_jax.errors import UserError
from cnn_jax.train import periodic
from cnn_jax.train import state as state_lib
from cnn_jax.train.assemble import Setup, build, data_options, eval_batch_size
from cnn_jax.train.checkpoint import Checkpoints
from cnn_jax.train.evaluation import run_eval
from cnn_jax.train.parallel import Runner


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config saved in run directory ``workdir``."""
    path = os.path.join(workdir, rundir.CONFIG)
    if not os.path.exists(path):
        raise UserError(f"{workdir!r} is not a run directory (no {rundir.CONFIG})")
    with open(path) as f:
        return config_lib.resolve(config_lib.from_json(f.read()))


@dataclasses.dataclass
class Restored:
    """A run directory brought back: its config, setup (test split, model), the restored
    train state (on the host) and the step it was saved at."""

    cfg: ml_collections.ConfigDict
    setup: Setup
    state: state_lib.TrainState
    step: int


def restore(workdir: str, checkpoint: str | int = "latest", *, load=None) -> Restored:
    """The one way back into a run directory: restores checkpoint ``latest``, ``best`` or a
    step of ``workdir`` (its model and test split built from its saved config; ``load``
    reads the splits, :func:`cnn_jax.data.load` by default)."""
    cfg = load_run_config(workdir)
    s = build(cfg, with_train=False, load=load)
    ckpt_dir = os.path.join(workdir, rundir.CHECKPOINTS)
    if not os.path.isdir(ckpt_dir):
        raise UserError(f"no checkpoints in {workdir!r}")
    ckpt = Checkpoints(ckpt_dir, cfg.train.keep_latest, cfg.train.keep_best, read_only=True)
    try:
        # onto this process's first device, whatever the devices (or processes) it was saved from
        one = jax.sharding.make_single_device_sharding(jax.local_devices()[0])
        state, _, step = ckpt.restore(s.state, checkpoint, sharding=one)
    finally:
        ckpt.close()
    return Restored(cfg, s, state, step)


def evaluate(workdir: str, checkpoint: str | int = "latest", split: str = "test", *, load=None,
             weights: str = "raw") -> dict:
    """Restores checkpoint ``latest``, ``best`` or a step from ``workdir`` and evaluates its
    ``weights`` (``"raw"``, or ``"ema"``: their moving average, for a run trained with
    ``train.ema_decay > 0``) on ``split``; returns metrics plus the ``step`` and ``weights``
    evaluated. ``load`` reads the splits (:func:`cnn_jax.data.load` by default)."""
    if weights not in state_lib.WEIGHTS:
        raise UserError(f"invalid weights {weights!r}; choose one of: {', '.join(state_lib.WEIGHTS)}")
    cfg = load_run_config(workdir)
    if weights == "ema" and not cfg.train.ema_decay > 0:
        raise UserError(f"run {workdir!r} keeps no moving average of its weights (it was trained "
                        "with train.ema_decay=0); evaluate its raw weights (--weights raw)")
    r = restore(workdir, checkpoint, load=load)
    runner = Runner(cfg.parallel.mode, r.setup.loss_fn, r.setup.eval_loss_fn)
    if split in ("test", cfg.data.test_split):
        target = r.setup.test
    else:
        load = data.load if load is None else load
        target = load(cfg.data.name, split, cfg.data.data_dir or None, data_options(cfg))
    state = state_lib.with_weights(r.state, weights)
    metrics = run_eval(runner.put_state(state), target, eval_batch_size(cfg, runner), runner)
    return {**metrics, "step": r.step, "split": split, "weights": weights}


def resume(cfg, s: Setup, ckpt: Checkpoints, runner: Runner, workdir: str, *, announce: bool):
    """``(host_state, data_state, start, stopper)``: where ``fit`` begins in ``workdir``
    (its newest checkpoint, if any; ``stopper`` has seen the validation rows up to it);
    ``announce`` prints that it resumes, or that the run had finished."""
    host_state, data_state, start = s.state, {}, 0
    stopper = periodic.EarlyStopping.of(cfg)
    if ckpt.latest_step() is None:
        return host_state, data_state, start, stopper
    host_state, data_state, start = ckpt.restore(host_state, "latest", sharding=runner.state_sharding())
    stopper.replay(rundir.read_metrics(workdir), start)
    if start and announce:
        if (start >= s.total_steps or stopper.stopped) and rundir.is_finished(workdir):
            print(
                f"already finished at step {start} ({start / s.steps_per_epoch:g} epochs"
                f"{', stopped early' if stopper.stopped else ''}) in {workdir}; to train "
                "longer, raise train.epochs or train.steps and pass --allow-config-change",
                flush=True,
            )
        else:
            print(
                f"resuming from step {start} (epoch {start / s.steps_per_epoch:.2f}) of "
                f"{os.path.join(workdir, rundir.CHECKPOINTS)}",
                flush=True,
            )
    return host_state, data_state, start, stopper
