"""The newest-stack stage's switch (``CNN_JAX_STRICT_DEPRECATIONS=1``, tests/conftest.py):
a DeprecationWarning attributed to the stack or to this project fails the test that raised
it; one from elsewhere, or a listed upstream one from the library that calls the API, does
not; without the switch none fails."""

import os
import shutil
import subprocess
import sys

PROBE = '''
import warnings

import pytest


@pytest.mark.parametrize("module", ["jax._src.api", "flax.linen", "optax", "orbax.checkpoint",
                                    "grain.python", "tensorflow_datasets.core", "cnn_jax.train"])
def test_from_the_stack(module):
    warnings.warn_explicit("going away", DeprecationWarning, "x.py", 1, module=module)


def test_from_elsewhere():
    warnings.warn_explicit("going away", DeprecationWarning, "x.py", 1, module="pandas.core")


@pytest.mark.parametrize("module", ["orbax.checkpoint._src.multihost", "cnn_jax.train"])
def test_an_upstream_deprecation(module):
    # shown, not failed, where orbax calls the API; failed where this project does
    warnings.warn_explicit("jax.sharding.SingleDeviceSharding is deprecated; use ...",
                           DeprecationWarning, "x.py", 1, module=module)
'''


def _run(tmp_path, strict: bool) -> str:
    shutil.copy(os.path.join(os.path.dirname(__file__), "conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CNN_JAX_STRICT_DEPRECATIONS"}
    if strict:
        env["CNN_JAX_STRICT_DEPRECATIONS"] = "1"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return out.stdout


def test_strict_mode_fails_deprecations_from_the_stack_only(tmp_path):
    out = _run(tmp_path, strict=True)
    assert "8 failed, 2 passed" in out, out[-3000:]
    assert "FAILED test_probe.py::test_an_upstream_deprecation[cnn_jax.train]" in out
    assert "DeprecationWarning: going away" in out


def test_without_it_deprecations_are_shown_not_failed(tmp_path):
    out = _run(tmp_path, strict=False)
    assert "10 passed" in out and "failed" not in out, out[-3000:]
