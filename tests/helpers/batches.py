"""Taking batches from a training iterator and comparing two runs of them, bit for bit.
Used by tests/test_streaming.py and tests/test_augment.py."""

from __future__ import annotations

import numpy as np


def take(it, k):
    """The next ``k`` batches of ``it``, then ``it`` closed (a streaming iterator's workers
    stop)."""
    out = [next(it) for _ in range(k)]
    if hasattr(it, "close"):
        it.close()
    return out


def same(a, b):
    """Two lists of batches with the same keys and bitwise-equal arrays."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)
