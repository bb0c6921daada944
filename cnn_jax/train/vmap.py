"""Train runs that differ only by seed together: one ``jax.vmap``-ed program.

:func:`fit_seeds` trains K copies of one config with K seeds as a single compiled program:
``jax.vmap`` of the pure ``train_step`` over a stacked state and stacked batches, one
dispatch per step for all seeds (:class:`cnn_jax.train.modes.VmapMode`). Each seed keeps
its own initialisation, data order, augmentation and dropout/pooling keys (exactly what
:func:`cnn_jax.train.fit` would use for that seed) and its own normal run directory, so
skip, resume, ``cnn-jax evaluate`` and reports treat it like any run. It is a mode of
``fit``'s training loop (:class:`cnn_jax.train.loop.Loop`): the same log, evaluation and
checkpoint points, pending sums, preemption handling and summary.

Convolutions with per-seed kernels become grouped convolutions, which XLA:CPU runs slowly:
on 2 CPU cores a LeNet-5 step over 5 seeds ran at 0.36-0.46x the sequential speed, and the
pooling study's max-pool configs (2 models x 5 seeds, 1 epoch) took 105 s vmapped against
52 s one seed after another. Sweeps therefore use it on accelerators only by default
(``--vmap-seeds auto``; unmeasured there). A vmapped step equals the sequential step to
float rounding (tested to rtol 2e-5 over 6 steps); over a whole run the rounding differences
grow as in any chaotic optimisation (up to 0.8 pp of final test accuracy after 125 steps),
so vmapped and sequential runs are equal in distribution, not bit for bit. It supports
``train.on_nan="stop"`` and one device; for anything else :func:`supported` is false and
seeds run one by one through ``fit``.

Resume: the seeds resume together from the newest checkpoint step that all of them have
(Orbax keeps the latest two); if there is none, :func:`fit_seeds` returns ``None`` and the
caller resumes them one by one with ``fit``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import jax
import ml_collections

from cnn_jax import config as config_lib
from cnn_jax import rundir
from cnn_jax.train import periodic
from cnn_jax.train import workdir as workdir_lib
from cnn_jax.train.assemble import Setup, build, initial_state
from cnn_jax.train.checkpoint import Checkpoints, state_bytes
from cnn_jax.train.loop import Lane, Loop
from cnn_jax.train.modes import VmapMode
from cnn_jax.train.progress import Preemption, Progress
from cnn_jax.train.writer import MetricWriter

# on_done(index, outcome) is called as soon as one seed has finished (done or diverged).
Callback = Callable[[int, dict], None]


def _check_group(cfgs) -> None:
    def without_seed(c):
        flat = config_lib.flatten(c)
        flat.pop("seed")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}

    ref = without_seed(cfgs[0])
    if any(without_seed(c) != ref for c in cfgs[1:]):
        raise ValueError("fit_seeds needs configs that differ only by their seed")
    seeds = [c.seed for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"fit_seeds needs distinct seeds, got {seeds}")


def supported(cfg: ml_collections.ConfigDict) -> bool:
    """Whether :func:`fit_seeds` trains this config as ``fit`` would (seeds that stop early
    at different steps are trained one by one)."""
    return (
        cfg.train.get("on_nan", config_lib.ON_NAN_STOP) == config_lib.ON_NAN_STOP
        and not cfg.train.get("early_stopping_patience", 0)
        and len(jax.devices()) == 1
    )


def fit_seeds(
    configs: list[ml_collections.ConfigDict],
    workdirs: list[str],
    *,
    on_done: Callback | None = None,
    load=None,
) -> list[dict] | None:
    """Trains configs that differ only by ``seed`` into their ``workdirs``, vmapped.

    Returns one outcome per seed: ``{"status": "done", "result": FitResult}`` or
    ``{"status": "diverged", "error", "step"}``; a seed whose loss becomes non-finite stops
    there (its last good checkpoint is kept) while the others go on. Returns ``None``
    (having trained nothing) when the seeds' checkpoints have no step in common. ``load``
    reads the data splits, with the signature of :func:`cnn_jax.data.load` (e.g. a caching
    loader; ``None``: ``cnn_jax.data.load``). SIGTERM/SIGINT/SIGUSR2 save a checkpoint of
    every seed still training and raise :class:`~cnn_jax.errors.Preempted`, as ``fit``.
    """
    cfgs = [config_lib.resolved(c) for c in configs]
    _check_group(cfgs)
    if len(cfgs) != len(workdirs):
        raise ValueError("one workdir per config")
    if not supported(cfgs[0]):
        raise ValueError("fit_seeds needs train.on_nan=stop, no early stopping and a single device")
    for cfg, wd in zip(cfgs, workdirs):
        workdir_lib.check(cfg, wd, False, False)
    s = build(cfgs[0], load=load)
    for cfg, wd in zip(cfgs, workdirs):
        workdir_lib.create(wd)
        workdir_lib.write_config(cfg, wd)
    with contextlib.ExitStack() as stack:
        for wd in workdirs:
            stack.enter_context(workdir_lib.WorkdirLock(wd))
        ckpts = [
            stack.enter_context(contextlib.closing(Checkpoints(
                os.path.join(wd, rundir.CHECKPOINTS), cfg.train.keep_latest, cfg.train.keep_best,
                state_bytes=state_bytes(s.state))))
            for cfg, wd in zip(cfgs, workdirs)
        ]
        start = _common_step(ckpts)
        if start is None:
            return None  # interrupted at different points: resume seed by seed
        preemption = stack.enter_context(Preemption())
        return _train(cfgs, workdirs, s, ckpts, start, stack, preemption, on_done)


def _common_step(ckpts: list[Checkpoints]) -> int | None:
    """The newest step all seeds have a checkpoint of (0: none has any; ``None``: no step
    in common)."""
    steps = [set(c.steps()) for c in ckpts]
    if not any(steps):
        return 0
    common = set.intersection(*steps)
    return max(common) if common else None


def _train(cfgs, workdirs, s: Setup, ckpts, start: int, stack, preemption, on_done) -> list[dict]:
    cfg = cfgs[0]
    states, data_states = _initial_states(cfgs, s, ckpts, start)
    lanes = []
    for wd, ckpt in zip(workdirs, ckpts):
        writer = stack.enter_context(contextlib.closing(MetricWriter(wd, resume_step=start)))
        stopper = periodic.EarlyStopping.of(cfg)  # (patience 0: fit_seeds does not stop early)
        stopper.replay(rundir.read_metrics(wd), start)
        lanes.append(Lane(wd, ckpt, writer, stopper))
    bar = stack.enter_context(contextlib.closing(
        Progress(s.total_steps, start, s.steps_per_epoch, cfg.data.batch_size, False)))
    loop = Loop(cfg, s, VmapMode(cfgs, s), lanes, bar=bar, preemption=preemption, on_done=on_done)
    return loop.run(start, states, data_states)


def _initial_states(cfgs, s: Setup, ckpts, start: int) -> tuple[list, list[dict]]:
    """Each seed's state and data state at step ``start`` (its checkpoint, or its initial
    state at 0)."""
    states, data_states = [], []
    for c, cf in zip(ckpts, cfgs):
        st, ds = initial_state(s, cf.seed), {}
        if start:
            st, ds, _ = c.restore(st, start)
        states.append(st)
        data_states.append(ds)
    return states, data_states
