"""Model summaries: multiply-accumulates against closed forms, activation memory, formats."""

from __future__ import annotations

import json

import flax.linen as nn
import pytest

from cnn_jax import cli, models, summary
from cnn_jax.errors import UserError
from cnn_jax.layers import Conv


def test_lenet5_macs_and_memory_by_hand():
    s = summary.summarize(models.create("lenet5", 10), (28, 28, 1))
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
    assert s.total_params == 61_706


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
    s = summary.summarize(_OneConv(), (9, 9, 4))
    (row,) = s.rows
    assert row.output_shape == (None, 5, 5, 8)
    assert row.macs == 5 * 5 * 3 * 3 * (4 // 2) * 8 == 3_600
    assert row.params == 3 * 3 * 2 * 8 + 8
    assert row.output_bytes == 5 * 5 * 8 * 4


def test_transposed_convolution_counts_input_positions():
    (row,) = summary.summarize(_OneConv(transpose=True), (5, 5, 4)).rows
    assert row.output_shape == (None, 10, 10, 8)
    assert row.macs == 5 * 5 * 3 * 3 * 4 * 8


def test_vgg16_matches_torchvision_figures():
    s = summary.summarize(models.create("vgg16", 1000), (224, 224, 3))
    assert s.total_params == 138_357_544
    # convolutions 15,346,630,656 + dense 25,088·4,096 + 4,096² + 4,096·1,000
    assert s.total_macs == 15_346_630_656 + 123_633_664  # torchvision: 15.47 GFLOPS
    conv = next(r for r in s.rows if r.name == "conv1_2")
    assert conv.macs == 224 * 224 * 9 * 64 * 64


def test_batchnorm_statistics_and_dtype_in_the_summary():
    s = summary.summarize(models.create("resnet20", 10), (32, 32, 3))
    assert s.total_params == 269_722 and s.non_trainable == 2 * (16 * 7 + 32 * 6 + 64 * 6)
    half = summary.summarize(models.create("resnet20", 10, dtype="bfloat16"), (32, 32, 3))
    def conv(t):
        return next(r for r in t.rows if r.name == "conv1")

    assert conv(half).output_bytes * 2 == conv(s).output_bytes == 32 * 32 * 16 * 4
    assert half.total_macs == s.total_macs


def test_nested_blocks_and_parametric_pools_are_rows():
    s = summary.summarize(models.create("resnet18", 1000), (224, 224, 3))
    names = [r.name for r in s.rows]
    assert "layer2_0/downsample_conv" in names and "head_pool" in names
    assert s.rows[-1].name == "logits" and s.rows[-1].macs == 512 * 1000
    assert sum(r.params for r in s.rows) == s.total_params == 11_689_512
    assert 1.81e9 < s.total_macs < 1.82e9  # torchvision: 1.81 GFLOPS


def test_formats():
    s = summary.summarize(models.create("lenet5", 10), (28, 28, 1))
    table = s.render("table").splitlines()
    assert table[-1] == "Total params: 61,706"
    assert "Total MACs: 416,520 (416.52 kMACs) per example" in table
    assert any(line.startswith("Activation memory: 31.62 KiB") for line in table)
    header = next(line for line in table if line.startswith("Layer"))
    assert header.split() == ["Layer", "Type", "Output", "shape", "Params", "MACs"]
    md = s.render("markdown").splitlines()
    assert md[0] == "| layer | type | output shape | params | MACs |"
    assert "| conv2 | Conv | (None, 10, 10, 16) | 2,416 | 240,000 |" in md
    assert md[-1] == "Total params: 61,706"
    d = json.loads(s.render("json"))
    assert d["total_macs"] == 416_520 and d["total_params"] == 61_706
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
        assert json.loads(out)["total_params"] == 269_722
    else:
        assert out.strip().splitlines()[-1] == "Total params: 269,722"

