"""The validation split: a stratified, seeded hold-out of the training split.

Model selection (the best checkpoint, early stopping, ranking and tuning) sees only the
validation split; the test split is read once, at the end. The hold-out depends on the
dataset and ``data.validation`` alone, never on the trial's seed, so every trial of a study
is selected on the same examples.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cnn_jax.errors import UserError

# The hold-out's own seed: the same validation examples for every trial seed.
HOLDOUT_SEED = 20261201


def holdout_size(value: float, n: int, what: str = "data.validation") -> int:
    """How many of ``n`` training examples ``value`` holds out: a fraction in (0, 1), a
    whole count >= 1, or 0 (no validation split)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{what} must be a number, got {value!r}")
    if value < 0:
        raise UserError(
            f"{what} must be a fraction in (0, 1), a whole count of examples or 0 (off), "
            f"got {value!r}"
        )
    if value == 0:
        return 0
    if value < 1:
        return max(int(round(value * n)), 1)
    if value != int(value):
        raise UserError(
            f"{what} {value!r} is neither a fraction in (0, 1) nor a whole count of examples "
            f"(e.g. 0.1 or {max(n // 10, 1)})"
        )
    if value >= n:
        raise UserError(
            f"{what} {int(value)} holds out the whole training split ({n} examples); "
            f"choose fewer than {n}, or a fraction in (0, 1)"
        )
    return int(value)


def stratified_holdout(labels: np.ndarray, size: int, seed: int = HOLDOUT_SEED,
                       what: str = "data.validation") -> tuple[np.ndarray, np.ndarray]:
    """``(train_indices, validation_indices)``, both sorted, with ``size`` validation
    examples spread over the classes in proportion to their frequency (largest
    remainders), each class's examples drawn by ``numpy.random.default_rng([seed, class])``.

    Raises a :class:`UserError` when a class would have no example left on either side.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    n = len(labels)
    exact = counts * size / n
    take = np.floor(exact).astype(int)
    rest = size - take.sum()
    if rest > 0:  # largest remainders, ties broken by class order
        order = np.lexsort((classes, -(exact - take)))
        take[order[:rest]] += 1
    # every class with two or more examples is represented: its one validation example is
    # taken from the class that holds out the most
    for i in np.flatnonzero((take == 0) & (counts >= 2)):
        j = int(np.argmax(take))
        if take[j] > 1:
            take[j] -= 1
            take[i] = 1
    val = []
    for c, k, m in zip(classes, take, counts):
        if k == 0 or k == m:
            side = "validation" if k == 0 else "training"
            raise UserError(
                f"{what} holds out {size} of {n} examples, which leaves class {int(c)} "
                f"({m} examples) with no {side} example; choose a "
                f"{'larger' if k == 0 else 'smaller'} {what}"
            )
        idx = np.flatnonzero(labels == c)
        val.append(np.random.default_rng([seed, int(c)]).permutation(idx)[:k])
    val_idx = np.sort(np.concatenate(val))
    mask = np.ones(n, bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx


def subset(split, indices: np.ndarray):
    """The examples ``indices`` of an in-memory split."""
    return dataclasses.replace(split, images=split.images[indices], labels=split.labels[indices])


def hold_out(train, value: float):
    """``(train, validation)``: ``validation`` is ``None`` when ``value`` is 0."""
    size = holdout_size(value, len(train))
    if size == 0:
        return train, None
    tr, va = stratified_holdout(train.labels, size)
    return subset(train, tr), subset(train, va)
