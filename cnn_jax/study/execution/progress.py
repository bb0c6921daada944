"""A sweep's progress: one line per finished trial with the elapsed time and an ETA, and a
bar over the trials when the output is a terminal (tqdm)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """``1h02m``, ``3m07s`` or ``42s``."""
    s = round(max(seconds, 0))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s" if m else f"{s}s"


class SweepProgress:
    """Counts finished trials; :meth:`line` prints a trial's line with elapsed and ETA (the
    mean time per finished trial so far times the trials left)."""

    def __init__(self, total: int, log: Callable[[str], None], bar: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.log, self.clock = total, log, clock
        self.t0 = clock()
        self.finished = 0
        show = sys.stderr.isatty() if bar is None else bar
        self.bar = None
        if show and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="trial", dynamic_ncols=True, leave=False,
                            file=sys.stderr)

    def timing(self) -> str:
        elapsed = self.clock() - self.t0
        left = self.total - self.finished
        if not self.finished:
            return f"{duration(elapsed)} elapsed"
        eta = elapsed / self.finished * left
        return f"{duration(elapsed)} elapsed, " + (f"ETA {duration(eta)}" if left else "done")

    def line(self, text: str) -> None:
        """One trial finished: ``text`` with the timing, below the bar."""
        self.finished += 1
        out = f"{text}  [{self.timing()}]"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.write(out, file=sys.stdout)
        else:
            self.log(out)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def overhead(workdir: str, trials, since: float, wall: float, workers: int | None = 1) -> dict:
    """The time a sweep run spent in training steps (the trials it finished, by their
    summaries' ``step_seconds``) against the time its workers had: ``{"wall_seconds",
    "step_seconds", "workers", "capacity_seconds", "overhead"}``, the overhead being the
    fraction of that time outside the steps.

    ``workers`` trials at a time (the local pool): the capacity is ``workers`` x the wall
    time, so two workers' overhead is their idle and non-step time, not a negative number.
    ``None`` (cluster jobs, whose concurrency the cluster decides): the trials' own wall
    times (``status.json``'s ``wall_seconds``), so only the overhead inside the trials."""
    import os

    from cnn_jax import rundir
    from cnn_jax.study import store

    steps = trial_wall = analysis = 0.0
    for t in trials:
        d = t.dir(workdir)
        path = rundir.path(d, rundir.SUMMARY)
        if os.path.exists(path) and os.path.getmtime(path) >= since:  # finished in this run
            steps += (rundir.read_summary(d) or {}).get("step_seconds") or 0.0
            analysis += sum(float(a.get("seconds") or 0.0) for a in store.read_analysis(d).values()
                            if isinstance(a, dict))
            if not workers:  # only then the trials' own time is the capacity
                status = rundir.read_json(os.path.join(d, store.STATUS_FILE)) or {}
                trial_wall += status.get("wall_seconds") or 0.0
    capacity = wall * workers if workers else trial_wall
    return {"wall_seconds": wall, "step_seconds": steps, "workers": workers,
            "capacity_seconds": capacity, "overhead": 1 - steps / capacity if capacity > 0 else 0.0,
            "analysis_seconds": analysis}


def overhead_line(result: dict) -> str:
    """The sweep's last line: its wall time, the part in training steps, the rest, and the
    part of the rest in the trials' analyses."""
    line = _overhead_line(result)
    spent, capacity = result.get("analysis_seconds") or 0.0, result.get("capacity_seconds") or 0.0
    if spent > 0 and capacity > 0:
        workers = result.get("workers", 1)
        whose = "the wall time" if workers == 1 else "the workers' time" if workers else "the trials' time"
        line += f"; the analyses took {duration(spent)} of it, {100 * spent / capacity:.0f} % of {whose}"
    return line


def _overhead_line(result: dict) -> str:
    wall, steps = result["wall_seconds"], result["step_seconds"]
    workers, capacity = result.get("workers", 1), result.get("capacity_seconds", wall)
    head = f"sweep: {result['ran']} trials trained in {duration(wall)}; training steps {duration(steps)}"
    what = "(everything else: start-up, compilation, evaluation, checkpoints, analysis, report)"
    if workers == 1:
        return (f"{head}, overhead {what} {duration(wall - steps)} = "
                f"{100 * result['overhead']:.0f} % of the wall time")
    if workers:
        return (f"{head} in {workers} workers ({duration(steps / workers)} each), overhead "
                f"{what} {duration(capacity - steps)} of the workers' {duration(capacity)} "
                f"({workers} x the wall time) = {100 * result['overhead']:.0f} %")
    return (f"{head}, overhead inside the trials (compilation, evaluation, checkpoints, "
            f"analysis) {duration(capacity - steps)} = {100 * result['overhead']:.0f} % of "
            f"their {duration(capacity)} (the jobs ran as the cluster scheduled them)")
