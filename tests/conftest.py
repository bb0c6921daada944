"""Test setup: quiet logs, the persistent compilation cache, a shared prepared data dir.

Multi-device tests run in subprocesses with XLA_FLAGS set before jax is imported; this
process keeps the default single CPU device.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import pytest  # noqa: E402

_CACHE = os.environ.get(
    "CNN_JAX_TEST_CACHE", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".cache", "xla")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
os.environ["CNN_JAX_CACHE_DIR"] = _CACHE  # the CLI, in-process or in subprocesses
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

try:
    import absl.logging

    absl.logging.set_verbosity("error")
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """A data dir with the embedded datasets prepared once per session."""
    from cnn_jax import data

    d = str(tmp_path_factory.mktemp("tfds"))
    for name in ("mnist5k", "digits"):
        data.prepare(name, d)
    return d
