"""The corruption registry: named, seeded image corruptions at five severities.

A corruption is a pure NumPy function ``fn(images, severity, rng) -> images`` of a batch of
``u8[N, H, W, C]`` images (``C = 1`` for the grey family, ``3`` for the colour family) at a
severity of 1 (mildest) to 5, drawing every random number from ``rng`` (a
``numpy.random.Generator``), returning ``u8[N, H, W, C]`` of the same shape. Two families:

* ``grey``: MNIST-C style (Mu & Gilmer 2019) for 28-pixel grey digits;
* ``colour``: CIFAR-10-C style (Hendrycks & Dietterich 2019) for 32-pixel colour images.

Both are *regenerated* here from the published recipes' definitions: every draw differs from
the published fixed sets, whose figures are therefore not directly comparable with ours.
:func:`apply` is what callers use: it checks the name, the severity and the family against
the images and seeds ``rng`` from ``(seed, name, severity)``, so the same call gives the same
images in every process (every trial of a study sees the same corrupted test images).

Registering one, from the package or an experiment file::

    from cnn_jax import corruptions

    @corruptions.register("invert", family="grey", group="digital")
    def invert(images, severity, rng):
        return 255 - images
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable

import numpy as np

from cnn_jax.errors import UserError
from cnn_jax.registry import Registry

FAMILIES = {"grey": 1, "colour": 3}  # family -> the channel count of its images
SEVERITIES = (1, 2, 3, 4, 5)


@dataclasses.dataclass(frozen=True)
class Corruption:
    """A registered corruption (see the module docstring).

    Attributes:
      name: registry name (``shot_noise``).
      family: ``grey`` or ``colour``: the images it is defined for.
      fn: ``fn(u8[N, H, W, C], severity, rng) -> u8[N, H, W, C]``.
      group: the benchmark's category (``noise``, ``blur``, ``weather``, ``digital``,
        ``extra`` for CIFAR-10-C; ``affine``, ``noise``, ``blur``, ``digital``,
        ``overlay`` for MNIST-C).
      reference: where its definition comes from.
    """

    name: str
    family: str
    fn: Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
    group: str = ""
    reference: str = ""


# One registry per family: the two families share names (``shot_noise`` exists in both,
# defined differently), so a corruption is ``(family, name)``.
CORRUPTIONS: dict[str, Registry[Corruption]] = {
    family: Registry(f"{family} corruption") for family in FAMILIES
}


def _family(family: str) -> Registry[Corruption]:
    if family not in FAMILIES:
        raise UserError(f"unknown corruption family {family!r}; choose one of: "
                        f"{', '.join(FAMILIES)}")
    return CORRUPTIONS[family]


def register(name: str, *, family: str, group: str = "", reference: str = ""):
    """Decorator registering ``fn(images, severity, rng)`` as corruption ``name`` of
    ``family`` (``grey`` or ``colour``)."""
    registry = _family(family)

    def deco(fn):
        registry.add(name, Corruption(name, family, fn, group, reference))
        return fn

    return deco


def names(family: str) -> list[str]:
    """The registered corruptions of ``family``, sorted."""
    return _family(family).names()


def family_of(channels: int) -> str:
    """The family of images with ``channels`` channels (a one-line error for others)."""
    for family, c in FAMILIES.items():
        if c == channels:
            return family
    raise UserError(f"images with {channels} channels have no corruption family; corruptions "
                    "exist for grey (1 channel) and colour (3 channels) images")


def get(name: str, family: str) -> Corruption:
    """Corruption ``name`` of ``family``; asking a family for the other's corruption is a
    one-line :class:`UserError` saying so and listing the family's corruptions."""
    registry = _family(family)
    if name not in registry:
        for other, reg in CORRUPTIONS.items():
            if other != family and name in reg:
                raise UserError(f"corruption {name!r} is for {other} images, these are {family}; "
                                f"choose one of: {', '.join(registry.names())}")
    return registry.get(name)


def check(name: str, severity: int, family: str) -> Corruption:
    """The corruption ``name`` of ``family`` after checking it exists there and that
    ``severity`` is 1-5: one-line :class:`UserError` messages naming the value and the
    valid choices."""
    c = get(name, family)
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise UserError(f"corruption {name!r}: severity {severity!r}; choose one of: "
                        f"{', '.join(map(str, SEVERITIES))}")
    return c


def rng_for(family: str, name: str, severity: int, seed: int) -> np.random.Generator:
    """The generator :func:`apply` hands ``name`` of ``family`` at ``severity`` for ``seed``."""
    key = zlib.crc32(f"{family}/{name}".encode())
    return np.random.default_rng([int(seed), key, int(severity)])


def apply(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """``images`` (``u8[N, H, W, C]``) corrupted by ``name`` at ``severity`` (1-5), the same
    for the same ``(images, name, severity, seed)`` in any process."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"corruptions take u8[N, H, W, C] images, got {images.dtype}{list(images.shape)}")
    family = family_of(images.shape[-1])
    c = check(name, severity, family)
    out = np.asarray(c.fn(images, int(severity), rng_for(family, name, severity, seed)))
    if out.shape != images.shape or out.dtype != np.uint8:
        raise ValueError(f"corruption {name!r} returned {out.dtype}{list(out.shape)} for "
                         f"{images.dtype}{list(images.shape)}")
    return out


def to_u8(x: np.ndarray) -> np.ndarray:
    """Float pixel values on the 0-255 scale, rounded and clipped to ``u8`` (what the
    published recipes do when they save their images)."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
