"""LeNet-5 on the embedded MNIST digits (the seeds' first network).

Question: how well does the seeds' LeNet-5 (ReLU, max pooling, Adam) do on real MNIST
digits, and what changes with tanh/average pooling as in the seed's Keras code?

Command:
  cnn-jax train --config experiments/lenet5_mnist.py --workdir runs/lenet5
  cnn-jax train --config experiments/lenet5_mnist.py --config.model.pool=avg \
      --config.model.activation=tanh --workdir runs/lenet5-tanh-avg

Cost and result (measured on 2 CPU cores, compilation cache warm): 5.5 s from the command
to its last line, 3.8 s of it training (10 epochs of the 3,600 training digits; 400 are held
out for validation); test accuracy 96.9 % on the 1,000 test digits after 560 steps (the
checkpoint chosen by validation, step 224, has 95.5 %).
"""

from cnn_jax.config import base_config


def get_config():
    c = base_config()
    c.model.name = "lenet5"
    c.model.pool = "max"
    c.model.activation = "relu"
    c.data.name = "mnist5k"
    c.data.batch_size = 64
    c.optim.name = "adam"
    c.optim.learning_rate = 1e-3
    c.train.epochs = 10
    return c
