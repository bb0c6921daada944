"""User-facing errors.

Anything a user can get wrong (a name, a config key, a value, a path, an input shape)
raises :class:`UserError`. The command line prints its message as one line and exits
with status 2, without a traceback (unless ``--debug``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in user input, reported as one clear line."""

    exit_code = 2


class ShapeError(UserError, ValueError):
    """An input that a layer cannot take (e.g. too small for the architecture)."""


class Diverged(UserError):
    """Training produced a non-finite loss (NaN or Inf) at ``step``.

    Raised by ``fit`` under ``train.on_nan="stop"``; sweeps record such a trial as
    ``diverged``. The last good checkpoint is kept.
    """

    exit_code = 3

    def __init__(self, step: int, loss: float, message: str | None = None, reason: str | None = None):
        self.step, self.loss = step, loss
        super().__init__(message or f"training diverged at step {step}: loss is {loss}")
        # what happened, without the advice and the checkpoint's place (a report's cell)
        self.reason = reason or str(self)


class Preempted(Exception):
    """``fit`` stopped on SIGTERM/SIGINT after saving a checkpoint at ``step``.

    The command line exits with status 75 (``EX_TEMPFAIL``: re-run the same command to
    resume).
    """

    exit_code = 75

    def __init__(self, step: int, signal_name: str):
        self.step, self.signal_name = step, signal_name
        super().__init__(
            f"{signal_name} received: saved a checkpoint at step {step}; re-run the same "
            "command to resume"
        )


def suggest(name: str, choices: Iterable[str]) -> str:
    """Returns ``"; did you mean 'x'?"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
