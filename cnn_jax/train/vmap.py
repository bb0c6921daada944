"""Train runs that differ only by seed together: one ``jax.vmap``-ed program.

:func:`fit_seeds` trains K copies of one config with K seeds as a single compiled program:
``jax.vmap`` of the pure ``train_step`` over a stacked state and stacked batches, one
dispatch per step for all seeds. Each seed keeps its own initialisation, data order,
augmentation and dropout/pooling keys (exactly what :func:`cnn_jax.train.fit` would use for
that seed) and its own normal run directory, so skip, resume, ``cnn-jax evaluate`` and
reports treat it like any run. It follows ``fit`` step by step through the same
bookkeeping (:mod:`cnn_jax.train.periodic`: log, evaluation and checkpoint points, pending
sums, the summary).

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
import functools
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from cnn_jax import config as config_lib
from cnn_jax import conv as conv_ops
from cnn_jax import data, rundir
from cnn_jax.train import periodic
from cnn_jax.train import step as step_lib
from cnn_jax.train import workdir as workdir_lib
from cnn_jax.train.assemble import build, initial_state, num_params
from cnn_jax.train.checkpoint import BestState, Checkpoints, state_bytes
from cnn_jax.train.loop import FitResult, final_evaluation
from cnn_jax.train.parallel import Runner
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
) -> list[dict] | None:
    """Trains configs that differ only by ``seed`` into their ``workdirs``, vmapped.

    Returns one outcome per seed: ``{"status": "done", "result": FitResult}`` or
    ``{"status": "diverged", "error", "step"}``; a seed whose loss becomes non-finite stops
    there (its last good checkpoint is kept) while the others go on. Returns ``None``
    (having trained nothing) when the seeds' checkpoints have no step in common.
    """
    cfgs = [config_lib.resolved(c) for c in configs]
    _check_group(cfgs)
    if len(cfgs) != len(workdirs):
        raise ValueError("one workdir per config")
    if not supported(cfgs[0]):
        raise ValueError("fit_seeds needs train.on_nan=stop, no early stopping and a single device")
    for cfg, wd in zip(cfgs, workdirs):
        workdir_lib.check(cfg, wd, False, False)
    s = build(cfgs[0])
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
        steps = [set(c.steps()) for c in ckpts]
        start = 0
        if any(steps):
            common = set.intersection(*steps)
            if not common:
                return None  # interrupted at different points: resume seed by seed
            start = max(common)
        return _train(cfgs, workdirs, s, ckpts, start, stack, on_done)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _train(cfgs, workdirs, s, ckpts, start, stack, on_done) -> list[dict]:
    k, cfg = len(cfgs), cfgs[0]
    states, data_states = [], []
    for c, cf in zip(ckpts, cfgs):
        st, ds = initial_state(s, cf.seed), {}
        if start:
            st, ds, _ = c.restore(st, start)
        states.append(st)
        data_states.append(ds)
    its = [
        data.train_iterator(
            s.train, cf.data.batch_size, cf.seed, state=ds.get("iterator"),
            crop_padding=cf.data.crop_padding, flip=cf.data.flip,
        )
        for cf, ds in zip(cfgs, data_states)
    ]
    stacked = _stack(states)
    del states
    opts = conv_ops.compiler_options()
    vstep = jax.jit(
        jax.vmap(functools.partial(step_lib.train_step, loss_fn=s.loss_fn)),
        donate_argnums=0, compiler_options=opts,
    )
    veval = jax.jit(
        jax.vmap(functools.partial(step_lib.eval_step, loss_fn=s.eval_loss_fn), in_axes=(0, None)),
        compiler_options=opts,
    )
    writers = [stack.enter_context(contextlib.closing(MetricWriter(wd, resume_step=start)))
               for wd in workdirs]
    when = periodic.Schedule.of(cfg, s.steps_per_epoch, s.total_steps)
    pend = [periodic.pending_from_json(ds.get("pending")) for ds in data_states]
    acc = None
    if all(p is not None for p in pend):
        acc = {key: jnp.stack([p[key] for p in pend]) for key in pend[0]}
    alive = [True] * k
    diverged: dict[int, dict] = {}
    last_train: list[dict] = [{} for _ in range(k)]
    stoppers = [periodic.EarlyStopping(0) for _ in range(k)]
    for i, wd in enumerate(workdirs):
        stoppers[i].replay(rundir.read_metrics(wd), start)
    best_states = [BestState() for _ in range(k)]
    t_start = time.perf_counter()
    t_first, steps_timed = None, 0

    def data_state(i: int) -> dict:  # what seed i's checkpoint stores besides its state
        return {"iterator": its[i].get_state(), "pending": periodic.pending_to_json(acc, i)}

    for step in range(start + 1, s.total_steps + 1):
        batch = _stack([next(it) for it in its])
        stacked, sums = vstep(stacked, batch)
        acc = step_lib.combine(acc, sums)
        if t_first is None:
            jax.block_until_ready(sums)
            t_first = time.perf_counter()
        else:
            steps_timed += 1
        if not when.needs_host(step):
            continue
        host_acc = jax.device_get(acc)
        for i in range(k):
            first = int(host_acc["first_nonfinite"][i])
            if alive[i] and first != step_lib.NO_STEP:
                alive[i] = False
                good = ckpts[i].latest_step()
                diverged[i] = {
                    "status": "diverged",
                    "step": first,
                    "error": f"training diverged: the loss is not finite at step {first}; "
                    f"the last good checkpoint (step {good}) is kept",
                }
                if on_done is not None:
                    on_done(i, {**diverged[i]})
        if not any(alive):
            break
        if when.is_log(step):
            for i in range(k):
                if alive[i]:
                    logged = step_lib.summarize({key: v[i] for key, v in host_acc.items()})
                    writers[i].write(step, "train", {kk: v for kk, v in logged.items() if kk != "count"})
                    last_train[i] = logged
            acc = None
        if when.is_eval(step) and s.validation is not None:
            total = None
            for b in data.eval_batches(s.validation, cfg.data.eval_batch_size):
                sums = veval(stacked, b)
                sums.pop(step_lib.PREDICTION)
                total = step_lib.combine(total, sums)
            host = jax.device_get(total)
        for i in range(k):
            if not alive[i]:
                continue
            metrics = improved = None
            if when.is_eval(step) and s.validation is not None:
                val = step_lib.summarize({key: v[i] for key, v in host.items()})
                writers[i].write(step, "validation", val)
                metrics = {"accuracy": val["accuracy"]}
                improved = stoppers[i].update(step, val)
                if improved:
                    best_states[i].update(step, _unstack(stacked, i), data_state(i), val["accuracy"])
            if when.is_checkpoint(step, improved=improved):
                best_states[i].save_before(ckpts[i], step)
                ckpts[i].save(step, _unstack(stacked, i), data_state(i), metrics)
    for c in ckpts:
        c.wait()
    t_end = time.perf_counter()
    elapsed = t_end - t_start
    ips = periodic.images_per_second(k * steps_timed, cfg.data.batch_size, t_first, time.perf_counter())
    runner = Runner("single", s.loss_fn, s.eval_loss_fn)  # the end of each seed's run
    outcomes: list[dict] = []
    for i in range(k):
        if i in diverged:
            outcomes.append(diverged[i])
            continue
        state = _unstack(stacked, i)
        final = final_evaluation(
            state, s.total_steps, s, stoppers[i], best_states[i].state, ckpts[i], runner,
            cfg.data.eval_batch_size, writers[i],
        )
        extra = {"seeds_trained_together": k} if k > 1 else {}
        summary = periodic.summary(
            workdirs[i],
            **final,
            train=last_train[i],
            steps=s.total_steps,
            planned_steps=s.total_steps,
            steps_per_epoch=s.steps_per_epoch,
            data_sizes=s.sizes(),
            params=num_params(s.state.params),
            train_seconds=elapsed / k,  # cost per trial: the group's time shared by its seeds
            images_per_second=ips,
            step_seconds=(t_end - t_first) / k if t_first else 0.0,
            resumed_from=start,
            nonfinite_steps=0,
            parallel={"mode": "vmap", "devices": 1},
            **extra,
        )
        out = {"status": "done", "result": FitResult(summary, state, s, runner)}
        if on_done is not None:
            on_done(i, out)
        outcomes.append(out)
    return outcomes
