"""The input pipeline at scale: streaming through grain workers vs decoding into memory.

Builds (once) a synthetic tfds ArrayRecord dataset of JPEGs (default 15,259 images of
256x256x3: 3.0 GB decoded, the ImageNet-sized case a 2-core machine can still hold for
comparison) and measures, each configuration in a fresh process:

* the one-core decode rate: the streaming path's per-example work (read the record, decode
  the JPEG, random-resized crop to ``--crop``, flip) in the calling thread
  (``data.workers=0``), the process pinned to one CPU (``sched_setaffinity``: XLA's
  threads, which normalise the batch, too); and the same unpinned, which lets XLA's
  threads use a second core (about 1.2 CPUs busy);

every batch as the training loop takes it, on the device: streamed batches as ``u8``
pixels normalised there, in-memory ones normalised on the host;
* the streaming path with 1, 2, 4 ... worker processes: time to the first batch,
  images/s delivered (once every worker has made its first batch), and the peak memory of
  the whole process tree (the sum over the processes of resident memory, RSS, and of
  proportional set size, PSS, which counts pages shared between processes, such as
  libraries, once);
* the in-memory path: the time to decode the split into memory (cold, no decoded cache),
  its images/s and peak memory;
* for each, images per CPU-second of the whole process tree against the one-core figure:
  the pipeline's own overhead (inter-process transfer, the training process's share),
  which other load on the machine does not change the way it changes wall-clock rates.

  python benchmarks/pipeline_scale.py [--num 15259] [--size 256] [--crop 224] [--batch 128]
      [--workers 1,2,4] [--batches 30] [--rounds 3] [--dir /tmp/cnn_jax_pipeline_scale]
      [--no-memory-path]

Prints one line per configuration and a Markdown table (benchmarks/RESULTS.md records it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

NAME = "pipeline_scale_jpegs"


def _tree(pid: int) -> list:
    import psutil

    try:
        procs = [psutil.Process(pid)]
        return procs + procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _tree_memory(pid: int, pss: bool) -> tuple[int, int]:
    """(sum of RSS, sum of PSS or 0) in bytes over ``pid`` and its descendants (PSS reads
    ``smaps_rollup``: about 2 ms a process, so it is sampled less often)."""
    import psutil

    rss = total_pss = 0
    for p in _tree(pid):
        try:
            if pss:
                full = p.memory_full_info()
                rss, total_pss = rss + full.rss, total_pss + getattr(full, "pss", full.rss)
            else:
                rss += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return rss, total_pss


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants."""
    import psutil

    total = 0.0
    for p in _tree(pid):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


class PeakSampler:
    """Samples the process tree's memory in a thread: RSS every ``every`` seconds, PSS every
    ``every_pss`` seconds."""

    def __init__(self, every: float = 0.05, every_pss: float = 1.0):
        self.every, self.every_pss, self.peak_rss, self.peak_pss = every, every_pss, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        next_pss = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            rss, pss = _tree_memory(os.getpid(), pss=now >= next_pss)
            if now >= next_pss:
                next_pss = now + self.every_pss
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def make_dataset(root: str, num: int, size: int) -> str:
    """Writes ``num`` JPEGs of ``size`` x ``size`` (smooth random images with noise, about
    natural-image JPEG sizes; quality 90) unless they are there."""
    import numpy as np
    from PIL import Image

    from cnn_jax.data import writer

    marker = os.path.join(root, f"{NAME}.json")
    want = {"num": num, "size": size}
    try:
        with open(marker) as f:
            if json.load(f) == want:
                return root
    except (OSError, ValueError):
        pass
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)

    def examples():
        rng = np.random.default_rng(0)
        for i in range(num):
            low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            img = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC), np.int16)
            img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
            yield writer.encode(img, "JPEG", quality=90), i % 1000

    t = time.perf_counter()
    writer.write_tfds(NAME, root, {"train": examples}, shape=(size, size, 3), num_classes=1000)
    print(f"wrote {num} JPEGs of {size}x{size} in {time.perf_counter() - t:.0f} s", flush=True)
    with open(marker, "w") as f:
        json.dump(want, f)
    return root


def _register(size: int):
    from cnn_jax import data
    from cnn_jax.data.registry import IMAGENET_MEAN, IMAGENET_STD, DatasetSpec

    if "pipeline_scale" not in data.DATASETS:
        data.registry.register(DatasetSpec("pipeline_scale", NAME, 1000, (size, size, 3),
                                           IMAGENET_MEAN, IMAGENET_STD))


def child(args) -> dict:
    """One configuration, in this (fresh) process."""
    from cnn_jax import data

    _register(args.size)
    kind, workers = args.child, args.child_workers
    if args.child_pin:  # before JAX starts its threads: they inherit it
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    t0 = time.perf_counter()
    with PeakSampler() as peak:
        if kind == "memory":
            # cold: decode every image (a copy of the data dir without the decoded cache)
            opts = data.Options(in_memory="true", max_memory_gb=1e3, crop_size=args.crop)
            split = data.load("pipeline_scale", "train", args.dir, opts)
            t_loaded = time.perf_counter() - t0
        else:
            opts = data.Options(in_memory="false", workers=workers, crop_size=args.crop)
            split = data.load("pipeline_scale", "train", args.dir, opts)
            t_loaded = None
        # as the training loop takes them: streamed batches as u8 pixels, normalised on the
        # device (included in the figures), in-memory ones normalised on the host
        import jax

        from cnn_jax.train.parallel import normalizing

        it = data.train_iterator(split, args.batch, seed=0, flip=True, normalized=False)
        put = normalizing(jax.device_put, split.spec)

        def take():
            jax.block_until_ready(put(next(it)))

        take()
        t_first = time.perf_counter() - t0
        for _ in range(max(workers, 1)):  # every worker started (its first batch made)
            take()
        t1, c1 = time.perf_counter(), _tree_cpu(os.getpid())
        for _ in range(args.batches):
            take()
        dt, cpu = time.perf_counter() - t1, _tree_cpu(os.getpid()) - c1
        if hasattr(it, "close"):
            it.close()
    n = len(split)
    decoded = n * args.size * args.size * 3
    return {
        "kind": kind, "workers": workers, "pinned": args.child_pin, "images_per_s": args.batches * args.batch / dt,
        # None: too short to register CPU time (the tiny sizes of a rehearsal)
        "images_per_cpu_s": args.batches * args.batch / cpu if cpu > 0 else None,
        "first_batch_s": t_first, "load_s": t_loaded, "peak_rss_gb": peak.peak_rss / 1e9,
        "peak_pss_gb": peak.peak_pss / 1e9, "decoded_gb": decoded / 1e9, "examples": n,
    }


def _run_child(args, kind: str, workers: int, pin: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--child-workers", str(workers),
           *(["--child-pin"] if pin else []),
           "--num", str(args.num), "--size", str(args.size), "--crop", str(args.crop),
           "--batch", str(args.batch), "--batches", str(args.batches), "--dir", args.dir]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"{kind} {workers}: failed\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=15259)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--rounds", type=int, default=3, help="repetitions of every configuration")
    p.add_argument("--dir", default="/tmp/cnn_jax_pipeline_scale")
    p.add_argument("--no-memory-path", action="store_true", help="skip the in-memory path")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    p.add_argument("--child-workers", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--child-pin", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.child:
        print(json.dumps(child(args)))
        return
    make_dataset(args.dir, args.num, args.size)
    counts = [int(x) for x in args.workers.split(",") if x]
    pin = hasattr(os, "sched_setaffinity")
    # Rounds: the one-core runs, then each worker count, again and again; each count's
    # per-worker figure is taken against the one-core run of its own round (the load of
    # this shared machine drifts between minutes), and the medians over rounds are printed.
    rounds: list[list[dict]] = []
    for _ in range(max(args.rounds, 1)):
        ones = [_run_child(args, "streaming", 0, pin=True)] if pin else []
        rounds.append(ones + [_run_child(args, "streaming", w) for w in [0, *counts]])
    rows = [_median_row([r[i] for r in rounds]) for i in range(len(rounds[0]))]
    w0 = len(rounds[0]) - len(counts)  # the first worker count's index

    def per_worker(i: int, w: int, base: int = 0) -> list[float]:
        return sorted(r[i]["images_per_s"] / w / r[base]["images_per_s"] for r in rounds)

    if not args.no_memory_path:
        cache = os.path.join(args.dir, NAME)
        for dirpath, dirnames, _ in os.walk(cache):  # cold: no decoded cache
            for d in dirnames:
                if d == ".cnn_jax_decoded":
                    shutil.rmtree(os.path.join(dirpath, d))
        rows.append(_run_child(args, "memory", 0))
    print(f"\ndataset: {rows[0]['examples']} JPEGs of {args.size}x{args.size}, "
          f"{rows[0]['decoded_gb']:.2f} GB decoded; crop {args.crop}, batch {args.batch}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; medians over "
          f"{len(rounds)} round(s) (per worker: against the same round's one-core run; range)")
    per_cpu = rows[0]["images_per_cpu_s"]
    counted = {i: per_worker(i, w) for i, w in enumerate(counts, w0) if w}
    print("| path | workers | images/s | per worker / one core | images per CPU-s / one core's | "
          "first batch (s) | peak RSS, tree (GB) | peak PSS, tree (GB) |")
    print("|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows):
        path = "in memory" if r["kind"] == "memory" else "streaming"
        per = "—"
        if i in counted:
            per = _spread(counted[i])
        workers = r["workers"] if r["kind"] == "streaming" else "—"
        if r["kind"] == "streaming" and not r["workers"]:
            workers = ("0 (one core)" if r["pinned"] or not pin
                       else "0 (calling thread, unpinned)")
        first = f"{r['first_batch_s']:.1f}"
        if r["load_s"] is not None:
            first += f" (decode {r['load_s']:.0f})"
        eff = (f"{r['images_per_cpu_s'] / per_cpu:.2f}" if r["images_per_cpu_s"] and per_cpu
               else "—")
        print(f"| {path} | {workers} | "
              f"{r['images_per_s']:.0f} | {per} | {eff} | {first} | {r['peak_rss_gb']:.2f} | "
              f"{r['peak_pss_gb']:.2f} |")
    if pin and counted:
        print("per worker against the unpinned calling thread instead: " + "; ".join(
            f"{w} worker(s) {_spread(per_worker(i, w, base=1))}"
            for i, w in enumerate(counts, w0) if w))


def _spread(v: list[float]) -> str:
    return f"{_median(v):.2f}" + (f" ({v[0]:.2f}–{v[-1]:.2f})" if len(v) > 1 else "")


def _median(values: list[float]) -> float:
    v = sorted(values)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2


def _median_row(runs: list[dict]) -> dict:
    """One configuration's runs → a row of medians (memory peaks: the largest)."""
    row = dict(runs[0])
    for k in ("images_per_s", "first_batch_s"):
        row[k] = _median([r[k] for r in runs])
    cpu = [r["images_per_cpu_s"] for r in runs if r["images_per_cpu_s"]]
    row["images_per_cpu_s"] = _median(cpu) if cpu else None
    for k in ("peak_rss_gb", "peak_pss_gb"):
        row[k] = max(r[k] for r in runs)
    return row


if __name__ == "__main__":
    main()
