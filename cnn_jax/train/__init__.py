"""Training: state, pure steps, checkpoints and the ``fit``/``evaluate`` loop."""

from cnn_jax.train.loop import build, evaluate, fit
from cnn_jax.train.state import TrainState
from cnn_jax.train.state import create as create_train_state
from cnn_jax.train.step import eval_step, summarize, train_step

__all__ = [
    "TrainState",
    "build",
    "create_train_state",
    "eval_step",
    "evaluate",
    "fit",
    "summarize",
    "train_step",
]
