"""The ``cnn-jax`` command line (also ``python -m cnn_jax``).

User mistakes print one line ``error: ...`` on stderr and exit with status 2, without a
traceback (``--debug`` shows it). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap

from cnn_jax import experiment as experiment_lib
from cnn_jax import conv_tuning, launch
from cnn_jax.errors import Preempted, UserError
from cnn_jax.runtime import cpus_flag, host_device_flags, setup_runtime

USAGE_EXAMPLES = """examples:
  cnn-jax train --config experiments/lenet5_mnist.py --config.model.pool=avg --workdir runs/lenet-avg
  cnn-jax evaluate --workdir runs/lenet-avg --checkpoint best
  cnn-jax summary --model lenet5 --config.model.activation=tanh --input-shape 28,28,1
  cnn-jax config experiments/lenet5_mnist.py --config.model.pool=avg
  cnn-jax prepare cifar10 --data-dir ~/tensorflow_datasets
  cnn-jax bench --model lenet5 --batch-size 128
  cnn-jax train --config experiments/lenet5_mnist.py --workdir /shared/lenet --executor slurm --nodes 2 --tasks-per-node 4
  cnn-jax sweep experiments/pooling_study.py --workdir runs/pooling
  cnn-jax status runs/pooling
  cnn-jax report runs/pooling
  cnn-jax viz --workdir runs/lenet-avg --what features --image-index 7
"""


# One example override per config section (checked by the tests); ``train --help`` lists
# every section's keys from ``base_config()`` next to these.
SECTION_EXAMPLES = {
    "seed": "--config.seed=3",
    "model": "--config.model.pool=avg  (name, then the model's options: pool, activation, ...)",
    "data": "--config.data.batch_size=128",
    "optim": "--config.optim.name=sgd --config.optim.learning_rate=0.1",
    "train": "--config.train.epochs=3",
    "parallel": "--config.parallel.mode=single",
}


def _train_epilog() -> str:
    """The config sections and their keys (from ``base_config()``), with examples."""
    from cnn_jax import config as config_lib

    base = config_lib.base_config()
    lines = ["config sections (defaults in cnn_jax/config/defaults.py; FILE.py's get_config() changes some;",
             "override any key with --config.SECTION.KEY=VALUE):"]
    for name in sorted(base.keys()):
        value = base[name]
        keys = ", ".join(sorted(value.keys())) if hasattr(value, "keys") else f"(default {value})"
        lines.append(textwrap.fill(keys, 92, initial_indent=f"  {name:<9} ", subsequent_indent=" " * 12))
        if name in SECTION_EXAMPLES:
            lines.append(f"  {'':<9}   e.g. {SECTION_EXAMPLES[name]}")
    lines += [
        "",
        "examples:",
        "  cnn-jax train --config experiments/lenet5_mnist.py --workdir runs/lenet5",
        "  cnn-jax train --config experiments/lenet5_mnist.py --workdir runs/lenet-avg \\",
        "      --config.model.pool=avg --config.train.epochs=3",
        "  cnn-jax config experiments/lenet5_mnist.py --config.model.pool=avg   # the resolved config",
    ]
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def _config_from_args(config_spec, overrides, *, model=None):
    return experiment_lib.from_args(config_spec, overrides, model=model)


def _shape(text: str) -> tuple[int, ...]:
    return experiment_lib.parse_shape(text)


def train_request(args, overrides) -> launch.TrainRequest:
    """The parsed ``cnn-jax train`` command line as a :class:`cnn_jax.launch.TrainRequest`."""
    return launch.TrainRequest(
        config=args.config, workdir=args.workdir, overrides=tuple(overrides), quiet=args.quiet,
        allow_config_change=args.allow_config_change, overwrite=args.overwrite,
        coordinator=args.coordinator, num_processes=args.num_processes,
        process_id=args.process_id, distributed=args.distributed,
    )


def cmd_train(args, overrides) -> int:
    if not args.config:
        raise UserError("train needs --config FILE.py (e.g. experiments/lenet5_mnist.py)")
    request = train_request(args, overrides)
    cfg = request.resolved_config()
    if _launch_options(args) or args.executor != "local":
        return _launch_train(args, request)
    result = launch.train_here(request, cfg)
    if launch.process_index() != 0:  # only process 0 reports
        return 0
    print(launch.result_line(result, args.workdir))
    return 0


_LAUNCH = {  # cnn-jax train flags of the SLURM launcher -> submit_training options
    "nodes": "--nodes", "tasks_per_node": "--tasks-per-node", "partition": "--partition",
    "time": "--time", "cpus_per_task": "--cpus-per-task", "gpus_per_node": "--gpus-per-node",
    "mem_gb": "--mem-gb", "sbatch": "--sbatch", "no_wait": "--no-wait",
}


def _launch_options(args) -> list[str]:
    return [flag for key, flag in _LAUNCH.items() if getattr(args, key, None) not in (None, False)]


def _launch_train(args, request: launch.TrainRequest) -> int:
    """``cnn-jax train ... --executor slurm --nodes N --tasks-per-node T``: the same training
    as one SLURM job of N x T JAX processes (see cnn_jax.launch.submit_training)."""
    if args.executor != "slurm":
        flags = ", ".join(_launch_options(args))
        raise UserError(
            f"{flags} {'are options' if ',' in flags else 'is an option'} of --executor slurm"
            if args.executor == "local" else f"train runs with --executor local or slurm, not {args.executor!r}"
        )
    if args.coordinator or args.distributed or args.process_id is not None or args.num_processes:
        raise UserError("--executor slurm starts the processes itself: drop --coordinator/"
                        "--num-processes/--process-id/--distributed")
    return launch.submit_training(
        request, nodes=args.nodes or 1, tasks_per_node=args.tasks_per_node or 1,
        wait=not args.no_wait, partition=args.partition, time_min=args.time,
        cpus=args.cpus_per_task, gpus=args.gpus_per_node, mem_gb=args.mem_gb, sbatch=args.sbatch,
    )


def cmd_evaluate(args, overrides) -> int:
    from cnn_jax import train

    if overrides:
        raise UserError("evaluate takes no --config overrides: it uses the run's saved config")
    experiment_lib.import_recorded(args.workdir)  # what the run's experiment file registered
    m = train.evaluate(args.workdir, args.checkpoint, args.split, weights=args.weights)
    if args.json:
        print(json.dumps(m))
    else:
        print(
            f"{m['split']} accuracy {m['accuracy']:.4f}, loss {m['loss']:.4f}, top-5 "
            f"{m['top5']:.4f} on {m['count']} images (checkpoint step {m['step']}"
            f"{', EMA weights' if m['weights'] == 'ema' else ''})"
        )
    return 0


def cmd_summary(args, overrides) -> int:
    from cnn_jax import data, models, summary
    from cnn_jax.train.assemble import model_options

    cfg = _config_from_args(args.config, overrides, model=args.model)
    name = cfg.model.name
    # Input shape and classes: the flags, else the dataset of a config that names one (an
    # experiment file or a data.* override), else what the model was designed for.
    if args.config or any(k.startswith("data.") for k, _ in overrides):
        source = class_from = f"dataset {cfg.data.name}"
        if args.input_shape:  # the classes only: no need to read the images' shape
            spec = data.DATASETS.get(cfg.data.name)
        else:
            spec = data.batch_spec(cfg.data.name, cfg.data.data_dir or None, data.Options.of(cfg.data))
            views = [f"data.{k}={cfg.data[k]}" for k in ("crop_size", "image_size") if cfg.data[k]]
            if views:
                source += " with " + ", ".join(views)
        shape, num_classes = spec.shape, spec.num_classes
    else:
        (shape, num_classes), source = models.default_input(name), "the model's default"
        class_from = source
    shape_source, class_source = source, class_from
    if args.input_shape:
        shape, shape_source = _shape(args.input_shape), "--input-shape"
    if args.num_classes is not None:
        num_classes, class_source = args.num_classes, "--num-classes"
    if num_classes < 1:
        raise UserError(f"--num-classes must be positive, got {num_classes}")
    used = f"input {'x'.join(map(str, shape))} ({shape_source})"
    model = models.create(name, num_classes, **model_options(cfg))
    try:
        s = summary.summarize_model(model, shape)
    except UserError as e:
        raise UserError(f"model {name!r} on {used}: {e}") from None
    if args.format != "json":
        print(f"Model: {name}, {used}, {num_classes} classes ({class_source})")
    print(s.render(args.format))
    return 0


def cmd_config(args, overrides) -> int:
    cfg = _config_from_args(args.file, overrides)
    if args.format == "json":
        from cnn_jax import config as config_lib

        print(config_lib.to_json(cfg))
    else:
        print(str(cfg).rstrip())
    return 0


def cmd_prepare(args, overrides) -> int:
    from cnn_jax import data

    path = data.prepare(args.name, args.data_dir)
    print(f"prepared {args.name} in {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cnn-jax",
        description="Train, evaluate and summarise CNNs; study pooling.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from cnn_jax import __version__

    p.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    p.add_argument("--version", action="version", version=f"cnn-jax {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    _add_train(sub)
    _add_run_commands(sub)
    # Other packages add their commands here (sweep, status, report, viz, bench, ...): each
    # module defines add_commands(subparsers) and imports its heavy dependencies lazily.
    import importlib

    for module in COMMAND_MODULES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if not e.name or not module.startswith(e.name):  # a missing dependency: a bug
                raise
            continue
        mod.add_commands(sub)
    return p


_CPUS_HELP = ("pin this process to N CPUs (default: all it may use). XLA:CPU's numbers depend "
              "on the count: N=1 reproduces a sweep's trials (--cpus-per-trial, default 1) "
              "bit for bit")


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="train a config into a workdir (resumes if it has checkpoints)",
                       epilog=_train_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--config", help="experiment file FILE.py[:ARG]; override keys with --config.a.b=VALUE")
    t.add_argument("--workdir", required=True, help="run directory")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    t.add_argument("--allow-config-change", action="store_true",
                   help="resume a workdir whose saved config differs from this one")
    t.add_argument("--overwrite", action="store_true",
                   help="delete the workdir's previous run and start afresh")
    t.add_argument("--cpus", type=int, metavar="N", help=_CPUS_HELP)
    t.add_argument("--coordinator", help="multi-host: coordinator address host:port (process 0)")
    t.add_argument("--num-processes", type=int, help="multi-host: number of processes")
    t.add_argument("--process-id", type=int, help="multi-host: this process's index")
    t.add_argument("--distributed", action="store_true",
                   help="multi-host: let JAX detect the cluster (SLURM, TPU pods, ...)")
    g = t.add_argument_group("on a SLURM cluster (--executor slurm: one job of N x T JAX processes)")
    g.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local: train here (default); slurm: submit the run as a multi-host job")
    g.add_argument("--nodes", type=int, help="nodes of the job (default 1)")
    g.add_argument("--tasks-per-node", type=int, help="JAX processes per node (default 1)")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--time", type=int, help="time limit in minutes (default 60)")
    g.add_argument("--cpus-per-task", type=int, help="CPUs per process (default 1)")
    g.add_argument("--gpus-per-node", type=int, help="GPUs per node")
    g.add_argument("--mem-gb", type=float, help="memory per node in GiB")
    g.add_argument("--sbatch", action="append", metavar="KEY=VALUE", help="extra sbatch option (repeatable)")
    g.add_argument("--no-wait", action="store_true", help="submit and return (do not wait for the job)")
    t.set_defaults(func=cmd_train)


def _add_run_commands(sub) -> None:
    """evaluate, summary, config and prepare."""
    e = sub.add_parser("evaluate", help="evaluate a run's checkpoint on the test split")
    e.add_argument("--workdir", required=True)
    e.add_argument("--checkpoint", default="latest", help="latest, best or a step number")
    e.add_argument("--split", default="test", help="split to evaluate (default: test)")
    e.add_argument("--weights", choices=("raw", "ema"), default="raw",
                   help="the raw weights or their moving average (a run with train.ema_decay > 0)")
    e.add_argument("--json", action="store_true", help="print one JSON line")
    e.add_argument("--cpus", type=int, metavar="N", help=_CPUS_HELP)
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("summary", help="layer table and parameter count (no weights allocated)")
    s.add_argument("--model", help="registered model name (default: the config's)")
    s.add_argument("--config", help="optional experiment file to take the model from")
    s.add_argument("--input-shape", help="H,W,C (default: the dataset of --config or --config.data.*, "
                   "else the model's own: 224,224,3 for ImageNet models, 32,32,3 CIFAR, 28,28,1 MNIST)")
    s.add_argument("--num-classes", type=int, help="default: as for --input-shape (1000 ImageNet, 10 else)")
    s.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    s.set_defaults(func=cmd_summary)

    c = sub.add_parser("config", help="print the resolved config of FILE.py[:ARG] and --config.a.b=V overrides")
    c.add_argument("file", nargs="?", metavar="FILE.py[:ARG]",
                   help="experiment file (default: cnn_jax.config.base_config())")
    c.add_argument("--format", choices=("json", "text"), default="json",
                   help="json (as a run saves it in DIR/config.json) or the ConfigDict's text")
    c.set_defaults(func=cmd_config)

    r = sub.add_parser("prepare", help="prepare a dataset as tfds ArrayRecord in --data-dir")
    r.add_argument("name", help="dataset name")
    r.add_argument("--data-dir", help="default: $CNN_JAX_DATA_DIR, $TFDS_DATA_DIR or ~/tensorflow_datasets")
    r.set_defaults(func=cmd_prepare)


COMMAND_MODULES = ("cnn_jax.study.cli", "cnn_jax.viz.cli", "cnn_jax.bench")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        pinned = cpus_flag(argv)
        host_device_flags(argv)
        overrides, rest = experiment_lib.parse_override_args(argv)
        parser = build_parser()
        try:
            args = parser.parse_args(rest)
        except SystemExit as e:  # --help or --version: printed; errors raise UserError
            return int(e.code or 0)
        if not args.command:
            parser.print_help()
            return 2
        if getattr(args, "cpus", None) is not None and pinned is None:  # an abbreviation
            raise UserError("write --cpus N in full (it must be read before JAX starts)")
        setup_runtime(debug)
        conv_tuning.mode()  # CNN_JAX_CONV checked before anything runs
        return args.func(args, overrides)
    except UserError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except Preempted as e:
        print(f"preempted: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `cnn-jax config FILE | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
