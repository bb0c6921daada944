"""Which pooling works best, and is max pooling really "a lot better" than average pooling?

Question: the seeds claim that "max pooling performs a lot better than average pooling".
This study trains LeNet-5 and the seeds' small TensorFlow CNN with nine pooling kinds at
every pooling site — max, avg, lp (L2), stochastic (Zeiler & Fergus 2013), mixed (Yu et al.
2014), gated (Lee et al. 2016), strided_conv (Springenberg et al. 2014), blur (Zhang 2019)
and softpool (Stergiou et al. 2021) — on the 5,000 embedded real MNIST digits (3,600 train /
400 validation for selection / 1,000 test, read once at the end), five seeds each (90
trials), to their plateau, and compares every kind with max pooling, paired by seed (same
data order and initialisation of the shared layers). Each trial also gets Zhang's shift
consistency (±3 px).

Command (the main job; skips finished trials and resumes interrupted ones when re-run):
  cnn-jax sweep experiments/pooling_study.py --workdir runs/pooling
  cnn-jax status runs/pooling          # while it runs, from another terminal
  cnn-jax report runs/pooling          # rewrite report.md / results.csv / plots

Budget: 8 epochs per trial (448 Adam steps at batch 64, learning rate 2e-3 with a cosine
decay to zero), validation every 2 epochs; every arm plateaued (the mean of its last two
validation evaluations within 0.3 pp of its best). Checkpoints: the best and the final state
at the end of each trial only (`train.checkpoint_evals="end"`). Cost, measured on 2 CPU
cores with the default two workers (one pinned to each core): 4 min 24 s and 4 min 39 s from
an empty workdir with a cold compilation cache (two runs), 20 % of the workers' time (2 x the
wall time) outside the training steps (the 4 min 24 s run: 8 min 48 s of worker time, 7 min
00 s in steps, 63 s in the 18 configurations' first seeds, mostly compiling each
configuration's training, initialisation and evaluation programs on one core, 26 s in the 72
later seeds: evaluation, checkpoints, shift analysis, and 18 s of start-up, report and one
worker finishing after the other); 3 min 38 s with the compilation cache of such a run
(`--cache-dir`), 11 % outside the steps. One worker using both cores (`--workers 1`) took
5 min 30 s right before (18 % outside the steps). Both two-worker runs wrote the same
report.md byte for byte, and so did one-worker runs among themselves; between the two
settings the last digits differ (XLA's reductions with one thread per trial or two), which
moves one verdict across the threshold: blur vs max in LeNet-5, Holm p = 0.040 here, 0.062
with one worker.

Result (test accuracy %, mean ± sd over 5 seeds [95 % CI]; validation accuracy %; shift
consistency %):

  model       pool          validation  test                          shift
  simple_cnn  max           97.90       97.60 ± 0.19 [97.37, 97.83]   56.6
  simple_cnn  stochastic    97.95       97.56 ± 0.11 [97.42, 97.70]   55.4   (chosen by validation)
  simple_cnn  avg           97.40       97.54 ± 0.26 [97.22, 97.86]   52.0
  simple_cnn  strided_conv  97.35       97.34 ± 0.21 [97.08, 97.60]   48.4
  lenet5      max           97.40       97.12 ± 0.28 [96.78, 97.46]   54.2   (chosen by validation)
  lenet5      avg           96.75       96.70 ± 0.36 [96.25, 97.15]   48.7
  lenet5      strided_conv  96.20       96.64 ± 0.42 [96.12, 97.16]   42.3
  lenet5      blur          97.00       96.62 ± 0.19 [96.38, 96.86]   54.2

At convergence the seeds' claim does not hold: avg − max is −0.06 pp [−0.50, 0.38] in the
simple CNN and −0.42 pp [−1.09, 0.25] in LeNet-5 (Holm-adjusted p = 1.00 and 0.68). The
only kind that differs significantly from max after Holm's correction is blur in LeNet-5,
−0.50 pp [−0.75, −0.25] (p = 0.005, Holm 0.040; see above: 0.062 with one worker). Not
significant is not equal: with 5 seeds the minimum detectable differences at 80 % power are
0.30-1.84 pp (avg vs max: 1.06 and 1.61 pp). Max pooling ranks first by validation in
LeNet-5 and second in the simple CNN (97.90 % against stochastic pooling's 97.95 %), and it
keeps predictions more stable under small shifts than average pooling in the simple CNN
(−4.68 pp, Holm p = 0.016) and than a learned strided convolution in both models (−8.20 pp
and −11.98 pp, Holm p = 0.003 and 0.0007); only 42-57 % of predictions survive two random
±3 px shifts, since the models were trained on centred digits without augmentation.
"""

from cnn_jax import study
from cnn_jax.config import base_config

POOLS = ["max", "avg", "lp", "stochastic", "mixed", "gated", "strided_conv", "blur", "softpool"]
EPOCHS = 8


def get_config(arg: str = ""):
    c = base_config()
    c.model.name = "lenet5"
    c.model.pool = "max"
    c.model.activation = "relu"
    c.data.name = "mnist5k"
    c.data.validation = 0.1  # 3,600 train / 400 validation (selection) / 1,000 test (read once)
    # A converged budget: Adam with a cosine decay to zero over EPOCHS epochs at batch 64.
    c.data.batch_size = 64
    # 100 divides both evaluation splits (no padding); on CPU the simple CNN evaluates 29 us
    # an image at batch 128 against 60 us at 500 (LeNet-5: 13 and 10 us)
    c.data.eval_batch_size = 100
    c.optim.name = "adam"
    c.optim.learning_rate = 2e-3
    c.optim.schedule = "cosine"
    c.train.epochs = EPOCHS
    c.train.log_every_steps = 25
    c.train.eval_every_epochs = 2  # validation at epochs 2, 4, 6, 8 (the plateau check reads the last two)
    c.train.checkpoint_evals = "end"  # save the best and the final state at the end only
    if arg == "full":
        c.data.name = "mnist"
        c.data.batch_size = 128
        c.train.epochs = 15
        c.train.log_every_steps = 50
    elif arg:
        raise ValueError(f"unknown variant {arg!r}; use pooling_study.py or pooling_study.py:full")
    return c


def get_sweep(arg: str = ""):
    pools = study.grid({"model.pool": POOLS})
    if arg == "full":
        small = study.grid(
            {
                "data.name": ["mnist", "fashion_mnist"],
                "model.name": ["simple_cnn", "lenet5"],
            }
        )
        cifar = study.product(
            study.zipped(
                {
                    "data.name": ["cifar10"],
                    "data.crop_padding": [4],
                    "data.flip": [True],
                    "train.epochs": [60],
                    "optim.learning_rate": [2e-3],
                }
            ),
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
