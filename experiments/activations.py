"""ReLU, tanh or sigmoid in LeNet-5, with max and with average pooling?

Question: the seeds' LeNet-5 used ReLU; the original (and the seeds' Keras variant) used
tanh/sigmoid with average pooling. How much does the activation matter, and does the answer
depend on the pooling? LeNet-5 on the 5,000 embedded MNIST digits, 3 activations x 2 pooling
kinds x 5 seeds, compared with ReLU at the same pooling, paired by seed.

Command:
  cnn-jax sweep experiments/activations.py --workdir runs/activations

Cost: 30 trials of 2 epochs at batch 64: 1 min 52 s on 2 CPU cores shared with other jobs
(load average 4-5), one worker.

Result (measured with commit a7fa7cf, before issue 7 changed the initialisation
(rbg) and the batch order: a re-run draws from the same distributions, not these digits;
test accuracy on 1,000 images, mean ± sd over 5 seeds):
  max + relu  93.98 ± 0.83 %    avg + relu  91.66 ± 1.56 %
  max + tanh  92.70 ± 1.08 %    avg + tanh  91.80 ± 0.53 %
  max + sig.  46.30 ± 6.31 %    avg + sig.  48.28 ± 7.18 %
With max pooling ReLU beats tanh (-1.28 pp [-1.79, -0.77], Holm p = 0.002); with average
pooling they tie (+0.14 pp, p = 0.80). Sigmoid has not learned in 2 epochs at Adam 1e-3
(about 47 %): the activation matters far more than the pooling here.
"""

from cnn_jax import study
from cnn_jax.config import base_config


def get_config():
    c = base_config()
    c.model.name = "lenet5"
    c.data.name = "mnist5k"
    c.data.batch_size = 64
    c.optim.name = "adam"
    c.optim.learning_rate = 1e-3
    c.train.epochs = 2
    c.train.log_every_steps = 10
    return c


def get_sweep():
    return study.Study(
        study.grid({"model.pool": ["max", "avg"], "model.activation": ["relu", "tanh", "sigmoid"]}),
        seeds=5,
        baseline={"model.activation": "relu"},
        title="Activations in LeNet-5: ReLU vs tanh vs sigmoid, with max and average pooling",
        question="Does the activation matter, and does the answer depend on the pooling kind?",
    )
