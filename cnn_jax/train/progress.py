"""What a training loop shows and hears: the progress bar and preemption (signals)."""

from __future__ import annotations

import os
import signal
import sys
import threading


class Preemption:
    """The preemption handler, heard between steps: SIGTERM, SIGINT and SIGUSR2 (SLURM's
    and submitit's warning before a time limit) set a flag that the loop checks after
    every step through :meth:`should_stop` (a second signal falls through to the previous
    handler).

    With several JAX processes (a multi-host run) every process must stop at the *same*
    step, because saving a checkpoint is collective: a process that stopped alone would
    leave the others waiting in the save. There :meth:`should_stop` asks JAX's preemption
    sync point (``multihost_utils.reached_preemption_sync_point``), which answers ``True``
    on every process at one agreed step once any process got a preemption notice. JAX's
    notifier (installed by ``jax.distributed.initialize``) owns SIGTERM then, so it is left
    alone; SIGINT and SIGUSR2 are handed to it as a SIGTERM to this process.
    """

    SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR2")

    def __init__(self):
        self.received: str | None = None
        self._old: dict = {}
        self._sync = False

    def __enter__(self):
        self._sync = _preemption_sync_available()
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is None or (self._sync and sig == signal.SIGTERM):
                    continue
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self._sync:
            os.kill(os.getpid(), signal.SIGTERM)  # to JAX's notifier: all processes agree

    def should_stop(self, step: int) -> bool:
        """Whether to save and stop after ``step`` (call it after every step, on every
        process: the multi-host agreement counts the calls)."""
        if not self._sync:
            return bool(self.received)
        from jax.experimental import multihost_utils

        if multihost_utils.reached_preemption_sync_point(step):
            self.received = self.received or "SIGTERM"
            return True
        return False

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _preemption_sync_available() -> bool:
    """Several JAX processes with JAX's preemption service running."""
    if "jax" not in sys.modules:
        return False
    import jax

    if jax.process_count() < 2:
        return False
    try:
        from jax._src import distributed

        return distributed.global_state.preemption_sync_manager is not None
    except (ImportError, AttributeError):  # pragma: no cover  (another JAX layout)
        return False


class Progress:
    """A tqdm bar on a terminal; evaluation lines always (unless quiet)."""

    def __init__(self, total: int, initial: int, spe: int, batch_size: int, mode: bool | None):
        self.quiet = mode is False
        show_bar = (sys.stderr.isatty() if mode is None else mode) and not self.quiet
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total, initial=initial, unit="step", dynamic_ncols=True, disable=not show_bar,
            leave=False, file=sys.stderr,
        )
        self.spe, self.batch_size = spe, batch_size

    def update(self, step: int, metrics: dict | None, ips: float | None) -> None:
        self.bar.update(1)
        if metrics is not None:
            self.bar.set_description(f"epoch {(step - 1) // self.spe + 1}")
            self.bar.set_postfix(
                loss=f"{metrics['loss']:.4f}", acc=f"{metrics['accuracy']:.4f}",
                img_s=f"{ips:.0f}" if ips else "-", refresh=False,
            )

    def line(self, text: str) -> None:
        if not self.quiet:
            self.bar.write(text, file=sys.stdout)

    def close(self) -> None:
        self.bar.close()
