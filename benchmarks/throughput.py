"""Training throughput of ``fit``'s exact step against PyTorch eager, side by side.

Same layers, batch, optimizer (Adam, lr 1e-3) and float32 on both sides; the JAX side is
the step ``fit`` runs for that model (``assemble.training_parts`` and ``assemble.make_runner``,
default ``parallel.mode=auto``, in a process with the XLA host devices ``cnn-jax train``
sets up). Rounds alternate between the frameworks in one process so that drift of the
shared machine hits both, with a short rest before each timed block so that neither
runtime's spinning worker threads eat into the other's time. Prints images/s and the ratio.

  pip install -e ".[bench]"          # torch==2.13.0 (CPU)
  python benchmarks/throughput.py [--batch-size 128] [--steps 50] [--rounds 5] [--pool max]
  python benchmarks/throughput.py --dtype bfloat16     # mixed precision on both sides
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def jax_step(name: str, shape, batch_size: int, pool: str, mode: str, dtype: str = "float32"):
    """``fit``'s step for ``name`` (base config: Adam 1e-3, float32) and its run function."""
    import jax

    from cnn_jax import bench
    from cnn_jax import config as config_lib
    from cnn_jax.train import assemble

    cfg = config_lib.base_config()
    cfg.model.name, cfg.model.pool, cfg.data.batch_size, cfg.parallel.mode = name, pool, batch_size, mode
    if dtype != "float32":  # compute dtype; parameters and optimizer state stay float32
        cfg.model.dtype = dtype
    # A fresh program: the process's cache would hand an earlier call's runner back for
    # the same config, compiled under whatever options or formulations were set then.
    assemble.PROGRAMS.clear()
    runner, state, batch = bench.setup(config_lib.resolve(cfg), shape, 10, 10_000)
    st = [state]

    def run(steps: int) -> None:
        s = st[0]
        for _ in range(steps):
            s, sums = runner.train_step(s, batch)
        jax.block_until_ready(sums)
        st[0] = s

    run(2)  # compile
    return run, f"{runner.mode}, {runner.num_devices} device(s)"


def alternate(runs: dict, rounds: int, steps: int, pause: float) -> dict[str, list[float]]:
    """Times each ``run(steps)`` of ``runs`` once per round, in turn, with ``pause`` seconds
    of rest before each block (so that one runtime's spinning threads do not eat into the
    next one's time): ``{name: [ms per step, one per round]}``."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            time.sleep(pause)
            t = time.perf_counter()
            run(steps)
            times[name].append((time.perf_counter() - t) / steps * 1e3)
    return times


def torch_step(name: str, shape, batch_size: int, pool: str, dtype: str = "float32"):
    import torch
    from torch import nn

    P = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
    h, w, c = shape
    if name == "lenet5":  # 6@5x5 SAME, pool, 16@5x5 VALID, pool, 120, 84, 10
        net = nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(), P,
            nn.Conv2d(6, 16, 5), nn.ReLU(), type(P)(2),
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10),
        )
    else:  # the seeds' TF CNN: conv32 3x3, pool, conv64 3x3, pool, conv64 3x3, dense 64, 10
        net = nn.Sequential(
            nn.Conv2d(c, 32, 3), nn.ReLU(), P, nn.Conv2d(32, 64, 3), nn.ReLU(), type(P)(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.ReLU(),
            nn.Linear(64, 10),
        )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(batch_size, c, h, w)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch_size))
    loss_fn = nn.CrossEntropyLoss()
    # mixed precision as PyTorch's users write it: the forward under CPU autocast
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    def run(steps: int) -> None:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()

    run(2)
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--pool", default="max")
    p.add_argument("--mode", default="auto", help="cnn_jax parallel mode (default: fit's default)")
    p.add_argument("--pause", type=float, default=0.5, help="seconds of rest before each timed block")
    p.add_argument("--models", default="lenet5,simple_cnn")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="compute dtype: cnn_jax model.dtype / torch.autocast(cpu, bfloat16)")
    args = p.parse_args()
    from cnn_jax import runtime

    runtime.host_device_flags(["train"])  # the XLA host devices `cnn-jax train` would have
    import torch

    shapes = {"lenet5": (28, 28, 1), "simple_cnn": (32, 32, 3)}
    import jax

    cpu, isa = runtime.cpu_model()
    print(f"{cpu} ({', '.join(isa)}); jax {jax.__version__}, torch {torch.__version__} "
          f"threads={torch.get_num_threads()}; batch {args.batch_size}, {args.rounds} interleaved "
          f"rounds x {args.steps} steps, pool={args.pool}, {args.dtype}")
    for name in args.models.split(","):
        jrun, mode = jax_step(name, shapes[name], args.batch_size, args.pool, args.mode, args.dtype)
        trun = torch_step(name, shapes[name], args.batch_size, args.pool, args.dtype)
        times = alternate({"jax": jrun, "torch": trun}, args.rounds, args.steps, args.pause)
        ips = {k: args.batch_size * 1e3 / statistics.median(v) for k, v in times.items()}
        print(f"{name:>10}: cnn_jax ({mode}) {ips['jax']:8.0f} img/s | torch {ips['torch']:8.0f} img/s"
              f" | ratio {ips['jax'] / ips['torch']:.2f}x")


if __name__ == "__main__":
    main()
