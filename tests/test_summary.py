"""Model summaries: multiply-accumulates against closed forms, activation memory, formats."""

from __future__ import annotations

import json

import flax.linen as nn
import pytest

from cnn_jax import cli, models, summary
from cnn_jax.errors import UserError
from cnn_jax.layers import Conv


def test_lenet5_macs_and_memory_by_hand():
    s = summary.summarize_model(models.create("lenet5", 10), (28, 28, 1))
    macs = {r.name: r.macs for r in s.rows}
    assert macs == {
        "conv1": 28 * 28 * 5 * 5 * 1 * 6,  # SAME: 28×28 outputs
        "pool1": 0,
        "conv2": 10 * 10 * 5 * 5 * 6 * 16,  # VALID on 14×14
        "pool2": 0,
        "fc1": 400 * 120,
        "fc2": 120 * 84,
        "logits": 84 * 10,
    }
    assert s.total_macs == 416_520
    # float32 outputs: 28·28·6 + 14·14·6 + 10·10·16 + 5·5·16 + 120 + 84 + 10 values
    assert s.activation_bytes == 4 * (4704 + 1176 + 1600 + 400 + 120 + 84 + 10)
    assert s.total_params == s.trainable_params == 61_706 and s.non_trainable_params == 0


class _OneConv(nn.Module):
    features: int = 8
    groups: int = 2
    transpose: bool = False

    @nn.compact
    def __call__(self, x, train=False):
        if self.transpose:
            return nn.ConvTranspose(self.features, (3, 3), strides=(2, 2), name="up")(x)
        return Conv(self.features, (3, 3), strides=2, padding="SAME",
                    feature_group_count=self.groups, name="conv")(x)


def test_one_grouped_strided_convolution():
    # 9×9×4 → SAME, stride 2 → 5×5×8; each output sums 3·3·(4/2) products
    s = summary.summarize_model(_OneConv(), (9, 9, 4))
    (row,) = s.rows
    assert row.output_shape == (None, 5, 5, 8)
    assert row.macs == 5 * 5 * 3 * 3 * (4 // 2) * 8 == 3_600
    assert row.params == 3 * 3 * 2 * 8 + 8
    assert row.output_bytes == 5 * 5 * 8 * 4


def test_transposed_convolution_counts_input_positions():
    (row,) = summary.summarize_model(_OneConv(transpose=True), (5, 5, 4)).rows
    assert row.output_shape == (None, 10, 10, 8)
    assert row.macs == 5 * 5 * 3 * 3 * 4 * 8


def test_vgg16_matches_torchvision_figures():
    s = summary.summarize_model(models.create("vgg16", 1000), (224, 224, 3))
    assert s.total_params == 138_357_544
    # convolutions 15,346,630,656 + dense 25,088·4,096 + 4,096² + 4,096·1,000
    assert s.total_macs == 15_346_630_656 + 123_633_664  # torchvision: 15.47 GFLOPS
    conv = next(r for r in s.rows if r.name == "conv1_2")
    assert conv.macs == 224 * 224 * 9 * 64 * 64


def test_batchnorm_statistics_and_dtype_in_the_summary():
    s = summary.summarize_model(models.create("resnet20", 10), (32, 32, 3))
    stats = 2 * (16 * 7 + 32 * 6 + 64 * 6)  # moving mean and variance of 19 BatchNorms
    assert s.trainable_params == 269_722 and s.non_trainable_params == stats
    assert s.total_params == 269_722 + stats == sum(r.params for r in s.rows)
    bn = next(r for r in s.rows if r.name == "bn1")
    assert bn.type == "BatchNorm" and bn.params == 4 * 16  # scale, bias, mean, variance
    half = summary.summarize_model(models.create("resnet20", 10, dtype="bfloat16"), (32, 32, 3))
    def conv(t):
        return next(r for r in t.rows if r.name == "conv1")

    assert conv(half).output_bytes * 2 == conv(s).output_bytes == 32 * 32 * 16 * 4
    assert half.total_macs == s.total_macs


def test_nested_blocks_and_parametric_pools_are_rows():
    s = summary.summarize_model(models.create("resnet18", 1000), (224, 224, 3))
    names = [r.name for r in s.rows]
    assert "layer2_0/downsample_conv" in names and "head_pool" in names
    assert s.rows[-1].name == "logits" and s.rows[-1].macs == 512 * 1000
    assert s.trainable_params == 11_689_512  # torchvision's count (parameters only)
    assert sum(r.params for r in s.rows) == s.total_params == 11_689_512 + s.non_trainable_params
    assert 1.81e9 < s.total_macs < 1.82e9  # torchvision: 1.81 GFLOPS


def test_formats():
    s = summary.summarize_model(models.create("lenet5", 10), (28, 28, 1))
    table = s.render("table").splitlines()
    assert table[-3:] == ["Total params: 61,706", "Trainable params: 61,706", "Non-trainable params: 0"]
    assert "Total MACs: 416,520 (416.52 kMACs) per example" in table
    assert any(line.startswith("Activation memory: 31.62 KiB") for line in table)
    header = next(line for line in table if line.startswith("Layer"))
    assert header.split() == ["Layer", "Type", "Output", "shape", "Params", "MACs"]
    md = s.render("markdown").splitlines()
    assert md[0] == "| layer | type | output shape | params | MACs |"
    assert "| conv2 | Conv | (None, 10, 10, 16) | 2,416 | 240,000 |" in md
    assert md[-3] == "Total params: 61,706" and md[-1] == "Non-trainable params: 0"
    d = json.loads(s.render("json"))
    assert d["total_macs"] == 416_520 and d["total_params"] == d["trainable_params"] == 61_706
    assert d["non_trainable_params"] == 0 and d["num_classes"] == 10 and d["input_shape"] == [28, 28, 1]
    assert d["activation_bytes"] == s.activation_bytes
    assert d["layers"][0] == {"name": "conv1", "type": "Conv", "output_shape": [None, 28, 28, 6],
                              "params": 156, "macs": 117_600, "output_bytes": 28 * 28 * 6 * 4}
    with pytest.raises(UserError, match="unknown summary format 'xml'"):
        s.render("xml")


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_cli_summary_formats(capsys, fmt):
    code = cli.main(["summary", "--model", "resnet20", "--input-shape", "32,32,3",
                     "--num-classes", "10", "--format", fmt])
    out = capsys.readouterr().out
    assert code == 0
    if fmt == "json":
        d = json.loads(out)
        assert (d["total_params"], d["trainable_params"], d["non_trainable_params"]) == (271_098, 269_722, 1_376)
    else:
        lines = out.strip().splitlines()
        assert lines[0] == "Model: resnet20, input 32x32x3 (--input-shape), 10 classes (--num-classes)"
        assert lines[-3:] == ["Total params: 271,098", "Trainable params: 269,722", "Non-trainable params: 1,376"]



def test_keras_seed_alexnet_counts_as_keras_does():
    # the seeds' AlexNet (227x227x3, 10 classes): 58,327,818 in Keras's model.summary(),
    # total, of which 2,752 non-trainable (moving mean and variance of 1,376 BN channels)
    s = summary.summarize_model(models.create("alexnet", 10), (227, 227, 3))
    assert (s.total_params, s.trainable_params, s.non_trainable_params) == (58_327_818, 58_325_066, 2_752)
    rows = {r.name: r.params for r in s.rows}
    assert rows["bn1"] == 4 * 96 == 384 and rows["conv1"] == 11 * 11 * 3 * 96 + 96


def test_every_model_declares_the_input_it_was_designed_for():
    families = {"imagenet": ((224, 224, 3), 1000), "cifar": ((32, 32, 3), 10), "mnist": ((28, 28, 1), 10)}
    for name in models.names():
        family = models.MODELS.meta(name, "inputs")
        assert family in families, name
        shape, classes = models.default_input(name)
        assert classes == families[family][1]
        assert shape == families[family][0] or (name, shape) == ("alexnet", (227, 227, 3)), name
        summary.summarize_model(models.create(name, classes), shape)  # the default input fits
    assert models.default_input("resnet50") == ((224, 224, 3), 1000)
    assert models.default_input("resnet56") == ((32, 32, 3), 10)
    assert models.default_input("lenet5") == ((28, 28, 1), 10)


@pytest.mark.parametrize("name,header,counts", [
    ("resnet50", "Model: resnet50, input 224x224x3 (the model's default), 1000 classes (the model's default)",
     None),  # torchvision: 25,557,032 parameters
    ("alexnet", "Model: alexnet, input 227x227x3 (the model's default), 1000 classes (the model's default)",
     ["Total params: 62,383,848", "Trainable params: 62,381,096", "Non-trainable params: 2,752"]),
    ("simple_cnn", "Model: simple_cnn, input 32x32x3 (the model's default), 10 classes (the model's default)",
     ["Total params: 122,570", "Trainable params: 122,570", "Non-trainable params: 0"]),
])
def test_cli_summary_uses_the_models_own_input_by_default(capsys, name, header, counts):
    assert cli.main(["summary", "--model", name]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == header
    if counts:
        assert lines[-3:] == counts
    else:
        assert lines[-2] == "Trainable params: 25,557,032"


def test_cli_summary_shape_error_names_the_input_it_used(capsys):
    assert cli.main(["summary", "--model", "alexnet", "--input-shape", "32,32,3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model 'alexnet' on input 32x32x3 (--input-shape): ")
    assert "layer 'pool2'" in err[0]
    assert cli.main(["summary", "--model", "simple_cnn", "--config.data.name=digits"]) == 2
    err = capsys.readouterr().err
    assert "model 'simple_cnn' on input 8x8x1 (dataset digits): " in err


def test_summary_json_records_the_numeric_environment(data_dir, tmp_path):
    import os

    import jax

    from cnn_jax import runtime, train
    from cnn_jax import experiment as experiment_lib

    cfg = experiment_lib.from_args(None, [("model.name", "mlp"), ("data.name", "digits"),
                                          ("data.data_dir", data_dir), ("train.steps", "3")])
    env = train.fit(cfg, str(tmp_path / "run"), progress=False).summary["numerics"]
    assert env["jax"] == jax.__version__ and env["backend"] == jax.default_backend()
    assert env["cpus"] == len(os.sched_getaffinity(0)) and env["devices"] == jax.device_count()
    assert env["cpu"] == runtime.cpu_model()[0] and set(env["isa"]) <= set(runtime.ISA_FLAGS)
    with open("/proc/cpuinfo") as f:  # the model name as Linux reports it
        assert env["cpu"] == next(x.split(":", 1)[1].strip() for x in f if x.startswith("model name"))
