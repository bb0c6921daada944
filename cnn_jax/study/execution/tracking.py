"""MLflow tracking of a sweep (``cnn-jax sweep --mlflow URI``; the ``mlflow`` extra).

One MLflow run per sweep (its experiment file, study title and counts as params; the report,
results, timing and sweep record as artifacts) and, nested under it (MLflow's
``mlflow.parentRunId`` tag), one run per finished trial: its resolved config (flattened) as
params, every logged point of ``metrics.jsonl`` as metrics at its step (``train/loss``,
``validation/accuracy``, ...), the final figures of ``summary.json`` and the analyses'
measures as metrics, its ``summary.json``, ``config.json`` and ``analysis.json`` as
artifacts, and its status as a tag. The runs are written from the trials' files when the
sweep ends, so every executor is tracked alike; ``WORKDIR/mlflow.json`` remembers the runs
written, so a re-run of the sweep adds only the trials it finished since.

Off by default, and nothing here imports MLflow until a URI is given. :func:`check` is run
before anything trains: an unreachable tracking server is a one-line error after a short
timeout, not a hang.
"""

from __future__ import annotations

import math
import os
import urllib.error
import urllib.request

from cnn_jax import rundir
from cnn_jax.errors import UserError
from cnn_jax.study import store

STATE_FILE = "mlflow.json"
TIMEOUT_S = 5.0
_BATCH = 500  # metrics per log_batch call (MLflow accepts up to 1,000)


def check(uri: str, timeout: float = TIMEOUT_S) -> None:
    """A one-line :class:`UserError` unless ``uri`` can be tracked to: MLflow installed, and
    an ``http(s)://`` server answering its ``/health`` endpoint within ``timeout`` seconds
    (file and database URIs are written directly)."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise UserError("--mlflow needs MLflow: pip install 'cnn-jax[mlflow]'") from None
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            if r.status == 200:
                return
            why = f"HTTP {r.status}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        why = str(getattr(e, "reason", e)) or type(e).__name__
    raise UserError(f"MLflow tracking server {uri!r} is unreachable ({why}, {timeout:g} s "
                    "timeout); start it or give another --mlflow URI")


def _params(flat: dict) -> list:
    from mlflow.entities import Param

    return [Param(str(k)[:250], str(v)[:6000]) for k, v in sorted(flat.items())]


def _metrics(trial_dir: str, values: dict) -> list:
    """Every logged point of the trial, then its final figures (at its last step)."""
    from mlflow.entities import Metric

    out, last = [], 0
    for rec in rundir.read_metrics(trial_dir):
        step, split = int(rec.get("step", 0)), rec.get("split", "")
        last = max(last, step)
        for key, v in rec.items():
            if key not in ("step", "split") and isinstance(v, (int, float)) and math.isfinite(v):
                out.append(Metric(f"{split}/{key}", float(v), 0, step))
    for key, v in values.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(Metric(key, float(v), 0, last))
    return out


def _final(summary: dict, analysis: dict) -> dict:
    out = {f"final/{split}_{k}": v for split in ("validation", "test")
           for k, v in (summary.get(split) or {}).items()}
    out.update({f"analysis/{k}": v for k, v in store.measured(analysis).items()})
    return out


def _log_trial(client, exp_id: str, parent: str, workdir: str, trial: dict) -> str:
    """One nested run for a finished trial; its run id."""
    from cnn_jax.config import flatten

    d = os.path.join(workdir, store.TRIALS_DIR, trial["name"])
    status = store.read_status(d)
    summary = rundir.read_summary(d) or {}
    config = rundir.read_json(rundir.path(d, rundir.CONFIG)) or {}
    run = client.create_run(exp_id, run_name=trial["name"], tags={
        "mlflow.parentRunId": parent, "cnn_jax.trial": trial["name"],
        "cnn_jax.status": status["status"], "cnn_jax.seed": str(trial["seed"])})
    rid = run.info.run_id
    params, metrics = _params(flatten(config)), _metrics(d, _final(summary, store.read_analysis(d)))
    for i in range(0, len(params), 100):
        client.log_batch(rid, params=params[i:i + 100])
    for i in range(0, len(metrics), _BATCH):
        client.log_batch(rid, metrics=metrics[i:i + _BATCH])
    for name in (rundir.SUMMARY, rundir.CONFIG, rundir.ANALYSIS):
        if os.path.exists(os.path.join(d, name)):
            client.log_artifact(rid, os.path.join(d, name))
    client.set_terminated(rid, "FINISHED" if status["status"] == "done" else "FAILED")
    return rid


def _sweep_run(client, workdir: str, rec: dict, state: dict) -> tuple[str, str]:
    """``(experiment id, the sweep's run id)``: made once, remembered in ``mlflow.json``."""
    if state.get("sweep_run"):
        return state["experiment_id"], state["sweep_run"]
    name = f"cnn-jax {os.path.basename(os.path.abspath(workdir))}"
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
    study = rec.get("study") or {}
    run = client.create_run(exp_id, run_name=os.path.basename(os.path.abspath(workdir)), tags={
        "cnn_jax.sweep": os.path.abspath(workdir)})
    client.log_batch(run.info.run_id, params=_params({
        "experiment": rec.get("experiment", ""), "title": study.get("title", ""),
        "keys": ",".join(study.get("keys") or []), "seeds": len({t["seed"] for t in rec["trials"]})}))
    state.update(experiment_id=exp_id, sweep_run=run.info.run_id, trials={})
    return exp_id, run.info.run_id


def log_sweep(uri: str, workdir: str) -> dict:
    """Writes the sweep in ``workdir`` to the MLflow tracking ``uri``: the sweep's run (made
    on the first call) and a nested run for each finished trial not written before; the
    report's files as the sweep run's artifacts. Returns ``mlflow.json``'s record."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    rec = rundir.read_json(os.path.join(workdir, rundir.SWEEP)) or {"trials": []}
    path = os.path.join(workdir, STATE_FILE)
    state = rundir.read_json(path) or {}
    if state.get("uri") not in (None, uri):
        state = {}  # another server: write everything there
    state["uri"] = uri
    exp_id, parent = _sweep_run(client, workdir, rec, state)
    for trial in rec["trials"]:
        d = os.path.join(workdir, store.TRIALS_DIR, trial["name"])
        if trial["name"] in state["trials"] or store.read_status(d)["status"] not in store.FINISHED:
            continue
        state["trials"][trial["name"]] = _log_trial(client, exp_id, parent, workdir, trial)
        rundir.write_json(path, state)  # what is written stays written if this stops
    for name in (rundir.REPORT_MD, rundir.RESULTS_CSV, rundir.TIMING_MD, rundir.SWEEP):
        if os.path.exists(os.path.join(workdir, name)):
            client.log_artifact(parent, os.path.join(workdir, name))
    rundir.write_json(path, state)
    return state


def log(uri: str, workdir: str, say) -> None:
    """:func:`log_sweep`, with a line through ``say``; a tracking failure (the server gone
    mid-way) is a one-line :class:`UserError` (what was written stays recorded in
    ``mlflow.json``; the sweep's own files are complete, and a re-run writes the rest)."""
    try:
        written = log_sweep(uri, workdir)
    except Exception as e:  # noqa: BLE001  (MLflow's errors carry a page of retries)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"the sweep finished, but writing it to MLflow at {uri!r} failed: "
                        f"{first}; re-run the sweep to write the rest") from None
    say(f"mlflow: {len(written['trials'])} trial runs under run {written['sweep_run']} at {uri}")
