"""Per-trial analyses: what a study measures of each trained trial besides accuracy.

An analysis is one registered :class:`Analysis`: a name, its options (with defaults, whose
types the values must have), the named scalars it records (:class:`Measure`: each becomes a
``results.csv`` column, a pair of columns of the report's table, its own paired comparison
with the baseline and its own Holm family), a paragraph for the report, and the function
that measures a trained trial from a :class:`Context`. The worker runs the analyses the
study names (``Study(analyses=...)``) after training; the reporting wing iterates them.

Registering one is a decorator, from the package or from an experiment file::

    from cnn_jax import analyses

    @analyses.register(
        "weight_norm",
        measures=[analyses.Measure("weight_norm", "weight norm", higher_is_better=False,
                                   fraction=False)],
        options={"ord": 2},
        describe=lambda o: f"Weight norm: the L{o['ord']} norm of all parameters.",
    )
    def weight_norm(ctx, ord):
        ...
        return {"weight_norm": value}

This module imports no JAX: the report reads the registry where nothing can train.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cnn_jax.errors import UserError, suggest
from cnn_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class Measure:
    """One named scalar an analysis records (a ``results.csv`` column).

    Attributes:
      name: the column (``shift_consistency``); unique over all analyses.
      label: how tables and plots name it (``shift consistency``).
      short: the short form in a confidence-interval header (``95 % CI (shift)``).
      higher_is_better: the direction of its comparisons with the baseline.
      fraction: a fraction in [0, 1], shown in per cent (differences in pp).
      reference: the paper defining it, for the plot's title (``Zhang 2019``).
    """

    name: str
    label: str
    short: str = ""
    higher_is_better: bool = True
    fraction: bool = True
    reference: str = ""

    @property
    def short_label(self) -> str:
        return self.short or self.label

    @property
    def difference_unit(self) -> tuple[float, str]:
        """How a difference of this measure is shown: ``(100, " pp")`` for a fraction (in
        percentage points), else ``(1, "")``."""
        return (100, " pp") if self.fraction else (1, "")


@dataclasses.dataclass(frozen=True)
class Context:
    """What an analysis may use of one trained trial.

    Attributes:
      setup: the trial's :class:`cnn_jax.train.assemble.Setup` (config, model, the train,
        validation and test splits).
      state: the state measured (the trial's result, on the host).
      predict: ``f32[B, H, W, C] -> i32[B]``: the predicted classes of a batch of
        normalised images through the trial's own compiled evaluation program (batches of
        exactly ``batch_size`` images).
      batch_size: the evaluation batch size ``predict`` was compiled for.
      summary: the trial's ``summary.json`` as a dict.
    """

    setup: Any
    state: Any
    predict: Callable[[Any], Any]
    batch_size: int
    summary: Mapping[str, Any]


MeasureFn = Callable[..., Mapping[str, float]]

# An analysis may return, besides its measures, what the report needs beyond one scalar per
# measure (per-corruption accuracies, a reliability diagram's bins, per-site distances) under
# this key: JSON-able, kept in the trial's ``analysis.json`` as the analysis's ``details``.
DETAILS = "details"

# Every analysis has the option ``state``: which state of the trial it measures, the
# checkpoint selected by validation accuracy (default) or the final one. It is the worker's
# business (:mod:`cnn_jax.study.execution.measure`), never passed to the analysis itself.
STATE = "state"
STATES = ("best", "final")


@dataclasses.dataclass(frozen=True)
class Analysis:
    """A registered per-trial analysis (see the module docstring)."""

    name: str
    fn: MeasureFn
    measures: tuple[Measure, ...]
    options: Mapping[str, Any]
    describe: Callable[[Mapping[str, Any]], str] | None = None
    # ``check(options)``: raises a one-line UserError for a bad value (run when a study is
    # planned, before anything trains)
    check: Callable[[Mapping[str, Any]], None] | None = None
    # ``check_config(options, cfg)``: the same for a trial's config (e.g. options that need
    # colour images on a grey dataset), run on every planned trial
    check_config: Callable[[Mapping[str, Any], Any], None] | None = None

    def run(self, ctx: Context, options: Mapping[str, Any]) -> dict[str, float]:
        """The measures of one trial, checked against :attr:`measures` (without the
        analysis's :data:`DETAILS`: see :meth:`run_with_details`)."""
        return self.run_with_details(ctx, options)[0]

    def run_with_details(self, ctx: Context, options: Mapping[str, Any]) -> tuple[dict[str, float], Any]:
        """``(measures, details)`` of one trial: the measures checked against
        :attr:`measures`; ``details`` what ``fn`` returned under :data:`DETAILS` (``None``
        when nothing)."""
        values = dict(self.fn(ctx, **{k: v for k, v in options.items() if k != STATE}))
        details = values.pop(DETAILS, None)
        want = [m.name for m in self.measures]
        if sorted(values) != sorted(want):
            raise ValueError(
                f"analysis {self.name!r} returned {sorted(values)}, declared {want}"
            )
        return {k: float(values[k]) for k in want}, details

    def check_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` over the defaults, each of its default's type; a one-line
        :class:`UserError` for an unknown option or a value of another type."""
        out = {**self.options, STATE: STATES[0]}
        for key, value in given.items():
            if key == STATE:
                if value not in STATES:
                    raise UserError(f"analysis {self.name!r}: option 'state' is {value!r}; "
                                    f"choose one of: {', '.join(STATES)}")
                out[key] = value
                continue
            if key not in self.options:
                valid = ", ".join([*self.options, STATE])
                raise UserError(
                    f"analysis {self.name!r} has no option {key!r}{suggest(key, self.options)}; "
                    f"choose one of: {valid}"
                )
            out[key] = _typed(self.name, key, value, self.options[key])
        if self.check is not None:
            self.check({k: v for k, v in out.items() if k != STATE})
        return out


def _typed(analysis: str, key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if default is None or isinstance(value, kind) and not (
        isinstance(value, bool) and kind is not bool
    ):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, (list, tuple)):  # a str option may name several
        return list(value)
    raise UserError(
        f"analysis {analysis!r}: option {key!r} must be a {kind.__name__} "
        f"(like its default {default!r}), got {value!r}"
    )


REGISTRY: Registry[Analysis] = Registry("analysis")


def per_model(build: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``build(model)`` (e.g. a jitted program of a linen model) memoised per model: one
    program per configuration, shared by every seed a worker measures. Keyed by the model's
    ``repr`` (its class and every attribute), since a module with dict attributes is not
    hashable; the 8 most recently used are kept."""
    cache: dict[str, Any] = {}

    def get_for(model):
        key = repr(model)
        if key in cache:
            cache[key] = cache.pop(key)  # now the most recently used
        else:
            if len(cache) >= 8:
                cache.pop(next(iter(cache)))  # the least recently used
            cache[key] = build(model)
        return cache[key]

    get_for.cache = cache
    return get_for


def register(
    name: str,
    *,
    measures: Sequence[Measure],
    options: Mapping[str, Any] | None = None,
    describe: Callable[[Mapping[str, Any]], str] | None = None,
    check: Callable[[Mapping[str, Any]], None] | None = None,
    check_config: Callable[[Mapping[str, Any], Any], None] | None = None,
) -> Callable[[MeasureFn], MeasureFn]:
    """Decorator registering ``fn(ctx, **options) -> {measure name: float}`` (plus
    :data:`DETAILS` if it has any) as analysis ``name``. ``check(options)`` validates option
    values when a study is planned, ``check_config(options, cfg)`` them against each planned
    trial's config. A name, or a measure's column, that is already taken is a one-line
    :class:`UserError`."""

    def deco(fn: MeasureFn) -> MeasureFn:
        if STATE in (options or {}):
            raise UserError(f"analysis {name!r}: option {STATE!r} is every analysis's own "
                            f"(the state measured: {', '.join(STATES)}); name yours otherwise")
        taken = {m.name: a for a in REGISTRY for m in REGISTRY.get(a).measures}
        for m in measures:
            if m.name in taken:
                raise UserError(
                    f"analysis {name!r}: measure {m.name!r} is already recorded by analysis "
                    f"{taken[m.name]!r}; choose another name (taken: {', '.join(sorted(taken))})"
                )
        REGISTRY.add(name, Analysis(name, fn, tuple(measures), dict(options or {}), describe, check,
                                    check_config))
        return fn

    return deco


def get(name: str) -> Analysis:
    return REGISTRY.get(name)


def names() -> list[str]:
    return REGISTRY.names()


def resolve(spec: Mapping[str, Mapping[str, Any]] | Sequence[str] | None) -> dict[str, dict]:
    """A study's ``analyses=`` (names, or ``{name: {option: value}}``) as ``{name: every
    option with its value}`` in the order given; unknown names and options are one-line
    :class:`UserError` messages listing the valid choices."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        spec = [spec]
    items = spec.items() if isinstance(spec, Mapping) else ((n, {}) for n in spec)
    out: dict[str, dict] = {}
    for name, given in items:
        if not isinstance(given, Mapping):
            raise UserError(
                f"analysis {name!r}: options must be a dict of option: value, got {given!r}"
            )
        out[str(name)] = get(str(name)).check_options(given)
    return out


def check_config(spec: Mapping[str, Mapping[str, Any]], cfg: Any) -> None:
    """Each resolved analysis of ``spec`` checked against the trial config ``cfg`` (one-line
    :class:`UserError`)."""
    for name, options in spec.items():
        a = get(name)
        if a.check_config is not None:
            a.check_config({k: v for k, v in options.items() if k != STATE}, cfg)


def measures_of(spec: Mapping[str, Any]) -> list[Measure]:
    """The measures recorded by the resolved analyses ``spec``, in order."""
    return [m for name in spec for m in get(name).measures]
