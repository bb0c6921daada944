"""Test setup: quiet logs, the persistent compilation cache, a shared prepared data dir.

Multi-device tests run in subprocesses with XLA_FLAGS set before jax is imported; this
process keeps the default single CPU device.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import pytest  # noqa: E402

_CACHE = os.environ.get(
    "CNN_JAX_TEST_CACHE", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".cache", "xla")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
os.environ["CNN_JAX_CACHE_DIR"] = _CACHE  # the CLI, in-process or in subprocesses
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
# The suite's numbers must not depend on how fast this machine runs each convolution
# formulation: the default fixed rules (CNN_JAX_CONV=rows) even where the caller's shell asks
# for `tuned`, and no user cache of measured choices; tests/test_conv_tuning.py exercises the
# measured mode with its own files. (A study that pins its mode, Study.conv, keeps it.)
os.environ["CNN_JAX_CONV"] = "rows"
os.environ["CNN_JAX_CONV_USER_CACHE"] = "off"

try:
    import absl.logging

    absl.logging.set_verbosity("error")
except ImportError:  # pragma: no cover
    pass


# The newest-stack stage of .ci/run sets CNN_JAX_STRICT_DEPRECATIONS=1: a DeprecationWarning
# attributed to these libraries, to this project or to a test (a deprecated API called from
# here) is an error, so deprecations are fixed before the removals they announce. Elsewhere
# pyproject shows them (``default``) without failing.
STRICT_DEPRECATIONS = ("jax", "flax", "optax", "orbax", "grain", "tensorflow_datasets", "cnn_jax",
                       "test_", "conftest")
# Deprecations one library of the stack raises on another's behalf, which only a release of
# the calling library can fix: (message regex, calling module regex). Shown, not failed, and
# only for that caller: the same API used from this project still fails.
#   jax 0.12.1 deprecates jax.sharding.SingleDeviceSharding; orbax-checkpoint 0.12.8 (the
#   newest) names it at import (multihost/colocated_transport.py) and in isinstance checks.
UPSTREAM_DEPRECATIONS = (
    (r"jax\.sharding\.SingleDeviceSharding is deprecated", "orbax"),
)


def pytest_configure(config):
    # CPU lock files of this test process's own (cnn_jax.runtime.pin_cpus): a sweep in one
    # pytest-xdist worker does not move another worker's sweep to other CPUs, so which CPUs
    # a test's workers get does not depend on what the other tests run at the same moment.
    # (each xdist worker sets its own: they inherit the controller's environment)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    os.environ["CNN_JAX_CPU_LOCKS"] = os.path.join(
        tempfile.gettempdir(), f"cnn_jax-test-cpus-{worker}-{os.getpid()}")
    if os.environ.get("CNN_JAX_STRICT_DEPRECATIONS") == "1":
        for module in STRICT_DEPRECATIONS:  # a regex matched at the start of the module name
            config.addinivalue_line("filterwarnings", f"error::DeprecationWarning:{module}")
        for message, module in UPSTREAM_DEPRECATIONS:  # later lines take precedence
            config.addinivalue_line("filterwarnings", f"default:{message}:DeprecationWarning:{module}")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """A data dir with the embedded datasets prepared once per session."""
    from cnn_jax import data

    d = str(tmp_path_factory.mktemp("tfds"))
    for name in ("mnist5k", "digits"):
        data.prepare(name, d)
    return d


class _StopTraining(Exception):
    """What an interrupted training iterator raises (a kill, in-process)."""


class _Interrupter:
    """``at(n)``: ``data.train_iterator``'s n-th batch raises :attr:`Stop` (the loop dies
    there, with whatever checkpoints it has written); ``restore()`` undoes it."""

    Stop = _StopTraining

    def __init__(self, monkeypatch):
        from cnn_jax import data

        self._mp, self._data, self._real = monkeypatch, data, data.train_iterator

    def at(self, n: int) -> None:
        real = self._real

        def interrupted(*args, **kwargs):
            it = real(*args, **kwargs)

            class Wrapper:
                taken = 0

                def __next__(self):
                    self.taken += 1
                    if self.taken == n:
                        raise _StopTraining
                    return next(it)

                def get_state(self):
                    return it.get_state()

            return Wrapper()

        self._mp.setattr(self._data, "train_iterator", interrupted)

    def restore(self) -> None:
        self._mp.setattr(self._data, "train_iterator", self._real)


@pytest.fixture
def interrupt(monkeypatch) -> _Interrupter:
    return _Interrupter(monkeypatch)
