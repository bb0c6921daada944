"""The ``cnn-jax`` command line (also ``python -m cnn_jax``).

User mistakes print one line ``error: ...`` on stderr and exit with status 2, without a
traceback (``--debug`` shows it). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from cnn_jax.errors import Preempted, UserError

USAGE_EXAMPLES = """examples:
  cnn-jax train --config experiments/lenet5_mnist.py --config.model.pool=avg --workdir runs/lenet-avg
  cnn-jax evaluate --workdir runs/lenet-avg --checkpoint best
  cnn-jax summary --model lenet5 --config.model.activation=tanh --input-shape 28,28,1
  cnn-jax prepare cifar10 --data-dir ~/tensorflow_datasets
  cnn-jax bench --model lenet5 --batch-size 128
  cnn-jax sweep experiments/pooling_study.py --workdir runs/pooling
  cnn-jax status runs/pooling
  cnn-jax report runs/pooling
  cnn-jax viz --workdir runs/lenet-avg --what features --image-index 7
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


HOST_DEVICE_COMMANDS = ("train", "bench", "evaluate")
MAX_HOST_DEVICES = 8


def host_device_flags(argv: list[str] | None = None) -> None:
    """Splits the CPU into XLA host devices before jax is imported, so that
    ``parallel.mode=auto`` can shard a large enough step over the cores
    (:func:`cnn_jax.train.loop.auto_mode`).

    ``CNN_JAX_HOST_DEVICES=N`` asks for N devices (1: off); unset, ``train``, ``bench`` and
    ``evaluate`` take one per core (at most 8) and other commands one in all (a sweep's
    trials run in worker processes instead). An explicit
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS`` wins. The CPU collectives'
    time-outs are raised to 10 minutes: with the default ones, a heavily loaded machine was
    seen to abort a rendezvous between host devices."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or "jax" in sys.modules:
        return
    n = os.environ.get("CNN_JAX_HOST_DEVICES", "")
    if n and (not n.isdigit() or int(n) < 1):
        raise UserError(f"CNN_JAX_HOST_DEVICES must be a positive integer, got {n!r}")
    if not n:
        command = next((a for a in (argv or []) if not a.startswith("-")), None)
        if command not in HOST_DEVICE_COMMANDS:
            return
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        n = str(min(cores, MAX_HOST_DEVICES))
    if int(n) > 1:
        extra = [f"--xla_force_host_platform_device_count={n}"]
        for flag in ("xla_cpu_collective_timeout_seconds", "xla_cpu_collective_call_terminate_timeout_seconds"):
            if flag not in flags:
                extra.append(f"--{flag}=600")
        os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()


def _init_distributed(args) -> None:
    """``jax.distributed.initialize`` from flags or the environment (multi-host runs)."""
    coordinator = getattr(args, "coordinator", None) or os.environ.get("CNN_JAX_COORDINATOR")
    nproc = getattr(args, "num_processes", None) or os.environ.get("CNN_JAX_NUM_PROCESSES")
    pid = getattr(args, "process_id", None)
    if pid is None and os.environ.get("CNN_JAX_PROCESS_ID") is not None:
        pid = int(os.environ["CNN_JAX_PROCESS_ID"])
    if not (coordinator or getattr(args, "distributed", False)):
        return
    import jax

    kwargs = {}
    if coordinator:
        if nproc is None or pid is None:
            raise UserError("--coordinator needs --num-processes and --process-id (or CNN_JAX_* variables)")
        kwargs = dict(coordinator_address=coordinator, num_processes=int(nproc), process_id=int(pid))
    jax.distributed.initialize(**kwargs)  # no arguments: JAX detects the cluster (SLURM, TPU, ...)


def _setup_runtime(debug: bool) -> None:
    """Quiet third-party logging and enable JAX's persistent compilation cache."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import absl.logging

    absl.logging.set_verbosity("info" if debug else "error")
    import jax

    cache = os.environ.get("CNN_JAX_CACHE_DIR", os.path.expanduser("~/.cache/cnn_jax/xla"))
    if cache and cache.lower() not in ("0", "off", "none"):
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.05)
    try:
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()
    except ImportError:
        pass


def _config_from_args(config_spec, overrides, *, model=None):
    from cnn_jax import config as config_lib

    return config_lib.from_args(config_spec, overrides, model=model)


def _shape(text: str) -> tuple[int, ...]:
    from cnn_jax import config as config_lib

    return config_lib.parse_shape(text)


def cmd_train(args, overrides) -> int:
    from cnn_jax import train

    if not args.config:
        raise UserError("train needs --config FILE.py (e.g. experiments/lenet5_mnist.py)")
    cfg = _config_from_args(args.config, overrides)
    progress = False if args.quiet else None
    _init_distributed(args)
    result = train.fit(
        cfg, args.workdir, progress=progress, allow_config_change=args.allow_config_change,
        overwrite=args.overwrite,
    )
    if jax_process_index() != 0:  # only process 0 reports
        return 0
    t = result["test"]
    print(
        f"test accuracy {t['accuracy']:.4f}, loss {t['loss']:.4f}, top-5 {t['top5']:.4f} "
        f"on {t['count']} images after {result['steps']} steps "
        f"({result['train_seconds']:.1f} s); best {result['best']['accuracy']:.4f} at step "
        f"{result['best']['step']}; run in {args.workdir}"
    )
    return 0


def jax_process_index() -> int:
    import jax

    return jax.process_index()


def cmd_evaluate(args, overrides) -> int:
    from cnn_jax import train

    if overrides:
        raise UserError("evaluate takes no --config overrides: it uses the run's saved config")
    m = train.evaluate(args.workdir, args.checkpoint, args.split)
    if args.json:
        print(json.dumps(m))
    else:
        print(
            f"{m['split']} accuracy {m['accuracy']:.4f}, loss {m['loss']:.4f}, top-5 "
            f"{m['top5']:.4f} on {m['count']} images (checkpoint step {m['step']})"
        )
    return 0


def cmd_summary(args, overrides) -> int:
    from cnn_jax import data, models, summary
    from cnn_jax.train.loop import model_options

    cfg = _config_from_args(args.config, overrides, model=args.model)
    if args.input_shape:
        shape = _shape(args.input_shape)
    else:
        shape = data.DATASETS.get(cfg.data.name).shape
    num_classes = args.num_classes or data.DATASETS.get(cfg.data.name).num_classes
    if num_classes < 1:
        raise UserError(f"--num-classes must be positive, got {num_classes}")
    model = models.create(cfg.model.name, num_classes, **model_options(cfg))
    s = summary.summarize(model, shape)
    if args.format == "table":
        print(f"Model: {cfg.model.name}")
    print(s.render(args.format))
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
    p.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    t = sub.add_parser("train", help="train a config into a workdir (resumes if it has checkpoints)")
    t.add_argument("--config", help="experiment file FILE.py[:ARG]; override keys with --config.a.b=VALUE")
    t.add_argument("--workdir", required=True, help="run directory")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    t.add_argument("--allow-config-change", action="store_true",
                   help="resume a workdir whose saved config differs from this one")
    t.add_argument("--overwrite", action="store_true",
                   help="delete the workdir's previous run and start afresh")
    t.add_argument("--coordinator", help="multi-host: coordinator address host:port (process 0)")
    t.add_argument("--num-processes", type=int, help="multi-host: number of processes")
    t.add_argument("--process-id", type=int, help="multi-host: this process's index")
    t.add_argument("--distributed", action="store_true",
                   help="multi-host: let JAX detect the cluster (SLURM, TPU pods, ...)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a run's checkpoint on the test split")
    e.add_argument("--workdir", required=True)
    e.add_argument("--checkpoint", default="latest", help="latest, best or a step number")
    e.add_argument("--split", default="test", help="split to evaluate (default: test)")
    e.add_argument("--json", action="store_true", help="print one JSON line")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("summary", help="layer table and parameter count (no weights allocated)")
    s.add_argument("--model", help="registered model name (default: the config's)")
    s.add_argument("--config", help="optional experiment file to take the model from")
    s.add_argument("--input-shape", help="H,W,C (default: the config's dataset)")
    s.add_argument("--num-classes", type=int, help="default: the config's dataset")
    s.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    s.set_defaults(func=cmd_summary)

    r = sub.add_parser("prepare", help="prepare a dataset as tfds ArrayRecord in --data-dir")
    r.add_argument("name", help="dataset name")
    r.add_argument("--data-dir", help="default: $CNN_JAX_DATA_DIR, $TFDS_DATA_DIR or ~/tensorflow_datasets")
    r.set_defaults(func=cmd_prepare)

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


COMMAND_MODULES = ("cnn_jax.study.cli", "cnn_jax.viz.cli", "cnn_jax.bench")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        host_device_flags(argv)
        from cnn_jax import config as config_lib

        overrides, rest = config_lib.parse_override_args(argv)
        parser = build_parser()
        args = parser.parse_args(rest)
        if not args.command:
            parser.print_help()
            return 2
        _setup_runtime(debug)
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


if __name__ == "__main__":
    raise SystemExit(main())
