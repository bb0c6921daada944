"""Splits kept for the next load: :class:`SplitCache`.

:func:`~cnn_jax.data.loading.load` decodes every image of an in-memory split on each call
(about 5 s for mnist5k on 2 loaded cores); a process that trains several trials of one
dataset (a sweep worker) loads through one :class:`SplitCache` and decodes each split once.
"""

from __future__ import annotations

from collections.abc import Callable

import cnn_jax.data.loading as loading
from cnn_jax.data.registry import default_data_dir


class SplitCache:
    """Memoised :func:`~cnn_jax.data.loading.load`: the first load of a split returns what
    ``load`` returns and keeps it; a later load with the same arguments returns that same
    object without calling ``load`` again (splits are read-only).

    The key is ``(name, split, data_dir, args, kwargs)`` with ``data_dir`` ``None`` read as
    :func:`~cnn_jax.data.registry.default_data_dir` (at the time of the load) and the other
    arguments by their ``repr`` (so equal :class:`~cnn_jax.data.registry.Options` share a
    split). ``loader`` replaces ``load`` (tests); by default the load is
    :func:`cnn_jax.data.loading.load` as it is at the time of the call. Not thread-safe.
    """

    def __init__(self, loader: Callable | None = None):
        self._loader = loader
        self._splits: dict = {}

    def load(self, name: str, split: str, data_dir: str | None = None, *args, **kwargs):
        """What ``load(name, split, data_dir, *args, **kwargs)`` returns, loaded once."""
        key = (name, split, data_dir or default_data_dir(), repr(args),
               repr(sorted(kwargs.items())))
        if key not in self._splits:
            loader = self._loader or loading.load
            self._splits[key] = loader(name, split, data_dir, *args, **kwargs)
        return self._splits[key]

    def clear(self) -> None:
        """Forgets every kept split."""
        self._splits.clear()

    def __len__(self) -> int:
        return len(self._splits)
