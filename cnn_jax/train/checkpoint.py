"""Orbax checkpoints: the latest N and the best N by validation accuracy, with the data state.

Each checkpoint ``<dir>/<step>/`` holds the items ``state`` (``StandardSave`` of the
train-state pytree in a device-independent layout) and ``data`` (``JsonSave`` of the
grain iterator state and pending metric sums). Orbax writes to a temporary directory and
renames it when complete, so a killed run never leaves a half-written checkpoint as the
newest one. Restoring uses an abstract target (shapes, dtypes and the current run's
sharding), so a checkpoint saved under N devices restores under M.

A newest checkpoint that cannot be read (a corrupted or truncated file) is reported,
moved to ``<workdir>/corrupt_checkpoints/`` (kept, not deleted) and the previous one is
used. A checkpoint from another model (different parameter paths or shapes) is refused
with the mismatching paths named.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from cnn_jax.errors import UserError
from cnn_jax.train import state as state_lib

log = logging.getLogger(__name__)

METRIC = "accuracy"
ASYNC_MIN_BYTES = 32 << 20  # states at least this large are saved asynchronously


class Checkpoints:
    """A thin layer over ``ocp.CheckpointManager`` with the project's policies."""

    def __init__(self, directory: str, keep_latest: int = 2, keep_best: int = 1, *, read_only=False,
                 state_bytes: int | None = None):
        self.directory = os.path.abspath(directory)
        self.keep_latest, self.keep_best, self.read_only = keep_latest, keep_best, read_only
        # Asynchronous saving pays for itself on large states only: for LeNet-5's (0.7 MB)
        # eight saves took 0.79 s asynchronously and 0.38 s synchronously (both with old
        # checkpoints deleted in the background), the threads costing more than the write.
        self.asynchronous = state_bytes is None or state_bytes >= ASYNC_MIN_BYTES
        self._open()

    def _open(self) -> None:
        preserve = [policies.LatestN(self.keep_latest)]
        if self.keep_best:
            preserve.append(
                policies.BestN(
                    get_metric_fn=_rank, n=self.keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(preserve),
            best_fn=_rank,
            best_mode="max",
            read_only=self.read_only,
            create=not self.read_only,
            cleanup_tmp_directories=not self.read_only,
            enable_async_checkpointing=self.asynchronous,
            enable_background_delete=not self.read_only,
        )
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_names=("state", "data"),
            item_handlers={"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()},
        )

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def save(self, step: int, state, data_state: dict, metrics: dict | None = None) -> None:
        if metrics is not None:
            metrics = {**metrics, "step": int(step)}  # ties go to the earliest (see _rank)
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
                raise UserError(f"no checkpoint with validation metrics in {self.directory}; use latest")
            return best
        try:
            step = int(which)
        except (TypeError, ValueError):
            raise UserError(f"invalid checkpoint {which!r}; choose latest, best or a step number") from None
        if step not in steps:
            raise UserError(
                f"no checkpoint at step {step} in {self.directory}; "
                f"available: {', '.join(map(str, steps))}"
            )
        return step

    def check_compatible(self, step: int, target: dict) -> None:
        """Raises a :class:`UserError` naming the parameter paths that differ between the
        checkpoint at ``step`` and ``target`` (another model, pooling kind, width, ...)."""
        saved = _shapes(self.manager.item_metadata(step)["state"])
        wanted = _shapes(target)
        model_keys = lambda d: {k: v for k, v in d.items() if k.split("/")[0] in ("params", "batch_stats")}  # noqa: E731
        if model_keys(saved) != model_keys(wanted):  # name the model's paths, not the optimizer's
            saved, wanted = model_keys(saved), model_keys(wanted)
        missing = sorted(set(wanted) - set(saved))
        extra = sorted(set(saved) - set(wanted))
        shape = sorted(k for k in set(saved) & set(wanted) if saved[k] != wanted[k])
        if missing or extra or shape:
            parts = []
            if missing:
                parts.append("not in checkpoint: " + ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else ""))
            if extra:
                parts.append("only in checkpoint: " + ", ".join(extra[:4]) + (" ..." if len(extra) > 4 else ""))
            if shape:
                parts.append("shape differs: " + ", ".join(f"{k} {saved[k]} vs {wanted[k]}" for k in shape[:4]))
            raise UserError(
                f"checkpoint {self.directory}/{step} does not match this model ({'; '.join(parts)})"
            )

    def _restore_step(self, state, step: int, sharding):
        target = state_lib.abstract(state, sharding)
        self.check_compatible(step, target)
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()
            ),
        )
        return state_lib.from_pytree(state, restored.state), restored.data

    def restore(self, state, which: str | int = "latest", *, sharding=None):
        """Restores into ``state`` (whose shapes/dtypes are the target): ``(state, data_state,
        step)``. For ``"latest"``, an unreadable checkpoint is set aside and the previous one
        used."""
        step = self.resolve_step(which)
        while True:
            try:
                new_state, data_state = self._restore_step(state, step, sharding)
                return new_state, data_state, step
            except UserError:
                raise
            except Exception as e:  # unreadable: truncated, corrupted or missing files
                if which != "latest" or self.read_only:
                    raise UserError(
                        f"checkpoint {self.directory}/{step} cannot be read "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:200]})"
                    ) from None
                moved = self._set_aside(step)
                print(
                    f"warning: checkpoint step {step} is corrupt ({type(e).__name__}); moved to "
                    f"{moved}; using the previous checkpoint",
                    file=sys.stderr, flush=True,
                )
                remaining = self.steps()
                if not remaining:
                    return state, {}, 0
                step = max(remaining)

    def _set_aside(self, step: int) -> str:
        self.manager.close()
        dest_dir = os.path.join(os.path.dirname(self.directory), "corrupt_checkpoints")
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, f"{step}-{int(time.time())}")
        shutil.move(os.path.join(self.directory, str(step)), dest)
        self._open()
        return dest

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class BestState:
    """The run's best-by-validation state, copied when an evaluation improves (for the final
    test evaluation). Under ``checkpoint_evals="end"`` that evaluation saves nothing; the
    copy is written just before the next checkpoint (:meth:`save_before`), so every
    checkpoint on disk has its run's best beside it and a resume restores the same best."""

    def __init__(self):
        self.state = None
        self._unsaved = None  # (step, data_state, accuracy) not on disk yet

    def update(self, step: int, state, data_state: dict, accuracy: float) -> None:
        # One process: to the host in one transfer (a device copy runs a program per leaf);
        # several: device copies, which Orbax then saves collectively.
        single = jax.process_count() == 1
        self.state = jax.device_get(state) if single else jax.tree.map(lambda x: x.copy(), state)
        self._unsaved = (step, data_state, accuracy)

    def save_before(self, ckpt: Checkpoints, step: int) -> None:
        """Saves the best state if it is older than the checkpoint about to be written at
        ``step`` and not saved yet (a save at its own step covers it)."""
        if self._unsaved is not None and self._unsaved[0] < step:
            best_step, data_state, accuracy = self._unsaved
            ckpt.save(best_step, self.state, data_state, {METRIC: accuracy})
        self._unsaved = None


def _shapes(tree) -> dict[str, tuple]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = {}
    for path, leaf in flat:
        key = "/".join(_key_name(p) for p in path)
        out[key] = tuple(getattr(leaf, "shape", ()))
    return out


def _key_name(p) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(p, attr):
            return str(getattr(p, attr))
    return str(p)


def _rank(metrics: dict) -> float:
    """How checkpoints are ranked for "best": by validation accuracy, and among equal
    accuracies the earliest step first — the step training selects (the first best
    evaluation), so a resumed run restores the same "best" as it would have kept in memory.
    (The tie-break, at most 1e-6 for a million steps, is below any accuracy difference of a
    split of fewer than a million examples.)"""
    return float(metrics[METRIC]) - 1e-12 * float(metrics.get("step", 0))


def state_bytes(state) -> int:
    """Bytes of a train state's arrays (what a checkpoint writes)."""
    return int(sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(state_lib.to_pytree(state))))
