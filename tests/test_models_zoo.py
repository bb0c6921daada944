"""The model zoo: pinned parameter counts, shapes, every pooling site and head, options,
input-size limits, one training step per model, and short fit runs on mock CIFAR-10.

Large networks are only traced (``jax.eval_shape``): no test allocates their weights.
Numerical training steps run for one representative per family (all models with
``-m slow``).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax import losses, models, pooling, train
from cnn_jax.errors import ShapeError, UserError
from cnn_jax.layers import NORMS, AdaptiveAvgPool
from cnn_jax.models.common import ceil_mode_pads
from cnn_jax.train.state import TrainState

RNGS = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1), "pool": jax.random.PRNGKey(2)}

ZOO = [
    "alexnet", "alexnet_tv", "zfnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn",
    "vgg16_bn", "vgg19_bn", "googlenet", "resnet18", "resnet34", "resnet50", "resnet101",
    "resnet152", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "nin", "allcnn_c",
]

# Smallest input side each model takes (hand-derived, see the docstrings), and the layer
# that reports one pixel less. ResNets are padded everywhere and take a 1×1 input.
MIN_SIDE = {
    "alexnet": (67, "pool3"),  # 11×11/4 VALID, then three 3×3/2 VALID poolings
    "alexnet_tv": (63, "pool3"),
    "zfnet": (53, "pool3"),  # 7×7/2 pad 1, pool pad 1, 5×5/2 VALID, pool pad 1, pool VALID
    "googlenet": (15, "maxpool3"),  # ceil-mode poolings
    "nin": (4, "pool2"),
    "allcnn_c": (9, "conv7"),  # two halvings, then a VALID 3×3 convolution
    "lenet5": (12, "pool2"),
    "simple_cnn": (18, "conv3"),
    **{f"vgg{d}{bn}": (32, "pool5") for d in (11, 13, 16, 19) for bn in ("", "_bn")},
}
CIFAR = {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}
IMAGENET_RESNETS = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
# Deeper members of a family: the same code as its first member with more blocks. Their
# numerical and traced training steps run with -m slow.
DEEP = {"resnet34", "resnet101", "resnet152", "resnet32", "resnet44", "resnet56", "resnet110",
        "vgg13", "vgg16", "vgg19", "vgg13_bn", "vgg16_bn", "vgg19_bn"}
FIT = ["resnet20", "allcnn_c", "nin"]  # trained by test_fit_on_mock_cifar10
# A numerical step by default for the seed's AlexNet (BatchNorm after the activation, dropout,
# flattening classifier); resnet20, nin and allcnn_c train in test_fit_on_mock_cifar10, lenet5
# and mlp in test_train.py, the others' steps are traced below; every model with -m slow.
FAST_STEP = ["alexnet"]



def small_shape(name: str) -> tuple[int, int, int]:
    """A cheap input the architecture takes: its smallest, or 16×16 for the ResNets."""
    if name == "mlp":
        return (28, 28, 1)
    side = MIN_SIDE.get(name, (16,))[0]
    return (side, side, 1 if name == "lenet5" else 3)


def tiny(name: str, num_classes: int = 10, **opts) -> nn.Module:
    """A narrow variant of a registered model (``width`` where it has the option)."""
    if "width" in models.options(name) and "width" not in opts:
        opts["width"] = 0.0625 if name in IMAGENET_RESNETS else 0.125
    return models.create(name, num_classes, **opts)


@functools.cache
def traced_create(name, num_classes, shape, opts=()):
    """``(logits, variables)`` of ``models.create(name, num_classes, **dict(opts))`` on a
    zero batch of one, traced only and cached (tests share their 224×224 traces)."""
    model = models.create(name, num_classes, **dict(opts))
    return jax.eval_shape(lambda: model.init_with_output(
        RNGS, jnp.zeros((1, *shape)), train=False, mutable=True))


def init_shapes(model, shape, batch=1):
    return jax.eval_shape(lambda: model.init(RNGS, jnp.zeros((batch, *shape)), train=False))


def feats(state) -> dict:
    """The recorded features in a ``mutable=["intermediates"]`` state (cf. models.features)."""
    return state["intermediates"]["features"]


def n_params(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def traced_init(model, shape, batch=2, train_mode=False):
    """``(logits, variables, pool kinds)`` of ``model.init_with_output`` on zeros, traced
    only; the pool kinds are those of every :class:`cnn_jax.pooling.Pool` called, in order.
    ``variables`` hold the ``intermediates`` recorded on the way."""
    kinds = []

    def spy(next_fun, args, kwargs, context):
        if type(context.module) is pooling.Pool and context.method_name == "__call__":
            kinds.append(context.module.kind)
        return next_fun(*args, **kwargs)

    def run():
        with nn.intercept_methods(spy):
            return model.init_with_output(
                RNGS, jnp.zeros((batch, *shape)), train=train_mode, mutable=True
            )

    logits, variables = jax.eval_shape(run)
    return logits, variables, kinds


# --- registry and parameter counts ---------------------------------------------------------

def test_registry_holds_the_zoo():
    assert set(ZOO) | {"mlp", "lenet5", "simple_cnn"} <= set(models.names())


@pytest.mark.parametrize(
    "name,num_classes,shape,opts,expected",
    [
        ("vgg11", 1000, (224, 224, 3), {}, 132_863_336),
        ("vgg13", 1000, (224, 224, 3), {}, 133_047_848),
        ("vgg16", 1000, (224, 224, 3), {}, 138_357_544),
        ("vgg19", 1000, (224, 224, 3), {}, 143_667_240),
        # + scale and bias of every BatchNorm: 2 × (2·64 + 2·128 + 3·256 + 6·512) = 8,448
        ("vgg16_bn", 1000, (224, 224, 3), {}, 138_365_992),
        ("alexnet_tv", 1000, (224, 224, 3), {}, 61_100_840),
        # adaptive pooling: the same count at any input size
        ("alexnet_tv", 1000, (100, 100, 3), {}, 61_100_840),
        ("resnet18", 1000, (224, 224, 3), {}, 11_689_512),
        ("resnet34", 1000, (224, 224, 3), {}, 21_797_672),
        ("resnet50", 1000, (224, 224, 3), {}, 25_557_032),
        ("resnet101", 1000, (224, 224, 3), {}, 44_549_160),
        pytest.param("resnet152", 1000, (224, 224, 3), {}, 60_192_808, marks=pytest.mark.slow),
        ("googlenet", 1000, (224, 224, 3), {}, 6_624_904),
        # torchvision's googlenet(aux_logits=True): + 3,188,968 + 3,191,016
        ("googlenet", 1000, (224, 224, 3), {"aux_logits": True}, 13_004_888),
        ("resnet20", 10, (32, 32, 3), {}, 269_722),
        ("resnet32", 10, (32, 32, 3), {}, 464_154),
        ("resnet44", 10, (32, 32, 3), {}, 658_586),
        ("resnet56", 10, (32, 32, 3), {}, 853_018),
        ("resnet110", 10, (32, 32, 3), {}, 1_727_962),
        # downsampling by pooling moves no parameter
        ("resnet20", 10, (32, 32, 3), {"downsample": "pool", "pool": "avg"}, 269_722),
        ("resnet18", 1000, (224, 224, 3), {"downsample": "pool"}, 11_689_512),
        # the seed's Keras AlexNet, 10 classes: conv 3,747,200 + dense 54,575,114 + BatchNorm
        # scale/bias 2 × 1,376 (Keras shows 58,325,066 trainable + 2,752 non-trainable)
        ("alexnet", 10, (227, 227, 3), {}, 58_325_066),
        # Zeiler & Fergus: convs 3,726,464 + fc6 37,752,832 + fc7 16,781,312 + fc8 4,097,000
        ("zfnet", 1000, (224, 224, 3), {}, 62_357_608),
        # NIN (Caffe CIFAR-10 model): about 0.97M; All-CNN-C: about 1.4M (paper, Table 2)
        ("nin", 10, (32, 32, 3), {}, 966_986),
        ("allcnn_c", 10, (32, 32, 3), {}, 1_369_738),
        ("lenet5", 10, (28, 28, 1), {}, 61_706),
        ("simple_cnn", 10, (32, 32, 3), {}, 122_570),
    ],
)
def test_pinned_parameter_counts(name, num_classes, shape, opts, expected):
    _, v = traced_create(name, num_classes, shape, tuple(sorted(opts.items())))
    assert n_params(v["params"]) == expected


def test_batchnorm_statistics_are_kept_apart():
    v = init_shapes(models.create("resnet18", 1000), (64, 64, 3))
    # running mean and variance of every BatchNorm: as many as their scales and biases,
    # 2 × 4,800 channels (64 stem + 256 + 640 + 1,280 + 2,560 in the stages, projections too)
    bn_params = sum(
        int(np.prod(x.shape))
        for p, x in jax.tree_util.tree_leaves_with_path(v["params"])
        if "bn" in jax.tree_util.keystr(p)
    )
    assert n_params(v["batch_stats"]) == bn_params == 2 * 4_800
    assert "batch_stats" not in init_shapes(models.create("vgg11", 10), (32, 32, 3))


# --- shapes, intermediates and one training step per model ---------------------------------

def _abstract_step(model, shape):
    v = init_shapes(model, shape)
    state = jax.eval_shape(
        lambda v: TrainState.create(
            apply_fn=model.apply, params=v["params"], batch_stats=v.get("batch_stats", {}),
            tx=optax.sgd(0.1), rng=jax.random.PRNGKey(0),
        ),
        v,
    )
    loss_fn = functools.partial(losses.softmax_cross_entropy, num_classes=model.num_classes)
    batch = {"image": jax.ShapeDtypeStruct((2, *shape), jnp.float32),
             "label": jax.ShapeDtypeStruct((2,), jnp.int32)}
    return v, jax.eval_shape(functools.partial(train.train_step, loss_fn=loss_fn), state, batch)


# Pooling layers per forward pass with the default options.
DEFAULT_SITES = {
    "mlp": 0, "alexnet": 3, "alexnet_tv": 3, "zfnet": 3, "googlenet": 4 + 9, "nin": 2,
    "allcnn_c": 0, "lenet5": 2, "simple_cnn": 2,
    **{n: 5 for n in ZOO if n.startswith("vgg")},
    **{n: 1 for n in IMAGENET_RESNETS},  # the stem's max pooling
    **{n: 0 for n in CIFAR},  # strided convolutions
}


@pytest.mark.parametrize("name", models.names())
def test_output_shape_intermediates_and_default_pool_sites(name):
    model = tiny(name, num_classes=7)
    logits, v, kinds = traced_init(model, small_shape(name), batch=3)
    assert logits.shape == (3, 7) and logits.dtype == jnp.float32
    f = feats(v)
    assert f["logits"].shape == (3, 7)
    maps = [k for k, a in f.items() if a.ndim == 4]
    if name != "mlp":
        assert len(maps) >= 3, f"{name} records few feature maps: {sorted(f)}"
        assert all(f[k].shape[0] == 3 for k in maps)
    assert kinds == ["max"] * DEFAULT_SITES[name]
    assert ("batch_stats" in v) == (models.options(name).get("norm") == "batch")


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n
     for n in models.names() if n not in FAST_STEP + FIT],  # those take real steps
)
def test_traced_train_step_keeps_the_state_structure(name):
    model = tiny(name)
    v, (new_state, metrics) = _abstract_step(model, small_shape(name))
    assert jax.tree.structure(new_state.params) == jax.tree.structure(v["params"])
    assert jax.tree.structure(new_state.batch_stats) == jax.tree.structure(v.get("batch_stats", {}))
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(new_state.params),
                                                  jax.tree.leaves(v["params"]), strict=True))
    assert metrics["loss"].shape == () and metrics["count"].shape == ()




@pytest.fixture
def fast_compile():
    """Less XLA optimisation: these steps run once, so compile time is what counts."""
    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", old)


def _one_step(name):
    model = tiny(name)
    shape = small_shape(name)
    state = train.create_train_state(model, optax.sgd(0.05), shape, seed=0)
    loss_fn = functools.partial(losses.softmax_cross_entropy, num_classes=10)
    step = jax.jit(functools.partial(train.train_step, loss_fn=loss_fn))
    x = jax.random.normal(jax.random.PRNGKey(3), (4, *shape))
    batch = {"image": x, "label": jnp.array([0, 1, 2, 3])}
    new, metrics = step(state, batch)
    assert int(new.step) == 1 and float(metrics["count"]) == 4
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0
    assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(new.params))
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new.params)
    assert any(jax.tree.leaves(changed))
    if state.batch_stats:  # BatchNorm statistics move towards the batch's
        moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.batch_stats, new.batch_stats)
        assert all(jax.tree.leaves(moved))


@pytest.mark.parametrize("name", FAST_STEP)
def test_one_finite_training_step(name, fast_compile):
    _one_step(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in models.names() if n not in FAST_STEP])
def test_one_finite_training_step_every_model(name, fast_compile):
    _one_step(name)


# --- pooling sites and heads ---------------------------------------------------------------

# Pooling layers per forward pass with downsample="pool" where a model has the option.
POOL_SITES = {
    "alexnet": 3, "alexnet_tv": 3, "zfnet": 3, "googlenet": 4 + 9, "nin": 2, "allcnn_c": 2,
    "lenet5": 2, "simple_cnn": 2,
    **{n: 5 for n in ZOO if n.startswith("vgg")},
    **{n: 1 + 3 * 2 for n in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")},
    **{n: 2 * 2 for n in CIFAR},
}


def _pool_opts(name, kind):
    opts = {"pool": kind}
    if "downsample" in models.options(name):
        opts["downsample"] = "pool"
    return opts


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n for n in sorted(POOL_SITES)]
)
def test_every_pooling_site_uses_the_chosen_kind(name):
    _, _, kinds = traced_init(tiny(name, **_pool_opts(name, "avg")), small_shape(name))
    assert kinds == ["avg"] * POOL_SITES[name]


# Every registered kind on the kinds of pooling site in the zoo, in training mode: 3×3/2
# VALID (AlexNet), ceil mode (NIN), 2×2/2 SAME on odd sizes (CIFAR ResNet downsampling by
# pooling, 28 → 14 → 7 → 4); the stride-1 padded site of GoogLeNet's Inception modules below.
KIND_MODELS = [("alexnet_tv", (63, 63, 3)), ("nin", (32, 32, 3)), ("resnet20", (28, 28, 1))]


@pytest.mark.parametrize("kind", pooling.names())
@pytest.mark.parametrize("name,shape", KIND_MODELS)
def test_every_registered_pool_kind_runs_in_the_zoo(kind, name, shape):
    logits, _, kinds = traced_init(tiny(name, **_pool_opts(name, kind)), shape, train_mode=True)
    assert kinds == [kind] * POOL_SITES[name]
    assert logits.shape == (2, 10)


@pytest.mark.parametrize("kind", pooling.names())
def test_every_registered_pool_kind_in_an_inception_module(kind):
    from cnn_jax.models.googlenet import Inception

    x = jnp.zeros((2, 7, 7, 8))

    def run(module):
        return jax.eval_shape(lambda: module.init_with_output(RNGS, x, train=True)[0])

    try:
        y = run(Inception(channels=(2, 2, 3, 2, 3, 4), pool=kind))
    except ShapeError as e:
        # a kind that downsamples whatever its stride cannot serve the stride-1 branch
        # pooling: a clear error naming the layer and the way out (branch_pool)
        assert "branch4_pool" in str(e) and "branch_pool" in str(e), e
        y = run(Inception(channels=(2, 2, 3, 2, 3, 4), pool=kind, branch_pool="max"))
    assert y.shape == (2, 7, 7, 2 + 3 + 3 + 4)


# the dense classifier after the head (as in GoogLeNet and the ImageNet ResNets) and the
# class-map heads (NIN; All-CNN-C shares the code)
HEAD_MODELS = ["resnet20", "nin"]


@pytest.mark.parametrize("head", pooling.head_names())
@pytest.mark.parametrize("name", HEAD_MODELS)
def test_every_head_pool_gives_logits(head, name):
    model = tiny(name, num_classes=5, head_pool=head)
    shape = small_shape(name)

    def run():
        x = jnp.zeros((2, *shape))
        v = model.init(RNGS, x)
        return v, model.apply(v, x, mutable=["intermediates"])

    v, (logits, state) = jax.eval_shape(run)
    assert logits.shape == (2, 5)
    head_width = feats(state)["head_pool"].shape[-1]
    if name == "nin":  # class maps: a dense layer only when the head widens them
        assert ("logits" in v["params"]) == (head_width != 5)
    else:
        assert v["params"]["logits"]["kernel"].shape == (head_width, 5)


def test_concat_head_doubles_the_classifier_input():
    if "concat_avg_max" not in pooling.head_names():
        pytest.skip("no concat_avg_max head registered")
    v = init_shapes(models.create("resnet18", 1000, head_pool="concat_avg_max"), (64, 64, 3))
    assert v["params"]["logits"]["kernel"].shape == (1024, 1000)


# --- input sizes ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MIN_SIDE))
def test_one_pixel_less_than_the_smallest_input_names_the_layer(name):
    # the smallest input itself is what test_output_shape_intermediates_... runs
    side, layer = MIN_SIDE[name]
    assert small_shape(name)[0] == side
    channels = small_shape(name)[2]
    with pytest.raises(ShapeError, match=f"input too small: layer '{layer}'"):
        init_shapes(tiny(name), (side - 1, side - 1, channels))


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet20"])
def test_resnets_take_any_input_size(name):
    for opts in ({}, {"downsample": "pool", "pool": "avg"}):
        logits, v, _ = traced_init(tiny(name, **opts), (1, 1, 3))
        assert logits.shape == (2, 10) and feats(v)["layer3_0"].shape[1:3] == (1, 1)


def test_resize_to_makes_a_small_input_fit():
    with pytest.raises(ShapeError, match="layer 'pool4'"):  # 8 → 4 → 2 → 1 → nothing
        init_shapes(tiny("vgg11"), (8, 8, 3))
    logits, v, _ = traced_init(tiny("vgg11", resize_to=(32, 32)), (8, 8, 3))
    assert feats(v)["conv1_1"].shape[1:3] == (32, 32) and logits.shape == (2, 10)
    # a resized input keeps the count of the size it is resized to
    lenet = init_shapes(models.create("lenet5", 10, resize_to=(28, 28)), (40, 40, 1))
    assert n_params(lenet["params"]) == 61_706
    with pytest.raises(UserError, match="resize_to"):
        init_shapes(models.create("lenet5", 10, resize_to=(28, 0)), (40, 40, 1))


def test_resize_to_is_bilinear_resizing(fast_compile):
    model = models.create("lenet5", 10, resize_to=(28, 28))
    direct = models.create("lenet5", 10)
    x = jax.random.uniform(jax.random.PRNGKey(0), (1, 14, 14, 1))

    @jax.jit
    def both(x):
        v = model.init(RNGS, x)
        return model.apply(v, x), direct.apply(v, jax.image.resize(x, (1, 28, 28, 1), "bilinear"))

    np.testing.assert_allclose(*both(x), rtol=1e-5, atol=1e-6)


def test_cifar_resnets_take_mnist_and_odd_sizes():
    for shape, maps in [((28, 28, 1), (28, 14, 7)), ((9, 9, 3), (9, 5, 3))]:
        for opts in ({}, {"downsample": "pool", "pool": "avg"}):
            _, v, _ = traced_init(tiny("resnet20", **opts), shape)
            f = feats(v)
            assert (f["layer1_2"].shape[1], f["layer2_0"].shape[1], f["layer3_0"].shape[1]) == maps


def test_imagenet_layouts_follow_torchvision():
    f = feats(traced_create("resnet50", 1000, (224, 224, 3))[1])
    assert f["conv1"].shape == (1, 112, 112, 64) and f["maxpool"].shape == (1, 56, 56, 64)
    assert f["layer1_2"].shape == (1, 56, 56, 256) and f["layer4_2"].shape == (1, 7, 7, 2048)
    f = feats(traced_create("googlenet", 1000, (224, 224, 3))[1])
    assert f["maxpool1"].shape == (1, 56, 56, 64) and f["maxpool2"].shape == (1, 28, 28, 192)
    assert f["inception3b"].shape == (1, 28, 28, 480) and f["maxpool4"].shape == (1, 7, 7, 832)
    assert f["inception5b"].shape == (1, 7, 7, 1024)
    f = feats(traced_create("zfnet", 1000, (224, 224, 3))[1])  # Zeiler & Fergus, Fig. 3: 110, 55, 26, 13, 13, 6
    assert [f[k].shape[1] for k in ("conv1", "pool1", "conv2", "pool2", "conv5", "pool3")] == [
        110, 55, 26, 13, 13, 6]


# --- options ------------------------------------------------------------------------------

def test_width_scales_channels_and_rounds():
    v = init_shapes(models.create("vgg11", 10, width=0.5), (32, 32, 3))
    assert v["params"]["conv1_1"]["kernel"].shape == (3, 3, 3, 32)
    assert v["params"]["fc1"]["kernel"].shape[-1] == 2048
    v = init_shapes(models.create("resnet20", 10, width=0.01), (8, 8, 3))
    assert v["params"]["conv1"]["kernel"].shape[-1] == 1  # at least one channel
    with pytest.raises(UserError, match="width"):
        init_shapes(models.create("resnet20", 10, width=0.0), (8, 8, 3))


@pytest.mark.parametrize("kind", NORMS.names())
def test_norm_kinds(kind):
    v = init_shapes(models.create("resnet20", 10, norm=kind, width=0.25), (16, 16, 3))
    p = v["params"]
    assert ("bias" in p["conv1"]) == (kind == "none")  # no conv bias in front of a norm
    assert ("bn1" in p) == (kind != "none")
    assert ("batch_stats" in v) == (kind == "batch")
    # the same switch on the classic models and the flattening networks
    v = init_shapes(models.create("lenet5", 10, norm=kind), (28, 28, 1))
    assert ("bn1" in v["params"]) == (kind != "none")
    assert n_params({k: x for k, x in v["params"].items() if "bn" not in k and "norm" not in k}) \
        == 61_706


def test_unknown_norm_lists_choices():
    with pytest.raises(UserError, match="unknown norm 'batchnorm'.*choose one of: batch"):
        init_shapes(models.create("vgg11", 10, norm="batchnorm", width=0.125), (32, 32, 3))


def test_batchnorm_uses_batch_statistics_in_training_only(fast_compile):
    model = models.create("lenet5", 10, norm="batch")
    x = 3.0 + 2.0 * jax.random.normal(jax.random.PRNGKey(0), (8, 28, 28, 1))

    @jax.jit
    def run(x):
        v = model.init(RNGS, x)
        _, upd = model.apply(v, x, train=True, mutable=["batch_stats"])
        conv = nn.Conv(6, (5, 5), padding="SAME").apply({"params": v["params"]["conv1"]}, x)
        return upd["batch_stats"]["bn1"]["mean"], conv, model.apply(v, x[:2]), model.apply(v, x[:1])

    mean, conv, a, b = run(x)
    # flax momentum 0.9: running = 0.9 · 0 + 0.1 · batch mean
    np.testing.assert_allclose(mean, 0.1 * conv.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a[:1], b, rtol=1e-5, atol=1e-5)  # running statistics in eval


def _count_primitive(jaxpr, name: str) -> int:
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == name
        for p in eqn.params.values():
            for sub in p if isinstance(p, (list, tuple)) else [p]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    n += _count_primitive(inner, name)
    return n


@pytest.mark.parametrize(
    "name,sites",
    [("resnet20", 1 + 9 * 2), ("resnet50", 1 + 16 * 3), ("googlenet", 3 + 9 * 6),
     ("vgg11", 8 + 2), ("alexnet", 5 + 2), ("nin", 9), ("allcnn_c", 9), ("lenet5", 2 + 2)],
)
def test_activation_option_reaches_every_layer(name, sites):
    model = tiny(name, activation="tanh")
    shape = small_shape(name)
    v = init_shapes(model, shape)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x))(v, jnp.zeros((1, *shape)))
    assert _count_primitive(jaxpr.jaxpr, "tanh") == sites
    jaxpr = jax.make_jaxpr(lambda v, x: tiny(name).apply(v, x))(v, jnp.zeros((1, *shape)))
    assert _count_primitive(jaxpr.jaxpr, "tanh") == 0
    with pytest.raises(UserError, match="unknown activation 'rleu'"):
        init_shapes(tiny(name, activation="rleu"), shape)


def test_bfloat16_compute_keeps_float32_parameters_and_logits():
    model = tiny("resnet20", dtype="bfloat16")

    def run():
        x = jnp.zeros((2, 16, 16, 3))
        v = model.init(RNGS, x)
        return v, model.apply(v, x, mutable=["intermediates"])

    v, (logits, state) = jax.eval_shape(run)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v["params"]))
    assert logits.dtype == jnp.float32
    assert feats(state)["conv1"].dtype == jnp.bfloat16
    with pytest.raises(UserError, match="unknown dtype 'fp8'"):
        init_shapes(tiny("nin", dtype="fp8"), (16, 16, 3))


def test_option_errors_are_user_errors():
    with pytest.raises(UserError, match="no pooling layer.*downsample='pool'"):
        init_shapes(models.create("resnet20", 10, pool="avg"), (32, 32, 3))
    with pytest.raises(UserError, match="Model C"):
        init_shapes(models.create("allcnn_c", 10, pool="avg"), (32, 32, 3))
    with pytest.raises(UserError, match="depth must be 6n"):
        init_shapes(models.create("resnet20", 10, depth=21), (32, 32, 3))
    with pytest.raises(UserError, match="invalid downsample 'strided'"):
        init_shapes(models.create("resnet18", 10, downsample="strided"), (32, 32, 3))
    with pytest.raises(UserError, match="VGG layers"):
        init_shapes(models.create("vgg11", 10, layers=(1, 1)), (32, 32, 3))
    with pytest.raises(UserError, match="unknown pool 'maxx'"):
        init_shapes(models.create("vgg11", 10, pool="maxx", width=0.125), (32, 32, 3))


def test_every_zoo_model_has_the_common_options():
    for name in ZOO:
        opts = models.options(name)
        assert {"pool", "pool_options", "activation", "norm", "dropout", "width", "resize_to",
                "dtype", "head_pool"} <= set(opts), name
        assert opts["width"] == 1.0 and opts["resize_to"] is None and opts["dtype"] == "float32"
    for name in ("mlp", "lenet5", "simple_cnn"):
        assert {"norm", "width", "resize_to", "dtype", "activation", "dropout"} <= set(
            models.options(name))


def test_classic_models_keep_their_parameter_paths():
    v = init_shapes(models.create("lenet5", 10), (28, 28, 1))
    assert sorted(v["params"]) == ["conv1", "conv2", "fc1", "fc2", "logits"]
    v = init_shapes(models.create("mlp", 10), (28, 28, 1))
    assert sorted(v["params"]) == ["fc1", "fc2", "logits"]
    assert n_params(v["params"]) == 784 * 256 + 256 + 256 * 128 + 128 + 1290


def test_shortcut_a_pads_channels_with_zeros():
    """Option A: with the residual branch zeroed, a downsampling block passes the subsampled
    input on in the middle channels, zeros elsewhere (then the activation)."""
    from cnn_jax.models.resnet import BasicBlock

    block = BasicBlock(features=8, strides=2, shortcut="A", norm="none", activation="identity")
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 6, 6, 4))
    y = jax.jit(lambda x: block.apply(jax.tree.map(jnp.zeros_like, block.init(RNGS, x)), x))(x)
    assert y.shape == (1, 3, 3, 8)
    np.testing.assert_array_equal(y[..., 2:6], x[:, ::2, ::2, :])
    assert not np.any(y[..., :2]) and not np.any(y[..., 6:])


def test_googlenet_aux_logits_are_recorded():
    logits, v = traced_create("googlenet", 1000, (224, 224, 3), (("aux_logits", True),))
    f = feats(v)
    assert logits.shape == f["aux1"].shape == f["aux2"].shape == (1, 1000)
    assert "aux1" not in feats(traced_create("googlenet", 1000, (224, 224, 3))[1])


# --- layers ---------------------------------------------------------------------------------

def _adaptive_reference(x, out):
    """PyTorch's adaptive average pooling, bin by bin."""
    h, w = x.shape[1:3]
    rows = []
    for i in range(out):
        r0, r1 = (i * h) // out, -(-(i + 1) * h // out)
        cols = []
        for j in range(out):
            c0, c1 = (j * w) // out, -(-(j + 1) * w // out)
            cols.append(x[:, r0:r1, c0:c1].mean((1, 2)))
        rows.append(np.stack(cols, 1))
    return np.stack(rows, 1)


@pytest.mark.parametrize("size,out", [(13, 6), (5, 7), (14, 7), (1, 6), (10, 3), (7, 7)])
def test_adaptive_avg_pool_matches_pytorch_bins(size, out):
    x = np.random.RandomState(0).randn(2, size, size, 3).astype(np.float32)
    y = AdaptiveAvgPool(out).apply({}, jnp.asarray(x))
    np.testing.assert_allclose(y, _adaptive_reference(x, out), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", range(1, 20))
@pytest.mark.parametrize("window,stride,pad", [(3, 2, 0), (2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_ceil_mode_pads_match_pytorch_output_sizes(n, window, stride, pad):
    import math

    out = math.ceil((n + 2 * pad - window) / stride) + 1
    if (out - 1) * stride >= n + pad:  # PyTorch: the last window must start inside
        out -= 1
    lo, hi = ceil_mode_pads(n, window, stride, pad)
    assert lo == pad
    got = (n + lo + hi - window) // stride + 1
    if out >= 1:
        assert got == out and hi >= pad
    else:
        assert got <= 0  # the pooling layer reports it


# --- fit on mock CIFAR-10 ------------------------------------------------------------------

def _kind(*preferred):
    return next((k for k in preferred if k in pooling.names()), "avg")


@pytest.mark.parametrize(
    "name,opts",
    [
        ("resnet20", lambda: {"width": 0.25, "downsample": "pool", "pool": "avg"}),
        ("allcnn_c",
         lambda: {"width": 0.125, "downsample": "pool", "pool": _kind("gated", "lp")}),
        ("nin", lambda: {"width": 0.125, "pool": _kind("stochastic", "max")}),
    ],
)
def test_fit_on_mock_cifar10(name, opts, tmp_path, fast_compile):
    import tensorflow_datasets as tfds

    from cnn_jax import config as config_lib

    c = config_lib.base_config()
    c.model.name = name
    with c.model.unlocked():
        for k, val in opts().items():
            c.model[k] = val
    c.data.name = "cifar10"
    c.data.data_dir = str(tmp_path / "data")
    c.data.batch_size = 4
    c.data.eval_batch_size = 8
    c.train.steps = 2
    c.train.log_every_steps = 1
    # 12 mock images of 10 classes cannot be split by class: no validation (and so no
    # selection); the protocol itself is tested on the embedded datasets
    c.data.validation = 0
    c.train.keep_best = 0
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        out = train.fit(c, str(tmp_path / "run"), progress=False)
    assert out["steps"] == 2 and out["test"]["count"] == 12
    assert np.isfinite(out["test"]["loss"]) and np.isfinite(out["train"]["loss"])
    expected = init_shapes(models.create(name, 10, **opts()), (32, 32, 3))
    assert out["params"] == n_params(expected["params"])


def test_googlenet_branch_pool_chooses_the_stride_1_sites():
    _, _, kinds = traced_init(tiny("googlenet", pool="avg", branch_pool="max"), (32, 32, 3))
    # maxpool1, maxpool2, 3a, 3b, maxpool3, 4a-4e, maxpool4, 5a, 5b
    assert kinds == ["avg"] * 2 + ["max"] * 2 + ["avg"] + ["max"] * 5 + ["avg"] + ["max"] * 2
