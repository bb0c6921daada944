"""Prepare ``.whl/``: the wheels the lent GPU machine lacks, for Python 3.12 manylinux x86_64.

The GPU machine (see benchmarks/RESULTS.md, "GPU plan") has Python 3.12 with jax 0.11.2 and
its CUDA plugin, flax, optax, orbax-checkpoint, numpy, scipy, pandas, matplotlib, torch,
pytest and pytest-xdist, and reaches no package registry. Everything else the project
needs travels in the working tree as wheels: this script computes that set from the
metadata of the environment it runs in (the dependency closure of ``cnn-jax`` minus the
closure of what the GPU machine has), downloads each at the version installed here, and
checks that the folder installs for Python 3.12 and fits the carry limit.

  .venv/bin/python scripts/prepare_gpu_wheels.py [--dest .whl] [--check-only]

Run it with the project's virtualenv (its installed versions are the pins). It writes
``.whl/MANIFEST.json`` (name, version, file, bytes, sha256 of each wheel) and prints the
folder's size; it exits non-zero if the working tree plus the folder exceeds 64 MiB.
``benchmarks/gpu_check.py`` installs the folder on the GPU machine with
``pip install --no-index --no-deps --target DIR`` (only the distributions missing there).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
import tempfile

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 64 * 2**20  # the device tool carries the working tree plus `carry` paths up to this
PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# What the GPU machine already has (the device tool's description), and torch's own
# dependencies (torch is not installed here, so its metadata cannot be read).
GPU_HAS = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "pytest",
    "pytest-xdist",
    "torch",
)
TORCH_DEPS = (
    "filelock",
    "typing-extensions",
    "sympy",
    "networkx",
    "jinja2",
    "fsspec",
    "setuptools",
)
# Declared by a dependency but never imported by cnn_jax's code paths: not carried.
EXCLUDE = {
    "pyarrow": "55 MB; declared by tensorflow-datasets, imported only by pandas' optional "
    "pyarrow support, never on cnn_jax's code paths",
}
# 3.12 markers: the GPU machine's interpreter, not this one.
MARKER_ENV = {
    "python_version": PYTHON,
    "python_full_version": PYTHON + ".0",
    "platform_machine": "x86_64",
    "sys_platform": "linux",
}


def closure(roots) -> dict[str, str | None]:
    """``{canonical name: installed version or None}`` of ``roots`` and every dependency
    their installed metadata requires (extras followed; markers evaluated for 3.12)."""
    seen: dict[str, set[str]] = {}
    versions: dict[str, str | None] = {}
    stack = [(r, frozenset()) for r in roots]
    while stack:
        name, extras = stack.pop()
        key = canonicalize_name(name)
        if key in seen and extras <= seen[key]:
            continue
        seen[key] = seen.get(key, set()) | set(extras)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            versions[key] = None
            continue
        versions[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None:
                envs = [dict(MARKER_ENV, extra=e) for e in (seen[key] or {""})]
                if not any(req.marker.evaluate(env) for env in envs):
                    continue
            stack.append((req.name, frozenset(req.extras)))
    return versions


def needed() -> dict[str, str]:
    """The distributions to carry, with the versions installed here."""
    project = closure(["cnn-jax"])
    if project.get("cnn-jax") is None:
        raise SystemExit("cnn-jax is not installed in this interpreter: run with .venv/bin/python")
    gpu = set(closure(GPU_HAS)) | {canonicalize_name(n) for n in TORCH_DEPS}
    out = {}
    for name, version in sorted(project.items()):
        if name == "cnn-jax" or name in gpu or name in EXCLUDE:
            continue
        if version is None:
            raise SystemExit(
                f"{name} is required but not installed here; install the project first"
            )
        out[name] = version
    return out


def _pip(*args: str, capture: bool = False) -> None:
    cmd = [sys.executable, "-m", "pip", *args, "-q"]
    subprocess.run(cmd, check=True, capture_output=capture)


def fetch(name: str, version: str, dest: str) -> None:
    """A 3.12 manylinux binary wheel of ``name==version`` into ``dest``; for a project
    that publishes none (e.g. promise 2.3, an sdist), a wheel built here, which must then
    be pure Python."""
    platform_args = [a for p in PLATFORMS for a in ("--platform", p)]
    try:
        _pip(
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            PYTHON,
            "--implementation",
            "cp",
            *platform_args,
            "-d",
            dest,
            f"{name}=={version}",
            capture=True,
        )
        return
    except subprocess.CalledProcessError:
        print(f"  no {PYTHON} binary wheel of {name}=={version}: building one", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        _pip("wheel", "--no-deps", "-w", tmp, f"{name}=={version}")
        (whl,) = os.listdir(tmp)
        tags = parse_wheel_filename(whl)[3]
        if not all(t.abi == "none" and t.platform == "any" for t in tags):
            raise SystemExit(
                f"{name}=={version} has no {PYTHON} binary wheel and builds a "
                f"platform-specific one ({whl}): cannot carry it"
            )
        os.replace(os.path.join(tmp, whl), os.path.join(dest, whl))


def _wheels(dest: str) -> dict[str, str]:
    """``{canonical name: file}`` of the wheels in ``dest``."""
    out = {}
    for f in sorted(os.listdir(dest)):
        if f.endswith(".whl"):
            out[canonicalize_name(parse_wheel_filename(f)[0])] = f
    return out


def tree_bytes() -> int:
    """Bytes of what the device tool carries besides ``.whl``: tracked and untracked,
    not ignored files of the working tree."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    return sum(
        os.path.getsize(os.path.join(ROOT, f))
        for f in files
        if f and os.path.isfile(os.path.join(ROOT, f))
    )


def check_installs(dest: str) -> None:
    """The folder installs without an index for the GPU machine's Python and platform."""
    platform_args = [a for p in PLATFORMS for a in ("--platform", p)]
    with tempfile.TemporaryDirectory() as tmp:
        _pip(
            "install",
            "--no-index",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            PYTHON,
            "--implementation",
            "cp",
            *platform_args,
            "--target",
            tmp,
            *sorted(os.path.join(dest, f) for f in os.listdir(dest) if f.endswith(".whl")),
        )


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dest", default=os.path.join(ROOT, ".whl"))
    p.add_argument("--check-only", action="store_true", help="download nothing; check the folder")
    args = p.parse_args()
    want = needed()
    os.makedirs(args.dest, exist_ok=True)
    have = _wheels(args.dest)
    for name, f in have.items():  # stale versions or no longer needed
        version = str(parse_wheel_filename(f)[1])
        stale = want.get(name) is None or canonicalize_name(version) != canonicalize_name(
            want[name]
        )
        if stale and not args.check_only:
            os.remove(os.path.join(args.dest, f))
    have = _wheels(args.dest)
    for name, version in want.items():
        if name not in have:
            if args.check_only:
                raise SystemExit(f"missing wheel for {name}=={version} in {args.dest}")
            print(f"fetching {name}=={version}", flush=True)
            fetch(name, version, args.dest)
    have = _wheels(args.dest)
    extra = sorted(set(have) - set(want))
    if extra:
        raise SystemExit(f"wheels not needed in {args.dest}: {', '.join(extra)}")
    check_installs(args.dest)
    manifest = []
    for name in sorted(have):
        path = os.path.join(args.dest, have[name])
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        manifest.append(
            {
                "name": name,
                "version": want[name],
                "file": have[name],
                "bytes": os.path.getsize(path),
                "sha256": digest,
            }
        )
    total = sum(m["bytes"] for m in manifest)
    tree = tree_bytes()
    with open(os.path.join(args.dest, "MANIFEST.json"), "w") as fh:
        json.dump(
            {
                "python": PYTHON,
                "platforms": list(PLATFORMS),
                "excluded": EXCLUDE,
                "total_bytes": total,
                "wheels": manifest,
            },
            fh,
            indent=1,
        )
    for m in manifest:
        print(f"  {m['file']:<80} {m['bytes'] / 2**20:6.2f} MiB")
    print(
        f"{len(manifest)} wheels, {total / 2**20:.2f} MiB in {args.dest}; working tree "
        f"{tree / 2**20:.2f} MiB; together {(total + tree) / 2**20:.2f} MiB of the "
        f"{LIMIT // 2**20} MiB carry limit"
    )
    if total + tree > LIMIT:
        print("error: over the carry limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
