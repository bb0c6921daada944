"""A 2048 x 2048 matrix product in float32 and bfloat16, XLA:CPU (under several compile
option sets) against PyTorch, side by side: the peak a convolution can reach, and whether
XLA:CPU reaches the CPU's bf16 units (AVX512-BF16, AMX) as PyTorch's oneDNN does.

  python benchmarks/matmul_dtypes.py [--n 2048] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

OPTION_SETS = {
    "jaxlib default": {},
    "YNNPACK off (fit's)": {"xla_cpu_experimental_ynn_fusion_type": ""},
    "oneDNN": {"xla_cpu_use_onednn": True},
    "XNNPACK": {"xla_cpu_use_xnnpack": True},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from cnn_jax import runtime

    model, isa = runtime.cpu_model()
    print(f"{model} ({', '.join(isa)}), {runtime.usable_cpus()} CPUs; jax {jax.__version__}, "
          f"torch {torch.__version__} threads={torch.get_num_threads()}; {args.n}x{args.n} @ {args.n}x{args.n}")
    n, flop = args.n, 2 * args.n**3
    a32 = np.random.default_rng(0).random((n, n), dtype=np.float32)
    for dtype, tdtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a = jnp.asarray(a32).astype(dtype)
        fns = {}
        for name, opts in OPTION_SETS.items():
            try:
                fns[name] = jax.jit(lambda a: a @ a, compiler_options=opts or None)
                jax.block_until_ready(fns[name](a))
            except Exception as e:  # noqa: BLE001  (an option this jaxlib does not know)
                print(f"{dtype:>8}  XLA {name:<22} not compiled: {str(e).splitlines()[0][:100]}")
                fns.pop(name)
        ta = torch.from_numpy(a32).to(tdtype)
        fns["PyTorch"] = lambda a, ta=ta: ta @ ta
        times = {k: [] for k in fns}
        for _ in range(args.rounds):
            for k, f in fns.items():
                t = time.perf_counter()
                for _ in range(args.reps):
                    out = f(a)
                if k != "PyTorch":
                    jax.block_until_ready(out)
                times[k].append((time.perf_counter() - t) / args.reps)
        for k, v in times.items():
            label = k if k == "PyTorch" else f"XLA {k}"
            print(f"{dtype:>8}  {label:<26} {flop / statistics.median(v) / 1e9:7.0f} GFLOP/s")


if __name__ == "__main__":
    main()
