"""The two ways the training loop (:class:`cnn_jax.train.loop.Loop`) runs its steps.

* :class:`RunnerMode` (``fit``): one seed through a :class:`~cnn_jax.train.parallel.Runner`
  (single device, pmap or sharded), its batches prefetched onto the devices.
* :class:`VmapMode` (:func:`cnn_jax.train.vmap.fit_seeds`): K seeds of one config as one
  compiled program, ``jax.vmap`` of the pure ``train_step`` over a stacked state and
  stacked batches; each seed keeps its own initialisation, data order, augmentation and
  dropout/pooling keys.

Both answer the loop the same questions (index ``i``: which seed; ``RunnerMode`` has one):
``begin``/``step``/``end`` a pass of steps, a seed's metric sums, state, data state and
validation metrics.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from cnn_jax import conv as conv_ops
from cnn_jax import data
from cnn_jax.train import periodic
from cnn_jax.train import step as step_lib
from cnn_jax.train.assemble import Setup, step_options
from cnn_jax.train.evaluation import batch_putter, run_eval
from cnn_jax.train.parallel import Prefetcher, Runner
from cnn_jax.train.state import with_weights


class RunnerMode:
    """One seed, ``runner``'s parallel mode."""

    vmapped = False
    seeds = 1

    def __init__(self, cfg, s: Setup, runner: Runner):
        self.cfg, self.s, self.runner = cfg, s, runner
        self.parallel = {"mode": runner.mode, "devices": runner.num_devices}
        self.state = self._it = self._batches = self._it_state = None

    def begin(self, host_states: list, data_states: list[dict]) -> None:
        """A pass of steps from these (host) states and data states."""
        (host_state,), (data_state,) = host_states, data_states
        cfg = self.cfg
        self.state = self.runner.put_state(host_state)
        self._it = data.train_iterator(
            self.s.train, cfg.data.batch_size, cfg.seed, state=data_state.get("iterator"),
            crop_padding=cfg.data.crop_padding, flip=cfg.data.flip, normalized=False,
        )
        self._batches = Prefetcher(self._it, batch_putter(self.runner, self.s.train), cfg.data.prefetch)

    def pending(self, data_states: list[dict]):
        """The train-metric sums a resumed pass starts from."""
        return periodic.pending_from_json(data_states[0].get("pending"))

    def step(self) -> dict:
        """One training step; its metric sums."""
        batch, self._it_state = next(self._batches)
        self.state, sums = self.runner.train_step(self.state, batch)
        return sums

    def end(self) -> None:
        self._batches.close()
        getattr(self._it, "close", lambda: None)()  # a streamed split's worker processes

    def programs(self) -> int | None:
        return self.runner.train_programs()

    def seed_sums(self, host_sums: dict, i: int) -> dict:
        return host_sums

    def host_state(self, i: int):
        """Seed ``i``'s state in a device-independent layout (checkpoints)."""
        return self.runner.get_state(self.state)

    def final_state(self, i: int):
        """Seed ``i``'s state as the final evaluation's runner takes it."""
        return self.state

    def data_state(self, i: int, pending) -> dict:
        """What a checkpoint stores besides the train state: the data iterator's position
        after the last consumed batch and the train-metric sums since the last log point."""
        return {"iterator": self._it_state, "pending": periodic.pending_to_json(pending)}

    def validate(self, split, batch_size: int, weights: str = "raw") -> list[dict]:
        """The metrics of ``weights`` (raw or ``"ema"``) on ``split``, one per seed."""
        return [run_eval(with_weights(self.state, weights), split, batch_size, self.runner)]

    def block(self) -> None:
        jax.block_until_ready(self.state.step)

    def summary_extra(self, clock: periodic.Clock) -> dict:
        s = self.s
        return {"first_step_compiled": clock.compiled,
                "pipeline": data.describe_all(train=s.train, validation=s.validation, test=s.test)}


class VmapMode:
    """The seeds of ``cfgs`` (one config, different seeds), vmapped on one device."""

    vmapped = True

    def __init__(self, cfgs, s: Setup):
        self.cfgs, self.s, self.seeds = cfgs, s, len(cfgs)
        self.parallel = {"mode": "vmap", "devices": 1}
        self.runner = Runner("single", s.loss_fn, s.eval_loss_fn)  # each seed's final evaluation
        opts = conv_ops.compiler_options()
        self._step = jax.jit(
            jax.vmap(functools.partial(step_lib.train_step, loss_fn=s.loss_fn, **step_options(s.cfg))),
            donate_argnums=0, compiler_options=opts,
        )
        self._eval = jax.jit(
            jax.vmap(functools.partial(step_lib.eval_step, loss_fn=s.eval_loss_fn), in_axes=(0, None)),
            compiler_options=opts,
        )
        self.stacked = self._its = None

    def begin(self, host_states: list, data_states: list[dict]) -> None:
        self._its = [
            data.train_iterator(
                self.s.train, cf.data.batch_size, cf.seed, state=ds.get("iterator"),
                crop_padding=cf.data.crop_padding, flip=cf.data.flip,
            )
            for cf, ds in zip(self.cfgs, data_states)
        ]
        self.stacked = _stack(host_states)

    def pending(self, data_states: list[dict]):
        pend = [periodic.pending_from_json(ds.get("pending")) for ds in data_states]
        if all(p is not None for p in pend):
            return {key: jnp.stack([p[key] for p in pend]) for key in pend[0]}
        return None

    def step(self) -> dict:
        batch = _stack([next(it) for it in self._its])
        self.stacked, sums = self._step(self.stacked, batch)
        return sums

    def end(self) -> None:
        pass

    def programs(self) -> None:
        return None

    def seed_sums(self, host_sums: dict, i: int) -> dict:
        return {key: v[i] for key, v in host_sums.items()}

    def host_state(self, i: int):
        return _unstack(self.stacked, i)

    final_state = host_state

    def data_state(self, i: int, pending) -> dict:
        return {"iterator": self._its[i].get_state(), "pending": periodic.pending_to_json(pending, i)}

    def validate(self, split, batch_size: int, weights: str = "raw") -> list[dict]:
        total, stacked = None, with_weights(self.stacked, weights)
        for b in data.eval_batches(split, batch_size):
            sums = self._eval(stacked, b)
            sums.pop(step_lib.PREDICTION)
            total = step_lib.combine(total, sums)
        host = jax.device_get(total)
        return [step_lib.summarize(self.seed_sums(host, i)) for i in range(self.seeds)]

    def block(self) -> None:
        jax.block_until_ready(self.stacked.step)

    def summary_extra(self, clock: periodic.Clock) -> dict:
        return {"seeds_trained_together": self.seeds} if self.seeds > 1 else {}


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, i):
    return jax.tree.map(lambda x: x[i], tree)
