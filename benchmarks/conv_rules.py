"""``fit``'s whole training step under other convolution formulations, side by side.

A formulation that wins alone can lose in the step (XLA fuses differently around it), so
a change to the default rules (``CNN_JAX_CONV=rows``, :func:`cnn_jax.conv.rule_choice`;
a change is released as a new mode) is judged here, on the whole step: ``fit``'s step for
``--model`` is built once per variant (a fresh program each: ``throughput.jax_step``), the
variants are timed in alternating rounds in one process, and each is reported as ms per
step and its speed relative to the default rules' (``rules``).

A variant overrides the rules' choice for the layers with a given number of input
channels: ``CIN:FORWARD/INPUT_GRAD/KERNEL_GRAD``, ``-`` keeping the rules' part, several
layers joined by ``+``. The names are those of the registries in ``cnn_jax.conv``
(``FORWARD``, ``INPUT_GRAD``, ``KERNEL_GRAD``). An override is not checked against the
formulation's own applicability rule (``tuned`` mode checks it): the patch matrix of a
large kernel, say, is built if asked for.

  python benchmarks/conv_rules.py --model simple_cnn --shape 32,32,3 --variant 3:xla/-/- \\
      --variant 3:taps/-/patches [--torch] [--rounds 9] [--steps 30] [--batch-size 128]
  python benchmarks/conv_rules.py --model lenet5 --variant 1:-/-/patches --variant 6:-/col2im_nhwc/-
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

PARTS = ("forward", "input_grad", "kernel_grad")


def parse_variant(text: str) -> dict[int, tuple]:
    """``"1:taps/-/patches+6:-/xla/-"`` -> ``{1: ("taps", None, "patches"), 6: (None, "xla", None)}``;
    a one-line ``SystemExit`` naming the bad piece and the valid names otherwise."""
    from cnn_jax import conv, conv_tuning

    regs = (conv.FORWARD, conv.INPUT_GRAD, conv.KERNEL_GRAD)
    out = {}
    for piece in text.split("+"):
        cin, _, parts = piece.partition(":")
        names = parts.split("/")
        if not cin.isdigit() or len(names) != 3:
            raise SystemExit(f"--variant {text!r}: {piece!r} is not CIN:FORWARD/INPUT_GRAD/KERNEL_GRAD")
        for part, reg, name in zip(PARTS, regs, names):
            if name != "-" and name not in reg.names():
                raise SystemExit(f"--variant {text!r}: no {part} formulation {name!r}; "
                                 f"choose one of: {', '.join(reg.names())} (or - for the rules')")
        out[int(cin)] = tuple(None if n == "-" else n for n in names)
    return out


def rule_with(overrides: dict[int, tuple], base):
    """The rule ``base`` with ``overrides`` (by input channels) applied."""

    def rule(w_shape):
        choice = list(base(w_shape))
        for i, name in enumerate(overrides.get(int(w_shape[2]), (None, None, None))):
            choice[i] = name or choice[i]
        return tuple(choice)

    return rule


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lenet5")
    p.add_argument("--shape", default=None, help="H,W,C of the input (default: 28,28,1; 32,32,3 for simple_cnn)")
    p.add_argument("--variant", action="append", default=[], help="CIN:FORWARD/INPUT_GRAD/KERNEL_GRAD[+...]")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--pause", type=float, default=0.3, help="seconds of rest before each timed block")
    p.add_argument("--torch", action="store_true", help="PyTorch eager in the same rounds (lenet5, simple_cnn)")
    args = p.parse_args()
    from cnn_jax import runtime

    runtime.host_device_flags(["train"])
    import jax

    from cnn_jax import conv, conv_tuning

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import throughput

    if args.torch and args.model not in ("lenet5", "simple_cnn"):
        raise SystemExit(f"--torch: PyTorch twins exist for lenet5 and simple_cnn, not {args.model!r}")
    default_shape = "32,32,3" if args.model == "simple_cnn" else "28,28,1"
    shape = tuple(int(v) for v in (args.shape or default_shape).split(","))
    os.environ[conv_tuning.ENV] = conv_tuning.DEFAULT  # the rules the variants replace
    variants = {"rules": {}, **{v: parse_variant(v) for v in args.variant}}
    cpu, isa = runtime.cpu_model()
    print(f"{cpu} ({', '.join(isa)}); jax {jax.__version__}; {args.model} {shape}, batch {args.batch_size}, "
          f"{args.rounds} alternating rounds x {args.steps} steps")
    rules, runs = conv.rule_choice, {}
    try:
        for name, overrides in variants.items():
            conv.rule_choice = rule_with(overrides, rules)
            runs[name], mode = throughput.jax_step(args.model, shape, args.batch_size, "max", "auto")
    finally:
        conv.rule_choice = rules
    if args.torch:
        runs["torch eager"] = throughput.torch_step(args.model, shape, args.batch_size, "max")
    print(f"parallel mode: {mode}")
    times = throughput.alternate(runs, args.rounds, args.steps, args.pause)
    base = statistics.median(times["rules"])
    for name, v in times.items():
        med = statistics.median(v)
        print(f"{name:>28}: median {med:7.2f} ms/step, min {min(v):7.2f}; speed {base / med:5.2f}x the rules'")


if __name__ == "__main__":
    main()
