"""Orbax checkpoints: the latest N and the best N by test accuracy, with the data state.

Each checkpoint ``<dir>/<step>/`` holds the items ``state`` (``StandardSave`` of the
train state pytree) and ``data`` (``JsonSave`` of the grain iterator state). Orbax writes
to a temporary directory and renames it when complete, so a killed run never leaves a
half-written checkpoint behind as the newest one. Restoring uses an abstract target
(shapes and dtypes), so a checkpoint does not depend on the devices it was saved from.
"""

from __future__ import annotations

import logging
import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from cnn_jax.errors import UserError
from cnn_jax.train import state as state_lib

log = logging.getLogger(__name__)

METRIC = "accuracy"


class Checkpoints:
    """A thin layer over ``ocp.CheckpointManager`` with the project's policies."""

    def __init__(self, directory: str, keep_latest: int = 2, keep_best: int = 1, *, read_only=False):
        self.directory = os.path.abspath(directory)
        preserve = [policies.LatestN(keep_latest)]
        if keep_best:
            preserve.append(
                policies.BestN(
                    get_metric_fn=lambda m: m[METRIC], n=keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(preserve),
            best_fn=lambda m: m[METRIC],
            best_mode="max",
            read_only=read_only,
            create=not read_only,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def save(self, step: int, state, data_state: dict, metrics: dict | None = None) -> None:
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state_lib.to_pytree(state)),
                data=ocp.args.JsonSave(data_state),
            ),
            metrics=metrics,
            force=True,
        )

    def resolve_step(self, which: str | int) -> int:
        """``"latest"``, ``"best"`` or a step number → an existing step."""
        steps = self.steps()
        if not steps:
            raise UserError(f"no checkpoint in {self.directory}")
        if which == "latest":
            return max(steps)
        if which == "best":
            best = self.best_step()
            if best is None:
                raise UserError(f"no checkpoint with test metrics in {self.directory}; use latest")
            return best
        try:
            step = int(which)
        except (TypeError, ValueError):
            raise UserError(f"invalid checkpoint {which!r}; choose latest, best or a step number") from None
        if step not in steps:
            raise UserError(
                f"no checkpoint at step {step} in {self.directory}; "
                f"available: {', '.join(map(str, sorted(steps)))}"
            )
        return step

    def restore(self, state, which: str | int = "latest"):
        """Restores into ``state`` (whose shapes/dtypes are the target): ``(state, data_state, step)``."""
        step = self.resolve_step(which)
        target = state_lib.abstract(state)
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()
            ),
        )
        tree = jax.tree.map(lambda t, x: x, target, restored.state)
        return state_lib.from_pytree(state, tree), restored.data, step

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
