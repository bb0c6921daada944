"""TensorBoard HParams for sweep trials: ``tensorboard --logdir WORKDIR/trials`` compares
trials by their swept values and final metrics (tensorboardX's ``add_hparams``)."""

from __future__ import annotations

import os
import shutil

from cnn_jax import rundir

# The session's folder inside each trial's tensorboard/ (a fixed name: a re-run replaces it).
SESSION = "hparams"


def _value(v):
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def metrics_of(summary: dict, measured: dict) -> dict[str, float]:
    """The final figures a trial is compared by (``hparam/`` names: unique in TensorBoard):
    its accuracies and the ``measured`` values of its analyses (``{column: value}``)."""
    best = summary.get("best") or {}
    values = {
        "hparam/test_accuracy": (summary.get("test") or {}).get("accuracy"),
        "hparam/validation_accuracy": (summary.get("validation") or {}).get("accuracy"),
        "hparam/best_validation_accuracy": best.get("validation_accuracy"),
        "hparam/best_test_accuracy": best.get("test_accuracy"),
        **{f"hparam/{name}": v for name, v in measured.items()},
    }
    return {k: float(v) for k, v in values.items() if v is not None}


def write(trial_dir: str, point: dict, seed: int, summary: dict, measured: dict) -> str:
    """Writes the trial's HParams session (swept values and seed; final metrics)."""
    from tensorboardX import SummaryWriter

    hparams = {k: _value(v) for k, v in point.items()}
    hparams["seed"] = int(seed)
    logdir = os.path.join(trial_dir, rundir.TENSORBOARD)
    shutil.rmtree(os.path.join(logdir, SESSION), ignore_errors=True)
    with SummaryWriter(logdir=logdir) as w:
        w.add_hparams(hparams, metrics_of(summary, measured), name=SESSION,
                      global_step=summary.get("steps"))
    return os.path.join(logdir, SESSION)
