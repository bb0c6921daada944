"""Sweeps on a real two-node Ray cluster (scripts/local-ray): the same results as the local
pool, trials spread over both nodes, and a killed worker node's trial re-run from its
checkpoint on the other node."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from clusterlib import (
    LONG,
    REPO,
    SMALL,
    experiment,
    metrics,
    running_trials,
    statuses,
    sweep_cli,
    wait_for,
)

pytestmark = pytest.mark.cluster


def test_ray_sweep_equals_the_local_one_and_spreads(ray_cluster, reference, tmp_path, data_dir):
    from cnn_jax.study.execution import runner

    exp = experiment(tmp_path, data_dir, SMALL, "exp")
    wd = str(tmp_path / "sweep")
    lines = []
    out = runner.run(
        exp,
        wd,
        executor="ray",
        executor_options={"address": ray_cluster},
        log=lines.append,
        plots=False,
    )
    assert out["done"] == 8 and "submitted 8 Ray tasks" in "\n".join(lines)
    pd.testing.assert_frame_equal(metrics(wd), metrics(reference(SMALL)))  # bitwise
    nodes = {s["job"]["id"].rsplit("@", 1)[1] for s in statuses(wd).values()}
    assert all(s["job"]["executor"] == "ray" for s in statuses(wd).values())
    assert len(nodes) == 2  # SPREAD: both nodes trained trials


def _on_worker_node(pid: int) -> bool:
    """Whether process ``pid`` belongs to the worker node (its raylet runs under
    scripts/local-ray's worker directory)."""
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        cmd = Path(f"/proc/{ppid}/cmdline").read_text().replace("\0", " ")
    except (OSError, ValueError, IndexError):
        return False
    return "/worker/" in cmd


def test_a_killed_node_s_trial_is_rerun_from_its_checkpoint(
    ray_cluster, reference, tmp_path, data_dir
):
    script = str(REPO / "scripts" / "local-ray")
    # long enough that the kill lands mid-run: it waits for step 200 of 6,000
    spec = {**LONG, "steps": 6000}
    exp = experiment(tmp_path, data_dir, spec, "long")
    wd = str(tmp_path / "sweep")
    proc = sweep_cli(exp, wd, "--executor", "ray", "--ray-address", ray_cluster)
    try:

        def on_worker():  # any of the running trials: the head node's may come first
            hits = [h for h in running_trials(wd, 200) if _on_worker_node(h[1]["lease"]["pid"])]
            return hits[0] if hits else None

        name, st = wait_for(on_worker, 240, "a trial at step 200 on the worker node", proc)
        subprocess.run([script, "kill-worker"], check=True, timeout=60)
        assert proc.wait(400) == 0, Path(f"{wd}.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([script, "add-worker"], check=False, timeout=120)
    summary = json.loads(Path(os.path.join(wd, "trials", name, "summary.json")).read_text())
    assert summary["resumed_from"] > 0  # Ray re-ran the task; it resumed the last checkpoint
    after = statuses(wd)[name]
    assert after["job"]["id"].rsplit("@", 1)[1] != st["lease"]["job"]["id"].rsplit("@", 1)[1]
    pd.testing.assert_frame_equal(metrics(wd), metrics(reference(spec)))
