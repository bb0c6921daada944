"""The CPU rehearsal of the GPU check: ``benchmarks/gpu_check.py --platform cpu --quick``
runs every part for real on tiny sizes (the GPU tests included, on CPU), so the one
command prepared for a lent GPU cannot rot between loans.

No timing is asserted: the script's own budget turns parts it cannot fit into explicit
``skipped`` entries, which are allowed; a ``failed`` part, a part missing from the JSON,
a skip without a reason or a figure that is not a positive finite number is not.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")
PARTS = (
    "install",
    "devices",
    "gpu_tests",
    "matmul_peak",
    "throughput",
    "seeds",
    "torch_compile",
    "pooling_study",
    "streaming",
)


def _gpu_tests() -> int:
    """How many tests ``pytest -m gpu tests/test_gpu.py`` collects (parametrized cases
    included), so that a new GPU test cannot be left out of the count."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu",
                          "-p", "no:cacheprovider", os.path.join(ROOT, "tests", "test_gpu.py")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    ids = [x for x in out.stdout.splitlines() if "::" in x]
    assert out.returncode == 0 and ids, out.stdout[-2000:] + out.stderr[-2000:]
    return len(ids)


def _positive_finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.mark.long  # .ci/run's long stage (over a minute on 2 cores)
def test_cpu_rehearsal_writes_every_part(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--platform",
            "cpu",
            "--quick",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,  # a hang guard, not a speed check
    )
    report = json.loads((out / "gpu_check.json").read_text())
    failed = {k: r.get("reason") for k, r in report["parts"].items() if r["status"] == "failed"}
    assert p.returncode == 0 and not failed, (failed, p.stdout[-4000:], p.stderr[-2000:])
    assert report["platform"] == "cpu" and report["quick"] is True
    assert tuple(report["parts"]) == PARTS
    for name, rec in report["parts"].items():
        assert rec["status"] in ("ok", "partial", "skipped"), (name, rec)
        if rec["status"] in ("partial", "skipped"):
            assert rec.get("reason"), (name, rec)
        if rec["status"] in ("ok", "partial"):
            assert rec["figures"], (name, rec)
            for k, v in rec["figures"].items():
                assert _positive_finite(v), (name, k, v)
    stream = report["parts"]["streaming"]
    if stream["status"] == "ok":  # where the streaming pipeline exists: a figure per worker count
        assert set(stream["figures"]) == {
            "workers_1_images_per_second",
            "workers_2_images_per_second",
        }
    # What ran, ran for real: every GPU test passed on CPU, every measured row has figures.
    tests = report["parts"]["gpu_tests"]
    if tests["status"] == "ok":
        want = _gpu_tests()
        assert len(tests["tests"]) == want and tests["figures"]["passed"] == want
    thr = report["parts"]["throughput"]
    for row in thr.get("rows", []):
        assert _positive_finite(row["macs_per_image"]), row
        assert _positive_finite(row["cnn_jax"]["images_per_second"]), row
        if report["parts"]["matmul_peak"]["status"] == "ok":
            assert _positive_finite(row["cnn_jax"]["fraction_of_peak"]), row
    seeds = report["parts"]["seeds"]
    if seeds["status"] == "ok":
        assert seeds["vmapped"]["trials_done"] == seeds["sequential"]["trials_done"] == seeds["k"]
    pool = report["parts"]["pooling_study"]
    if pool["status"] == "ok":
        assert pool["trials_done"] == pool["trials_total"] > 0
    md = (out / "gpu_check.md").read_text()
    for name in PARTS:
        assert f"| {name} |" in md
