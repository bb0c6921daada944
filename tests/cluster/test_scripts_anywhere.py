"""scripts/local-ray and scripts/local-slurm from an environment outside the checkout: the
project installed in a venv elsewhere (``CNN_JAX_OUTSIDE_VENV``, which ``.ci/run`` creates
with ``pip install .[ray]``), the scripts copied to a directory with no ``.venv`` beside
them, that venv first on PATH. ``eval "$(scripts/local-... up)"`` must export the cluster's
address and nothing else, and the cluster must serve that environment's Python.

Each cluster here has its own state directory and ports, so the clusters of the other
cluster tests (default state and ports) are untouched. The state directories are short
paths directly under /tmp, made by the scripts: Ray's socket paths must stay under the
107-byte limit of a Unix socket name, and munged (user munge) must be able to enter the
directory, which pytest's private (0700) temporary directories forbid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from clusterlib import REPO, unavailable

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """``(scripts dir without a .venv beside it, env with the outside venv first on PATH)``."""
    venv = os.environ.get("CNN_JAX_OUTSIDE_VENV", "")
    if not venv or not os.access(os.path.join(venv, "bin", "python"), os.X_OK):
        unavailable("no venv outside the checkout (set CNN_JAX_OUTSIDE_VENV; .ci/run makes one)")
    assert not Path(venv).resolve().is_relative_to(REPO), f"{venv} is inside the checkout"
    home = tmp_path_factory.mktemp("elsewhere")
    shutil.copytree(REPO / "scripts", home / "scripts")
    assert not (home / ".venv").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "RAY", "PYTHON")}
    env["PATH"] = f"{venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env.pop("RAY_ADDRESS", None)
    env.pop("SLURM_CONF", None)
    return home, env, venv


def _eval_up(home: Path, env: dict, script: str, then: str) -> tuple[subprocess.CompletedProcess, str]:
    """``eval "$(scripts/SCRIPT up)"`` in bash, then ``then``; the script is brought down
    whatever happens. Returns the run and what ``up`` printed on stdout (what was eval'd)."""
    said = home / f"{script}.up"
    body = (f'set -e; trap "scripts/{script} down >/dev/null 2>&1" EXIT; '
            f'up=$(scripts/{script} up); printf "%s" "$up" > {said}; eval "$up"; {then}')
    r = subprocess.run(["bash", "-c", body], cwd=home, env=env, capture_output=True, text=True,
                       timeout=300)
    return r, said.read_text() if said.exists() else ""


def _state(name: str) -> str:
    path = f"/tmp/cnn-jax-outside-{os.getpid()}-{name}"
    assert not os.path.exists(path)
    return path


def test_local_ray_from_a_venv_outside_the_checkout(outside):
    home, env, venv = outside
    env = {**env, "CNN_JAX_RAY_STATE": _state("ray"), "CNN_JAX_RAY_PORT": "26479"}
    probe = (
        'python -c "import os, sys, ray, cnn_jax; '
        "ray.init(address=os.environ['RAY_ADDRESS'], log_to_driver=False); "
        "print(sys.prefix, os.environ['RAY_ADDRESS'], sum(n['Alive'] for n in ray.nodes()))\""
    )
    r, said = _eval_up(home, env, "local-ray", probe)
    if r.returncode == 3:
        unavailable(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr[-2000:]
    assert said == "export RAY_ADDRESS=127.0.0.1:26479"  # only the line to eval
    prefix, address, alive = r.stdout.strip().splitlines()[-1].split()
    assert os.path.realpath(prefix) == os.path.realpath(venv)
    assert address == "127.0.0.1:26479" and alive == "2"


def test_local_slurm_from_a_venv_outside_the_checkout(outside):
    home, env, venv = outside
    state = _state("slurm")
    env = {**env, "CNN_JAX_SLURM_STATE": state, "CNN_JAX_SLURM_PORT": "16917"}
    # A job run by this cluster imports the project with the outside venv's Python.
    job = (
        'out=$(sbatch --parsable --wait -o "$PWD/job.out" '
        f'--wrap "{venv}/bin/python -c \\"import sys, cnn_jax; print(sys.prefix)\\""); '
        'echo "$SLURM_CONF"; cat "$PWD/job.out"'
    )
    r, said = _eval_up(home, env, "local-slurm", job)
    if r.returncode == 3:
        unavailable(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr[-2000:]
    assert said == f"export SLURM_CONF={state}/slurm.conf"
    conf, prefix = r.stdout.strip().splitlines()[-2:]
    assert conf == f"{state}/slurm.conf"
    assert not os.path.exists(state)  # brought down: the state directory is gone
    assert os.path.realpath(prefix) == os.path.realpath(venv)
