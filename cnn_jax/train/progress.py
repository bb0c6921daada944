"""What a training loop shows and hears: the progress bar and the preemption signals."""

from __future__ import annotations

import signal
import sys
import threading


class Signals:
    """SIGTERM/SIGINT set a flag that the loop checks after every step (a second signal
    falls through to the default behaviour)."""

    def __init__(self):
        self.received: str | None = None
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
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
