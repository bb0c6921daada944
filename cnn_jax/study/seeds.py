"""Train trials that differ only by seed together: one ``jax.vmap``-ed program.

:func:`fit_seeds` trains K copies of one config with K seeds as a single compiled program:
``jax.vmap`` of the pure ``train_step`` over a stacked state and stacked batches, one
dispatch per step for all seeds. Each seed keeps its own initialisation, data order,
augmentation and dropout/pooling keys (exactly what ``cnn_jax.train.fit`` would use for
that seed) and its own normal run directory (``config.json``, ``metrics.jsonl``,
``summary.json``, ``checkpoints/``, ``tensorboard/``), so skip, resume,
``cnn-jax evaluate`` and reports treat it like any run; results equal per-seed ``fit`` runs
to float tolerance (the batched convolutions are grouped convolutions, summed in another
order).

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

import functools
import json
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax import conv as conv_ops
from cnn_jax import config as config_lib
from cnn_jax import data
from cnn_jax.train import loop
from cnn_jax.train import state as state_lib
from cnn_jax.train import step as step_lib
from cnn_jax.train import workdir as workdir_lib
from cnn_jax.train.checkpoint import Checkpoints
from cnn_jax.train.writer import MetricWriter, read_jsonl

# on_done(index, outcome) is called as soon as one seed has finished (done or diverged).
Callback = Callable[[int, dict], None]


def _from_json_sums(sums):
    if sums is None:
        return None
    return {k: np.int32(v) if k.startswith("first_") else np.float32(v) for k, v in sums.items()}


def _summary(workdir, test_metrics, last_train, s, params, train_seconds, ips, start, together):
    history = [
        r for r in read_jsonl(os.path.join(workdir, "metrics.jsonl")) if r["split"] == "test"
    ]
    best = (
        max(history, key=lambda r: r["accuracy"]) if history else {"accuracy": None, "step": None}
    )
    out = {
        "test": test_metrics,
        "best": {"accuracy": best["accuracy"], "step": best["step"]},
        "train": last_train,
        "steps": int(s.total_steps),
        "epochs": s.total_steps / s.steps_per_epoch,
        "params": params,
        "train_seconds": train_seconds,
        "images_per_second": ips,
        "resumed_from": start,
        "nonfinite_steps": 0,
        "parallel": {"mode": "vmap", "devices": 1},
    }
    if together > 1:
        out["seeds_trained_together"] = together
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(out, f, indent=2)
    return out


def _check_group(cfgs) -> None:
    ref = dict(config_lib._flat(cfgs[0].to_dict()))
    ref.pop("seed")
    for c in cfgs[1:]:
        other = dict(config_lib._flat(c.to_dict()))
        other.pop("seed")
        if json.dumps(ref, sort_keys=True, default=list) != json.dumps(
            other, sort_keys=True, default=list
        ):
            raise ValueError("fit_seeds needs configs that differ only by their seed")
    seeds = [c.seed for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"fit_seeds needs distinct seeds, got {seeds}")


def supported(cfg: ml_collections.ConfigDict) -> bool:
    """Whether :func:`fit_seeds` trains this config as ``fit`` would."""
    return cfg.train.get("on_nan", "stop") == "stop" and len(jax.devices()) == 1


def fit_seeds(
    configs: list[ml_collections.ConfigDict],
    workdirs: list[str],
    *,
    on_done: Callback | None = None,
) -> list[dict] | None:
    """Trains configs that differ only by ``seed`` into their ``workdirs``, vmapped.

    Returns one outcome per seed: ``{"status": "done", "summary": {...}, "state": TrainState,
    "model": Module, "test": Split}`` or ``{"status": "diverged", "error", "step"}``; a seed
    whose loss becomes non-finite stops there (its last good checkpoint is kept) while the
    others go on. Returns ``None`` (having trained nothing) when the seeds' checkpoints
    have no step in common.
    """
    cfgs = [config_lib.resolve(c) for c in configs]
    _check_group(cfgs)
    if len(cfgs) != len(workdirs):
        raise ValueError("one workdir per config")
    if not supported(cfgs[0]):
        raise ValueError("fit_seeds needs train.on_nan=stop and a single device")
    for cfg, wd in zip(cfgs, workdirs):
        workdir_lib.check(cfg, wd, False, False)
    s = loop.build(cfgs[0])
    for cfg, wd in zip(cfgs, workdirs):
        workdir_lib.create(wd)
        workdir_lib.write_config(cfg, wd)
    return _fit_vmapped(cfgs, workdirs, s, on_done)


def _init_state(s, cfg):
    return state_lib.create(s.model, s.state.tx, s.test.spec.shape, cfg.seed)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _fit_vmapped(cfgs, workdirs, s, on_done) -> list[dict] | None:
    """All seeds in one vmapped program, following ``cnn_jax.train.loop._train`` step by
    step (log, evaluation and checkpoint points; pending sums; ``on_nan="stop"``)."""
    k = len(cfgs)
    cfg = cfgs[0]
    locks = [workdir_lib.WorkdirLock(wd) for wd in workdirs]
    ckpts: list[Checkpoints] = []
    writers: list[MetricWriter] = []
    try:
        for lock in locks:
            lock.acquire()
        ckpts = [
            Checkpoints(os.path.join(wd, "checkpoints"), cfg.train.keep_latest, cfg.train.keep_best)
            for wd in workdirs
        ]
        steps = [set(c.steps()) for c in ckpts]
        start = 0
        if any(steps):
            common = set.intersection(*steps)
            if not common:
                return None  # interrupted at different points: resume seed by seed
            start = max(common)
        states, data_states = [], []
        for c, cf in zip(ckpts, cfgs):
            st, ds = _init_state(s, cf), {}
            if start:
                st, ds, _ = c.restore(st, start)
            states.append(st)
            data_states.append(ds)
        its = [
            data.train_iterator(
                s.train,
                cf.data.batch_size,
                cf.seed,
                state=ds.get("iterator"),
                crop_padding=cf.data.crop_padding,
                flip=cf.data.flip,
            )
            for cf, ds in zip(cfgs, data_states)
        ]
        stacked = _stack(states)
        del states
        opts = conv_ops.compiler_options()
        vstep = jax.jit(
            jax.vmap(functools.partial(step_lib.train_step, loss_fn=s.loss_fn)),
            donate_argnums=0,
            compiler_options=opts,
        )
        veval = jax.jit(
            jax.vmap(
                functools.partial(step_lib.eval_step, loss_fn=s.eval_loss_fn), in_axes=(0, None)
            ),
            compiler_options=opts,
        )
        writers = [MetricWriter(wd, resume_step=start) for wd in workdirs]
        eval_every = cfg.train.eval_every_epochs * s.steps_per_epoch
        log_every, ckpt_every = cfg.train.log_every_steps, cfg.train.checkpoint_every_steps
        pend = [_from_json_sums(ds.get("pending")) for ds in data_states]
        acc = None
        if all(p is not None for p in pend):
            acc = {key: jnp.stack([p[key] for p in pend]) for key in pend[0]}
        alive = [True] * k
        diverged: dict[int, dict] = {}
        last_train: list[dict] = [{} for _ in range(k)]
        test_metrics: list = [None] * k
        t_start = time.perf_counter()
        t_first, steps_timed = None, 0
        for step in range(start + 1, s.total_steps + 1):
            batch = _stack([next(it) for it in its])
            stacked, sums = vstep(stacked, batch)
            acc = step_lib.combine(acc, sums)
            if t_first is None:
                jax.block_until_ready(sums)
                t_first = time.perf_counter()
            else:
                steps_timed += 1
            is_eval = step % eval_every == 0 or step == s.total_steps
            is_ckpt = is_eval or bool(ckpt_every and step % ckpt_every == 0)
            if not (step % log_every == 0 or is_eval or is_ckpt):
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
            if step % log_every == 0 or is_eval:
                for i in range(k):
                    if alive[i]:
                        logged = step_lib.summarize({key: v[i] for key, v in host_acc.items()})
                        writers[i].write(
                            step, "train", {kk: v for kk, v in logged.items() if kk != "count"}
                        )
                        last_train[i] = logged
                acc = None
            if is_eval:
                total = None
                for b in data.eval_batches(s.test, cfg.data.eval_batch_size):
                    total = step_lib.combine(total, veval(stacked, b))
                host = jax.device_get(total)
            host_pending = None if acc is None else jax.device_get(acc)
            for i in range(k):
                if not alive[i]:
                    continue
                metrics = None
                if is_eval:
                    test_metrics[i] = step_lib.summarize({key: v[i] for key, v in host.items()})
                    writers[i].write(step, "test", test_metrics[i])
                    metrics = {"accuracy": test_metrics[i]["accuracy"]}
                pending = (
                    None
                    if host_pending is None
                    else {key: float(v[i]) for key, v in host_pending.items()}
                )
                ckpts[i].save(
                    step,
                    _unstack(stacked, i),
                    {"iterator": its[i].get_state(), "pending": pending},
                    metrics,
                )
        for c in ckpts:
            c.wait()
        elapsed = time.perf_counter() - t_start
        ips = (
            k * steps_timed * cfg.data.batch_size / (time.perf_counter() - t_first)
            if t_first and steps_timed
            else None
        )
        outcomes: list[dict] = []
        for i in range(k):
            if i in diverged:
                outcomes.append(diverged[i])
                continue
            state = _unstack(stacked, i)
            # Cost per trial: the group's time shared by its seeds.
            summary = _summary(
                workdirs[i],
                test_metrics[i],
                last_train[i],
                s,
                loop.num_params(s.state.params),
                elapsed / k,
                ips,
                start,
                k,
            )
            out = {
                "status": "done",
                "summary": summary,
                "state": state,
                "model": s.model,
                "test": s.test,
            }
            if on_done is not None:
                on_done(i, out)
            outcomes.append(out)
        return outcomes
    finally:
        for w in writers:
            w.close()
        for c in ckpts:
            c.close()
        for lock in locks:
            lock.release()
