"""Real cluster engines for tests/cluster/: a SLURM cluster and a Ray cluster on localhost,
started by the repository's scripts (scripts/local-slurm, scripts/local-ray) unless one is
already up (as .ci/run leaves them).

When a cluster cannot start, its tests skip and say what is missing (no root for apt-get,
no ray, ...); with ``CNN_JAX_REQUIRE_CLUSTER=1`` (CI) they fail instead. A cluster that a
fixture started is brought down at the end of the session.

Every module here sets ``pytestmark = pytest.mark.cluster``: the default run leaves them
out (pyproject's addopts ``-m 'not slow and not cluster'``); run them with
``pytest tests/cluster -m cluster`` (.ci/run's cluster stage).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from clusterlib import experiment, unavailable

REPO = Path(__file__).resolve().parents[2]
SLURM_CONF_DEFAULT = "/tmp/cnn-jax-slurm/slurm.conf"  # scripts/local-slurm's default state
RAY_ADDRESS_DEFAULT = "127.0.0.1:26379"  # scripts/local-ray's default port


def _reason(r: subprocess.CompletedProcess, what: str) -> str:
    lines = [x for x in (r.stderr + r.stdout).splitlines() if x.strip()]
    said = next((x for x in reversed(lines) if x.startswith("cannot")), lines[-1] if lines else "")
    return f"{what} is not available: {said or f'exit status {r.returncode}'}"


def _sinfo_ok(conf: str) -> bool:
    if not os.path.exists(conf) or shutil.which("sinfo") is None:
        return False
    try:
        r = subprocess.run(
            ["sinfo", "-h", "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=10,
            env={**os.environ, "SLURM_CONF": conf},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0 and any(s in r.stdout for s in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="session")
def slurm() -> str:
    """The SLURM_CONF of a running cluster (set in this process's environment)."""
    conf = os.environ.get("SLURM_CONF") or SLURM_CONF_DEFAULT
    started = False
    if not _sinfo_ok(conf):
        r = subprocess.run(
            [str(REPO / "scripts" / "local-slurm"), "up"],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if r.returncode != 0:
            unavailable(_reason(r, "a local SLURM cluster"))
        conf = next(
            (
                x.split("=", 1)[1]
                for x in r.stdout.splitlines()
                if x.startswith("export SLURM_CONF=")
            ),
            SLURM_CONF_DEFAULT,
        )
        started = True
    os.environ["SLURM_CONF"] = conf
    yield conf
    if started:
        subprocess.run(
            [str(REPO / "scripts" / "local-slurm"), "down"],
            capture_output=True,
            timeout=120,
            check=False,
        )


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        return True
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    """The address of a running two-node Ray cluster (``RAY_ADDRESS`` set)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        unavailable("ray is not installed (pip install -e '.[ray]')")
    address = os.environ.get("RAY_ADDRESS") or RAY_ADDRESS_DEFAULT
    started = False
    if not _reachable(address):
        r = subprocess.run(
            [str(REPO / "scripts" / "local-ray"), "up"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if r.returncode != 0:
            unavailable(_reason(r, "a local Ray cluster"))
        address = RAY_ADDRESS_DEFAULT
        started = True
    os.environ["RAY_ADDRESS"] = address
    yield address
    if started:
        subprocess.run(
            [str(REPO / "scripts" / "local-ray"), "down"],
            capture_output=True,
            timeout=120,
            check=False,
        )


_REFERENCES: dict[str, str] = {}


@pytest.fixture(scope="session")
def reference(tmp_path_factory, data_dir):
    """``reference(spec)``: the sweep directory of ``spec`` run by the local pool (once)."""
    from cnn_jax.study.execution import runner

    def get(spec: dict) -> str:
        key = repr(sorted(spec.items()))
        if key not in _REFERENCES:
            d = tmp_path_factory.mktemp("reference")
            exp = experiment(d, data_dir, spec, "exp")
            out = runner.run(exp, str(d / "sweep"), workers=1, log=lambda s: None, plots=False)
            assert out["done"] == out["trials"]
            _REFERENCES[key] = str(d / "sweep")
        return _REFERENCES[key]

    return get
