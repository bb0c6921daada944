"""Robustness to common corruptions as a per-trial analysis (Hendrycks & Dietterich 2019).

Each trial predicts a fixed subset of its test split (the first ``images`` test images)
clean and under each corruption of the dataset's family (:mod:`cnn_jax.corruptions`: MNIST-C
style for grey images, CIFAR-10-C style for colour ones) at each severity. The corrupted
images depend only on ``(images, corruption, severity, seed)``: every trial of a study sees
the same ones, and a worker corrupts them once for all its trials.

Per trial it records the mean corruption accuracy (over corruptions and severities) and, in
its details, the accuracy per corruption and severity and the clean accuracy on the subset.
The study's mCE and relative mCE against the baseline kind (Hendrycks & Dietterich's
definitions, with the baseline kind in AlexNet's place) are computed by the report from
those details, per seed (:func:`ce`, :func:`mce`).

The sets are "-C style, regenerated": the published MNIST-C and CIFAR-10-C sets are fixed
draws, so published figures are not directly comparable with these.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from cnn_jax.analyses.base import DETAILS, Context, Measure, register
from cnn_jax.errors import UserError

NAME = "corruptions"
MEASURE = "corruption_accuracy"
ALL = "all"


def _names(value, family: str) -> list[str]:
    from cnn_jax import corruptions

    if value in (None, ALL):
        return corruptions.names(family)
    return [value] if isinstance(value, str) else list(value)


def _severities(value) -> list[int]:
    from cnn_jax.corruptions import SEVERITIES

    if value in (None, ALL):
        return list(SEVERITIES)
    return [value] if isinstance(value, int) else list(value)


def _check(options) -> None:
    """Severities 1-5, a known corruption of some family, a non-negative subset size."""
    from cnn_jax import corruptions

    sev = options["severities"]
    if sev not in (None, ALL) and not (
        isinstance(sev, int) or isinstance(sev, (list, tuple)) and sev
    ):
        raise UserError(f"analysis {NAME!r}: option 'severities' is {sev!r}; give 'all', a "
                        f"severity or a list of them (from {', '.join(map(str, corruptions.SEVERITIES))})")
    for s in _severities(sev):
        if isinstance(s, bool) or s not in corruptions.SEVERITIES:
            raise UserError(f"analysis {NAME!r}: severity {s!r}; choose from: "
                            f"{', '.join(map(str, corruptions.SEVERITIES))}")
    known = sorted({n for f in corruptions.FAMILIES for n in corruptions.names(f)})
    chosen = options["corruptions"]
    if chosen not in (None, ALL):
        for name in _names(chosen, "grey"):
            if name not in known:
                from cnn_jax.errors import suggest

                raise UserError(f"analysis {NAME!r}: unknown corruption {name!r}"
                                f"{suggest(str(name), known)}; choose from: {', '.join(known)}")
    if options["images"] < 0:
        raise UserError(f"analysis {NAME!r}: option 'images' is {options['images']}; give the "
                        "number of test images to corrupt (0: all of them)")


def _check_config(options, cfg) -> None:
    """The corruptions named exist for the images of ``cfg``'s dataset (grey or colour)."""
    from cnn_jax import corruptions
    from cnn_jax.data.registry import DATASETS

    channels = DATASETS.get(cfg.data.name).shape[-1]
    if channels not in corruptions.FAMILIES.values():
        return
    family = corruptions.family_of(channels)
    for name in _names(options["corruptions"], family):
        try:
            corruptions.get(name, family)
        except UserError as e:
            raise UserError(f"analysis {NAME!r} on dataset {cfg.data.name!r}: {e}") from None


def subset(images: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` test images and labels (all of them for ``n == 0``)."""
    return (images, labels) if n <= 0 else (images[:n], labels[:n])


@functools.lru_cache(maxsize=2)
def _corrupted(key: str, images_ref, names: tuple, severities: tuple, seed: int) -> dict:
    """``{(name, severity): u8 images}`` for the images behind ``key`` (their digest),
    computed once per worker process."""
    from cnn_jax import corruptions

    images = images_ref.array
    return {(n, s): corruptions.apply(images, n, s, seed) for n in names for s in severities}


class _Ref:
    """Holds an array for the cache without making it part of the key."""

    def __init__(self, array):
        self.array = array

    def __hash__(self):
        return 0

    def __eq__(self, other):
        return isinstance(other, _Ref)


def corrupted_sets(images: np.ndarray, names, severities, seed: int) -> dict:
    """``{(name, severity): corrupted images}`` of ``images`` (cached per process)."""
    key = hashlib.blake2b(np.ascontiguousarray(images).tobytes(), digest_size=16).hexdigest()
    key += f"{images.shape}"
    return _corrupted(key, _Ref(images), tuple(names), tuple(severities), int(seed))


def accuracies(ctx: Context, sets: list[np.ndarray], labels: np.ndarray,
               chunk_batches: int = 64) -> list[float]:
    """Top-1 accuracy of the trial's model on each of ``sets`` (u8 images with ``labels``,
    normalised as for evaluation). The sets are predicted back to back, up to
    ``chunk_batches`` evaluation batches at a time, so that only the end of a chunk is
    padded (a set of 150 images alone would take two full batches of 100)."""
    from cnn_jax.data import Split
    from cnn_jax.viz.shift import predictions

    limit = chunk_batches * ctx.batch_size
    out, chunk = [], []
    for i, images in enumerate(sets):
        chunk.append(images)
        if i + 1 == len(sets) or sum(map(len, chunk)) + len(sets[i + 1]) > limit:
            stacked = np.concatenate(chunk)
            split = Split(images=stacked, labels=np.tile(labels, len(chunk)),
                          spec=ctx.setup.test.spec, options=ctx.setup.test.options)
            pred = predictions(ctx.predict, split, ctx.batch_size).reshape(len(chunk), -1)
            out += [float(np.mean(p == labels)) for p in pred]
            chunk = []
    return out


def _describe(options) -> str:
    n = options["images"]
    which = "every test image" if n <= 0 else f"the first {n:,} test images"
    chosen = options["corruptions"]
    names = "every corruption of the dataset's family" if chosen in (None, ALL) else ", ".join(
        _names(chosen, "grey"))
    sev = options["severities"]
    sev_text = "1-5" if sev in (None, ALL) else ", ".join(map(str, _severities(sev)))
    return (
        f"Corruption robustness: accuracy on {which} under {names} at severities {sev_text} "
        "(MNIST-C style for grey images, Mu & Gilmer 2019; CIFAR-10-C style for colour ones, "
        "Hendrycks & Dietterich 2019, frost omitted), regenerated here with seed "
        f"{options['seed']}: the same corrupted images for every trial, but not the published "
        "sets, so published figures are not directly comparable. Mean corruption accuracy: "
        "the mean over corruptions and severities."
    )


@register(
    NAME,
    measures=[Measure(MEASURE, "mean corruption accuracy", short="corrupt",
                      reference="Hendrycks & Dietterich 2019")],
    options={"corruptions": ALL, "severities": ALL, "images": 500, "seed": 0},
    describe=_describe,
    check=_check,
    check_config=_check_config,
)
def corruption_accuracy(ctx: Context, corruptions, severities, images: int, seed: int):
    """Accuracy per corruption and severity on the first ``images`` test images, their mean,
    and the clean accuracy on the same images (details)."""
    from cnn_jax import corruptions as lib

    test = ctx.setup.test
    x, y = subset(np.asarray(test.images), np.asarray(test.labels), images)
    family = lib.family_of(x.shape[-1])
    names, sevs = _names(corruptions, family), _severities(severities)
    sets = corrupted_sets(x, names, sevs, seed)
    flat = accuracies(ctx, [x] + [sets[n, s] for n in names for s in sevs], y)
    acc = {n: flat[1 + i * len(sevs): 1 + (i + 1) * len(sevs)] for i, n in enumerate(names)}
    mean = float(np.mean(flat[1:]))
    details = {"family": family, "images": len(y), "severities": sevs,
               "clean": flat[0], "accuracy": acc}
    return {MEASURE: mean, DETAILS: details}


def ce(errors: np.ndarray, base_errors: np.ndarray, clean: float = 0.0,
       base_clean: float = 0.0) -> float:
    """Corruption error of one corruption relative to the baseline (Hendrycks & Dietterich
    2019): ``sum_s E_s / sum_s E_s^base``; with ``clean``/``base_clean`` the clean errors,
    the relative form ``sum_s (E_s - E_clean) / sum_s (E_s^base - E_clean^base)``."""
    num = float(np.sum(np.asarray(errors) - clean))
    den = float(np.sum(np.asarray(base_errors) - base_clean))
    return num / den if den != 0 else float("nan")


def mce(details: dict, base: dict, relative: bool = False) -> float:
    """mCE (or relative mCE) of a trial's :data:`DETAILS` against the baseline trial's
    (the same corruptions and severities): the mean of :func:`ce` over corruptions."""
    clean, base_clean = (1 - details["clean"], 1 - base["clean"]) if relative else (0.0, 0.0)
    out = []
    for name, acc in details["accuracy"].items():
        errors = 1 - np.asarray(acc, float)
        base_errors = 1 - np.asarray(base["accuracy"][name], float)
        out.append(ce(errors, base_errors, clean, base_clean))
    return float(np.mean(out)) if out else float("nan")
