"""Metrics to ``metrics.jsonl`` and TensorBoard event files (tensorboardX: no TensorFlow)."""

from __future__ import annotations

import json
import os


class MetricWriter:
    """Appends ``{"step", "split", ...metrics}`` lines and TensorBoard scalars.

    On resume from ``resume_step``, lines after that step are dropped from
    ``metrics.jsonl`` and TensorBoard purges later events, so the logs of a resumed run
    read exactly like those of an uninterrupted one.
    """

    def __init__(self, workdir: str, resume_step: int = 0, tensorboard: bool = True):
        self.path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(self.path):
            keep = [line for line in read_jsonl(self.path) if line["step"] <= resume_step]
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                for line in keep:
                    f.write(json.dumps(line) + "\n")
            os.replace(tmp, self.path)
        self._file = open(self.path, "a")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(
                os.path.join(workdir, "tensorboard"),
                purge_step=resume_step + 1 if resume_step else None,
            )

    def write(self, step: int, split: str, metrics: dict) -> None:
        line = {"step": int(step), "split": split, **metrics}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and k != "count":
                    self._tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_jsonl(path: str) -> list[dict]:
    """The records of a ``metrics.jsonl`` (a torn last line from a kill is ignored)."""
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
