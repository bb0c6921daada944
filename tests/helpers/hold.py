"""Holding a training process at a chosen batch, so that a signal a test sends lands
mid-run on any machine, however fast (instead of racing the run to its end).

``hold(tmp_path, run=R, batch=B)`` returns ``(env, held, release)``: a process started with
``env`` (a ``sitecustomize`` first on ``PYTHONPATH``) blocks inside the B-th batch of the
R-th training iterator it creates (``cnn_jax.data.train_iterator``, counted per process),
after creating the file ``held``, until the file ``release`` exists. The test waits for
``held``, sends its signal, and creates ``release`` where the process must go on (a SIGTERM
is acted on at the next step). cnn_jax is patched when it is first imported, not before:
importing it (and jax) earlier would change the process it is testing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SITECUSTOMIZE = '''
import os, sys
if os.environ.get("CNN_JAX_TEST_HOLD"):
    import importlib.abc, importlib.machinery, time

    def _patch(data):
        run, batch, held, release = os.environ["CNN_JAX_TEST_HOLD"].split(os.pathsep)
        real, made = data.train_iterator, [0]

        class Held:
            def __init__(self, it, hold):
                self._it, self._hold, self._taken = it, hold, 0

            def __iter__(self):
                return self

            def __next__(self):
                self._taken += 1
                if self._hold and self._taken == int(batch):
                    # a directory (per_process): one file per process held in it
                    open(os.path.join(held, str(os.getpid())) if os.path.isdir(held) else held, "w").close()
                    deadline = time.monotonic() + 600  # a guard: the test releases or kills
                    while not os.path.exists(release) and time.monotonic() < deadline:
                        time.sleep(0.01)
                return next(self._it)

            def __getattr__(self, name):
                return getattr(self._it, name)

        def train_iterator(*args, **kwargs):
            made[0] += 1
            return Held(real(*args, **kwargs), made[0] == int(run))

        data.train_iterator = train_iterator

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "cnn_jax.data":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            exec_module = spec.loader.exec_module

            def patched(module):
                exec_module(module)
                _patch(module)

            spec.loader.exec_module = patched
            return spec

    sys.meta_path.insert(0, _Finder())
'''


def hold(tmp_path: Path, *, run: int = 1, batch: int, per_process: bool = False) -> tuple[dict, Path, Path]:
    """``per_process``: ``held`` is a directory in which each process that reached its hold
    creates a file named by its pid (for holding several workers at once)."""
    site = tmp_path / "hold_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    held, release = tmp_path / "hold.held", tmp_path / "hold.release"
    if per_process:
        held.mkdir()
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path,
           "CNN_JAX_TEST_HOLD": os.pathsep.join([str(run), str(batch), str(held), str(release)])}
    return env, held, release


def wait_held(proc, held: Path, what: str = "the run", timeout: float = 600) -> None:
    """Until ``held`` exists; fails if ``proc`` exits first (it was meant to be held)."""
    deadline = time.monotonic() + timeout
    while not held.exists():
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"{what} exited ({proc.returncode}) before it was held: {err[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} was not held within {timeout} s")
        time.sleep(0.01)
