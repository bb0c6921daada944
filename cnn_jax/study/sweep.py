"""Sweep definitions: grids, zips, chains, products and random searches over dotted keys.

A sweep is an ordered list of *points*, each a ``{dotted_key: value}`` dict such as
``{"model.name": "lenet5", "model.pool": "max"}``. Sweeps compose:

* :func:`grid` — the Cartesian product of value lists (the first key varies slowest);
* :func:`zipped` — lists taken in lockstep (equal lengths);
* :func:`chain` (or ``a + b``) — one sweep after another;
* :func:`product` (or ``a * b``) — every point of ``a`` merged with every point of ``b``;
* :func:`random_search` — ``budget`` points drawn from distributions with a seed.

A :class:`Study` crosses a sweep with seeds and names the comparisons its report makes
(a baseline such as ``{"model.pool": "max"}``). Nothing here imports JAX.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cnn_jax.errors import UserError

Point = dict[str, Any]
# Tuning seeds counted from here: disjoint from any study's usual seeds 0, 1, ...
TUNE_SEED_BASE = 1000


class Sweep:
    """An ordered, finite list of points. Subclasses implement :meth:`points`."""

    def points(self) -> list[Point]:
        raise NotImplementedError

    def keys(self) -> list[str]:
        """Every key set by some point, in first-seen order."""
        out: list[str] = []
        for p in self.points():
            out.extend(k for k in p if k not in out)
        return out

    def __len__(self) -> int:
        return len(self.points())

    def __iter__(self):
        return iter(self.points())

    def __add__(self, other: Sweep) -> Sweep:
        return chain(self, other)

    def __mul__(self, other: Sweep) -> Sweep:
        return product(self, other)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} points over {', '.join(self.keys()) or 'no keys'})"
        )


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key or key.startswith(".") or key.endswith("."):
        raise UserError(f"sweep key {key!r} must be a dotted config key such as 'model.pool'")
    return key


def check_values(key: str, values: Any) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise UserError(f"sweep values for {key!r} must be a list, got {values!r}")
    values = list(values)
    if not values:
        raise UserError(f"sweep values for {key!r} are empty")
    return values


@dataclasses.dataclass(frozen=True, repr=False)
class Points(Sweep):
    """Explicit points (also the single empty point ``Points([{}])``)."""

    items: tuple

    def points(self) -> list[Point]:
        return [dict(p) for p in self.items]


@dataclasses.dataclass(frozen=True, repr=False)
class Grid(Sweep):
    axes: tuple  # ((key, (values...)), ...)

    def points(self) -> list[Point]:
        keys = [k for k, _ in self.axes]
        return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in self.axes))]


@dataclasses.dataclass(frozen=True, repr=False)
class Zip(Sweep):
    axes: tuple

    def points(self) -> list[Point]:
        keys = [k for k, _ in self.axes]
        return [dict(zip(keys, combo)) for combo in zip(*(v for _, v in self.axes))]


@dataclasses.dataclass(frozen=True, repr=False)
class Chain(Sweep):
    parts: tuple

    def points(self) -> list[Point]:
        return [p for s in self.parts for p in s.points()]


@dataclasses.dataclass(frozen=True, repr=False)
class Product(Sweep):
    parts: tuple

    def points(self) -> list[Point]:
        out: list[Point] = [{}]
        for s in self.parts:
            new = []
            for a in out:
                for b in s.points():
                    clash = set(a) & set(b)
                    if clash:
                        raise UserError(f"product of sweeps sets {min(clash)!r} twice")
                    new.append({**a, **b})
            out = new
        return out


def _axes(spec: Mapping[str, Any] | None, kwargs: dict) -> tuple:
    if spec is not None and not isinstance(spec, Mapping):
        raise UserError(f"a sweep takes a dict of {{key: values}}, got {spec!r}")
    items = {**(spec or {}), **kwargs}
    return tuple((check_key(k), tuple(check_values(k, v))) for k, v in items.items())


def grid(spec: Mapping[str, Sequence] | None = None, **kwargs: Sequence) -> Sweep:
    """Every combination of the values, the first key varying slowest.

    ``grid({"model.name": ["lenet5", "simple_cnn"], "model.pool": ["max", "avg"]})`` has 4
    points. Keyword arguments are top-level keys (``grid(seed=[0, 1])``).
    """
    return Grid(_axes(spec, kwargs))


def zipped(spec: Mapping[str, Sequence] | None = None, **kwargs: Sequence) -> Sweep:
    """The i-th values of every key together (all lists must have the same length)."""
    axes = _axes(spec, kwargs)
    lengths = {k: len(v) for k, v in axes}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise UserError(f"zipped sweep needs lists of equal length, got {shown}")
    return Zip(axes)


def chain(*sweeps: Sweep) -> Sweep:
    """The points of each sweep in turn."""
    for s in sweeps:
        if not isinstance(s, Sweep):
            raise UserError(f"chain takes sweeps, got {s!r}")
    return Chain(tuple(sweeps))


def product(*sweeps: Sweep) -> Sweep:
    """Every point of the first sweep merged with every point of the next, and so on."""
    for s in sweeps:
        if not isinstance(s, Sweep):
            raise UserError(f"product takes sweeps, got {s!r}")
    return Product(tuple(sweeps))


def points(items: Iterable[Mapping[str, Any]]) -> Sweep:
    """Explicit points, e.g. ``points([{"model.name": "mlp"}, {"model.name": "lenet5"}])``."""
    items = tuple(dict(p) for p in items)
    for p in items:
        for k in p:
            check_key(k)
    return Points(items)


# ----------------------------------------------------------------------------- random search


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A distribution for :func:`random_search` (build with :func:`uniform` etc.)."""

    kind: str
    args: tuple

    def sample(self, rng) -> Any:
        if self.kind == "choice":
            return self.args[int(rng.integers(len(self.args)))]
        if self.kind == "uniform":
            lo, hi = self.args
            return _round(float(rng.uniform(lo, hi)))
        if self.kind == "log_uniform":
            lo, hi = self.args
            return _round(float(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
        if self.kind == "int_uniform":
            lo, hi = self.args
            return int(rng.integers(lo, hi + 1))
        raise AssertionError(self.kind)


def _round(x: float, digits: int = 3) -> float:
    """Three significant digits: readable run names, and values that print back exactly."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def choice(values: Sequence) -> Distribution:
    """One of ``values``, uniformly."""
    values = tuple(check_values("choice", values))
    return Distribution("choice", values)


def uniform(low: float, high: float) -> Distribution:
    """Uniform on ``[low, high]`` (rounded to 3 significant digits)."""
    if not low < high:
        raise UserError(f"uniform needs low < high, got {low}, {high}")
    return Distribution("uniform", (float(low), float(high)))


def log_uniform(low: float, high: float) -> Distribution:
    """Log-uniform on ``[low, high]``, ``0 < low < high`` (rounded to 3 significant digits)."""
    if not 0 < low < high:
        raise UserError(f"log_uniform needs 0 < low < high, got {low}, {high}")
    return Distribution("log_uniform", (float(low), float(high)))


def int_uniform(low: int, high: int) -> Distribution:
    """An integer in ``[low, high]`` (both included)."""
    if not int(low) <= int(high):
        raise UserError(f"int_uniform needs low <= high, got {low}, {high}")
    return Distribution("int_uniform", (int(low), int(high)))


@dataclasses.dataclass(frozen=True, repr=False)
class Random(Sweep):
    space: tuple  # ((key, Distribution | values), ...)
    budget: int
    seed: int

    def points(self) -> list[Point]:
        import numpy as np

        rng = np.random.default_rng([self.seed, 0x5EE9])
        out: list[Point] = []
        seen = set()
        draws = 0
        # Duplicates (possible with choices) are redrawn, up to a bound: the budget is the
        # number of *distinct* points when the space has that many.
        while len(out) < self.budget and draws < 100 * self.budget:
            draws += 1
            p = {
                k: (
                    d.sample(rng)
                    if isinstance(d, Distribution)
                    else Distribution("choice", tuple(d)).sample(rng)
                )
                for k, d in self.space
            }
            key = repr(sorted(p.items()))
            if key in seen:
                continue
            seen.add(key)
            out.append(p)
        return out


def random_search(
    space: Mapping[str, Distribution | Sequence], budget: int, seed: int = 0
) -> Sweep:
    """``budget`` distinct points drawn from ``space`` with ``numpy.random.default_rng``.

    Args:
      space: ``{key: distribution}``; a plain list means :func:`choice` of it.
      budget: number of points (configurations) to draw.
      seed: the draw is a function of this seed only, so the sweep is reproducible.
    """
    if not isinstance(budget, int) or budget < 1:
        raise UserError(f"random_search budget must be a positive int, got {budget!r}")
    items = []
    for k, d in space.items():
        check_key(k)
        if not isinstance(d, Distribution):
            d = choice(d)
        items.append((k, d))
    return Random(tuple(items), budget, int(seed))
