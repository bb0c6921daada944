"""A researcher's own study, outside the package: a new pooling kind, a new model and a new
per-trial analysis, registered here and swept against max pooling.

    cnn-jax sweep tests/extension/my_study.py --workdir runs/mine

Every process of the sweep (local workers, SLURM and Ray jobs) imports this file before it
trains, and ``cnn-jax report`` imports it before it reports, so the three registrations
exist wherever they are needed. Used by tests/test_extensions.py and tests/cluster/.
"""

import os

import flax.linen as nn
import jax

from cnn_jax import analyses, models, pooling, study
from cnn_jax.config import base_config
from cnn_jax.models.common import Classifier, Layers
from cnn_jax.pooling.windows import window_max, window_mean


@pooling.register("half_max_avg")
def half_max_avg(x: jax.Array, window, strides, pads, *, train=False, rng=None) -> jax.Array:
    """The mean of max and average pooling over each window (a made-up kind)."""
    return 0.5 * (window_max(x, window, strides, pads) + window_mean(x, window, strides, pads, False))


@models.register("tiny_pool_net", inputs="mnist")
class TinyPoolNet(Classifier, Layers):
    """conv 4@3x3 -> pool 2 -> logits: the smallest network with one pooling site."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.prepare(x)
        x = self.conv_norm_act(x, 4, 3, padding="SAME", name="conv1", norm_name="bn1",
                               bias=True, train=train)
        x = self.pool_layer(x, 2, None, "VALID", name="pool1", train=train)
        return self.logits(x.reshape((x.shape[0], -1)))


@analyses.register(
    "mean_confidence",
    measures=[analyses.Measure("mean_confidence", "mean top-1 agreement", short="agreement",
                               higher_is_better=True, fraction=True)],
    options={"images": 64},
    describe=lambda o: (
        f"Mean top-1 agreement: fraction of the first {o['images']} test images whose "
        "prediction equals their label, through the analysis context (an example analysis)."
    ),
)
def mean_confidence(ctx, images):
    import numpy as np

    split = ctx.setup.test
    n = min(images, len(split), ctx.batch_size)
    batch = np.zeros((ctx.batch_size, *split.images.shape[1:]), np.float32)
    from cnn_jax.data import eval_batches

    first = next(iter(eval_batches(split, ctx.batch_size)))
    batch[:] = first["image"]
    pred = np.asarray(ctx.predict(batch))[:n]
    return {"mean_confidence": float(np.mean(pred == first["label"][:n]))}


def get_config():
    c = base_config()
    c.model.name = "tiny_pool_net"
    c.model.pool = "max"
    c.data.name = "digits"
    if os.environ.get("CNN_JAX_TEST_DATA_DIR"):
        c.data.data_dir = os.environ["CNN_JAX_TEST_DATA_DIR"]
    c.data.batch_size = 32
    c.train.steps = 12
    c.train.log_every_steps = 6
    c.train.eval_every_epochs = 1
    return c


def get_sweep():
    return study.Study(
        study.grid({"model.pool": ["max", "half_max_avg"]}),
        seeds=2,
        baseline={"model.pool": "max"},
        analyses={"shift_consistency": {"max_shift": 1}, "mean_confidence": {"images": 32}},
        title="A new pooling kind against max",
    )
