"""``cnn-jax viz``: figures of one run (filters, feature maps, curves, confusion, per class).

Top-level imports stay light (argparse only).
"""

from __future__ import annotations

import argparse

WHAT = ("filters", "features", "curves", "confusion", "per_class")


def cmd_viz(args, overrides) -> int:
    from cnn_jax.errors import UserError
    from cnn_jax.viz import plots

    if overrides:
        raise UserError("viz takes no --config overrides: it uses the run's saved config")
    from cnn_jax import experiment

    experiment.import_recorded(args.workdir)  # what the run's experiment file registered
    what = WHAT if args.what == "all" else (args.what,)
    checkpoint = args.checkpoint
    for path in plots.render(
        args.workdir, what, out=args.out, image_index=args.image_index, checkpoint=checkpoint
    ):
        print(path)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser(
        "viz",
        help="figures of a run: first-layer filters, feature maps, curves, confusion, per class",
        epilog="examples:\n  cnn-jax viz --workdir runs/lenet5\n"
        "  cnn-jax viz --workdir runs/lenet5 --what features --image-index 7 --out /tmp/figs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument(
        "--workdir",
        required=True,
        help="run directory (of `cnn-jax train`, or a sweep's trials/NAME)",
    )
    v.add_argument(
        "--what", choices=(*WHAT, "all"), default="all", help="which figure (default: all)"
    )
    v.add_argument(
        "--image-index", type=int, default=0, help="test image for the feature maps (default 0)"
    )
    v.add_argument("--out", help="output directory (default: WORKDIR/viz)")
    v.add_argument("--checkpoint", default="latest", help="latest, best or a step number")
    v.set_defaults(func=cmd_viz)
