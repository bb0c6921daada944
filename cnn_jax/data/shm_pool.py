"""Shared-memory blocks that grain workers reuse for the batches they hand over.

A fresh block for every batch is what grain does by default, and it is costly: creating,
filling and unlinking a new 19 MB block (a 224 x 224 batch of 128 ``u8`` images) took 15 ms
of CPU, almost all of it the kernel allocating and zeroing tmpfs pages and then freeing
them, against about 1 ms to refill a block whose pages are already there (measured here
with ``SharedMemoryArray``, 2026-12-01). On a 2-core machine that was a tenth of a
worker's time per batch.

So each worker keeps up to :data:`PER_SHAPE` blocks per array shape. A pooled block ends
in a trailer, ``_MAGIC`` and a state byte: the worker sets the state to "in use" before it
hands the block over and reuses the block only once the state reads "free" again. The
training process sets "free" when its array of the block is garbage: that array is the
base of every view made from it, and a device array that aliases host memory (``jax.
device_put`` on CPU) holds a reference to it, so nothing the training process still uses
can see the block rewritten. When every pooled block is in use, the worker makes an
ordinary block (which the training process unlinks on arrival, as before).

Names: a pooled block's name stays linked while it is pooled, so that the training
process can open it again; the training process unlinks the names it has seen when the
pipeline closes (:meth:`Returns.close`) and a worker unlinks its own when the training
process is gone (:func:`unlink_worker_blocks`). Pooling needs POSIX shared memory in
``/dev/shm`` (Linux); elsewhere every block is a fresh one.
"""

from __future__ import annotations

import math
import os
import weakref
from multiprocessing import shared_memory

import numpy as np

PER_SHAPE = 4  # pooled blocks per worker and shape: one being filled, one queued, two in use
_MAGIC = b"cnnjaxsb"
_TRAILER = 64  # the magic, the state byte, padding
_FREE, _IN_USE = 0, 1
_SHM_DIR = "/dev/shm"

_worker_blocks: dict[tuple, list] = {}  # in a worker: (shape, dtype) → its pooled arrays


def _shm_array():
    from grain._src.python.ipc.shared_memory_array import SharedMemoryArray

    return SharedMemoryArray


def worker_array(shape, dtype) -> np.ndarray:
    """In a grain worker: an array of ``shape`` and ``dtype`` in shared memory for a batch
    to be handed over, a free pooled block when there is one."""
    SharedMemoryArray = _shm_array()
    shape = tuple(int(s) for s in shape)
    if not os.path.isdir(_SHM_DIR):
        return SharedMemoryArray(shape, dtype)
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    blocks = _worker_blocks.setdefault((shape, np.dtype(dtype).str), [])
    for a in list(blocks):
        buf = a.shm.buf
        if buf[nbytes + len(_MAGIC)] != _FREE:
            continue
        if not os.path.exists(os.path.join(_SHM_DIR, a.shm.name.lstrip("/"))):
            blocks.remove(a)  # unlinked by someone else: it can no longer be handed over
            continue
        buf[nbytes + len(_MAGIC)] = _IN_USE
        return a
    if len(blocks) >= PER_SHAPE:
        return SharedMemoryArray(shape, dtype)
    shm = shared_memory.SharedMemory(create=True, size=nbytes + _TRAILER)
    shm.buf[nbytes:nbytes + len(_MAGIC)] = _MAGIC
    shm.buf[nbytes + len(_MAGIC)] = _IN_USE
    a = SharedMemoryArray.from_shared_memory(shm, shape, dtype)
    blocks.append(a)
    return a


def unlink_worker_blocks() -> None:
    """In a worker: unlink the names of its pooled blocks (the training process is gone)."""
    for blocks in _worker_blocks.values():
        for a in blocks:
            try:
                a.shm.unlink()
            except FileNotFoundError:
                pass
    _worker_blocks.clear()


def _set_free(own: shared_memory.SharedMemory, offset: int) -> None:
    buf = own.buf
    if buf is not None:  # None: the pipeline is closed, the block unlinked
        buf[offset] = _FREE


class Returns:
    """In the training process: the blocks of one pipeline, given back to their worker when
    the arrays made of them are garbage."""

    def __init__(self):
        self._own: dict[str, shared_memory.SharedMemory] = {}

    def receive(self, v) -> None:
        """``v``, an array grain opened from shared memory: a pooled block is returned to
        its worker once ``v`` is garbage; any other is unlinked now (its pages stay mapped
        while ``v`` lives, and no name is left behind for the interpreter's exit)."""
        shm = getattr(v, "shm", None)
        if shm is None or not getattr(v, "_unlink_on_del", False):
            return
        v._unlink_on_del = False  # grain would unlink it later, from a thread
        n = v.nbytes
        if shm.size >= n + _TRAILER and bytes(shm.buf[n:n + len(_MAGIC)]) == _MAGIC:
            own = self._own.get(shm.name)
            if own is None:  # a mapping of our own: grain closes ``v``'s as ``v`` goes
                own = self._own[shm.name] = shared_memory.SharedMemory(shm.name)
            weakref.finalize(v, _set_free, own, n + len(_MAGIC))
            return
        try:
            shm.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Unlink every pooled block seen (call once the workers are stopped)."""
        own, self._own = self._own, {}
        for shm in own.values():
            try:
                shm.unlink()
            except FileNotFoundError:
                pass
            shm.close()
