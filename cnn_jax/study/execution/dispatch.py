"""Handing a study's trials to an executor: tasks (the seeds of one config together), the
events they send back, the progress lines, and waiting for trials another owner trains.

A task is ``{"trials": [{"name", "dir", "config", "point", "seed"}], "vmap": ...,
"analyses": {name: options}}``; the config travels as the JSON of the trial's resolved
config, the one time it crosses the process boundary.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable

from cnn_jax import analyses
from cnn_jax import config as config_lib
from cnn_jax.study import store
from cnn_jax.study.execution.progress import SweepProgress

Log = Callable[[str], None]
COUNTED = ("done", "failed", "diverged", "interrupted")


def tasks(
    trials: list[store.Trial], workdir: str, vmap: str, spec: dict, per_trial: bool = False,
    imports: list[str] = (),
) -> list[dict]:
    """One task per config (its seeds together) or, with ``per_trial``, per trial; each
    runs the resolved analyses ``spec`` and records the experiment files ``imports`` in
    its trials' run directories."""
    groups: dict[str, list[store.Trial]] = collections.OrderedDict()
    for t in trials:
        groups.setdefault(t.name if per_trial else t.group, []).append(t)
    return [
        {
            "trials": [
                {"name": t.name, "dir": t.dir(workdir), "config": config_lib.to_json(t.config),
                 "point": store.jsonable(t.point), "seed": t.seed}
                for t in g
            ],
            "vmap": vmap,
            "analyses": spec,
            "imports": list(imports),
        }
        for g in groups.values()
    ]


class Dispatch:
    """Counts and progress lines of one phase of a sweep, from its trials' events."""

    def __init__(self, todo: list[store.Trial], spec: dict, log: Log):
        self.counts = dict.fromkeys((*COUNTED, "ran"), 0)
        self.total, self.finished = len(todo), 0
        self.busy: dict[str, store.Trial] = {}
        self.by_name = {t.name: t for t in todo}
        self.short = {m.name: m.short_label for m in analyses.measures_of(spec)}
        self.progress = SweepProgress(self.total, log)

    def _line(self, kind: str, name: str, extra: str) -> None:
        self.finished += 1
        width = len(str(self.total))
        self.progress.line(f"[{self.finished:>{width}}/{self.total}] {kind:<8} {name}{extra}")

    def handle(self, ev: dict) -> None:
        """One event of a trial (``running``, ``done``, ``busy``, ``finished``, ...)."""
        kind = ev["event"]
        if kind == "busy":
            self.busy[ev["name"]] = self.by_name[ev["name"]]
        elif kind == "finished":  # another sweep finished it meanwhile
            kind = ev.get("status", "done")
            if kind in self.counts:
                self.counts[kind] += 1
                self._line(kind, ev["name"], "  (by another sweep)")
        elif kind in COUNTED:
            self.counts[kind] += 1
            self.counts["ran"] += kind != "interrupted"
            self._line(kind, ev["name"], self._extra(ev))

    def _extra(self, ev: dict) -> str:
        if ev["event"] != "done":
            return f"  {ev.get('error', '')}"
        measured = ev.get("measured") or {}
        return f"  acc {ev['accuracy']:.4f}" + "".join(
            f"  {self.short.get(k, k)} {v:.3f}" for k, v in measured.items() if v is not None
        )


def execute(todo, workdir: str, ex, vmap: str, spec: dict, settings: dict, log: Log) -> dict:
    """Runs the tasks of ``todo`` on executor ``ex``; then waits for the trials that another
    owner was training (``busy``) and runs those it left unfinished, until none is left."""
    if not todo:
        return dict.fromkeys((*COUNTED, "ran"), 0)
    d = Dispatch(todo, spec, log)
    workdir = os.path.abspath(workdir)  # jobs may start in other directories
    per_trial = ex.job_per_trial(vmap)
    imports = settings.get("imports", [])
    pending = tasks(todo, workdir, vmap, spec, per_trial, imports)
    while pending:
        d.busy.clear()
        ex.run(pending, settings, workdir, d.handle, log)
        if not d.busy:
            break
        log(f"waiting for {len(d.busy)} trial(s) that another owner is training")
        left = wait_for_owners(workdir, list(d.busy.values()))
        for t, st in left:
            if st in store.FINISHED:
                d.handle({"event": "finished", "name": t.name, "status": st})
        rest = [t for t, st in left if st not in store.FINISHED]
        pending = tasks(rest, workdir, vmap, spec, per_trial, imports)
    d.progress.close()
    return d.counts


def wait_for_owners(workdir: str, trials: list[store.Trial], poll: float = 1.0) -> list:
    """Waits until no living owner holds ``trials``; returns ``[(trial, status)]``."""
    while True:
        states = [(t, store.read_status(t.dir(workdir))["status"]) for t in trials]
        if all(st != "running" for _, st in states):
            return states
        time.sleep(poll)
