"""Profiler traces of chosen training steps (``train.profile_steps="A:B"``; ``cnn-jax bench
--profile DIR``), in the manner of the Flax ImageNet example's ``config.profile``.

Steps ``A`` to ``B`` (counted from 1, as ``summary.json`` counts them) run inside one
``jax.profiler`` trace, each step annotated with ``jax.profiler.StepTraceAnnotation("train",
step_num=...)``; the trace is written under ``DIR/plugins/profile/<time>/<host>.xplane.pb``,
where TensorBoard's profile plugin (``tensorboard --logdir DIR``, with the
``tensorboard-plugin-profile`` package) lists it. A run's traces go to
``WORKDIR/profile``. The step before ``A`` and step ``B`` are waited for (``block_until_ready``)
so that the trace holds exactly those steps' work.
"""

from __future__ import annotations

import contextlib
import os

PROFILE_DIR = "profile"  # a run's traces: WORKDIR/profile


def parse_steps(spec: str) -> tuple[int, int] | None:
    """``"A:B"`` as ``(A, B)`` (see :func:`cnn_jax.config.profile_steps`)."""
    from cnn_jax.config import profile_steps

    return profile_steps(spec)


class StepProfiler:
    """Traces the steps of ``steps`` (``(A, B)`` or ``None``) into ``logdir``: call
    :meth:`step` around each training step (``with profiler.step(n, wait):``, ``n`` counted
    from 1, ``wait()`` blocking until the step's outputs are ready), and :meth:`close` at the
    end (a trace still open is stopped: a run that ended inside the range)."""

    def __init__(self, steps: tuple[int, int] | None, logdir: str):
        self.steps, self.logdir, self.active, self.written = steps, logdir, False, False

    @contextlib.contextmanager
    def step(self, n: int, wait=None):
        if self.steps is None or not self.steps[0] <= n <= self.steps[1]:
            yield
            return
        import jax

        if not self.active:
            if wait is not None:
                wait()  # the steps before the range finish outside the trace
            os.makedirs(self.logdir, exist_ok=True)
            jax.profiler.start_trace(self.logdir)
            self.active = True
        with jax.profiler.StepTraceAnnotation("train", step_num=n):
            yield
        if n == self.steps[1]:
            if wait is not None:
                wait()
            self.close()

    def close(self) -> None:
        if self.active:
            import jax

            jax.profiler.stop_trace()
            self.active, self.written = False, True
