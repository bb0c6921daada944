"""SAME or VALID convolutions, non-overlapping (stride 2) or overlapping (stride 1) pooling?

Question: the seeds' small TensorFlow CNN uses VALID 3x3 convolutions and 2x2 max pooling
with stride 2. What do SAME padding (keeping the borders) and overlapping pooling (stride
1, so feature maps shrink by one pixel per pooling instead of halving) change, at what
cost in parameters (the dense layer sees larger maps) and time? simple_cnn on the 5,000
embedded MNIST digits, 2 paddings x 2 pooling strides x 3 seeds, compared with the seeds'
setting (VALID, stride 2), paired by seed.

Command:
  cnn-jax sweep experiments/padding_stride.py --workdir runs/padding_stride

Cost: 12 trials of 1 epoch at batch 32: 3 min 49 s on 2 CPU cores shared with other jobs
(load average 4-5), one worker; the stride-1 trials take ~10x longer (25-29 s of training
against 2.6-3.2 s).

Result (measured with commit a7fa7cf, before issue 7 changed the initialisation
(rbg) and the batch order: a re-run draws from the same distributions, not these digits;
test accuracy on 1,000 images, mean ± sd over 3 seeds, parameters):
  VALID, stride 2 (the seeds')  92.50 ± 1.30 %     93,322
  VALID, stride 1               94.93 ± 1.70 %  1,694,858   vs seeds' +2.43 pp [-0.29, 5.16]
  SAME,  stride 2               94.37 ± 1.07 %    257,162   vs seeds' +1.87 pp [0.37, 3.36], p 0.033
  SAME,  stride 1               94.30 ± 0.62 %  2,825,354   vs seeds' +1.80 pp [-1.43, 5.03]
Every variant is 1.8-2.4 pp better than the seeds' setting at this short budget, but none
significantly after Holm's correction with 3 seeds (raw p 0.03-0.14); SAME padding gets
most of the gain at 2.7x the parameters, overlapping pooling costs 18-30x the parameters
and ~10x the time for no further gain.
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
