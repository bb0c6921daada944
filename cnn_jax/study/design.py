"""A study: a sweep crossed with seeds, the per-trial analyses it runs, what its report
compares, per-arm tuning and the budget check (the definition wing, with
:mod:`cnn_jax.study.sweep`)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from cnn_jax.errors import UserError
from cnn_jax.study.sweep import TUNE_SEED_BASE, Point, Sweep, check_key, check_values, grid

BUDGET_PHASE = "budget"  # the phase of the budget check's trials (store.Trial.phase)
BUDGET_KEYS = ("train.epochs", "train.steps")  # what a budget check multiplies


def _same(v: Any) -> str:
    """A swept value as JSON holds it (tuples as lists): how values are told apart."""
    return json.dumps(v, sort_keys=True, default=repr)


def _sweep_values(study: Study, key: str) -> dict[str, Any]:
    """The values of ``key`` in ``study``'s sweep, in sweep order, by :func:`_same`."""
    return {_same(p[key]): p[key] for p in study.sweep.points() if key in p}


@dataclasses.dataclass(frozen=True)
class BudgetCheck:
    """Re-runs some arms at a multiple of the budget, to show that the budget suffices.

    A plateau check (the last validation evaluations near the best) cannot show that a
    budget suffices when the learning rate decays to zero: every run flattens at its end,
    whatever its length. The budget check re-trains the trials whose baseline-key value is in
    ``values`` with ``factor`` times the budget (``train.epochs`` x ``factor``, or
    ``train.steps`` x ``factor`` where ``train.steps`` is set; a schedule defined over the
    total steps keeps its shape) on the study's first ``seeds`` seeds, each paired by seed
    with its study trial. These trials (phase ``"budget"``) come after the study trials and
    never enter its tables, comparisons, tuning or rankings; the report's section "Budget
    check" gives, per model, the change of each mean test accuracy with its 95 % t-interval,
    whether the ranking by validation changes, and whether a verdict against the baseline
    changes (the mean difference at ``factor`` x the budget outside the study's unadjusted
    95 % CI of that difference, or of the opposite sign of a significant one).

    Attributes:
      factor: the budget's multiple, above 1; the multiplied budget must be whole.
      seeds: how many of the study's seeds (its first ones) re-run: at least 2.
      values: the baseline key's values to re-run (default: all of them); the baseline
        value must be among them.
    """

    factor: float = 2.0
    seeds: int = 2
    values: Sequence[Any] | None = None

    def __post_init__(self):
        f = self.factor
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f <= 1:
            raise UserError(
                f"BudgetCheck.factor must be a number above 1 (the budget is multiplied by it, "
                f"e.g. 2.0), got {f!r}"
            )
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 2:
            raise UserError(
                f"BudgetCheck.seeds must be at least 2: a change needs an interval over seeds; "
                f"got {self.seeds!r}"
            )
        if self.values is not None and (
            isinstance(self.values, (str, bytes)) or not isinstance(self.values, Sequence)
        ):
            raise UserError(f"BudgetCheck.values must be a list of values, got {self.values!r}")

    def check(self, study: Study) -> None:
        """Raises a one-line :class:`UserError` where this check does not fit ``study``."""
        if not study.baseline:
            raise UserError(
                "Study.budget_check needs a baseline (e.g. baseline={'model.pool': 'max'}): it "
                f"re-runs values of the baseline key; swept keys: {', '.join(study.sweep.keys())}"
            )
        if len(study.baseline) != 1:
            raise UserError(
                f"Study.budget_check needs a baseline of one key, got {dict(study.baseline)}"
            )
        n = len(study.seed_list())
        if self.seeds > n:
            raise UserError(
                f"BudgetCheck.seeds = {self.seeds} is more than the study's {n} seeds "
                f"{study.seed_list()}; choose 2 to {n}"
            )
        swept = study.sweep.keys()  # a Sweep method, not a dict
        fixed = [k for k in BUDGET_KEYS if k in swept or k in (study.tune or {})]
        if fixed:
            raise UserError(
                f"Study.budget_check multiplies {fixed[0]!r}, which the study sweeps or tunes; "
                f"drop the budget check or sweep another key"
            )
        key, base = next(iter(study.baseline.items()))
        known = _sweep_values(study, key)
        valid = list(known.values())
        bad = [v for v in self.values or () if _same(v) not in known]
        if bad:
            raise UserError(
                f"BudgetCheck.values {bad} are not values of {key!r} in the sweep; choose "
                f"among {valid}"
            )
        if self.values is not None and _same(base) not in {_same(v) for v in self.values}:
            raise UserError(
                f"BudgetCheck.values {list(self.values)} must include the baseline "
                f"{key}={base!r}; choose among {valid}"
            )

    def values_of(self, study: Study) -> list:
        """The baseline key's values re-run, in sweep order."""
        known = _sweep_values(study, next(iter(study.baseline)))
        if self.values is None:
            return list(known.values())
        chosen = {_same(v) for v in self.values}
        return [v for k, v in known.items() if k in chosen]


def _check_conv(mode) -> None:
    """``Study.conv``: ``None`` or a convolution mode, else a one-line :class:`UserError`."""
    from cnn_jax import conv_tuning

    if mode is not None and mode not in conv_tuning.MODES:
        raise UserError(f"Study.conv={mode!r} is not a convolution mode; choose one of: "
                        f"{', '.join(conv_tuning.MODES)} (or None: CNN_JAX_CONV's)")


@dataclasses.dataclass(frozen=True)
class Study:
    """A sweep crossed with seeds, plus what its report compares.

    Attributes:
      sweep: the configurations (points).
      seeds: number of seeds (``0..n-1``) or an explicit list; every point runs once per seed.
      baseline: ``{key: value}`` naming the reference configuration of each comparison, e.g.
        ``{"model.pool": "max"}``: every other value of that key is compared with it, paired
        by seed, at equal values of the other swept keys.
      metric: the column of ``results.csv`` that tables and tests are about.
      shift_consistency: maximum shift in pixels for the shift-consistency measure of each
        trial (Zhang 2019); ``0`` turns it off. Shorthand for ``analyses={"shift_consistency":
        {"max_shift": N}}``, used when ``analyses`` is not given.
      analyses: the per-trial analyses (:mod:`cnn_jax.analyses`) run after each trial
        trains: names, or ``{name: {option: value}}``, in the order the report shows them.
      title: the report's title.
      question: one paragraph at the top of the report.
      tune: ``{key: [values]}`` tuned separately for every arm (each combination of the
        swept keys), e.g. ``{"optim.learning_rate": [1e-3, 3e-3]}``: every arm first trains
        each value (the grid of several keys) with the ``tune_seeds``, and the value with the
        best mean validation accuracy is the one its study seeds then run with — a fair
        comparison where one setting would favour some arms.
      tune_seeds: number of tuning seeds (``1000, 1001, ...``) or an explicit list; never
        one of the study's seeds.
      budget_check: a :class:`BudgetCheck` (``None``: none), e.g. ``BudgetCheck(factor=2.0,
        seeds=2)``: after the study trials, the arms of the baseline key's ``values`` re-run
        at ``factor`` times the budget on the first ``seeds`` study seeds, and the report
        says whether that changes a verdict, the ranking by validation or a mean test
        accuracy beyond seed noise (needs a baseline of one key). With a learning rate that
        decays to zero the plateau check passes at any budget; this check shows whether the
        budget suffices. Its trials are ordinary trials of the sweep directory (phase
        ``"budget"``), resumed and skipped like the others, never part of the study's
        tables.
      conv: the convolution mode every trial runs in, one of ``CNN_JAX_CONV``'s
        (:mod:`cnn_jax.conv_tuning`), e.g. ``"auto"`` to keep the rules a study's published
        numbers were computed with when the default's rules change; ``None``: the sweeping
        process's ``CNN_JAX_CONV`` (default ``rows``). A pin takes precedence over the
        variable.
    """

    sweep: Sweep
    seeds: int | Sequence[int] = 3
    baseline: Mapping[str, Any] | None = None
    metric: str = "test_accuracy"
    shift_consistency: int = 3
    analyses: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None
    title: str = ""
    question: str = ""
    tune: Mapping[str, Sequence[Any]] | None = None
    tune_seeds: int | Sequence[int] = 2
    budget_check: BudgetCheck | None = None
    conv: str | None = None

    def __post_init__(self):
        if not isinstance(self.sweep, Sweep):
            raise UserError(f"Study.sweep must be a sweep (grid, zipped, ...), got {self.sweep!r}")
        seeds = self.seed_list()
        if not seeds or len(set(seeds)) != len(seeds):
            raise UserError(
                f"Study.seeds must be a positive count or distinct ints, got {self.seeds!r}"
            )
        swept = self.sweep.keys()  # a Sweep method, not a dict
        if "seed" in swept:
            raise UserError(
                "the sweep sets 'seed' itself; give seeds through Study(seeds=...) instead"
            )
        for k in self.baseline or {}:
            if k not in swept:
                raise UserError(
                    f"baseline key {k!r} is not swept; swept keys: {', '.join(self.sweep.keys())}"
                )
        self.analysis_spec()  # unknown analyses and options fail here, before anything runs
        _check_conv(self.conv)
        if self.budget_check is not None:
            if not isinstance(self.budget_check, BudgetCheck):
                raise UserError(
                    f"Study.budget_check must be a study.BudgetCheck(...) or None, got "
                    f"{self.budget_check!r}"
                )
            self.budget_check.check(self)
        if self.tune is not None:
            if not isinstance(self.tune, Mapping) or not self.tune:
                raise UserError(
                    f"Study.tune must map config keys to lists of values, e.g. "
                    f"{{'optim.learning_rate': [1e-3, 3e-3]}}; got {self.tune!r}"
                )
            for k, values in self.tune.items():
                check_key(k)
                if k in swept or k == "seed":
                    raise UserError(
                        f"Study.tune key {k!r} is also swept; a key is either swept (compared) "
                        f"or tuned per arm (chosen on validation), not both; swept keys: "
                        f"{', '.join(swept)}"
                    )
                check_values(k, values)
            tune_seeds = self.tune_seed_list()
            if not tune_seeds or len(set(tune_seeds)) != len(tune_seeds):
                raise UserError(
                    f"Study.tune_seeds must be a positive count or distinct ints, got "
                    f"{self.tune_seeds!r}"
                )
            overlap = sorted(set(tune_seeds) & set(seeds))
            if overlap:
                raise UserError(
                    f"Study.tune_seeds {tune_seeds} overlap the study seeds {seeds} at "
                    f"{overlap}; tuning must not see the seeds it is evaluated on (use seeds "
                    f"outside {seeds}, e.g. a count: they are {TUNE_SEED_BASE}, "
                    f"{TUNE_SEED_BASE + 1}, ...)"
                )

    def analysis_spec(self) -> dict[str, dict[str, Any]]:
        """The analyses each trial runs, resolved: ``{name: every option with its value}``."""
        from cnn_jax import analyses

        if self.analyses is not None:
            spec = analyses.resolve(self.analyses)
            for options in spec.values():  # an option ``baseline`` left None: the study's
                if "baseline" in options and options["baseline"] is None and self.baseline:
                    options["baseline"] = dict(self.baseline)
            return spec
        if self.shift_consistency:
            return analyses.resolve({"shift_consistency": {"max_shift": int(self.shift_consistency)}})
        return {}

    def seed_list(self) -> list[int]:
        if isinstance(self.seeds, int):
            return list(range(self.seeds)) if self.seeds >= 1 else []
        return [int(s) for s in self.seeds]

    def tune_seed_list(self) -> list[int]:
        if isinstance(self.tune_seeds, int):
            n = self.tune_seeds
            return list(range(TUNE_SEED_BASE, TUNE_SEED_BASE + n)) if n >= 1 else []
        return [int(s) for s in self.tune_seeds]

    def tune_points(self) -> list[Point]:
        """The tuned values every arm tries (a grid over the ``tune`` keys)."""
        return grid(dict(self.tune)).points() if self.tune else [{}]

    def tuning_trials(self) -> list[tuple[Point, int]]:
        """``(arm + tuned values, tuning seed)`` for every tuning trial, arm-major."""
        return [
            ({**arm, **t}, s)
            for arm in self.sweep.points() for t in self.tune_points() for s in self.tune_seed_list()
        ]

    def trials(self, chosen: Sequence[Point] | None = None) -> list[tuple[Point, int]]:
        """``(point, seed)`` for every study trial, point-major; with tuning, each arm's
        ``chosen`` tuned values (one dict per arm, in sweep order) join its point."""
        arms = self.sweep.points()
        if chosen is not None:
            arms = [{**arm, **c} for arm, c in zip(arms, chosen, strict=True)]
        return [(p, s) for p in arms for s in self.seed_list()]

    def budget_arms(self, chosen: Sequence[Point] | None = None) -> list[tuple[Point, int]]:
        """``(point, seed)`` of every study trial the budget check re-runs (at the study's
        budget: :func:`cnn_jax.study.planning.plan` multiplies it), point-major."""
        if self.budget_check is None:
            return []
        key = next(iter(self.baseline))
        values = {_same(v) for v in self.budget_check.values_of(self)}
        seeds = self.seed_list()[: self.budget_check.seeds]
        return [(p, s) for p, s in self.trials(chosen) if _same(p.get(key)) in values and s in seeds]

    def options(self) -> dict:
        """The report settings, as stored in ``sweep.json``."""
        return {
            "seeds": self.seed_list(),
            "baseline": dict(self.baseline or {}),
            "metric": self.metric,
            "shift_consistency": int(self.shift_consistency),
            # a list: sweep.json's keys are sorted, and the order is the report's
            "analyses": [{"name": n, "options": o} for n, o in self.analysis_spec().items()],
            "title": self.title,
            "question": self.question,
            "keys": self.sweep.keys(),
            "tune": {k: list(v) for k, v in (self.tune or {}).items()},
            "tune_seeds": self.tune_seed_list() if self.tune else [],
            **({"budget_check": self._budget_options()} if self.budget_check else {}),
        }

    def _budget_options(self) -> dict:
        bc = self.budget_check
        return {"factor": float(bc.factor), "seeds": self.seed_list()[: bc.seeds],
                "values": json.loads(json.dumps(bc.values_of(self), default=repr))}


def as_study(obj: Any) -> Study:
    """A :class:`Study` from what an experiment's ``get_sweep()`` returned."""
    if isinstance(obj, Study):
        return obj
    if isinstance(obj, Sweep):
        return Study(obj)
    raise UserError(
        f"get_sweep() must return a cnn_jax.study.Study or a sweep (grid, zipped, ...), got "
        f"{type(obj).__name__}"
    )
