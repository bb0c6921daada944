"""SAME or VALID convolutions, non-overlapping (stride 2) or overlapping (stride 1) pooling?

Question: the seeds' small TensorFlow CNN uses VALID 3x3 convolutions and 2x2 max pooling
with stride 2. What do SAME padding (keeping the borders) and overlapping pooling (stride
1, so feature maps shrink by one pixel per pooling instead of halving) change, at what
cost in parameters (the dense layer sees larger maps) and time? simple_cnn on the 5,000
embedded MNIST digits, 2 paddings x 2 pooling strides x 3 seeds, compared with the seeds'
setting (VALID, stride 2), paired by seed.

Command:
  cnn-jax sweep experiments/padding_stride.py --workdir runs/padding_stride

Cost: 12 trials of 1 epoch at batch 32; the stride-1 variants are the expensive ones
(the dense layer sees much larger maps).
"""

from cnn_jax import study
from cnn_jax.config import base_config


def get_config():
    c = base_config()
    c.model.name = "simple_cnn"
    c.data.name = "mnist5k"
    c.data.batch_size = 32
    c.optim.name = "adam"
    c.optim.learning_rate = 1e-3
    c.train.epochs = 1
    c.train.log_every_steps = 5
    return c


def get_sweep():
    return study.Study(
        study.grid({"model.padding": ["VALID", "SAME"], "model.pool_strides": [2, 1]}),
        seeds=3,
        baseline={"model.padding": "VALID", "model.pool_strides": 2},
        title="Padding and pooling stride in the small CNN",
        question="SAME vs VALID convolutions, pooling stride 2 vs 1: accuracy, parameters, time.",
    )
