"""Figures of one run: first-layer filters, feature maps, learning curves, confusion matrix,
per-class accuracy (matplotlib, Agg backend; every function returns a ``Figure``).

:func:`render` produces them from a run directory (restoring a checkpoint where needed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

WHAT = ("filters", "features", "curves", "confusion", "per_class")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(x)), float(np.max(x))
    return np.zeros_like(x) if hi <= lo else (x - lo) / (hi - lo)


def first_conv_kernel(params) -> tuple[str, np.ndarray] | None:
    """``(path, kernel f32[kh, kw, cin, cout])`` of the first 4-D kernel in ``params``
    (parameter order follows the module order of the model), or ``None``."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, x in leaves:
        names = [getattr(p, "key", str(p)) for p in path]
        if names[-1] == "kernel" and np.ndim(x) == 4:
            return "/".join(map(str, names[:-1])), np.asarray(x)
    return None


def filters(kernel: np.ndarray, title: str = "first-layer filters"):
    """A grid of the ``cout`` filters of ``kernel: f32[kh, kw, cin, cout]``: RGB when
    ``cin == 3``, else the mean over input channels (grey); each filter scaled to [0, 1]."""
    plt = _plt()
    kh, kw, cin, cout = kernel.shape
    cols = min(cout, 8)
    rows = math.ceil(cout / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.2 * cols + 0.4, 1.2 * rows + 0.6), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= cout:
            continue
        k = kernel[..., i]
        if cin == 3:
            ax.imshow(_normalise(k), interpolation="nearest")
        else:
            ax.imshow(_normalise(k.mean(-1)), cmap="gray", interpolation="nearest")
        ax.set_title(str(i), fontsize=7)
    fig.suptitle(f"{title} ({kh}x{kw}, {cin} in, {cout} out)")
    return fig


def feature_maps(
    image: np.ndarray, feats: dict[str, np.ndarray], max_channels: int = 16, title: str = ""
):
    """The input ``image: [H, W, C]`` and, one row per layer, the activations of every
    layer in ``feats`` (``[1, H, W, C]``: the first ``max_channels`` channels as images;
    ``[1, D]``: a bar per unit)."""
    plt = _plt()
    names = list(feats)
    fig = plt.figure(figsize=(1.1 * max_channels + 1.5, 1.35 * (len(names) + 1) + 0.5))
    subs = fig.subfigures(len(names) + 1, 1)
    ax = subs[0].subplots(1, 1)
    img = image[..., 0] if image.shape[-1] == 1 else _normalise(image)
    ax.imshow(img, cmap="gray" if image.shape[-1] == 1 else None, interpolation="nearest")
    ax.axis("off")
    subs[0].suptitle(title or "input", fontsize=9)
    for sub, name in zip(subs[1:], names):
        a = np.asarray(feats[name])[0]
        if a.ndim == 3:
            c = min(a.shape[-1], max_channels)
            axes = np.atleast_1d(sub.subplots(1, c))
            for j, axj in enumerate(axes):
                axj.imshow(a[..., j], cmap="viridis", interpolation="nearest")
                axj.axis("off")
            sub.suptitle(
                f"{name}: {a.shape[0]}x{a.shape[1]}x{a.shape[2]}"
                + (f" (first {c} channels)" if c < a.shape[-1] else ""),
                fontsize=9,
            )
        else:
            axb = sub.subplots(1, 1)
            flat = a.reshape(-1)
            axb.bar(np.arange(len(flat)), flat, width=1.0, color="tab:blue")
            axb.set_xlim(-0.5, len(flat) - 0.5)
            axb.tick_params(labelsize=6)
            sub.suptitle(f"{name}: {len(flat)} units", fontsize=9)
    return fig


def curves(records: Sequence[dict], title: str = "learning curves"):
    """Loss and accuracy per step for the train and test records of a ``metrics.jsonl``."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for split, style in (("train", "-"), ("test", "o-")):
        rs = [r for r in records if r.get("split") == split]
        if not rs:
            continue
        steps = [r["step"] for r in rs]
        axes[0].plot(steps, [r["loss"] for r in rs], style, label=split)
        axes[1].plot(steps, [100 * r["accuracy"] for r in rs], style, label=split)
    axes[0].set_ylabel("loss")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("accuracy (%)")
    for a in axes:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``m[true, predicted]`` counts."""
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (np.asarray(labels), np.asarray(preds)), 1)
    return m


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int, title: str = ""):
    """The confusion matrix as an annotated heat map (rows: true class)."""
    plt = _plt()
    m = confusion_matrix(labels, preds, num_classes)
    size = max(4.0, 0.45 * num_classes + 1.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(m, cmap="Blues")
    if num_classes <= 20:
        for i in range(num_classes):
            for j in range(num_classes):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        str(m[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if m[i, j] > m.max() / 2 else "black",
                    )
        ax.set_xticks(range(num_classes))
        ax.set_yticks(range(num_classes))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = np.trace(m) / max(m.sum(), 1)
    ax.set_title(title or f"confusion matrix (accuracy {100 * acc:.2f} %, {m.sum()} images)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def per_class_accuracy(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy of each true class (NaN for a class without examples)."""
    m = confusion_matrix(labels, preds, num_classes)
    n = m.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.diag(m) / np.maximum(n, 1), np.nan)


def per_class(labels: np.ndarray, preds: np.ndarray, num_classes: int, title: str = ""):
    """A bar per class: its test accuracy."""
    plt = _plt()
    acc = per_class_accuracy(labels, preds, num_classes)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.4 * num_classes + 2), 3.6))
    ax.bar(range(num_classes), 100 * acc, color="tab:blue")
    for i, a in enumerate(acc):
        if np.isfinite(a) and num_classes <= 20:
            ax.text(i, 100 * a + 0.5, f"{100 * a:.1f}", ha="center", fontsize=7)
    lo = np.nanmin(acc) if np.isfinite(acc).any() else 0
    ax.set_ylim(max(0, 100 * lo - 10), 101)
    ax.set_xlabel("class")
    ax.set_ylabel("accuracy (%)")
    if num_classes <= 20:
        ax.set_xticks(range(num_classes))
    ax.set_title(title or "per-class test accuracy")
    ax.grid(axis="y", alpha=0.3)
    return fig


def save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return path


def render(
    workdir: str,
    what: Sequence[str] = WHAT,
    out: str | None = None,
    image_index: int = 0,
    checkpoint: str | int = "latest",
) -> list[str]:
    """Writes the figures ``what`` of run ``workdir`` into ``out`` (default ``workdir/viz``);
    returns their paths."""
    _check_run(workdir)
    out = out or os.path.join(workdir, "viz")
    paths = []
    if "curves" in what:
        paths.append(_render_curves(workdir, out))
    need_model = [w for w in what if w != "curves"]
    if not need_model:
        return paths
    model, variables, test, step = _restore(workdir, checkpoint)
    if "filters" in what:
        paths.append(_render_filters(workdir, variables, step, out))
    if "features" in what:
        paths.append(_render_features(model, variables, test, image_index, out))
    if "confusion" in what or "per_class" in what:
        paths += _render_predictions(model, variables, test, what, out)
    return paths


def _check_run(workdir: str) -> None:
    """A one-line UserError unless ``workdir`` is one run's directory."""
    from cnn_jax import rundir
    from cnn_jax.errors import UserError

    if rundir.is_sweep(workdir):
        raise UserError(
            f"{workdir!r} is a sweep directory; give one of its runs ({workdir}/trials/NAME) or "
            f"use `cnn-jax report {workdir}`"
        )
    if not rundir.is_run(workdir):
        raise UserError(f"{workdir!r} is not a run directory (no {rundir.CONFIG})")


def _render_curves(workdir: str, out: str) -> str:
    from cnn_jax import rundir
    from cnn_jax.errors import UserError

    name = os.path.basename(os.path.normpath(workdir))
    records = rundir.read_metrics(workdir)
    if not records:
        raise UserError(f"no {rundir.METRICS} in {workdir!r}: the run has not logged anything yet")
    return save(curves(records, f"learning curves: {name}"), os.path.join(out, "curves.png"))


def _render_filters(workdir: str, variables, step: int, out: str) -> str:
    from cnn_jax.errors import UserError

    found = first_conv_kernel(variables["params"])
    if found is None:
        raise UserError(f"the model of {workdir!r} has no convolution: no filters to show")
    layer, kernel = found
    return save(filters(kernel, f"{layer} filters (step {step})"), os.path.join(out, "filters.png"))


def _render_features(model, variables, test, image_index: int, out: str) -> str:
    from cnn_jax import models
    from cnn_jax.errors import UserError

    if not 0 <= image_index < len(test):
        raise UserError(
            f"--image-index {image_index} is out of range: the test split has "
            f"{len(test)} images (0..{len(test) - 1})"
        )
    from cnn_jax.data import Split, eval_batches

    one = Split(
        images=test.images[image_index : image_index + 1],
        labels=test.labels[image_index : image_index + 1],
        spec=test.spec,
    )
    x = next(eval_batches(one, 1))["image"]
    feats = {k: np.asarray(v) for k, v in models.features(model, variables, x).items()}
    label = int(test.labels[image_index])
    pred = int(np.argmax(feats["logits"][0])) if "logits" in feats else None
    title = f"test image {image_index}: label {label}" + (
        f", predicted {pred}" if pred is not None else ""
    )
    return save(
        feature_maps(test.images[image_index], feats, title=title),
        os.path.join(out, f"features_{image_index}.png"),
    )


def _render_predictions(model, variables, test, what: Sequence[str], out: str) -> list[str]:
    """The confusion matrix and per-class accuracy (those in ``what``) on the test split."""
    from cnn_jax.viz import shift

    fn = shift.predictor(model)
    preds = shift.predictions(lambda x: fn(variables, x), test)
    k = test.spec.num_classes
    paths = []
    if "confusion" in what:
        paths.append(save(confusion(test.labels, preds, k), os.path.join(out, "confusion.png")))
    if "per_class" in what:
        paths.append(save(per_class(test.labels, preds, k), os.path.join(out, "per_class.png")))
    return paths


def _restore(workdir: str, checkpoint):
    from cnn_jax.train import loop
    from cnn_jax.viz.shift import variables_of

    r = loop.restore(workdir, checkpoint)
    return r.setup.model, variables_of(r.state), r.setup.test, r.step
