"""Start-up: a fresh ``cnn-jax train`` process to its first trained step, cold and warm.

Runs ``cnn-jax train --config experiments/lenet5_mnist.py --config.train.steps=1`` in new
processes and reads the moment the first step finished (``first_step_at`` in the run's
``summary.json``), so the figure covers interpreter start, imports, config, data loading,
model initialisation, compilation (or the persistent-cache hit) and the step itself, and
not the evaluation and checkpoint after it. The embedded dataset is prepared beforehand
(a one-time cost, reported separately). ``cold``: an empty compilation cache
(``CNN_JAX_CACHE_DIR``); ``warm``: the same cache again. Goal: warm at most 3 s.

  python benchmarks/startup.py [--repeats 3] [--config experiments/lenet5_mnist.py]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def first_step_seconds(config: str, workdir: str, env: dict) -> float:
    cmd = [sys.executable, "-m", "cnn_jax", "train", "--config", config, "--workdir", workdir,
           "--quiet", "--config.train.steps=1", "--overwrite"]
    t0 = time.time()
    proc = subprocess.run(cmd, check=False, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"cnn-jax train failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)["first_step_at"] - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="experiments/lenet5_mnist.py")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, CNN_JAX_DATA_DIR=os.path.join(tmp, "data"))
        t = time.time()
        subprocess.run([sys.executable, "-m", "cnn_jax", "prepare", "mnist5k", "--data-dir", env["CNN_JAX_DATA_DIR"]],
                       env=env, cwd=ROOT, check=True, capture_output=True)
        print(f"prepare mnist5k (once): {time.time() - t:.2f} s")
        t = time.time()
        subprocess.run([sys.executable, "-c", "import cnn_jax.train, cnn_jax.data"], env=env, check=True)
        print(f"python -c 'import cnn_jax.train, cnn_jax.data': {time.time() - t:.2f} s")
        cold, warm = [], []
        for r in range(args.repeats):
            cache = os.path.join(tmp, f"cache{r}")
            env_r = dict(env, CNN_JAX_CACHE_DIR=cache)
            cold.append(first_step_seconds(args.config, os.path.join(tmp, f"run{r}"), env_r))
            warm.append(first_step_seconds(args.config, os.path.join(tmp, f"run{r}"), env_r))
        print(f"first step, cold cache: {statistics.median(cold):.2f} s (runs: {', '.join(f'{x:.2f}' for x in cold)})")
        print(f"first step, warm cache: {statistics.median(warm):.2f} s (runs: {', '.join(f'{x:.2f}' for x in warm)})")


if __name__ == "__main__":
    main()
