"""SAME or VALID convolutions, non-overlapping (stride 2) or overlapping (stride 1) pooling?

Question: the seeds' small TensorFlow CNN uses VALID 3x3 convolutions and 2x2 max pooling
with stride 2. What do SAME padding (keeping the borders) and overlapping pooling (stride
1, so feature maps shrink by one pixel per pooling instead of halving) change, at what
cost in parameters (the dense layer sees larger maps) and time? simple_cnn on the 5,000
embedded MNIST digits, 2 paddings x 2 pooling strides x 3 seeds, compared with the seeds'
setting (VALID, stride 2), paired by seed.

Command:
  cnn-jax sweep experiments/padding_stride.py --workdir runs/padding_stride

Cost (measured under the validation protocol at commit 2afccc8, 2 CPU cores, one worker,
empty workdir, cold compilation cache): 12 trials of 1 epoch at batch 32: 1 min 15 s, 47 s of
it in training steps; the stride-1 trials train 6-8x longer (6.7-9.2 s against 0.8-1.1 s).

Result (test accuracy on 1,000 images, mean ± sd over 3 seeds; validation; parameters):
  VALID, stride 2 (the seeds')  92.07 ± 0.70 %  val 92.17     93,322
  VALID, stride 1               93.77 ± 1.88 %  val 94.08  1,694,858   vs seeds' +1.70 pp [-1.72, 5.12]
  SAME,  stride 2               93.40 ± 1.05 %  val 93.25    257,162   vs seeds' +1.33 pp [-1.25, 3.92]
  SAME,  stride 1               93.43 ± 1.47 %  val 93.67  2,825,354   vs seeds' +1.37 pp [-3.11, 5.85]
Every variant is 1.3-1.7 pp better than the seeds' setting at this one-epoch budget, none
significantly with 3 seeds (Holm p = 0.47); at n = 3 only differences of 5.9-10.2 pp were
detectable with 80 % power, so the study cannot tell. One epoch is one validation
evaluation: the plateau cannot be judged at this budget.
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
