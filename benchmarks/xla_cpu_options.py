"""``fit``'s training step under several XLA:CPU compile-option sets, side by side.

For each model and dtype, the same step (``bench.setup``: ``fit``'s runner, state and one
synthetic batch; the process has the XLA host devices ``cnn-jax train`` sets up) is
compiled once per option set, in one process, and the sets are timed in alternating
rounds; the figure is images/s (median over rounds) and the ratio to the option set
``fit`` uses (:func:`cnn_jax.conv.compiler_options`). Option sets this jaxlib refuses are
listed as such. Prints the CPU model and jax version first.

  python benchmarks/xla_cpu_options.py [--models lenet5,simple_cnn] [--dtypes float32,bfloat16]
"""

from __future__ import annotations

import argparse
import statistics
import time

# name -> compile options; every set but "jaxlib default" keeps YNNPACK off, as fit does
OPTION_SETS = {
    "fit (YNNPACK off)": {"xla_cpu_experimental_ynn_fusion_type": ""},
    "jaxlib default (YNNPACK on)": {},
    "+ 512-bit vectors": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_prefer_vector_width": 512},
    "+ oneDNN": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_use_onednn": True},
    "+ XNNPACK": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_use_xnnpack": True},
    "+ concurrency scheduler": {"xla_cpu_experimental_ynn_fusion_type": "",
                                "xla_cpu_enable_concurrency_optimized_scheduler": True},
    "+ fast math (changes numerics)": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_enable_fast_math": True},
}


def step_under(name: str, dtype: str, options: dict, batch_size: int):
    """``fit``'s step for ``name`` compiled with ``options`` (``throughput.jax_step``, the
    default parallel mode): a ``run(steps)``, or why it could not be compiled."""
    from throughput import jax_step  # this directory's script (run as a script, it is on the path)

    from cnn_jax import conv

    shape = (28, 28, 1) if name == "lenet5" else (32, 32, 3)
    saved = conv._CPU_OPTIONS
    conv._CPU_OPTIONS = options  # what compiler_options() returns ({}: jaxlib's defaults)
    try:
        if options and conv.compiler_options() is None:
            return "this jaxlib refuses the option set"
        return jax_step(name, shape, batch_size, "max", "auto", dtype)[0]
    except Exception as e:  # noqa: BLE001  (an option this XLA does not know: reported, not fatal)
        return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:120]}"
    finally:
        conv._CPU_OPTIONS = saved


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="lenet5,simple_cnn")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    from cnn_jax import runtime

    runtime.host_device_flags(["train"])
    import jax

    model, isa = runtime.cpu_model()
    print(f"{model} ({', '.join(isa)}), {runtime.usable_cpus()} CPUs; jax {jax.__version__}; "
          f"batch {args.batch_size}, {args.rounds} alternating rounds x {args.steps} steps")
    for name in args.models.split(","):
        for dtype in args.dtypes.split(","):
            runs = {k: step_under(name, dtype, o, args.batch_size) for k, o in OPTION_SETS.items()}
            ok = {k: r for k, r in runs.items() if callable(r)}
            times: dict[str, list[float]] = {k: [] for k in ok}
            for _ in range(args.rounds):
                for k, run in ok.items():
                    time.sleep(0.2)
                    t = time.perf_counter()
                    run(args.steps)
                    times[k].append(time.perf_counter() - t)
            ips = {k: args.steps * args.batch_size / statistics.median(v) for k, v in times.items()}
            base = ips.get("fit (YNNPACK off)")
            for k in OPTION_SETS:
                if k in ips:
                    ratio = f"{ips[k] / base:.2f}x" if base else "-"
                    print(f"{name:>10} {dtype:>8}  {k:<32} {ips[k]:8.0f} img/s  {ratio}")
                else:
                    print(f"{name:>10} {dtype:>8}  {k:<32} not compiled: {runs[k]}")


if __name__ == "__main__":
    main()
