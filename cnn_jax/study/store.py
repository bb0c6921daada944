"""The sweep directory: trial configs, readable names with a config hash, status files.

Layout of a sweep workdir::

    sweep.json              experiment, overrides, study options, the trial list
    trials/<name>/          one normal run directory per trial (config.json, metrics.jsonl,
                            summary.json, checkpoints/, tensorboard/) plus
                            status.json (queued | running | done | failed | diverged, error)
                            analysis.json (shift consistency)
    results.csv, report.md, timing.md, plots/*.png     written by the report

A trial's name is readable (its swept values and seed) and ends with the first 8 hex digits
of the SHA-256 of its resolved config (``data.data_dir`` excluded), so a changed setting is a
new trial and an unchanged one is found again and skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import socket
from typing import Any

import ml_collections

from cnn_jax import config as config_lib
from cnn_jax.errors import UserError
from cnn_jax.study.sweep import Study

SWEEP_FILE = "sweep.json"
STATUS_FILE = "status.json"
ANALYSIS_FILE = "analysis.json"
TRIALS_DIR = "trials"
STATUSES = ("queued", "running", "done", "failed", "diverged")
FINISHED = ("done", "diverged")  # failed trials are retried by the next sweep
HASH_IGNORE = ("data.data_dir",)  # where the data lives does not change a result


@dataclasses.dataclass
class Trial:
    """One configuration and seed of a study."""

    name: str
    hash: str
    group: str  # hash of the config without its seed: trials that may train together
    point: dict[str, Any]
    seed: int
    config: ml_collections.ConfigDict  # resolved

    def dir(self, workdir: str) -> str:
        return os.path.join(workdir, TRIALS_DIR, self.name)

    def record(self) -> dict:
        return {
            "name": self.name,
            "hash": self.hash,
            "group": self.group,
            "point": _jsonable(self.point),
            "seed": self.seed,
        }


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


# ----------------------------------------------------------------------------- configs


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return repr(tuple(v))
    return repr(v)


def set_value(cfg: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Sets dotted ``key`` to the Python ``value`` (typed, unlike a command-line override).

    Unknown keys fail as on the command line (with a suggestion); a model option missing
    from the experiment's config is added when the model has it. A string given for a
    numeric or boolean field is parsed as on the command line.
    """
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        if not isinstance(node, ml_collections.ConfigDict) or p not in node:
            break
        node = node[p]
    else:
        if isinstance(node, ml_collections.ConfigDict) and parts[-1] in node:
            _assign(node, key, parts[-1], value)
            return
    # Unknown here: let the command-line path add a model option or report the mistake.
    config_lib.set_key(cfg, key, _text(value))
    node = cfg
    for p in parts[:-1]:
        node = node[p]
    _assign(node, key, parts[-1], value)


def _assign(node, key, last, value):
    current = node[last]
    if isinstance(current, ml_collections.ConfigDict):
        raise UserError(f"config key {key!r} is a group; sweep one of its keys ({key}.NAME)")
    if isinstance(value, str) and isinstance(current, (bool, int, float)) and current is not None:
        value = config_lib.parse_value(key, value, current)
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    with node.ignore_type():
        node[last] = value


def trial_config(
    base: ml_collections.ConfigDict, point: dict, seed: int
) -> ml_collections.ConfigDict:
    """``base`` with the sweep ``point`` and ``seed`` applied, resolved and validated."""
    cfg = base
    if "model.name" in point:  # first, so that model options of the new model are known
        cfg = config_lib.apply_overrides(cfg, [("model.name", str(point["model.name"]))])
    else:
        import copy

        cfg = copy.deepcopy(cfg)
    for k, v in point.items():
        if k != "model.name":
            set_value(cfg, k, v)
    cfg.seed = int(seed)
    return config_lib.resolve(cfg)


def config_hash(cfg: ml_collections.ConfigDict, *, without: tuple[str, ...] = ()) -> str:
    """SHA-256 (hex) of the resolved config, ignoring :data:`HASH_IGNORE` and ``without``."""
    flat = config_lib._flat(json.loads(config_lib.to_json(cfg)))
    for k in (*HASH_IGNORE, *without):
        flat.pop(k, None)
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()


def _slug(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        s = "x".join(_slug(x) for x in v)
    elif isinstance(v, float):
        s = f"{v:g}"
    else:
        s = str(v)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", s).strip("-") or "none"


def trial_name(point: dict, seed: int, digest: str) -> str:
    """``lenet5_pool-max_seed0_1a2b3c4d``: swept values (``*.name`` keys by value alone),
    the seed and 8 hex digits of the config hash."""
    parts = []
    for k, v in point.items():
        last = k.split(".")[-1]
        parts.append(_slug(v) if last == "name" else f"{last}-{_slug(v)}")
    head = "_".join(parts + [f"seed{seed}"])
    if len(head) > 100:
        head = head[:100].rstrip("_-")
    return f"{head}_{digest[:8]}"


def plan(study: Study, base: ml_collections.ConfigDict) -> list[Trial]:
    """The trials of ``study`` on top of ``base`` (every config resolved: mistakes surface
    here, before anything runs)."""
    trials = []
    seen: dict[str, Trial] = {}
    for point, seed in study.trials():
        try:
            cfg = trial_config(base, point, seed)
        except UserError as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise UserError(f"sweep point {{{shown}}}: {e}") from None
        digest = config_hash(cfg)
        t = Trial(
            trial_name(point, seed, digest),
            digest,
            config_hash(cfg, without=("seed",))[:12],
            dict(point),
            int(seed),
            cfg,
        )
        if digest in seen:
            raise UserError(
                f"sweep points {seen[digest].point} and {point} give the same config "
                f"(seed {seed}); "
                "a swept value has no effect"
            )
        seen[digest] = t
        trials.append(t)
    return trials


# ----------------------------------------------------------------------------- files


def write_json(path: str, obj: Any) -> None:
    """Atomic write (temporary file and rename), so a kill never leaves half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_default)
        f.write("\n")
    os.replace(tmp, path)


def _default(o):
    if isinstance(o, tuple):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(type(o).__name__)


def read_json(path: str) -> Any | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_jsonl(path: str) -> list[dict]:
    """The records of a ``metrics.jsonl`` (a torn last line from a kill is skipped), without
    importing the training stack."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return out


def write_status(trial_dir: str, status: str, **extra: Any) -> None:
    assert status in STATUSES, status
    os.makedirs(trial_dir, exist_ok=True)
    write_json(
        os.path.join(trial_dir, STATUS_FILE),
        {"status": status, "pid": os.getpid(), "host": socket.gethostname(), **extra},
    )


def read_status(trial_dir: str) -> dict:
    """The trial's status record; a ``running`` trial whose process is gone reads as
    ``interrupted``; no file reads as ``missing``."""
    st = read_json(os.path.join(trial_dir, STATUS_FILE))
    if st is None:
        return {"status": "missing"}
    if st.get("status") == "done" and not os.path.exists(os.path.join(trial_dir, "summary.json")):
        return {**st, "status": "interrupted"}
    if st.get("status") == "running" and not _alive(st.get("pid"), st.get("host")):
        return {**st, "status": "interrupted"}
    return st


def _alive(pid, host) -> bool:
    if host != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_sweep(workdir: str) -> bool:
    return os.path.isfile(os.path.join(workdir, SWEEP_FILE))


def load_sweep(workdir: str) -> dict:
    """``sweep.json`` of ``workdir``; a :class:`UserError` if it is not a sweep directory."""
    if not os.path.isdir(workdir):
        raise UserError(
            f"{workdir!r} does not exist (run `cnn-jax sweep EXPERIMENT --workdir {workdir}` first)"
        )
    rec = read_json(os.path.join(workdir, SWEEP_FILE))
    if rec is None:
        hint = (
            " (it is a single run: use `cnn-jax evaluate` or `cnn-jax viz`)"
            if os.path.exists(os.path.join(workdir, "config.json"))
            else ""
        )
        raise UserError(
            f"{workdir!r} is not a sweep directory (no {SWEEP_FILE}){hint}; give the --workdir "
            "of a `cnn-jax sweep`"
        )
    return rec
