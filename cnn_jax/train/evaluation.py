"""Evaluation of a train state: over a split, and at the end of a run (the test split for
the final and the best state). Also how host batches go onto the devices and how far
dispatch may run ahead of them."""

from __future__ import annotations

import jax
import numpy as np

from cnn_jax import data
from cnn_jax.train import step as step_lib
from cnn_jax.train.assemble import Setup
from cnn_jax.train.checkpoint import Checkpoints
from cnn_jax.train.parallel import Runner, normalizing
from cnn_jax.train.periodic import EarlyStopping, split_name
from cnn_jax.train.state import with_weights
from cnn_jax.train.writer import MetricWriter


def run_eval(state, split: data.Split, batch_size: int, runner: Runner) -> dict:
    """Metrics over every example of ``split`` exactly once."""
    total = in_flight = None
    put = batch_putter(runner, split)
    for batch in data.eval_batches(split, batch_size, normalized=False):
        sums = runner.eval_step(state, put(batch))
        total = step_lib.combine(total, sums)
        in_flight = pace(in_flight, sums, runner.num_processes > 1)
    return step_lib.summarize(jax.device_get(total))


def batch_putter(runner: Runner, split):
    """How ``split``'s host batches go onto the devices. A streamed split of a multi-process
    run holds only this process's rows of each global batch (it never decodes the others):
    they are placed at their rows of a zero global batch, which ``runner.put_batch`` slices
    back (the zeros are never touched, so the OS never backs them with memory). Streamed
    images arrive as ``u8`` and are normalised on the devices."""
    if not split.streaming:
        return runner.put_batch
    if runner.num_processes == 1:
        return normalizing(runner.put_batch, split.spec)
    p, k = jax.process_index(), runner.num_processes

    def put(local: dict):
        whole = {}
        for key, v in local.items():
            g = np.zeros((k * len(v), *v.shape[1:]), v.dtype)
            g[p * len(v):(p + 1) * len(v)] = v
            whole[key] = g
        return runner.put_batch(whole)

    return normalizing(put, split.spec)


def pace(in_flight, new, bounded: bool):
    """With several processes, dispatch runs at most two steps ahead of the devices: waits
    for the previous step's output and returns ``new`` to wait for next time.

    Unbounded, XLA:CPU's per-device limit on in-flight computations deadlocked 2-process
    CPU runs (2 of 48 runs of 12 steps with the CPU loaded, 2 of 30 runs of 100 steps):
    one process's launch of a step on its second device waited for a free in-flight slot
    while its first device and the other process's devices waited for it inside the
    step's all-gather (stack dumps of both processes). Bounded: none in 80 runs of 100
    steps (40 of them with the CPU loaded)."""
    if not bounded:
        return None
    if in_flight is not None:
        jax.block_until_ready(in_flight)
    return new


def final_evaluation(state, step: int, s: Setup, stopper: EarlyStopping, best_state,
                     ckpt: Checkpoints, runner: Runner, eval_batch: int,
                     writer: MetricWriter) -> dict:
    """The end of a run: the test split, read once, for the final state and for the
    checkpoint selected by validation accuracy (``stopper``'s best step), plus the final
    validation metrics. Writes the ``test`` rows of ``metrics.jsonl``; returns the
    summary's ``test``, ``validation`` and ``best`` entries.

    With a moving average of the weights (``state.ema``) both weights are evaluated:
    ``test_raw``/``validation_raw`` and ``test_ema``/``validation_ema`` (rows ``test`` and
    ``test_ema``), and ``test``, ``validation`` and ``best`` are those of the weights
    selected on (``stopper.weights``, ``train.select_weights``), which ``weights`` names."""
    chosen = stopper.weights
    evaluated = ("raw", "ema") if state.ema is not None else ("raw",)
    out = {}
    for w in evaluated:
        view = with_weights(state, w)
        test = run_eval(view, s.test, eval_batch, runner)
        writer.write(step, split_name("test", w), test)
        validation = None
        if s.validation is not None:
            validation = (stopper.metrics_at.get(step) if w == chosen else None) or run_eval(
                view, s.validation, eval_batch, runner)
        if len(evaluated) > 1:
            out[split_name("test", w) if w != "raw" else "test_raw"] = test
            out[split_name("validation", w) if w != "raw" else "validation_raw"] = validation
        if w == chosen:
            out.update(test=test, validation=validation)
    out["best"] = _best(out["test"], step, s, stopper, best_state, ckpt, runner, eval_batch, writer)
    if len(evaluated) > 1:
        out["weights"] = chosen
    return out


def _best(test: dict, step: int, s: Setup, stopper: EarlyStopping, best_state, ckpt: Checkpoints,
          runner: Runner, eval_batch: int, writer: MetricWriter) -> dict:
    """The summary's ``best``: the checkpoint selected by validation accuracy (of
    ``stopper.weights``) and those weights' test metrics (``test``: the final step's)."""
    best = {"step": stopper.best_step, "validation_accuracy": stopper.best_accuracy,
            "test_accuracy": None, "selected_by": "validation"}
    if stopper.best_step is not None:
        if stopper.best_step == step:
            best_test = test
        else:
            if best_state is None:  # selected before this process started: from its checkpoint
                which = stopper.best_step if stopper.best_step in ckpt.steps() else "best"
                best_state, _, _ = ckpt.restore(s.state, which, sharding=runner.state_sharding())
            view = with_weights(best_state, stopper.weights)
            best_test = run_eval(runner.put_state(view), s.test, eval_batch, runner)
            writer.write(stopper.best_step, split_name("test", stopper.weights),
                         {**best_test, "checkpoint": "best"})
        best["test_accuracy"] = best_test["accuracy"]
        best["test"] = best_test
    if s.state.ema is not None:
        best["weights"] = stopper.weights
    return best
