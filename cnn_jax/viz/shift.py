"""Shift consistency (Zhang 2019): does the prediction survive a small translation?

Reference: R. Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019.
Consistency is the fraction of test images whose predicted class is the same under two
random translations of up to ``max_shift`` pixels in each direction. Here the image is
translated with zero fill (pixel value 0 before normalisation: black for MNIST), which
keeps the whole test set usable on small inputs, instead of Zhang's random crops.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cnn_jax.data import Split, eval_batches

Predict = Callable[[np.ndarray], np.ndarray]  # normalised f32[B, H, W, C] -> i32[B] classes


FILLS = ("zero", "circular")  # what enters where an image moves away from its border


def shift_images(images: np.ndarray, dy: np.ndarray, dx: np.ndarray, fill: str = "zero") -> np.ndarray:
    """Translates each image by ``(dy[i], dx[i])`` pixels (down/right positive).
    ``out[i, y, x] = images[i, y - dy[i], x - dx[i]]`` where that pixel exists, else 0
    (``fill="zero"``); ``fill="circular"`` wraps round instead (``np.roll``)."""
    n, h, w, _ = images.shape
    dy = np.broadcast_to(np.asarray(dy, int), (n,))
    dx = np.broadcast_to(np.asarray(dx, int), (n,))
    if fill == "circular":
        rows = (np.arange(h)[None, :] - dy[:, None]) % h
        cols = (np.arange(w)[None, :] - dx[:, None]) % w
        return images[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if fill != "zero":
        raise ValueError(f"fill {fill!r}; choose one of: {', '.join(FILLS)}")
    m = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0)))
    padded = np.pad(images, ((0, 0), (m, m), (m, m), (0, 0)))
    rows = (m - dy)[:, None] + np.arange(h)[None, :]
    cols = (m - dx)[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_shifts(n: int, max_shift: int, seed: int = 0, diagonal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Two independent shifts per image, uniform in ``[-max_shift, max_shift]`` per axis:
    arrays ``i32[2, n]`` of ``dy`` and of ``dx`` (a function of ``n``, ``max_shift`` and
    ``seed``); ``diagonal``: along the diagonal only (``dx = dy``)."""
    rng = np.random.default_rng([seed, 0x5F1F7])
    dy = rng.integers(-max_shift, max_shift + 1, size=(2, n))
    dx = rng.integers(-max_shift, max_shift + 1, size=(2, n))
    return dy, (dy.copy() if diagonal else dx)


def predictions(predict: Predict, split: Split, batch_size: int = 500) -> np.ndarray:
    """``predict`` over every image of ``split`` once (normalised as for evaluation)."""
    out = []
    for batch in eval_batches(split, batch_size):
        labels = np.asarray(predict(batch["image"]))
        out.append(labels[batch["mask"]])
    return np.concatenate(out) if out else np.zeros(0, int)


def consistency_under(
    predict: Predict, split: Split, dy: np.ndarray, dx: np.ndarray, batch_size: int = 500,
    fill: str = "zero",
) -> float:
    """Fraction of images of ``split`` classified alike under shift ``(dy[0], dx[0])`` and
    shift ``(dy[1], dx[1])`` (each ``[2, N]``)."""
    preds = []
    for k in range(2):
        moved = Split(
            images=shift_images(split.images, dy[k], dx[k], fill), labels=split.labels, spec=split.spec
        )
        preds.append(predictions(predict, moved, batch_size))
    return float(np.mean(preds[0] == preds[1]))


def shift_consistency(
    predict: Predict, split: Split, max_shift: int = 3, seed: int = 0, batch_size: int = 500,
    fill: str = "zero", diagonal: bool = False,
) -> float:
    """Zhang's consistency of ``predict`` on ``split`` under random shifts up to
    ``max_shift`` pixels (seeded: every model of a study sees the same shifts), with the
    protocol ``fill`` (zero or circular) and ``diagonal`` (shifts along the diagonal only)."""
    dy, dx = random_shifts(len(split), max_shift, seed, diagonal)
    return consistency_under(predict, split, dy, dx, batch_size, fill)


def predictor(model) -> Callable:
    """A jitted ``fn(variables, x) -> i32[B]`` (argmax of the logits, evaluation mode) for a
    linen model; bind variables with ``lambda x: fn(variables, x)``. One compilation serves
    every set of variables of the same shapes (e.g. every seed of a study)."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def fn(variables, x):
        return jnp.argmax(model.apply(variables, x, train=False), -1)

    return fn


def variables_of(state) -> dict:
    """``{"params", "batch_stats"?}`` of a ``TrainState``."""
    v = {"params": state.params}
    if state.batch_stats:
        v["batch_stats"] = state.batch_stats
    return v
