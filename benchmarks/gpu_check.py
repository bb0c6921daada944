"""The whole GPU check as one prepared command that stops itself inside its budget.

A GPU machine (one H200) is lent to some tasks only, for 15 minutes of device time in all,
so everything the accelerator path needs proving runs from this one command, which stops
itself inside ``--budget`` seconds (default 420: one run fits well inside 8 minutes, with
time left to rerun it). Each part runs in its own subprocess and time box; a part the
remaining budget cannot hold is reported as ``skipped``, one cut short by its box as
``partial``, with the reason.

On the GPU machine (device tool ``run`` with ``carry: [".whl"]`` and ``timeout_s: 480``)::

  PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT

after ``scripts/prepare_gpu_wheels.py`` has filled ``.whl`` here. The CPU rehearsal
(``tests/test_gpu_check.py`` runs it, so it cannot rot)::

  python benchmarks/gpu_check.py --platform cpu --quick --out /tmp/gpu_check

Parts, in this order:

* ``install``: the carried wheels whose distributions this Python lacks, with
  ``pip install --no-index --no-deps --target DIR`` (unpacked by hand where there is no
  pip); the project itself runs from the working tree (on ``PYTHONPATH``).
* ``devices``: JAX's devices and backend, package versions, ``nvidia-smi``.
* ``gpu_tests``: ``pytest -m gpu tests/test_gpu.py`` (``CNN_JAX_TEST_PLATFORM`` says
  which platform they must run on): single = sharded on one device with BatchNorm and
  max pooling; bfloat16 and float16 steps finite and close to float32;
  ``--xla_gpu_deterministic_ops=true`` steps bitwise repeatable; the steps compiled there
  hold none of ``cnn_jax.conv``'s CPU formulations (chosen per platform when lowering).
* ``matmul_peak``: 8192×8192 matrix products in float32 (JAX's default precision, i.e.
  TF32 on the GPU) and bfloat16: the peak the training steps are compared with; PyTorch's
  too (its default float32 matmul is full float32).
* ``throughput``: ``fit``'s exact step (:func:`cnn_jax.bench.setup`, chained steps as
  ``fit`` dispatches them) next to the same network in PyTorch eager (channels-last and
  cuDNN autotuning on the GPU, ``autocast`` for bfloat16, Adam 1e-3 on both sides), in
  interleaved rounds in one process: LeNet-5 (batch 1024, 28×28×1), the simple CNN
  (1024, 32×32×3), ResNet-20 and VGG-11-BN (512, 32×32×3), each in float32 and bfloat16;
  images/s, and achieved FLOP/s = 6 × the summary's MACs per image × images/s (forward
  plus twice for the backward pass) over the measured matmul peak of that dtype.
* ``seeds``: ``cnn-jax sweep`` of K = 8 seeds of ``experiments/lenet5_mnist.py`` (one
  epoch each), ``--vmap-seeds on`` against ``off``: the wall time of each command.
* ``torch_compile``: the throughput networks under ``torch.compile`` (if it works there).
* ``pooling_study``: ``cnn-jax sweep experiments/pooling_study.py`` (the default study,
  144 trials): its wall time, or the trials done when its box ends.
* ``streaming``: the streaming input pipeline's images/s by worker count (1 to 16 grain
  workers on 256×256 JPEGs cropped to 224, ``benchmarks/pipeline_scale.py``); skipped where
  that pipeline does not exist.

``--quick`` shrinks every part for the CPU rehearsal (1024² matrices; batches / 16,
ResNet-20 and VGG-11-BN at width 1/4, bfloat16 on LeNet-5 only, torch.compile on LeNet-5
only; 2 seeds of 3 steps; 4 trials of 3 steps of the pooling study; 32×32 JPEGs, 1 and 2
workers). Writes
``OUT/gpu_check.json`` (per part: ``status`` ok | partial | skipped | failed, ``reason``,
``seconds``, ``figures`` and details), ``OUT/gpu_check.md`` (the same as tables) and
``OUT/gpu_check.log`` (every part's output) after every part, so a run that is cut short
still leaves what it measured; ``--parts a,b`` reruns a subset.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata as md
import importlib.util
import json
import math
import os
import platform as platform_lib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = (
    "install",
    "devices",
    "gpu_tests",
    "matmul_peak",
    "throughput",
    "seeds",
    "torch_compile",
    "pooling_study",
    "streaming",
)
# Per part: (time box in s, least s worth starting) for a full run and for --quick.
BOXES = {
    "devices": ((60, 10), (45, 5)),
    "gpu_tests": ((150, 30), (90, 10)),
    "matmul_peak": ((45, 10), (30, 3)),
    "throughput": ((180, 40), (60, 10)),
    "seeds": ((100, 30), (60, 18)),
    "torch_compile": ((90, 30), (40, 10)),
    "pooling_study": ((240, 30), (45, 10)),
    "streaming": ((90, 20), (30, 10)),
}
# name, input shape, batch on the GPU; --quick: batch / 16 and the width below.
MODELS = (
    ("lenet5", (28, 28, 1), 1024, 1.0),
    ("simple_cnn", (32, 32, 3), 1024, 1.0),
    ("resnet20", (32, 32, 3), 512, 0.25),
    ("vgg11_bn", (32, 32, 3), 512, 0.25),
)
DTYPES = ("float32", "bfloat16")
K_SEEDS = 8
STATUSES = ("ok", "partial", "skipped", "failed")


# ============================================================================ orchestration


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out", required=True, help="folder for gpu_check.json, gpu_check.md, gpu_check.log"
    )
    p.add_argument("--platform", choices=("gpu", "cpu"), default="gpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the CPU rehearsal)")
    p.add_argument(
        "--budget", type=float, help="seconds for the whole run (default 420; --quick 115)"
    )
    p.add_argument("--parts", help=f"comma-separated subset of: {','.join(PARTS)}")
    p.add_argument(
        "--wheels", default=os.path.join(ROOT, ".whl"), help="carried wheels (default .whl)"
    )
    p.add_argument("--work", help="scratch folder (default: a temporary one, removed at the end)")
    # Internal: run one part in this process (the orchestrator starts these).
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.part:
        return _child(args)
    return _orchestrate(args)


def _orchestrate(args) -> int:
    t0 = time.time()
    budget = args.budget or (115.0 if args.quick else 420.0)
    deadline = t0 + budget
    parts = PARTS if not args.parts else tuple(s.strip() for s in args.parts.split(","))
    unknown = [s for s in parts if s not in PARTS]
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(unknown)}; choose from: {', '.join(PARTS)}")
    os.makedirs(args.out, exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="cnn-jax-gpu-check-")
    os.makedirs(work, exist_ok=True)
    site = os.path.join(work, "site")
    log_path = os.path.join(args.out, "gpu_check.log")
    with open(log_path, "w") as f:
        f.write(f"{' '.join(sys.argv)}\n")
    report = {
        "schema": 1,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "platform": args.platform,
        "quick": args.quick,
        "budget_s": budget,
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform_lib.node(),
        "python": sys.version.split()[0],
        "parts": {},
    }
    env = _child_env(args, work, site)
    print(
        f"gpu_check: platform {args.platform}{' (quick)' if args.quick else ''}, budget "
        f"{budget:.0f} s, parts {', '.join(parts)}; work in {work}",
        flush=True,
    )
    for name in PARTS:
        if name not in parts:
            continue
        start = time.time()
        if name == "install":
            rec = _install(args, site)
        else:
            box, least = BOXES[name][1 if args.quick else 0]
            # Each later part keeps the least it needs, so a slow early part shortens the
            # later ones instead of crowding them out.
            later = PARTS[PARTS.index(name) + 1 :]
            reserve = sum(BOXES[n][1 if args.quick else 0][1] for n in later if n in parts)
            left = deadline - time.time() - 3 - reserve
            if left < least:
                rec = {
                    "status": "skipped",
                    "reason": f"budget: {max(left, 0):.0f} s left of "
                    f"{budget:.0f} s, the part needs at least {least} s",
                }
            else:
                rec = _run_part(name, args, env, work, min(box, left), log_path)
        rec.setdefault("seconds", round(time.time() - start, 2))
        report["parts"][name] = rec
        print(
            f"gpu_check: {name}: {rec['status']}"
            + (f" ({rec['reason']})" if rec.get("reason") else "")
            + f" in {rec['seconds']:.1f} s",
            flush=True,
        )
        report["wall_s"] = round(time.time() - t0, 2)
        _write_report(report, args.out)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"gpu_check: wrote {os.path.join(args.out, 'gpu_check.json')} and gpu_check.md in "
        f"{report['wall_s']:.1f} s",
        flush=True,
    )
    return 1 if any(r["status"] == "failed" for r in report["parts"].values()) else 0


def _child_env(args, work: str, site: str) -> dict:
    env = dict(os.environ)
    path = [ROOT, site] + [x for x in env.get("PYTHONPATH", "").split(os.pathsep) if x]
    env.update(
        PYTHONPATH=os.pathsep.join(path),
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="3",
        CNN_JAX_DATA_DIR=os.path.join(work, "data"),
        # A fresh compilation cache (cold compile times), unless the caller names one (the
        # test suite's, in the rehearsal).
        CNN_JAX_CACHE_DIR=env.get("CNN_JAX_CACHE_DIR") or os.path.join(work, "xla"),
        # JAX and PyTorch share the GPU in the throughput part; 45 % of an H200 is 63 GB.
        XLA_PYTHON_CLIENT_MEM_FRACTION="0.45",
    )
    if args.platform == "cpu":
        env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    return env


def _run_part(name: str, args, env: dict, work: str, box: float, log_path: str) -> dict:
    """Runs part ``name`` in a subprocess with ``box`` seconds; its output goes to the log
    and to stdout. The part writes its record as it goes, so a killed part keeps what it
    measured."""
    result = os.path.join(work, f"{name}.json")
    if os.path.exists(result):
        os.remove(result)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--out",
        args.out,
        "--part",
        name,
        "--platform",
        args.platform,
        "--deadline",
        f"{time.time() + box - 2:.2f}",
        "--result",
        result,
        "--work",
        work,
        "--wheels",
        args.wheels,
    ]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tail: list[str] = []

    def pump() -> None:
        with open(log_path, "a") as log:
            log.write(f"\n===== {name} =====\n")
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                log.write(line)
                log.flush()
                sys.stdout.write(f"  [{name}] {line}")
                sys.stdout.flush()
                tail.append(line)
                del tail[:-40]

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    killed = False
    try:
        rc = proc.wait(timeout=box + 10)
    except subprocess.TimeoutExpired:
        killed = True
        _kill_group(proc)
        rc = proc.returncode
    try:  # what the part left behind in its process group (grain workers, a sweep's worker)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    reader.join(10)
    rec = _read_json(result) or {}
    if killed:
        has = bool(rec.get("figures"))
        rec["status"] = "partial" if has else "skipped"
        rec["reason"] = f"time box of {box:.0f} s reached; the part was stopped" + (
            "" if has else " before it had a figure"
        )
    elif "status" not in rec or (rc != 0 and rec["status"] != "failed"):
        rec.setdefault("reason", "")
        rec["status"] = "failed"
        rec["reason"] = (rec["reason"] + f" exit status {rc}: " + "".join(tail[-8:])).strip()
    return rec


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- install


def _wheel_name(filename: str) -> tuple[str, str]:
    try:
        from packaging.utils import canonicalize_name, parse_wheel_filename

        name, version, _, _ = parse_wheel_filename(filename)
        return canonicalize_name(name), str(version)
    except ImportError:  # pragma: no cover - packaging is everywhere pip is
        name, version = filename.split("-")[:2]
        return re.sub(r"[-_.]+", "-", name).lower(), version


def _install(args, site: str) -> dict:
    """Installs the carried wheels whose distributions this interpreter lacks into
    ``site`` (which the parts get on ``PYTHONPATH``, after the working tree)."""
    t = time.time()
    files = (
        sorted(f for f in os.listdir(args.wheels) if f.endswith(".whl"))
        if os.path.isdir(args.wheels)
        else []
    )
    if not files:
        if args.platform == "gpu":
            return {
                "status": "failed",
                "reason": f"no wheels in {args.wheels}: run "
                "scripts/prepare_gpu_wheels.py on the CPU machine and carry .whl",
            }
        return {
            "status": "skipped",
            "reason": f"no wheels in {args.wheels} (nothing to carry "
            "on this machine: its environment has the packages)",
        }
    present, missing = [], []
    for f in files:
        name, version = _wheel_name(f)
        try:
            present.append({"name": name, "carried": version, "here": md.version(name)})
        except md.PackageNotFoundError:
            missing.append(f)
    how = "nothing to install"
    if missing:
        os.makedirs(site, exist_ok=True)
        paths = [os.path.join(args.wheels, f) for f in missing]
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            site,
            *paths,
        ]
        p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
        how = "pip install --no-index --no-deps --target"
        if p.returncode != 0:
            if "No module named pip" not in p.stderr:
                return {"status": "failed", "reason": f"pip install failed: {p.stderr[-1500:]}"}
            for path in paths:
                _unpack_wheel(path, site)
            how = "unpacked (no pip here)"
    return {
        "status": "ok",
        "seconds": round(time.time() - t, 2),
        "how": how,
        "site": site,
        "project": f"working tree {ROOT} on PYTHONPATH",
        "installed": [_wheel_name(f)[0] + "==" + _wheel_name(f)[1] for f in missing],
        "already_here": present,
        "figures": {"wheels_carried": len(files)},
    }


def _unpack_wheel(path: str, site: str) -> None:
    """A wheel is a zip of the installed tree; ``*.data/purelib|platlib`` go to the top."""
    with zipfile.ZipFile(path) as z:
        for member in z.infolist():
            parts = member.filename.split("/")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers, data: not needed to import
                parts = parts[2:]
            if member.is_dir() or not parts[-1]:
                continue
            target = os.path.join(site, *parts)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


# ---------------------------------------------------------------------------- report


def _add_fractions(report: dict) -> None:
    """Achieved FLOP/s of each throughput row over the measured matmul peak of its dtype."""
    peak = report["parts"].get("matmul_peak", {}).get("figures", {})
    for part in ("throughput", "torch_compile"):
        for row in report["parts"].get(part, {}).get("rows", []):
            p = peak.get(f"jax_{row['dtype']}_tflops")
            for side in ("cnn_jax", "torch_eager", "torch_compile"):
                entry = row.get(side)
                if p and isinstance(entry, dict) and entry.get("tflops"):
                    entry["fraction_of_peak"] = round(entry["tflops"] / p, 4)


def _fmt(x, digits=0, pct=False) -> str:
    if x is None:
        return "—"
    if pct:
        return f"{100 * x:.1f} %"
    return f"{x:,.{digits}f}"


def _markdown(report: dict) -> str:
    parts = report["parts"]
    lines = [
        f"# gpu_check: {report['platform']}{' (quick)' if report['quick'] else ''}",
        "",
        (
            f"`{report['command']}` on {report['host']}, Python {report['python']}, started "
            f"{report['started_utc']}, {report.get('wall_s', 0):.0f} s of a "
            f"{report['budget_s']:.0f} s budget."
        ),
        "",
        "| part | status | seconds | note |",
        "|---|---|---:|---|",
    ]
    for name, rec in parts.items():
        note = (rec.get("reason") or "").replace("\n", " ").replace("|", "/")[:200]
        lines.append(f"| {name} | {rec['status']} | {rec.get('seconds', 0):.1f} | {note} |")
    dev = parts.get("devices", {})
    if dev.get("devices"):
        lines += [
            "",
            f"Devices: {', '.join(dev['devices'])} (backend {dev.get('backend')}); "
            + ", ".join(f"{k} {v}" for k, v in dev.get("versions", {}).items() if v),
        ]
    tests = parts.get("gpu_tests", {}).get("tests")
    if tests:
        lines += ["", "| GPU test | outcome | seconds |", "|---|---|---:|"]
        lines += [f"| {k} | {v['outcome']} | {v['seconds']:.1f} |" for k, v in tests.items()]
    peak = parts.get("matmul_peak", {}).get("figures")
    if peak:
        n = parts["matmul_peak"].get("size")
        lines += [
            "",
            f"Matmul peak ({n}×{n}): " + ", ".join(f"{k} {v:,.1f}" for k, v in peak.items()),
        ]
    rows = parts.get("throughput", {}).get("rows", [])
    compiled = {
        (r["model"], r["dtype"]): r.get("torch_compile")
        for r in parts.get("torch_compile", {}).get("rows", [])
    }
    if rows:
        lines += [
            "",
            (
                "| model | dtype | batch | MMACs/img | cnn_jax img/s | torch eager img/s | ratio | "
                "torch.compile img/s | cnn_jax TFLOP/s | of peak | torch eager of peak |"
            ),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            j, t = r.get("cnn_jax") or {}, r.get("torch_eager") or {}
            c = compiled.get((r["model"], r["dtype"])) or {}
            ji, ti = j.get("images_per_second"), t.get("images_per_second")
            lines.append(
                f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['macs_per_image'] / 1e6:.2f} | "
                f"{_fmt(ji)} | {_fmt(ti)} | {_fmt(ji / ti if ji and ti else None, 2)} | "
                f"{_fmt(c.get('images_per_second'))} | {_fmt(j.get('tflops'), 2)} | "
                f"{_fmt(j.get('fraction_of_peak'), pct=True)} | "
                f"{_fmt(t.get('fraction_of_peak'), pct=True)} |"
            )
    seeds = parts.get("seeds", {})
    if seeds.get("figures"):
        f = seeds["figures"]
        lines += [
            "",
            (
                f"Seeds (K = {seeds.get('k')}): vmapped {_fmt(f.get('vmapped_s'), 1)} s, "
                f"sequential {_fmt(f.get('sequential_s'), 1)} s, speed-up "
                f"{_fmt(f.get('speedup'), 2)}×"
            ),
        ]
    pool = parts.get("pooling_study", {})
    if pool.get("figures"):
        lines += [
            "",
            (
                f"Pooling study: {pool.get('trials_done')} of {pool.get('trials_total')} "
                f"trials in {_fmt(pool['figures'].get('wall_s'), 1)} s ({pool['status']})"
            ),
        ]
    stream = parts.get("streaming", {})
    if stream.get("images_per_second_by_workers"):
        lines += [
            "",
            "Streaming pipeline, images/s by workers: "
            + ", ".join(
                f"{k}: {_fmt(v)}" for k, v in stream["images_per_second_by_workers"].items()
            ),
        ]
    return "\n".join(lines) + "\n"


def _write_report(report: dict, out: str) -> None:
    _add_fractions(report)
    _write_json(os.path.join(out, "gpu_check.json"), report)
    with open(os.path.join(out, "gpu_check.md"), "w") as f:
        f.write(_markdown(report))


# ============================================================================ parts (children)


def _child(args) -> int:
    rec: dict = {"status": "ok", "figures": {}}

    def save() -> None:
        _write_json(args.result, rec)

    try:
        PART_FUNCS[args.part](args, rec, save)
    except subprocess.TimeoutExpired as e:  # a command ran into the part's time box
        rec["status"] = "partial" if rec["figures"] else "skipped"
        cmd = " ".join(map(str, e.cmd)) if isinstance(e.cmd, list) else str(e.cmd)
        rec["reason"] = f"time box reached after {e.timeout:.0f} s in: {cmd[:300]}"
        save()
        return 0
    except Exception as e:  # noqa: BLE001  (a part's bug or a broken environment: say which)
        rec["status"] = "failed"
        rec["reason"] = f"{type(e).__name__}: {e}"[:2000]
        rec["traceback"] = traceback.format_exc()[-4000:]
        save()
        traceback.print_exc()
        return 1
    if not rec["figures"] and rec["status"] in ("ok", "partial"):
        rec["status"] = "skipped"
        rec.setdefault("reason", "nothing measured")
    save()
    return 0


def _left(args) -> float:
    return args.deadline - time.time()


def _check_backend(args) -> str:
    import jax

    backend = jax.default_backend()
    if args.platform == "gpu" and backend != "gpu":
        raise RuntimeError(f"JAX runs on {backend}, not on the GPU (devices: {jax.devices()})")
    return backend


def part_devices(args, rec, save) -> None:
    import jax

    devices = jax.devices()
    rec["backend"] = jax.default_backend()
    rec["devices"] = [f"{d.platform}:{d.id} {d.device_kind}" for d in devices]
    print("jax devices:", *rec["devices"], sep="\n  ")
    names = (
        "jax",
        "jaxlib",
        "jax-cuda13-plugin",
        "jax-cuda13-pjrt",
        "jax-cuda12-plugin",
        "flax",
        "optax",
        "orbax-checkpoint",
        "numpy",
        "tensorflow-datasets",
        "grain",
        "ml-collections",
        "mlxtend",
        "tensorboardx",
        "scikit-learn",
        "torch",
        "triton",
    )
    versions = {}
    for n in names:
        try:
            versions[n] = md.version(n)
        except md.PackageNotFoundError:
            versions[n] = None
    rec["versions"] = versions
    import cnn_jax.data
    import cnn_jax.study
    import cnn_jax.train  # noqa: F401

    rec["cnn_jax_from"] = os.path.dirname(importlib.util.find_spec("cnn_jax").origin)
    # The throughput part runs JAX and PyTorch in one process: a convolution in each here
    # first (cuDNN loaded by both), so a clash shows up in this small part.
    import jax.numpy as jnp

    conv = jax.lax.conv_general_dilated(
        jnp.ones((2, 8, 8, 3)),
        jnp.ones((3, 3, 3, 4)),
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    assert float(conv.sum()) > 0
    try:
        import torch

        rec["torch_cuda"] = torch.cuda.is_available()
        if rec["torch_cuda"]:
            rec["torch_device"] = torch.cuda.get_device_name(0)
            rec["torch_cuda_version"] = torch.version.cuda
        dev = _torch_device(args)
        y = torch.nn.functional.conv2d(
            torch.ones(2, 3, 8, 8, device=dev), torch.ones(4, 3, 3, 3, device=dev)
        )
        assert float(y.sum()) > 0
        rec["jax_and_torch_in_one_process"] = "ok: a convolution in each"
    except ImportError:
        rec["torch_cuda"] = None
    if shutil.which("nvidia-smi"):
        p = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                "--format=csv,noheader",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=20,
        )
        rec["nvidia_smi"] = p.stdout.strip() or p.stderr.strip()
        print("nvidia-smi:", rec["nvidia_smi"])
    rec["figures"] = {"devices": len(devices)}
    _check_backend(args)


def part_gpu_tests(args, rec, save) -> None:
    import xml.etree.ElementTree as ET

    junit = os.path.join(os.path.dirname(args.result), "gpu_tests.xml")
    env = dict(os.environ, CNN_JAX_TEST_PLATFORM=args.platform)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "tests/test_gpu.py",
        "-m",
        "gpu",
        "-q",
        "-rA",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
    ]
    p = subprocess.run(cmd, check=False, cwd=ROOT, env=env, timeout=max(_left(args), 1))
    tests = {}
    if os.path.exists(junit):
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome = "passed"
            message = ""
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[
                        child.tag
                    ]
                    message = (child.get("message") or "")[:500]
            tests[case.get("name")] = {
                "outcome": outcome,
                "seconds": float(case.get("time", 0)),
                **({"message": message} if message else {}),
            }
    rec["tests"] = tests
    passed = sum(t["outcome"] == "passed" for t in tests.values())
    bad = {k: t for k, t in tests.items() if t["outcome"] != "passed"}
    rec["figures"] = {"passed": passed} if passed else {}
    if p.returncode != 0 or bad or not tests:
        rec["status"] = "failed"
        rec["reason"] = (
            f"pytest exit {p.returncode}; "
            + "; ".join(f"{k}: {t['outcome']} {t.get('message', '')}" for k, t in bad.items())
        )[:2000]


def part_matmul_peak(args, rec, save) -> None:
    import jax
    import jax.numpy as jnp

    _check_backend(args)
    n = 1024 if args.quick else 8192
    reps = 3 if args.quick else 20
    rec["size"] = n
    rec["precision"] = "JAX default (TF32 for float32 on the GPU); torch defaults"
    key = jax.random.PRNGKey(0)
    dot = jax.jit(lambda a, b: a @ b)
    for dtype in DTYPES:
        a = jax.random.normal(key, (n, n), jnp.dtype(dtype))
        b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), jnp.dtype(dtype))
        dot(a, b).block_until_ready()
        best = math.inf
        for _ in range(3):
            t = time.perf_counter()
            outs = [dot(a, b) for _ in range(reps)]
            jax.block_until_ready(outs)  # all of them: a CPU client may run them concurrently
            best = min(best, (time.perf_counter() - t) / reps)
            del outs
        rec["figures"][f"jax_{dtype}_tflops"] = round(2 * n**3 / best / 1e12, 3)
        save()
    try:
        import torch
    except ImportError:
        rec["torch"] = "skipped: torch is not installed"
        return
    dev = _torch_device(args)
    rec["torch_allow_tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    for dtype in DTYPES:
        td = getattr(torch, dtype)
        a = torch.randn(n, n, device=dev, dtype=td)
        b = torch.randn(n, n, device=dev, dtype=td)
        _torch_sync(dev)
        best = math.inf
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                c = a @ b
            _torch_sync(dev)
            best = min(best, (time.perf_counter() - t) / reps)
        del c
        rec["figures"][f"torch_{dtype}_tflops"] = round(2 * n**3 / best / 1e12, 3)
        save()


# ---------------------------------------------------------------------------- throughput


def _torch_device(args):
    import torch

    if args.platform == "gpu":
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def _torch_sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def torch_net(name: str, in_ch: int, width: float = 1.0):
    """The zoo network ``name`` in PyTorch, layer for layer (cnn_jax.models): LeNet-5 and
    the simple CNN as in benchmarks/throughput.py, the CIFAR ResNet-20 with option-A
    shortcuts, VGG-11-BN in torchvision's layout (adaptive average pool to 7×7)."""
    from torch import nn
    from torch.nn import functional as F

    def ch(c: int) -> int:
        return max(1, round(c * width))

    if name == "lenet5":
        return nn.Sequential(
            nn.Conv2d(in_ch, ch(6), 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(ch(6), ch(16), 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(ch(16) * 25, ch(120)),
            nn.ReLU(),
            nn.Linear(ch(120), ch(84)),
            nn.ReLU(),
            nn.Linear(ch(84), 10),
        )
    if name == "simple_cnn":
        return nn.Sequential(
            nn.Conv2d(in_ch, ch(32), 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(ch(32), ch(64), 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(ch(64), ch(64), 3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(ch(64) * 16, ch(64)),
            nn.ReLU(),
            nn.Linear(ch(64), 10),
        )
    if name == "resnet20":

        class Block(nn.Module):
            def __init__(self, cin: int, cout: int, stride: int):
                super().__init__()
                self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(cout)
                self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(cout)
                self.stride, self.extra = stride, cout - cin

            def forward(self, x):
                y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
                s = x
                if self.stride > 1 or self.extra:  # option A: subsample, zero-pad channels
                    s = x[:, :, :: self.stride, :: self.stride]
                    lo = self.extra // 2
                    s = F.pad(s, (0, 0, 0, 0, lo, self.extra - lo))
                return F.relu(y + s)

        layers = [nn.Conv2d(in_ch, ch(16), 3, 1, 1, bias=False), nn.BatchNorm2d(ch(16)), nn.ReLU()]
        cin = ch(16)
        for i, c in enumerate((16, 32, 64)):
            for j in range(3):
                layers.append(Block(cin, ch(c), 2 if i > 0 and j == 0 else 1))
                cin = ch(c)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
        return nn.Sequential(*layers)
    if name == "vgg11_bn":
        layers, cin = [], in_ch
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, ch(v), 3, padding=1), nn.BatchNorm2d(ch(v)), nn.ReLU()]
                cin = ch(v)
        layers += [
            nn.AdaptiveAvgPool2d(7),
            nn.Flatten(),
            nn.Linear(cin * 49, ch(4096)),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(ch(4096), ch(4096)),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(ch(4096), 10),
        ]
        return nn.Sequential(*layers)
    raise ValueError(f"no PyTorch version of {name!r}; have lenet5, simple_cnn, resnet20, vgg11_bn")


def _torch_runner(name, shape, batch, dtype, width, dev, compiled: bool):
    """``run(k)``: k Adam steps of the PyTorch network, synchronised at the end."""
    import numpy as np
    import torch
    from torch import nn

    h, w, c = shape
    net = torch_net(name, c, width).to(dev)
    fmt = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(batch, c, h, w)).astype(np.float32)).to(dev)
    x = x.contiguous(memory_format=fmt)
    y = torch.from_numpy(rng.integers(0, 10, batch)).to(dev)
    model = torch.compile(net) if compiled else net
    loss_fn = nn.CrossEntropyLoss()
    low = dtype == "bfloat16"

    def run(k: int) -> None:
        for _ in range(k):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=low):
                loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        _torch_sync(dev)

    return run


def _jax_runner(name, shape, batch, dtype, width):
    """``(run(k), info)``: k chained steps of ``fit``'s step (``bench.setup``), waited for
    at the end, as ``fit`` dispatches them."""
    import jax

    from cnn_jax import bench
    from cnn_jax import experiment as experiment_lib

    overrides = [("model.name", name), ("data.batch_size", str(batch)), ("model.dtype", dtype)]
    if width != 1.0:
        overrides.append(("model.width", str(width)))
    cfg = experiment_lib.from_args(None, overrides)
    runner, state, dev_batch = bench.setup(cfg, shape, 10, 1_000_000)
    held = [state]

    def run(k: int) -> None:
        s = held[0]
        for _ in range(k):
            s, sums = runner.train_step(s, dev_batch)
        jax.block_until_ready(sums)
        held[0] = s

    return run, {"mode": runner.mode, "devices": runner.num_devices}


def _macs(name: str, shape, width: float) -> int:
    from cnn_jax import models, summary

    opts = {"width": width} if width != 1.0 else {}
    return summary.summarize_model(models.create(name, 10, **opts), tuple(shape)).total_macs


def _timed(run, k: int) -> float:
    t = time.perf_counter()
    run(k)
    return time.perf_counter() - t


def _measure(runs: dict, batch: int, macs: int, quick: bool, args) -> dict:
    """Interleaved rounds over ``runs = {side: run}`` (already compiled): images/s from the
    median step time of each side, and achieved TFLOP/s = 6 · MACs · images/s."""
    target = 0.05 if quick else 0.3  # seconds per timed block
    rounds = 2 if quick else 5
    steps, per_step = {}, {s: [] for s in runs}
    for side, run in runs.items():
        t = _timed(run, 2) / 2
        steps[side] = int(min(300, max(2, round(target / max(t, 1e-6)))))
    # A rest before each timed block: on CPU one runtime's spinning worker threads would
    # otherwise eat into the other's time (benchmarks/throughput.py does the same).
    pause = 0.3 if args.platform == "cpu" else 0.05
    for _ in range(rounds):
        for side, run in runs.items():
            time.sleep(pause)
            per_step[side].append(_timed(run, steps[side]) / steps[side])
        if _left(args) < 5:
            break
    out = {}
    for side, times in per_step.items():
        sec = statistics.median(times)
        ips = batch / sec
        out[side] = {
            "images_per_second": round(ips, 1),
            "step_ms": round(sec * 1e3, 3),
            "steps_per_round": steps[side],
            "rounds": len(times),
            "tflops": round(6 * macs * ips / 1e12, 4),
        }
    return out


def _model_rows(args, rec, save, *, compiled_only: bool) -> None:
    """The throughput part (cnn_jax and torch eager) or the torch_compile part."""
    try:
        import torch

        dev = _torch_device(args)
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
        torch_reason = None
    except ImportError:
        torch, dev, torch_reason = None, None, "torch is not installed"
    if compiled_only and torch is None:
        rec["status"], rec["reason"] = "skipped", torch_reason
        return
    if not compiled_only:
        _check_backend(args)
    rec["rows"], rec["skipped_rows"] = [], []
    rec["settings"] = {
        "optimizer": "Adam 1e-3 on both sides",
        "jax": "fit's step via cnn_jax.bench.setup (parallel.mode=auto), chained steps",
        "torch": (
            "channels_last, cudnn.benchmark, autocast(bfloat16) for bfloat16, default foreach Adam"
            if dev is not None and dev.type == "cuda"
            else "CPU, autocast(bfloat16) for bfloat16"
        ),
        "flop_per_image": "6 x MACs of one forward pass (cnn_jax.summary)",
    }
    errors = []
    least = 8 if args.quick else 30  # seconds a row needs (a compile and a few rounds)
    for name, shape, batch, qwidth in MODELS:
        b = max(8, batch // 16) if args.quick else batch
        width = qwidth if args.quick else 1.0
        for dtype in DTYPES:
            if args.quick and dtype != "float32" and name != "lenet5":
                continue  # the rehearsal: every network once, bfloat16 on LeNet-5 only
            if compiled_only and args.quick and (name, dtype) != ("lenet5", "float32"):
                continue  # the rehearsal compiles one network: torch.compile on CPU is slow
            if _left(args) < least:
                rec["skipped_rows"].append({"model": name, "dtype": dtype, "reason": "budget"})
                save()
                continue
            row = {
                "model": name,
                "dtype": dtype,
                "batch": b,
                "input_shape": list(shape),
                "width": width,
                "macs_per_image": _macs(name, shape, width),
            }
            runs = {}
            try:
                if compiled_only:
                    t = time.perf_counter()
                    runs["torch_compile"] = _torch_runner(name, shape, b, dtype, width, dev, True)
                    runs["torch_compile"](1)
                    row["torch_compile_first_step_s"] = round(time.perf_counter() - t, 2)
                else:
                    t = time.perf_counter()
                    jrun, info = _jax_runner(name, shape, b, dtype, width)
                    jrun(1)
                    row["cnn_jax_first_step_s"] = round(time.perf_counter() - t, 2)
                    row["cnn_jax_setup"] = info
                    runs["cnn_jax"] = jrun
                    if torch is not None:
                        t = time.perf_counter()
                        runs["torch_eager"] = _torch_runner(
                            name, shape, b, dtype, width, dev, False
                        )
                        runs["torch_eager"](1)
                        row["torch_eager_first_step_s"] = round(time.perf_counter() - t, 2)
                    else:
                        row["torch_eager"] = {"skipped": torch_reason}
                row.update(_measure(runs, b, row["macs_per_image"], args.quick, args))
                for side in runs:
                    rec["figures"][f"{name}.{dtype}.{side}_images_per_second"] = row[side][
                        "images_per_second"
                    ]
            except Exception as e:
                if not compiled_only:
                    raise
                row["torch_compile"] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
                errors.append(f"{name} {dtype}: {type(e).__name__}")
            rec["rows"].append(row)
            runs.clear()
            gc.collect()
            if torch is not None and dev.type == "cuda":
                torch.cuda.empty_cache()
            save()
    if errors:
        rec["status"] = "partial" if rec["figures"] else "skipped"
        rec["reason"] = "torch.compile did not work for " + ", ".join(errors)
    elif rec["skipped_rows"]:
        rec["status"] = "partial"
        rec["reason"] = f"budget: {len(rec['skipped_rows'])} row(s) not measured"
    if torch_reason and not compiled_only:
        rec["reason"] = (rec.get("reason", "") + f"; PyTorch side skipped: {torch_reason}").lstrip(
            "; "
        )


def part_throughput(args, rec, save) -> None:
    _model_rows(args, rec, save, compiled_only=False)


def part_torch_compile(args, rec, save) -> None:
    _model_rows(args, rec, save, compiled_only=True)


# ---------------------------------------------------------------------------- sweeps


def _cnn_jax(*argv: str) -> list[str]:
    return [sys.executable, "-m", "cnn_jax", *argv]


def _write_experiment(path: str, body: str) -> str:
    with open(path, "w") as f:
        f.write(body)
    return path


def _sweep(args, experiment: str, workdir: str, extra: list[str], box: float) -> dict:
    """Runs ``cnn-jax sweep`` for at most ``box`` s (then SIGTERM: trials checkpoint) and
    reads what got done from ``cnn-jax status``."""
    cmd = _cnn_jax("sweep", experiment, "--workdir", workdir, *extra)
    print("$", " ".join(cmd), flush=True)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)  # in this part's process group: killed with it
    try:
        rc = proc.wait(timeout=max(box, 1))
        stopped = False
    except subprocess.TimeoutExpired:
        stopped = True
        proc.terminate()  # the sweep stops its workers, which checkpoint their trials
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    wall = time.perf_counter() - t
    st = subprocess.run(
        _cnn_jax("status", workdir),
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    total = re.search(r"(\d+) trials", st.stdout)
    done = re.search(r"\bdone (\d+)", st.stdout)
    return {
        "wall_s": round(wall, 2),
        "rc": rc,
        "stopped": stopped,
        "trials_total": int(total.group(1)) if total else None,
        "trials_done": int(done.group(1)) if done else None,
    }


def part_seeds(args, rec, save) -> None:
    work = os.path.dirname(args.result)
    data_dir = os.environ["CNN_JAX_DATA_DIR"]
    t = time.perf_counter()
    subprocess.run(
        _cnn_jax("prepare", "mnist5k", "--data-dir", data_dir),
        cwd=ROOT,
        check=True,
        timeout=max(_left(args), 1),
    )
    rec["prepare_s"] = round(time.perf_counter() - t, 2)
    k = 2 if args.quick else K_SEEDS
    rec["k"] = k
    exp = _write_experiment(
        os.path.join(work, "seeds_experiment.py"),
        f'''"""gpu_check: K seeds of LeNet-5."""
from cnn_jax import study
from cnn_jax.experiment import load_experiment


def get_config(arg=""):
    return load_experiment({os.path.join(ROOT, "experiments", "lenet5_mnist.py")!r})


def get_sweep(arg=""):
    return study.Study(study.grid({{"model.pool": ["max"]}}), seeds={k}, shift_consistency=0,
                       title="gpu_check seeds", question="vmapped against sequential seeds")
''',
    )
    extra = [
        "--workers",
        "1",
        "--config.train.steps=3" if args.quick else "--config.train.epochs=1",
    ]
    rec["command"] = f"cnn-jax sweep {exp} --vmap-seeds on|off " + " ".join(extra)
    # vmapped first: it also pays for decoding the dataset into its cache, so the
    # speed-up it gets is if anything understated.
    for mode, key in (("on", "vmapped"), ("off", "sequential")):
        if _left(args) < 10:
            rec["status"], rec["reason"] = "partial", f"budget: the {key} sweep did not run"
            break
        r = _sweep(
            args,
            exp,
            os.path.join(work, f"seeds_{key}"),
            ["--vmap-seeds", mode, *extra],
            _left(args) - 5,
        )
        rec[key] = r
        if r["rc"] != 0 or r["trials_done"] != k:
            if r["stopped"]:
                rec["status"], rec["reason"] = "partial", f"budget: the {key} sweep was stopped"
                break
            raise RuntimeError(
                f"the {key} sweep ended with status {r['rc']}, {r['trials_done']} of {k} done"
            )
        rec["figures"][f"{key}_s"] = r["wall_s"]
        save()
    f = rec["figures"]
    if "vmapped_s" in f and "sequential_s" in f:
        f["speedup"] = round(f["sequential_s"] / f["vmapped_s"], 3)


def part_pooling_study(args, rec, save) -> None:
    work = os.path.dirname(args.result)
    study_file = os.path.join(ROOT, "experiments", "pooling_study.py")
    if args.quick:  # 4 trials of the default study, 3 steps each
        exp = _write_experiment(
            os.path.join(work, "pooling_quick.py"),
            f'''"""gpu_check: a slice of the pooling study."""
import importlib.util

from cnn_jax import study

_spec = importlib.util.spec_from_file_location("pooling_study", {study_file!r})
_study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_study)


def get_config(arg=""):
    return _study.get_config(arg)


def get_sweep(arg=""):
    return study.Study(study.grid({{"model.name": ["lenet5"], "model.pool": ["max", "avg"]}}),
                       seeds=2, baseline={{"model.pool": "max"}}, title="gpu_check pooling slice")
''',
        )
        extra = ["--config.train.steps=3"]
    else:
        exp, extra = study_file, []
    rec["command"] = (
        f"cnn-jax sweep {os.path.relpath(exp, ROOT) if not args.quick else exp} " + " ".join(extra)
    )
    # Leave time for the stopped sweep to checkpoint and for `cnn-jax status`.
    r = _sweep(
        args, exp, os.path.join(work, "pooling"), extra, _left(args) - (8 if args.quick else 25)
    )
    rec.update(trials_total=r["trials_total"], trials_done=r["trials_done"], rc=r["rc"])
    rec["figures"]["wall_s"] = r["wall_s"]
    if r["trials_done"]:
        rec["figures"]["trials_done"] = r["trials_done"]
        rec["figures"]["trials_per_minute"] = round(60 * r["trials_done"] / r["wall_s"], 2)
    if r["stopped"]:
        rec["status"] = "partial"
        rec["reason"] = (
            f"time box: stopped after {r['wall_s']:.0f} s with {r['trials_done']} of "
            f"{r['trials_total']} trials done (rerun with --parts pooling_study "
            "and a larger --budget for the whole study)"
        )
    elif r["rc"] != 0 or r["trials_done"] != r["trials_total"]:
        raise RuntimeError(
            f"the sweep ended with status {r['rc']}, {r['trials_done']} of "
            f"{r['trials_total']} trials done"
        )


def part_streaming(args, rec, save) -> None:
    """The streaming input pipeline's images/s by worker count, through
    ``benchmarks/pipeline_scale.py`` (synthetic JPEGs, its own fresh process per count)."""
    script = os.path.join(ROOT, "benchmarks", "pipeline_scale.py")
    missing = [
        what
        for what, there in (
            ("cnn_jax.data.streaming", importlib.util.find_spec("cnn_jax.data.streaming")),
            ("benchmarks/pipeline_scale.py", os.path.exists(script)),
        )
        if not there
    ]
    if missing:
        rec["status"] = "skipped"
        rec["reason"] = f"the streaming pipeline's {' and '.join(missing)} does not exist yet"
        return
    if args.quick:
        sizes, counts = (
            ["--num", "256", "--size", "32", "--crop", "28", "--batch", "32", "--batches", "4"],
            (1, 2),
        )
    else:  # ImageNet-like JPEGs: 256x256, random-resized crop to 224
        sizes = [
            "--num",
            "2048",
            "--size",
            "256",
            "--crop",
            "224",
            "--batch",
            "128",
            "--batches",
            "10",
        ]
        counts = (1, 2, 4, 8, 16)
    rec["command"] = (
        "python benchmarks/pipeline_scale.py " + " ".join(sizes) + " --workers W --no-memory-path"
    )
    rec["images_per_second_by_workers"] = {}
    data_dir = os.path.join(os.path.dirname(args.result), "pipeline_scale")
    for w in counts:
        if _left(args) < 8:
            rec["status"], rec["reason"] = "partial", f"budget: stopped before {w} workers"
            break
        p = subprocess.run(
            [
                sys.executable,
                script,
                *sizes,
                "--workers",
                str(w),
                "--no-memory-path",
                "--rounds",
                "1",
                "--dir",
                data_dir,
            ],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=max(_left(args) - 3, 1),
        )
        print(p.stdout[-2000:], flush=True)
        if p.returncode != 0:
            raise RuntimeError(f"pipeline_scale.py --workers {w} failed: {p.stderr[-1500:]}")
        rows = dict(
            re.findall(r"^\| streaming \| (\d+) \| (\d+(?:\.\d+)?) \|", p.stdout, re.MULTILINE)
        )
        if str(w) not in rows:
            raise RuntimeError(f"no streaming row for {w} workers in pipeline_scale.py's output")
        rec["images_per_second_by_workers"].update({int(k): float(v) for k, v in rows.items()})
        rec["figures"][f"workers_{w}_images_per_second"] = float(rows[str(w)])
        save()


PART_FUNCS = {
    "devices": part_devices,
    "gpu_tests": part_gpu_tests,
    "matmul_peak": part_matmul_peak,
    "throughput": part_throughput,
    "seeds": part_seeds,
    "torch_compile": part_torch_compile,
    "pooling_study": part_pooling_study,
    "streaming": part_streaming,
}


if __name__ == "__main__":
    raise SystemExit(main())
