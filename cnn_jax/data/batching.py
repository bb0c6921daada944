"""What both batch pipelines share: the example order of every training step
(:class:`BatchOrder`) and the check of a training batch size (:func:`check_batch_size`).

:mod:`cnn_jax.data.pipeline` (in memory) and :mod:`cnn_jax.data.streaming` both build on
it, so the two paths make the same batches for the same seed and step.
"""

from __future__ import annotations

import numpy as np

from cnn_jax.errors import UserError


class BatchOrder:
    """The examples of training step ``step``: positions ``[step * B, (step + 1) * B)`` of
    the stream formed by one permutation per epoch
    (``numpy.random.default_rng([seed, 0x5EED, epoch])``); both pipelines use it."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = np.random.default_rng([self.seed, 0x5EED, epoch]).permutation(self.n)
        return self._cache[epoch]

    def __call__(self, step: int) -> np.ndarray:
        n, b = self.n, self.batch_size
        start = step * b
        first, last = start // n, (start + b - 1) // n
        order = (self.permutation(first) if first == last
                 else np.concatenate([self.permutation(e) for e in range(first, last + 1)]))
        return order[start - first * n : start - first * n + b]


def check_batch_size(n: int, batch_size: int) -> None:
    if batch_size < 1:
        raise UserError(f"batch_size must be positive, got {batch_size}")
    if batch_size > n:
        raise UserError(
            f"batch_size {batch_size} is larger than the training split ({n} examples); "
            f"choose at most {n}"
        )
