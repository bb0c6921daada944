"""The command line: summaries, train/evaluate, and one clear line for each user mistake."""

import subprocess
import sys

import pytest

from cnn_jax import cli
from cnn_jax import experiment as experiment_lib

EXP = "experiments/lenet5_mnist.py"
HANG_S = 1800  # subprocess guard against a hang, never a statement about speed


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv,total",
    [
        (["--model", "lenet5", "--config.model.activation=tanh", "--config.model.pool=avg"], "61,706"),
        (["--model", "simple_cnn", "--input-shape", "32,32,3"], "122,570"),
        (["--model", "lenet5", "--config.model.hidden=(120,100)", "--num-classes", "10"], "63,802"),
    ],
)
def test_summary_ends_with_keras_parameter_counts(capsys, argv, total):
    code, out, _ = run(capsys, "summary", *argv)
    assert code == 0
    assert out.strip().splitlines()[-3:] == [f"Total params: {total}", f"Trainable params: {total}",
                                             "Non-trainable params: 0"]
    assert "conv1" in out and "Output shape" in out


def test_summary_of_a_dataset_of_varying_sizes_takes_the_crop(capsys):
    """imagenette's images vary in size: the batches' shape is data.crop_size's, and without
    a crop or --input-shape the one-line error says what to set (no traceback)."""
    args = ["summary", "--config", EXP, "--config.model.name=resnet18", "--config.data.name=imagenette_160"]
    code, out, _ = run(capsys, *args, "--config.data.crop_size=64")
    assert code == 0 and out.startswith(
        "Model: resnet18, input 64x64x3 (dataset imagenette_160 with data.crop_size=64), 10 classes")
    code, out, _ = run(capsys, *args, "--input-shape", "96,96,3")
    assert code == 0 and "input 96x96x3 (--input-shape), 10 classes (dataset imagenette_160)" in out
    code, _, err = run(capsys, *args)
    assert code == 2 and err.strip() == (
        "error: dataset 'imagenette_160' has images of varying sizes; set data.crop_size "
        "(ImageNet-style crops, e.g. 224) and/or data.image_size (resize when decoded)")


def _bad(data_dir, workdir, *extra):
    return ["train", "--config", EXP, "--workdir", workdir,
            f"--config.data.data_dir={data_dir}", *extra]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--config.model.name=lenet6"], "unknown model 'lenet6'; did you mean 'lenet5'?; choose one of: "),
        (["--config.model.pool=maxx"], "unknown pool 'maxx'; did you mean 'max'?; choose one of: "),
        (["--config.model.activation=rleu"], "unknown activation 'rleu'"),
        (["--config.optim.name=adan"], "unknown optimizer 'adan'"),
        (["--config.data.name=mnist6k"], "unknown dataset 'mnist6k'; did you mean 'mnist5k'?"),
        (["--config.train.epohcs=3"], "unknown config key 'train.epohcs'; did you mean 'train.epochs'?"),
        (["--config.train.epochs=abc"], "invalid value for train.epochs: 'abc' is not a valid int"),
        (["--config.data.batch_size=-4"], "data.batch_size must be a positive integer, got -4"),
        (["--config.model.name=simple_cnn", "--config.data.name=digits"],
         "input too small: layer 'pool2' (2x2 window, stride 2x2) on a 1x1 feature map"),
        (["--config.data.name=cifar10"], "dataset 'cifar10' (tfds 'cifar10') is not prepared in"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(capsys, data_dir, tmp_path, extra, message):
    workdir = tmp_path / "never-created"
    argv = _bad(data_dir if "cifar10" not in extra[-1] else tmp_path, str(workdir), *extra)
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    if "unknown" in message and "config key" not in message:
        assert "choose one of" in lines[0]
    assert "Traceback" not in err
    assert not workdir.exists()  # a mistake writes nothing


def test_train_evaluate_and_refused_resume(capsys, data_dir, tmp_path):
    wd = str(tmp_path / "run")
    base = ["train", "--config", EXP, "--workdir", wd, f"--config.data.data_dir={data_dir}",
            "--config.model.name=mlp", "--config.data.name=digits", "--config.train.steps=6", "--quiet"]
    code, out, _ = run(capsys, *base)
    assert code == 0 and "test accuracy" in out and "after 6 steps" in out
    code, out, _ = run(capsys, "evaluate", "--workdir", wd, "--checkpoint", "latest")
    assert code == 0 and "(checkpoint step 6)" in out and "359 images" in out
    code, _, err = run(capsys, *base, "--config.optim.learning_rate=0.1")
    assert code == 2 and "different config (optim.learning_rate: 0.001 -> 0.1)" in err
    assert "--allow-config-change" in err
    code, out, _ = run(capsys, *base, "--config.optim.learning_rate=0.1", "--allow-config-change")
    assert code == 0
    code, _, err = run(capsys, "evaluate", "--workdir", wd, "--checkpoint", "nope")
    assert code == 2 and "invalid checkpoint 'nope'; choose latest, best or a step number" in err
    code, _, err = run(capsys, "evaluate", "--workdir", str(tmp_path / "missing"))
    assert code == 2 and "is not a run directory" in err


def test_experiment_file_errors(capsys, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config(\n")
    code, _, err = run(capsys, "train", "--config", str(bad), "--workdir", str(tmp_path / "w"))
    assert code == 2 and "syntax error" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("launcher", [["-m", "cnn_jax"], ["-c", "from cnn_jax.cli import main; raise SystemExit(main())"]])
def test_real_process_exit_codes(launcher):
    p = subprocess.run([sys.executable, *launcher, "summary", "--model", "vgg99"],
                       capture_output=True, text=True, timeout=HANG_S)
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: unknown model 'vgg99'") and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, *launcher, "summary", "--model", "lenet5"],
                       capture_output=True, text=True, timeout=HANG_S)
    assert p.returncode == 0 and p.stdout.strip().endswith(
        "Total params: 61,706\nTrainable params: 61,706\nNon-trainable params: 0")


def _cnn_jax(*argv):
    return subprocess.run([sys.executable, "-m", "cnn_jax", *argv], capture_output=True, text=True)


def test_version_through_the_real_command_line():
    import cnn_jax

    p = _cnn_jax("--version")
    assert p.returncode == 0 and p.stdout == f"cnn-jax {cnn_jax.__version__}\n" == "cnn-jax 0.1.0\n"


def test_train_help_lists_the_config_sections_with_examples(capsys):
    from cnn_jax import config as config_lib

    assert cli.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "config sections" in out and "--config.SECTION.KEY=VALUE" in out
    base = config_lib.base_config()
    for section in base.keys():
        assert f"\n  {section} " in out, section
        if hasattr(base[section], "keys"):
            for key in base[section].keys():
                assert key in out, (section, key)
    for section, example in cli.SECTION_EXAMPLES.items():
        assert f"e.g. {example}" in out
        flags = [a for a in example.split("  ")[0].split() if a.startswith("--config.")]
        overrides, rest = experiment_lib.parse_override_args(flags)
        assert flags and not rest and all(k.split(".")[0] == section for k, _ in overrides)
        experiment_lib.from_args(EXP, overrides)  # every example is a valid override
    assert "cnn-jax train --config experiments/lenet5_mnist.py --workdir runs/lenet5" in out


def test_config_prints_the_resolved_config():
    import json

    from cnn_jax import config as config_lib

    p = _cnn_jax("config", "experiments/pooling_study.py:full", "--config.model.pool=avg",
                 "--config.train.epochs=2")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["model"]["pool"] == "avg" and got["train"]["epochs"] == 2
    assert got["data"]["name"] == "mnist"  # the file's ARG took effect
    assert "activation" in got["model"]  # resolved: the model's options are filled in
    want = experiment_lib.from_args("experiments/pooling_study.py:full",
                                [("model.pool", "avg"), ("train.epochs", "2")])
    assert p.stdout == config_lib.to_json(want) + "\n"
    text = _cnn_jax("config", EXP, "--format", "text", "--config.model.pool=avg")
    assert text.returncode == 0 and "  pool: avg\n" in text.stdout and "model:\n" in text.stdout


def test_config_with_a_bad_key_is_one_line_exit_2():
    p = _cnn_jax("config", EXP, "--config.train.epohcs=3")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        "error: unknown config key 'train.epohcs'; did you mean 'train.epochs'?"]
