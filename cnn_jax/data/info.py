"""Which input pipeline each split takes and why: the grain worker count (checked against
the machine) and the descriptions that ``summary.json`` and the log line carry."""

from __future__ import annotations

import warnings

from cnn_jax.errors import UserError
from cnn_jax.runtime import usable_cpus

MAX_WORKERS_PER_CORE = 4
_warned: set = set()  # worker counts already warned about in this process


def num_workers(requested: int) -> tuple[int, str]:
    """``(workers, note)``: ``data.workers`` capped at 4 × the CPU cores (with a warning)."""
    if requested < 0:
        raise UserError(f"data.workers must be >= 0 (0: decode in the training process), got {requested}")
    cap = MAX_WORKERS_PER_CORE * usable_cpus()
    if requested > cap:
        note = (f"data.workers={requested} is more than {MAX_WORKERS_PER_CORE} x the "
                f"{usable_cpus()} CPU cores; using {cap} worker processes")
        if requested not in _warned:
            _warned.add(requested)
            warnings.warn(note, stacklevel=2)
        return cap, note
    return requested, ""


def describe(split) -> dict:
    """Which path a split takes and why (``summary.json``'s ``pipeline`` entries)."""
    if not getattr(split, "streaming", False):
        return {"path": "in_memory", "examples": len(split), "skipped_images": len(split.bad)}
    workers, note = num_workers(split.options.workers)
    out = {"path": "streaming", "examples": len(split), "why": split.why, "workers": workers,
           "skipped_images": len(split.bad)}
    if note:
        out["note"] = note
    return out


def describe_all(**splits) -> dict:
    """``{name: describe(split)}`` of the splits that exist, and ``skipped_images``: files
    left out when an image folder was converted plus records skipped while decoding."""
    present = {k: v for k, v in splits.items() if v is not None}
    out = {k: describe(v) for k, v in present.items()}
    spec = next(iter(present.values())).spec if present else None
    converted = len(spec.skipped_files) if spec is not None else 0
    out["skipped_images"] = converted + len(set().union(*(set(v.bad) for v in present.values())))
    return out


def describe_line(**splits) -> str:
    """One line naming the splits that stream (and why), or "" when every split is in
    memory and no image was skipped."""
    info = describe_all(**splits)
    streamed = [f"{k} ({v['why']})" for k, v in info.items() if isinstance(v, dict) and v["path"] == "streaming"]
    parts = []
    if streamed:
        workers = next(v for v in info.values() if isinstance(v, dict) and v["path"] == "streaming")
        parts.append(f"data: streaming {', '.join(streamed)} through {workers['workers']} grain "
                     f"worker process{'es' if workers['workers'] != 1 else ''}"
                     f"{'; ' + workers['note'] if workers.get('note') else ''}")
    if info["skipped_images"]:
        parts.append(f"{info['skipped_images']} unreadable images skipped (data.skip_bad_images)")
    return "; ".join(parts)
