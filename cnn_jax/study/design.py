"""A study: a sweep crossed with seeds, the per-trial analyses it runs, what its report
compares, and per-arm tuning (the definition wing, with :mod:`cnn_jax.study.sweep`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from cnn_jax.errors import UserError
from cnn_jax.study.sweep import TUNE_SEED_BASE, Point, Sweep, check_key, check_values, grid


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
            return analyses.resolve(self.analyses)
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
        }


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
