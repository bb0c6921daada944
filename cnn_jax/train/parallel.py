"""One per-device step, several ways to run it: single device, ``jax.pmap``, sharded ``jit``.

* ``single``: ``jit`` on the first local device.
* ``pmap``: the step with ``axis_name="data"`` under ``jax.pmap`` over the local devices;
  the state is replicated with a leading device axis, each device takes a slice of the
  batch, gradients/metrics are averaged/summed with collectives and BatchNorm uses the
  statistics of the global batch.
* ``sharded``: the step with ``axis_name=None`` under ``jit`` with global-view arrays:
  the batch is sharded over the ``data`` axis of a ``Mesh`` of all devices, the state is
  replicated; XLA partitions the computation (what current JAX recommends).
* ``auto``: ``sharded`` over all devices when there is more than one, else ``single``.

All modes compute the same function of the global batch (tested to rtol 1e-5). The
configured batch size is the *global* batch; it must divide by the number of devices.
With several JAX processes (multi-host), each process holds ``1 / process_count`` of every
global batch (its rows ``[p * B/P, (p+1) * B/P)``).
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cnn_jax import conv as conv_ops
from cnn_jax.config import PARALLEL_MODES as MODES
from cnn_jax.errors import UserError
from cnn_jax.train import step as step_lib

AXIS = "data"


class Runner:
    """Runs the pure steps in one parallel mode; moves state and batches to devices."""

    def __init__(self, mode: str, loss_fn, eval_loss_fn, *, skip_nonfinite: bool = False, **step_options):
        """``step_options``: the train step's other options (``accum_steps``, ``ema_decay``,
        ``ema_warmup``; see :func:`cnn_jax.train.step.train_step`), passed only when set."""
        if mode not in MODES:
            raise UserError(f"unknown parallel.mode {mode!r}; choose one of: {', '.join(MODES)}")
        devices = jax.devices()
        if mode == "auto":
            mode = "sharded" if len(devices) > 1 else "single"
        self.mode = mode
        self.devices = devices if mode != "single" else devices[:1]
        self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
        self.num_devices = len(self.devices)
        self.num_processes = jax.process_count()
        if mode == "single" and self.num_processes > 1:
            raise UserError("parallel.mode=single runs one process; use sharded or pmap with several hosts")
        self.accum_steps = int(step_options.get("accum_steps", 1))
        train = functools.partial(step_lib.train_step, loss_fn=loss_fn, skip_nonfinite=skip_nonfinite,
                                  **step_options)
        evaluate = functools.partial(step_lib.eval_step, loss_fn=eval_loss_fn)
        if mode == "pmap":  # (jax.pmap takes no compiler options: XLA's CPU defaults there)
            self._train = jax.pmap(functools.partial(train, axis_name=AXIS), axis_name=AXIS, donate_argnums=0)
            self._eval = jax.pmap(functools.partial(evaluate, axis_name=AXIS), axis_name=AXIS)
        else:
            self.mesh = Mesh(np.asarray(self.devices), (AXIS,))
            self.replicated = NamedSharding(self.mesh, PartitionSpec())
            self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(AXIS))
            opts = conv_ops.compiler_options()
            self._train = jax.jit(train, donate_argnums=0, compiler_options=opts)
            self._eval = jax.jit(evaluate, compiler_options=opts)

    # -- batches -------------------------------------------------------------------------

    def check_batch_size(self, batch_size: int, what: str = "data.batch_size") -> None:
        n = self.num_devices
        if batch_size % n:
            lo, hi = (batch_size // n) * n, (batch_size // n + 1) * n
            choices = f"{lo} or {hi}" if lo else f"{hi}"
            raise UserError(
                f"{what} {batch_size} does not divide across {n} devices ({self.mode} mode); "
                f"choose a multiple of {n}, e.g. {choices}, or set parallel.mode=single"
            )
        k, per_device = self.accum_steps, batch_size // n
        if per_device % k:
            raise UserError(
                f"{what} {batch_size} ({per_device} per device on {n} device{'s' if n > 1 else ''}) "
                f"does not split into train.grad_accum_steps={k} equal micro-batches; choose a "
                f"batch size of a multiple of {n * k} or grad_accum_steps dividing {per_device}"
            )

    def local_slice(self, batch: dict) -> dict:
        """This process's rows of a global host batch."""
        if self.num_processes == 1:
            return batch
        p, k = jax.process_index(), self.num_processes
        n = len(next(iter(batch.values())))
        return {key: v[p * n // k:(p + 1) * n // k] for key, v in batch.items()}

    def put_batch(self, batch: dict) -> dict:
        """A global host batch → device arrays laid out for this mode."""
        local = self.local_slice(batch)
        if self.mode == "pmap":
            d = len(self.local_devices)
            return {k: _stack_on(v.reshape(d, -1, *v.shape[1:]), self.local_devices) for k, v in local.items()}
        if self.mode == "single":
            return jax.device_put(local, self.devices[0])
        return {
            k: jax.make_array_from_process_local_data(self.batch_sharding, v)
            for k, v in local.items()
        }

    def prefetch(self, it: Iterator, size: int = 2) -> "Prefetcher":
        """Batches put on devices ``size`` ahead of the consumer on a background thread
        (``size=0``: synchronously). Yields ``(device_batch, iterator_state_after_it)``."""
        return Prefetcher(it, self.put_batch, size)

    # -- state ---------------------------------------------------------------------------

    def state_sharding(self):
        """Where a restored (host-layout) state is placed before :meth:`put_state`."""
        if self.mode == "sharded":
            return self.replicated
        return jax.sharding.make_single_device_sharding(self.local_devices[0])

    def put_state(self, state):
        if self.mode == "pmap":
            d = len(self.local_devices)
            return jax.tree.map(
                lambda x: _stack_on(np.broadcast_to(np.asarray(jax.device_get(x)), (d, *np.shape(x))),
                                    self.local_devices),
                state,
            )
        # A copy, never an alias: the train step donates its input buffers.
        if self.mode == "single":
            return jax.device_put(state, self.devices[0], may_alias=False)
        # ``may_alias=False`` alone is not enough here: putting a one-device array on a
        # replicated sharding reused its buffer as the shard of the device it sat on (JAX
        # 0.10.2), so the first donated step deleted the caller's state. Copy first.
        return jax.device_put(jax.tree.map(_fresh_copy, state), self.replicated, may_alias=False)

    def get_state(self, state):
        """The state in a device-independent layout (one copy), e.g. for checkpoints."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: x[0] if hasattr(x, "ndim") and x.ndim else x, state)
        return state

    # -- steps ---------------------------------------------------------------------------

    def train_step(self, state, batch):
        state, sums = self._train(state, batch)
        if self.mode == "pmap":
            sums = jax.tree.map(lambda x: x[0], sums)
        return state, sums

    def train_programs(self) -> int | None:
        """How many training programs this runner has compiled (``None``: not known, pmap):
        a step that leaves it unchanged compiled nothing."""
        size = getattr(self._train, "_cache_size", None)
        return size() if size is not None else None

    def programs(self) -> dict:
        """``{"train": f, "eval": f}``: this mode's step programs as ``jax.jit`` functions of
        ``(placed state, placed batch)``, e.g. for ``jax.export`` (a pmapped step inside a
        ``jit``)."""
        if self.mode == "pmap":
            return {"train": jax.jit(self._train), "eval": jax.jit(self._eval)}
        return {"train": self._train, "eval": self._eval}

    def eval_step(self, state, batch):
        """The metric sums of ``batch``."""
        sums = dict(self._eval(state, batch))
        sums.pop(step_lib.PREDICTION)
        if self.mode == "pmap":
            sums = jax.tree.map(lambda x: x[0], sums)
        return sums

    def predict(self, state, batch) -> np.ndarray:
        """The predicted class of every row of ``batch`` (``i32[B]`` on the host), from the
        evaluation program :meth:`eval_step` runs (no compilation of its own)."""
        pred = jax.device_get(self._eval(state, batch)[step_lib.PREDICTION])
        return np.asarray(pred).reshape(-1)


class Prefetcher:
    """An iterator over ``(put(batch), it.get_state())`` filled by a background thread.

    :meth:`close` stops and joins the thread: it must not be left running inside an XLA
    call when the interpreter exits.
    """

    def __init__(self, it: Iterator, put, size: int):
        self._it, self._put, self._size = it, put, size
        self._queue: queue.Queue = queue.Queue(maxsize=max(size, 1))
        self._stop = threading.Event()
        self._thread = None
        if size > 0:
            self._thread = threading.Thread(target=self._work, name="cnn_jax-prefetch", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                batch = next(self._it)
                item = (self._put(batch), self._it.get_state())
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # re-raised in the consumer
            self._queue.put(e)

    def __iter__(self):
        return self

    def __next__(self):
        if self._thread is None:
            batch = next(self._it)
            return self._put(batch), self._it.get_state()
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # unblock a worker waiting on a full queue
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)


@jax.jit
def _normalize(images, table):
    """``u8[..., C]`` → ``table[pixel, channel]``."""
    return table[images.astype(jnp.int32), jnp.arange(table.shape[1])]


@jax.jit
def _normalize_masked(images, table, mask):
    """:func:`_normalize` with the rows outside ``mask`` (an evaluation batch's padding)
    zero, as the host pads."""
    out = _normalize(images, table)
    return jnp.where(mask.reshape(mask.shape + (1,) * (out.ndim - mask.ndim)), out, 0.0)


def normalizing(put, spec):
    """``put`` followed by the normalisation of ``u8`` images (a streamed split's) on the
    devices with ``spec``'s channel statistics; ``f32`` images pass as they are. The devices
    look each pixel up in the host's :func:`~cnn_jax.data.transforms.normalize` of all 256
    values per channel, so the batches are bit for bit the host-normalised ones (XLA's own
    arithmetic differed from NumPy's in the last bit of about half the pixels)."""
    from cnn_jax.data import transforms

    channels = spec.shape[-1]
    levels = np.repeat(np.arange(256, dtype=np.uint8)[:, None], channels, axis=1)
    table = transforms.normalize(levels, spec.mean, spec.std)  # f32[256, C]

    def put_normalized(batch: dict) -> dict:
        out = put(batch)
        if out["image"].dtype == jnp.uint8:
            image = (_normalize(out["image"], table) if "mask" not in out
                     else _normalize_masked(out["image"], table, out["mask"]))
            out = {**out, "image": image}
        return out

    return put_normalized


def _fresh_copy(x):
    """A device array's values in new buffers (same sharding); anything else as it is."""
    return jnp.copy(x) if isinstance(x, jax.Array) else x


def _stack_on(x: np.ndarray, devices) -> jax.Array:
    """``x[i]`` on ``devices[i]``: the layout ``jax.pmap`` takes (``device_put_sharded`` is
    gone from JAX 0.10)."""
    sharding = NamedSharding(Mesh(np.asarray(devices), (AXIS,)), PartitionSpec(AXIS))
    return jax.make_array_from_single_device_arrays(
        x.shape, sharding, [jax.device_put(x[i:i + 1], d) for i, d in enumerate(devices)]
    )
