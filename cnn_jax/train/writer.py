"""Metrics to ``metrics.jsonl`` and TensorBoard event files (tensorboardX: no TensorFlow)."""

from __future__ import annotations

import json
import os

from cnn_jax import rundir


class MetricWriter:
    """Appends ``{"step", "split", ...metrics}`` lines and TensorBoard scalars.

    On resume from ``resume_step``, lines after that step are dropped from
    ``metrics.jsonl`` and TensorBoard purges later events, so the logs of a resumed run
    read exactly like those of an uninterrupted one. ``enabled=False`` (JAX processes
    other than 0) writes nothing.
    """

    def __init__(self, workdir: str, resume_step: int = 0, tensorboard: bool = True, enabled: bool = True):
        self.workdir, self.tensorboard, self.enabled = workdir, tensorboard, enabled
        self.path = os.path.join(workdir, rundir.METRICS)
        self._file = self._tb = None
        if enabled:
            self._open(resume_step)

    def _open(self, resume_step: int) -> None:
        if os.path.exists(self.path):
            # Test rows are written once, at the end of a run: a resumed run writes its own.
            keep = [line for line in rundir.read_jsonl(self.path)
                    if line["step"] <= resume_step and line["split"] != "test"]
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                for line in keep:
                    f.write(json.dumps(line) + "\n")
            os.replace(tmp, self.path)
        self._file = open(self.path, "a")
        # The TensorBoard writer opens at the first write: importing tensorboardX imports
        # PyTorch when that is installed (1.2 s here), which would delay the first step.
        self._purge_step = resume_step + 1 if resume_step else None

    def _tensorboard(self):
        if self._tb is None and self.tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(self.workdir, rundir.TENSORBOARD), purge_step=self._purge_step)
        return self._tb

    def truncate(self, step: int) -> None:
        """Drops what was logged after ``step`` (training went back to that step)."""
        if self.enabled:
            self.close()
            self._open(step)

    def write(self, step: int, split: str, metrics: dict) -> None:
        if not self.enabled:
            return
        line = {"step": int(step), "split": split, **metrics}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        tb = self._tensorboard()
        if tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and k != "count":
                    tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
