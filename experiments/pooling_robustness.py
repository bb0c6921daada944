"""Which pooling kind degrades least under which corruption?

Question: pooling decides what a network throws away at each downsampling step. Does that
choice change how much accuracy survives common corruptions (noise, blur, affine changes,
overlays), corruption by corruption, and is the anti-aliased kind (max_blur, Zhang 2019),
which keeps more predictions under small shifts, also more robust to the rest?

Design: LeNet-5 with seven pooling kinds at both pooling sites (max, avg, lp, strided_conv,
blur, max_blur, softpool), five seeds each, trained on the 3,600 embedded MNIST training
digits (400 for validation, selection only) and measured on all 1,000 test digits clean and
under the 15 MNIST-C style corruptions (Mu & Gilmer 2019, regenerated: not the published
fixed set) at severities 1-5, on the checkpoint selected by validation accuracy. mCE and
relative mCE are against max pooling, per seed (Hendrycks & Dietterich 2019's definitions,
max pooling in AlexNet's place). The variant `pooling_robustness.py:cifar10` asks the same
of colour images: the seeds' CIFAR network on CIFAR-10 (prepared with `cnn-jax prepare
cifar10`) and the 18 CIFAR-10-C style corruptions (frost omitted).

Command:
  cnn-jax sweep experiments/pooling_robustness.py --workdir runs/robustness
  cnn-jax sweep experiments/pooling_robustness.py:cifar10 --workdir runs/robustness-cifar

Budget: as the main pooling study (8 epochs, Adam 2e-3 with a cosine decay, batch 64).
The CIFAR-10 variant has not been run here (no CIFAR-10 on this machine).

Cost and answer: see the README's "Robustness to corruptions" for the figures measured on
this machine; the report states them per corruption (`report.md`, "Accuracy per
corruption") with paired comparisons of the mean corruption accuracy against max pooling.
"""

from cnn_jax import study
from cnn_jax.config import base_config

POOLS = ["max", "avg", "lp", "strided_conv", "blur", "max_blur", "softpool"]
SEEDS = 5
ANALYSES = {
    "corruptions": {"images": 0},  # every test image, every corruption and severity
    "shift_consistency": {"max_shift": 3},
    "cost": {},
}


def get_config(arg: str = ""):
    c = base_config()
    c.model.name = "lenet5"
    c.model.pool = "max"
    c.data.name = "mnist5k"
    c.data.validation = 0.1
    c.data.batch_size = 64
    c.data.eval_batch_size = 100
    c.optim.name = "adam"
    c.optim.learning_rate = 2e-3
    c.optim.schedule = "cosine"
    c.train.epochs = 8
    c.train.log_every_steps = 25
    c.train.eval_every_epochs = 2
    c.train.checkpoint_evals = "end"
    if arg == "cifar10":
        c.data.name = "cifar10"
        c.model.name = "simple_cnn"
        c.data.crop_padding = 4
        c.data.flip = True
        c.data.eval_batch_size = 500
        c.train.epochs = 30
    elif arg:
        raise ValueError(f"unknown variant {arg!r}; use pooling_robustness.py or "
                         "pooling_robustness.py:cifar10")
    return c


def get_sweep(arg: str = ""):
    return study.Study(
        study.grid({"model.pool": POOLS}),
        seeds=SEEDS,
        baseline={"model.pool": "max"},
        analyses=ANALYSES,
        title="Pooling and corruption robustness" + (": CIFAR-10" if arg == "cifar10" else ""),
        question=(
            "Which pooling kind degrades least under which corruption, and is the "
            "anti-aliased kind that keeps more predictions under shifts also more robust "
            "to the rest? Every kind is compared with max pooling, paired by seed."
        ),
    )
