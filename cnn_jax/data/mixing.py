"""Batch mixing: mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019), as timm defines them.

Per training batch, from ``numpy.random.default_rng([seed, MIX_STREAM, step])``, in this
order (:meth:`Mixing.draw`):

1. ``u ~ U[0, 1)``: the batch is mixed when ``u < mix_prob``, else left as it is (λ = 1);
2. with both alphas > 0, ``v ~ U[0, 1)``: CutMix when ``v < mix_switch_prob``, else mixup;
   with one alpha > 0, that one;
3. ``λ ~ Beta(α, α)`` with the chosen method's α;
4. CutMix: the box centre ``(cy, cx)``, uniform integers in ``[0, H) × [0, W)``.

Row ``r`` of a global batch of ``B`` is paired with row ``B - 1 - r`` (the batch with its
reverse, as timm pairs it).

* mixup: ``x = rint(λ x + (1 - λ) x_pair)``, computed in float32 on the ``u8`` pixels and
  rounded half to even back to ``u8`` (the mixing happens before normalisation, so both
  pipelines, one of which hands ``u8`` pixels to the devices, mix alike; timm's
  ``FastCollateMixup`` rounds the same way);
* CutMix: a box of ``floor(H sqrt(1 - λ))`` × ``floor(W sqrt(1 - λ))`` pixels, its
  top-left corner ``(cy - h // 2, cx - w // 2)``, clipped to the image, takes the paired
  image's pixels; λ is then corrected to the share of the image left unpasted,
  ``1 - box area / (H W)``.

Labels become soft: ``label_probs = λ onehot(y) + (1 - λ) onehot(y_pair)`` (``f32[B, K]``,
every batch while mixing is on, mixed or not, so its structure never changes), and
``label`` becomes the dominant label (``y`` where λ >= 0.5, else ``y_pair``), against which
training accuracy is counted. Label smoothing ε is applied by the loss to these targets,
``(1 - ε) label_probs + ε / K``, which is timm's ``mixup_target`` (each one-hot smoothed,
then mixed: the two are linear and commute).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

MIX_STREAM = 0x313  # stream constant of the per-step mixing generator


@dataclasses.dataclass(frozen=True)
class Draw:
    """One batch's mixing: ``lam`` (the weight of the batch's own labels, corrected to the
    box for CutMix) and ``box`` (``(top, left, bottom, right)`` for CutMix, else ``None``)."""

    lam: float
    box: tuple[int, int, int, int] | None = None


def cut_box(height: int, width: int, lam: float, cy: int, cx: int) -> tuple[int, int, int, int]:
    """The CutMix box ``(top, left, bottom, right)`` of area ``(1 - lam)`` of the image
    around ``(cy, cx)``, clipped to the image."""
    r = math.sqrt(1.0 - lam)
    h, w = int(height * r), int(width * r)
    top, left = cy - h // 2, cx - w // 2
    return (min(max(top, 0), height), min(max(left, 0), width),
            min(max(top + h, 0), height), min(max(left + w, 0), width))


def box_lam(box: tuple[int, int, int, int], height: int, width: int) -> float:
    """λ corrected to ``box``: the share of the image it leaves."""
    top, left, bottom, right = box
    return 1.0 - (bottom - top) * (right - left) / (height * width)


@dataclasses.dataclass(frozen=True)
class Mixing:
    """The ``data.mixup_alpha``/``cutmix_alpha``/``mix_prob``/``mix_switch_prob`` keys."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5

    @classmethod
    def of(cls, options) -> Mixing | None:
        """The mixing of a split's :class:`~cnn_jax.data.registry.Options`; ``None`` when off."""
        if not (options.mixup_alpha > 0 or options.cutmix_alpha > 0):
            return None
        return cls(float(options.mixup_alpha), float(options.cutmix_alpha),
                   float(options.mix_prob), float(options.mix_switch_prob))

    def draw(self, seed: int, step: int, height: int, width: int) -> Draw:
        """Batch ``step``'s mixing (the module docstring's draws)."""
        rng = np.random.default_rng([seed, MIX_STREAM, step])
        if not rng.random() < self.mix_prob:
            return Draw(1.0)
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            cutmix = rng.random() < self.switch_prob
        else:
            cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        if not cutmix:
            return Draw(lam)
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        box = cut_box(height, width, lam, cy, cx)
        return Draw(box_lam(box, height, width), box)


def mix_images(images: np.ndarray, paired: np.ndarray, d: Draw) -> np.ndarray:
    """``images: u8[n, H, W, C]`` mixed with ``paired`` (row ``j``'s partner at ``j``) per
    ``d``; a new array."""
    if d.box is not None:
        top, left, bottom, right = d.box
        out = images.copy()
        out[:, top:bottom, left:right] = paired[:, top:bottom, left:right]
        return out
    if d.lam == 1.0:
        return images.copy()
    mixed = images.astype(np.float32)
    mixed *= np.float32(d.lam)
    mixed += paired.astype(np.float32) * np.float32(1.0 - d.lam)
    return np.rint(mixed, out=mixed).astype(np.uint8)


def mix_labels(labels: np.ndarray, paired: np.ndarray, lam: float, num_classes: int):
    """``(dominant label i32[n], label_probs f32[n, K])`` of labels mixed with weight
    ``lam`` on ``labels`` and ``1 - lam`` on ``paired``."""
    n = len(labels)
    probs = np.zeros((n, num_classes), np.float32)
    probs[np.arange(n), labels] += np.float32(lam)
    probs[np.arange(n), paired] += np.float32(1.0 - lam)
    dominant = labels if lam >= 0.5 else paired
    return np.asarray(dominant, labels.dtype).copy(), probs


def paired_rows(first_row: int, n: int, total: int) -> tuple[int, int]:
    """The global rows ``[lo, hi)`` holding the partners of rows
    ``[first_row, first_row + n)`` of a batch of ``total`` (in reverse order)."""
    return total - first_row - n, total - first_row
