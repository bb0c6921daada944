"""Reused shared-memory blocks (``cnn_jax.data.shm_pool``): a block goes back to its worker
only when every array of it in the training process is garbage, batches are the same as
without reuse, and no name is left in /dev/shm."""

import gc
import os

import numpy as np
import pytest

from cnn_jax import data
from cnn_jax.data import shm_pool

SharedMemoryArray = pytest.importorskip("grain._src.python.ipc.shared_memory_array").SharedMemoryArray
pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no POSIX shared memory dir")


def _linked(name: str) -> bool:
    return os.path.exists(os.path.join("/dev/shm", name.lstrip("/")))


def _handed_over(a):
    """What the training process gets for worker array ``a`` (as grain opens it)."""
    v = SharedMemoryArray.from_metadata(a.metadata)
    v.unlink_on_del()
    return v


@pytest.fixture
def worker_pool():
    shm_pool._worker_blocks.clear()
    yield
    shm_pool.unlink_worker_blocks()


def test_a_block_is_reused_only_once_every_array_of_it_is_garbage(worker_pool):
    returns = shm_pool.Returns()
    shape = (4, 8, 8, 3)
    a = shm_pool.worker_array(shape, np.uint8)
    a[...] = 7
    v = _handed_over(a)
    returns.receive(v)
    name = a.shm.name
    view = np.asarray(v)[1:3]  # a view keeps the block in use
    del v
    gc.collect()
    b = shm_pool.worker_array(shape, np.uint8)
    assert b.shm.name != name  # still in use: another block
    assert (view == 7).all()
    del view
    gc.collect()
    returns.receive(_handed_over(b))
    gc.collect()  # b's array in the training process is gone too: both blocks free
    again = shm_pool.worker_array(shape, np.uint8)
    assert again.shm.name in (name, b.shm.name)
    assert _linked(name)
    returns.close()  # the pipeline closed: the names it saw are unlinked
    assert not _linked(name) and not _linked(b.shm.name)


def test_when_every_pooled_block_is_in_use_a_fresh_one_is_unlinked_on_arrival(worker_pool):
    returns = shm_pool.Returns()
    held = []
    for _ in range(shm_pool.PER_SHAPE):
        v = _handed_over(shm_pool.worker_array((16,), np.float32))
        returns.receive(v)
        held.append(v)
    extra = shm_pool.worker_array((16,), np.float32)
    assert extra.shm.name not in {v.shm.name for v in held}
    assert extra.shm.size == extra.nbytes  # an ordinary block: no trailer
    v = _handed_over(extra)
    returns.receive(v)
    assert not _linked(extra.shm.name)  # unlinked at once; its pages stay mapped
    v[...] = 1.5
    assert (v == 1.5).all()
    returns.close()
    assert not any(_linked(h.shm.name) for h in held)


def test_a_worker_unlinks_its_blocks_when_the_training_process_is_gone(worker_pool):
    a = shm_pool.worker_array((3, 3), np.uint8)
    assert _linked(a.shm.name)
    shm_pool.unlink_worker_blocks()
    assert not _linked(a.shm.name)


def test_streamed_batches_through_reused_blocks_equal_those_without_workers(inet_dir, monkeypatch):
    """Two workers, each batch dropped as soon as it is used (so blocks are reused): the
    batches and the evaluation's zero padding are those made in-process, and once the
    iterators close no pooled name is left."""
    pooled = []  # the pooled blocks received, one entry per batch
    receive = shm_pool.Returns.receive

    def spy(self, v):
        receive(self, v)
        if getattr(v, "shm", None) is not None and v.shm.name in self._own:
            pooled.append(v.shm.name)

    monkeypatch.setattr(shm_pool.Returns, "receive", spy)
    split = data.load("imagenette_160", "train", inet_dir,
                      data.Options(in_memory="false", workers=2, crop_size=16))
    ref_split = data.load("imagenette_160", "train", inet_dir,
                          data.Options(in_memory="false", workers=0, crop_size=16))
    ref = data.train_iterator(ref_split, 8, seed=4, flip=True, normalized=False)
    it = data.train_iterator(split, 8, seed=4, flip=True, normalized=False)
    steps = 12
    for _ in range(steps):
        b, r = next(it), next(ref)
        np.testing.assert_array_equal(b["image"], r["image"])
        np.testing.assert_array_equal(b["label"], r["label"])
        del b
    it.close()
    seen = set(pooled)
    assert len(seen) < len(pooled)  # some block came back for another batch: reused
    assert not any(_linked(n) for n in seen)
    pooled.clear()
    val = data.load("imagenette_160", "validation", inet_dir,
                    data.Options(in_memory="false", workers=2, crop_size=16))
    val0 = data.load("imagenette_160", "validation", inet_dir,
                     data.Options(in_memory="false", workers=0, crop_size=16))
    # 25 examples, batches of 2 (13, 7 made by one worker): blocks are reused; the last
    # batch has one padding row
    for b, r in zip(data.eval_batches(val, 2, normalized=False),
                    data.eval_batches(val0, 2, normalized=False), strict=True):
        for k in ("image", "label", "mask"):
            np.testing.assert_array_equal(b[k], r[k], err_msg=k)
        last = b["image"]
    assert not last[1:].any()
    seen = set(pooled)
    assert len(seen) < len(pooled) and not any(_linked(n) for n in seen)


@pytest.fixture(scope="module")
def inet_dir(tmp_path_factory) -> str:
    from test_streaming import _fake_imagenette

    return _fake_imagenette(str(tmp_path_factory.mktemp("inet_pool")))
