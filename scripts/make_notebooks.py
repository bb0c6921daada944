"""Writes the notebooks of docs/notebooks/ (without outputs) from the cells below.

    python scripts/make_notebooks.py

Edit the cells here, not the .ipynb files: tests/test_notebooks.py executes the written
notebooks (nbclient) on the embedded dataset and checks this script would write them
unchanged.
"""

from __future__ import annotations

import os
import sys

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "docs", "notebooks")

LENET5 = [
    ("markdown", """# LeNet-5 on 5,000 real MNIST digits: train, evaluate, summary, feature maps

The Python API a notebook uses: `cnn_jax.train.fit` on a config, `cnn_jax.train.evaluate`
on the run directory it wrote, the Keras-style model summary, and the feature maps of one
test digit. Runs on a CPU in about a minute (the embedded dataset needs no download)."""),
    ("code", """import tempfile

from cnn_jax import config, data, models, train
from cnn_jax.summary import summarize_model
from cnn_jax.viz import plots

c = config.base_config()
c.model.name, c.model.pool = "lenet5", "max"
c.data.name, c.data.batch_size = "mnist5k", 64
c.train.epochs, c.train.log_every_steps = 1, 20
workdir = tempfile.mkdtemp(prefix="lenet5-")
result = train.fit(c, workdir, progress=False)
print({k: round(v, 4) for k, v in result.summary["test"].items() if isinstance(v, float)})"""),
    ("code", """# the saved run, evaluated again from its checkpoint
metrics = train.evaluate(workdir, "latest", "test")
assert abs(metrics["accuracy"] - result.summary["test"]["accuracy"]) < 1e-6
metrics"""),
    ("code", """summary = summarize_model(result.setup.model, result.setup.input_shape)
print(summary.table())"""),
    ("code", """from cnn_jax.viz.shift import variables_of
import numpy as np

batch = next(data.eval_batches(result.setup.test, 1))
feats = models.features(result.setup.model, variables_of(result.state), batch["image"])
fig = plots.feature_maps(np.asarray(batch["image"][0]), {k: np.asarray(v) for k, v in feats.items()},
                         max_channels=8, title="LeNet-5 feature maps of one test digit")
sorted(feats)"""),
]

ABLATION = [
    ("markdown", """# A pooling ablation written in a notebook, with a pooling kind defined here

`half_max_avg` (the mean of max and average pooling over each window) is registered in this
kernel; the study runs in this process (`workers=0`), so its trials see it. The table and
the plot come from the sweep's own report. About a minute on a CPU."""),
    ("code", """import os
import tempfile

from cnn_jax import pooling, study
from cnn_jax.pooling.windows import window_max, window_mean

if "half_max_avg" not in pooling.POOLS:  # re-running the cell keeps the first registration
    @pooling.register("half_max_avg")
    def half_max_avg(x, window, strides, pads, *, train=False, rng=None):
        \"\"\"The mean of max and average pooling over each window.\"\"\"
        return 0.5 * (window_max(x, window, strides, pads) + window_mean(x, window, strides, pads, False))"""),
    ("code", """# the study: get_config / get_sweep in a small file the planner reads
folder = tempfile.mkdtemp(prefix="ablation-")
experiment = os.path.join(folder, "ablation.py")
with open(experiment, "w") as f:
    f.write('''
from cnn_jax import study
from cnn_jax.config import base_config

def get_config(arg=""):
    c = base_config()
    c.model.name, c.data.name, c.data.batch_size = "lenet5", "mnist5k", 64
    c.train.steps, c.train.log_every_steps = 60, 20
    return c

def get_sweep(arg=""):
    return study.Study(study.grid({"model.pool": ["max", "avg", "half_max_avg"]}), seeds=2,
                       baseline={"model.pool": "max"})
''')
workdir = os.path.join(folder, "runs")
result = study.run(experiment, workdir, workers=0, log=lambda line: None)
print(result["report"]["table"])"""),
    ("code", """frame = study.results(workdir)
means = frame.groupby("model.pool")["test_accuracy"].mean()
assert set(means.index) == {"max", "avg", "half_max_avg"}
ax = means.plot.bar(title="test accuracy per pooling kind (mean over 2 seeds)", ylim=(0, 1))
means"""),
]


def notebook(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "markdown" else
                nbformat.v4.new_code_cell(src) for kind, src in cells]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"  # stable ids: the files do not change from run to run
    return nb


NOTEBOOKS = {"lenet5.ipynb": LENET5, "pooling_ablation.ipynb": ABLATION}


def texts() -> dict[str, str]:
    """``{file name: its text}`` of each notebook."""
    return {name: nbformat.writes(notebook(cells)) + "\n" for name, cells in NOTEBOOKS.items()}


def main() -> int:
    os.makedirs(OUT, exist_ok=True)
    for name, text in texts().items():
        with open(os.path.join(OUT, name), "w") as f:
            f.write(text)
        print(os.path.join("docs", "notebooks", name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
