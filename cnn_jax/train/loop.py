"""``fit`` and ``evaluate``: the training loop around the pure steps.

A workdir holds ``config.json`` (the resolved config), ``checkpoints/`` (Orbax),
``metrics.jsonl``, ``tensorboard/`` and, when training finishes, ``summary.json``.
Running ``fit`` again on the same workdir resumes from the newest checkpoint (train
state and data-iterator position) and ends with exactly the metrics of an uninterrupted
run on CPU: per-step randomness is ``fold_in(rng, step)`` and the data order is a function
of the seed and the step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from cnn_jax import config as config_lib
from cnn_jax import data, losses, models, optim
from cnn_jax.errors import UserError
from cnn_jax.train import state as state_lib
from cnn_jax.train import step as step_lib
from cnn_jax.train.checkpoint import Checkpoints
from cnn_jax.train.writer import MetricWriter


@dataclasses.dataclass
class Setup:
    """Everything built from a resolved config."""

    cfg: ml_collections.ConfigDict
    model: Any
    train: data.Split | None
    test: data.Split
    state: state_lib.TrainState
    loss_fn: Any
    eval_loss_fn: Any
    steps_per_epoch: int
    total_steps: int


def model_options(cfg: ml_collections.ConfigDict) -> dict:
    opts = cfg.model.to_dict()
    opts.pop("name")
    return opts


def build(cfg: ml_collections.ConfigDict, *, with_train: bool = True) -> Setup:
    """Loads the data, creates the model, optimizer and initial state for ``cfg``."""
    data_dir = cfg.data.data_dir or data.default_data_dir()
    spec = data.DATASETS.get(cfg.data.name)
    test = data.load(cfg.data.name, "test", data_dir)
    train = data.load(cfg.data.name, "train", data_dir) if with_train else None
    n_train = len(train) if train is not None else cfg.data.batch_size
    if with_train and cfg.data.batch_size > n_train:
        raise UserError(
            f"data.batch_size {cfg.data.batch_size} is larger than the training split of "
            f"{cfg.data.name!r} ({n_train} examples); choose at most {n_train}"
        )
    spe = max(n_train // cfg.data.batch_size, 1)
    total = cfg.train.steps or cfg.train.epochs * spe
    model = models.create(cfg.model.name, spec.num_classes, **model_options(cfg))
    tx = optim.build(cfg.optim, total, spe)
    state = state_lib.create(model, tx, spec.shape, cfg.seed)
    loss = losses.LOSSES.get(cfg.train.loss)
    loss_fn = functools.partial(
        loss, num_classes=spec.num_classes, label_smoothing=cfg.train.label_smoothing
    )
    eval_loss_fn = functools.partial(loss, num_classes=spec.num_classes)
    return Setup(cfg, model, train, test, state, loss_fn, eval_loss_fn, spe, total)


def num_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def run_eval(state, split: data.Split, batch_size: int, eval_step) -> dict:
    """Metrics over every example of ``split`` exactly once."""
    total = None
    for batch in data.eval_batches(split, batch_size):
        sums = eval_step(state, batch)
        total = sums if total is None else jax.tree.map(lambda a, b: a + b, total, sums)
    return step_lib.summarize(jax.device_get(total))


def _check_workdir(cfg, workdir: str, allow_config_change: bool) -> None:
    """Refuses a workdir holding a run with another config (reads only)."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UserError(f"workdir {workdir!r} exists and is not a directory")
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            old = config_lib.from_json(f.read())
        changes = config_lib.diff(old, cfg)
        if changes and not allow_config_change:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes[:4])
            more = f" (and {len(changes) - 4} more)" if len(changes) > 4 else ""
            raise UserError(
                f"workdir {workdir!r} holds a run with a different config ({shown}{more}); "
                "use a new --workdir, or pass --allow-config-change to resume with the new config"
            )


def _write_config(cfg, workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create workdir {workdir!r}: {e.strerror}") from None
    if not os.access(workdir, os.W_OK):
        raise UserError(f"workdir {workdir!r} is not writable")
    path = os.path.join(workdir, "config.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config_lib.to_json(cfg))
    os.replace(tmp, path)


class _Progress:
    """A tqdm bar on a terminal; evaluation lines always (unless quiet)."""

    def __init__(self, total: int, initial: int, spe: int, batch_size: int, mode: bool | None):
        self.quiet = mode is False
        show_bar = (sys.stderr.isatty() if mode is None else mode) and not self.quiet
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total, initial=initial, unit="step", dynamic_ncols=True, disable=not show_bar,
            leave=False, file=sys.stderr,
        )
        self.spe, self.batch_size = spe, batch_size

    def update(self, step: int, metrics: dict | None, ips: float | None) -> None:
        self.bar.update(1)
        if metrics is not None:
            self.bar.set_description(f"epoch {(step - 1) // self.spe + 1}")
            self.bar.set_postfix(
                loss=f"{metrics['loss']:.4f}", acc=f"{metrics['accuracy']:.4f}",
                img_s=f"{ips:.0f}" if ips else "-", refresh=False,
            )

    def line(self, text: str) -> None:
        if not self.quiet:
            self.bar.write(text, file=sys.stdout)

    def close(self) -> None:
        self.bar.close()


def fit(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    progress: bool | None = None,
    allow_config_change: bool = False,
) -> dict:
    """Trains ``config`` into ``workdir`` (resuming if it holds checkpoints).

    Args:
      config: an experiment config (see :func:`cnn_jax.config.base_config`).
      workdir: run directory.
      progress: ``True``/``False`` force the progress bar on/off (``False`` is quiet: no
        per-epoch lines either); ``None`` shows it on a terminal only.
      allow_config_change: resume a workdir whose saved config differs.

    Returns:
      The final metrics: ``test`` (loss, accuracy, top5, count), ``best`` (accuracy and
      step), ``train`` (last logged), ``steps``, ``params``, ``train_seconds``,
      ``images_per_second``.
    """
    cfg = config_lib.resolve(config)
    _check_workdir(cfg, workdir, allow_config_change)
    s = build(cfg)  # every user mistake in data, model or shapes surfaces before writing
    _write_config(cfg, workdir)
    ckpt = Checkpoints(
        os.path.join(workdir, "checkpoints"), cfg.train.keep_latest, cfg.train.keep_best
    )
    state, data_state, start = s.state, {}, 0
    if ckpt.latest_step() is not None:
        state, data_state, start = ckpt.restore(state, "latest")
        if progress is not False:
            print(
                f"resuming from step {start} (epoch {start / s.steps_per_epoch:.2f}) of "
                f"{os.path.join(workdir, 'checkpoints')}",
                flush=True,
            )
    it = data.train_iterator(
        s.train, cfg.data.batch_size, cfg.seed, state=data_state.get("iterator"),
        crop_padding=cfg.data.crop_padding, flip=cfg.data.flip,
    )
    train_step = jax.jit(functools.partial(step_lib.train_step, loss_fn=s.loss_fn), donate_argnums=0)
    eval_step = jax.jit(functools.partial(step_lib.eval_step, loss_fn=s.eval_loss_fn))
    writer = MetricWriter(workdir, resume_step=start)
    bar = _Progress(s.total_steps, start, s.steps_per_epoch, cfg.data.batch_size, progress)
    eval_every = cfg.train.eval_every_epochs * s.steps_per_epoch
    log_every = cfg.train.log_every_steps
    ckpt_every = cfg.train.checkpoint_every_steps
    # Train metrics are summed between log points; the pending sums are checkpointed so
    # that a resumed run logs exactly what an uninterrupted one does.
    acc = _from_json_sums(data_state.get("pending"))
    last_train = {}
    test_metrics = None
    t_start = time.perf_counter()
    t_first = None  # after the first (compiling) step
    steps_timed = 0
    try:
        for step in range(start + 1, s.total_steps + 1):
            batch = next(it)
            state, sums = train_step(state, batch)
            acc = sums if acc is None else jax.tree.map(lambda a, b: a + b, acc, sums)
            if t_first is None:
                jax.block_until_ready(sums)
                t_first = time.perf_counter()
            else:
                steps_timed += 1
            logged = None
            ips = None
            if step % log_every == 0 or step == s.total_steps or step % eval_every == 0:
                logged = step_lib.summarize(jax.device_get(acc))
                elapsed = time.perf_counter() - t_first
                ips = steps_timed * cfg.data.batch_size / elapsed if elapsed > 0 and steps_timed else None
                writer.write(step, "train", {k: v for k, v in logged.items() if k != "count"})
                last_train, acc = logged, None
            bar.update(step, logged, ips)
            if step % eval_every == 0 or step == s.total_steps:
                test_metrics = run_eval(state, s.test, cfg.data.eval_batch_size, eval_step)
                writer.write(step, "test", test_metrics)
                bar.line(
                    f"epoch {step / s.steps_per_epoch:g} step {step}/{s.total_steps}: train loss "
                    f"{last_train['loss']:.4f} acc {last_train['accuracy']:.4f} | test loss "
                    f"{test_metrics['loss']:.4f} acc {test_metrics['accuracy']:.4f} "
                    f"({test_metrics['count']} images)"
                )
                ckpt.save(step, state, _data_state(it, acc), {"accuracy": test_metrics["accuracy"]})
            elif ckpt_every and step % ckpt_every == 0:
                ckpt.save(step, state, _data_state(it, acc))
        ckpt.wait()
    finally:
        bar.close()
        writer.close()
        ckpt.close()
    train_seconds = time.perf_counter() - t_start
    if test_metrics is None:  # nothing left to train: evaluate the restored state
        test_metrics = run_eval(state, s.test, cfg.data.eval_batch_size, eval_step)
    history = [r for r in _read_metrics(workdir) if r["split"] == "test"]
    best = max(history, key=lambda r: r["accuracy"]) if history else {"accuracy": None, "step": None}
    ips = steps_timed * cfg.data.batch_size / (time.perf_counter() - t_first) if t_first and steps_timed else None
    summary = {
        "test": test_metrics,
        "best": {"accuracy": best["accuracy"], "step": best["step"]},
        "train": last_train,
        "steps": int(s.total_steps),
        "epochs": s.total_steps / s.steps_per_epoch,
        "params": num_params(state.params),
        "train_seconds": train_seconds,
        "images_per_second": ips,
        "resumed_from": start,
    }
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def _data_state(it, pending) -> dict:
    """What a checkpoint stores besides the train state: the grain iterator position and
    the train-metric sums since the last log point."""
    sums = None if pending is None else {k: float(v) for k, v in jax.device_get(pending).items()}
    return {"iterator": it.get_state(), "pending": sums}


def _from_json_sums(sums: dict | None):
    return None if sums is None else {k: np.float32(v) for k, v in sums.items()}


def _read_metrics(workdir: str) -> list[dict]:
    from cnn_jax.train.writer import read_jsonl

    return read_jsonl(os.path.join(workdir, "metrics.jsonl"))


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise UserError(f"{workdir!r} is not a run directory (no config.json)")
    with open(path) as f:
        return config_lib.resolve(config_lib.from_json(f.read()))


def evaluate(workdir: str, checkpoint: str | int = "latest", split: str = "test") -> dict:
    """Restores checkpoint ``latest``, ``best`` or a step from ``workdir`` and evaluates it on
    ``split``; returns metrics plus the ``step`` evaluated."""
    cfg = load_run_config(workdir)
    s = build(cfg, with_train=False)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise UserError(f"no checkpoints in {workdir!r}")
    ckpt = Checkpoints(ckpt_dir, cfg.train.keep_latest, cfg.train.keep_best, read_only=True)
    state, _, step = ckpt.restore(s.state, checkpoint)
    target = s.test if split == "test" else data.load(cfg.data.name, split, cfg.data.data_dir or None)
    eval_step = jax.jit(functools.partial(step_lib.eval_step, loss_fn=s.eval_loss_fn))
    metrics = run_eval(state, target, cfg.data.eval_batch_size, eval_step)
    ckpt.close()
    return {**metrics, "step": step, "split": split}
