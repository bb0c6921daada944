"""Where does max pooling matter? Max or average pooling at each pooling site.

Question: the pooling study compares one kind at every site. Here each of the two pooling
sites of LeNet-5 and of the seeds' small CNN gets max or average pooling on its own —
(max, max), (max, avg), (avg, max), (avg, avg) — with the protocol of the main job
(validation split for selection, test read once, the same converged budget, five seeds),
and every combination is compared with max at both sites, paired by seed. If max pooling
helps, is it in the first layer (small, edge-like features) or the second?

Command:
  cnn-jax sweep experiments/pooling_sites.py --workdir runs/pooling-sites
  cnn-jax summary --model lenet5 --config.model.pool=max,avg    # the per-site layout

Cost and result: see the README's studies section (not yet measured at this commit).
"""

import os

from cnn_jax import study
from cnn_jax.experiment import load_experiment

SITES = [("max", "max"), ("max", "avg"), ("avg", "max"), ("avg", "avg")]


def get_config():
    # The main job's config (data, model defaults, budget): one protocol for both studies.
    return load_experiment(os.path.join(os.path.dirname(__file__), "pooling_study.py"))


def get_sweep():
    return study.Study(
        study.grid({"model.name": ["simple_cnn", "lenet5"], "model.pool": SITES}),
        seeds=5,
        baseline={"model.pool": ("max", "max")},
        title="Pooling per site: max or average at each of the two pooling sites",
        question=(
            "Where does max pooling matter? Each pooling site of LeNet-5 and of the seeds' "
            "small CNN gets max or average pooling on its own; every combination is compared "
            "with max pooling at both sites, paired by seed."
        ),
    )
