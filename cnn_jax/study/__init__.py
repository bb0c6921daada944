"""Research studies: sweeps over config keys crossed with seeds, run locally with resume,
summarised with confidence intervals, paired tests and plots.

Define a study in an experiment file (``get_config()`` plus ``get_sweep()``)::

    from cnn_jax import study

    def get_sweep():
        return study.Study(
            study.grid({"model.name": ["lenet5", "simple_cnn"], "model.pool": ["max", "avg"]}),
            seeds=5, baseline={"model.pool": "max"},
            budget_check=study.BudgetCheck(factor=2.0, seeds=2))  # optional: 2x the budget

and run it with ``cnn-jax sweep FILE.py --workdir DIR`` or :func:`run`. Importing this
package is cheap (no JAX); :func:`run`, :func:`report` and :func:`status` load what they need.
"""

from cnn_jax.study.design import BudgetCheck, Study
from cnn_jax.study.sweep import (
    Distribution,
    Sweep,
    chain,
    choice,
    grid,
    int_uniform,
    log_uniform,
    points,
    product,
    random_search,
    uniform,
    zipped,
)


def run(experiment: str, workdir: str, **kwargs):
    """Runs or resumes a study; see :func:`cnn_jax.study.execution.runner.run`."""
    from cnn_jax.study.execution import runner

    return runner.run(experiment, workdir, **kwargs)


def report(workdir: str) -> dict:
    """Writes ``results.csv``, ``report.md``, ``timing.md`` and plots of a sweep directory."""
    from cnn_jax.study.reporting import write as report_lib

    return report_lib.write(workdir)


def results(workdir: str):
    """The ``results.csv`` rows of a sweep directory as a ``pandas.DataFrame``."""
    from cnn_jax.study.reporting import write as report_lib

    return report_lib.collect(workdir)


__all__ = [
    "BudgetCheck",
    "Distribution",
    "Study",
    "Sweep",
    "chain",
    "choice",
    "grid",
    "int_uniform",
    "log_uniform",
    "points",
    "product",
    "random_search",
    "report",
    "results",
    "run",
    "uniform",
    "zipped",
]
