"""Configs as JSON text (as a run saves them in ``DIR/config.json``) and compared."""

from __future__ import annotations

import copy
import json
from typing import Any

import ml_collections

from cnn_jax.config.defaults import RESUME_SAFE_KEYS


def mark_resolved(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Marks ``cfg`` as resolved: a copy of its values, kept beside it (not a config field);
    a later change to the config makes :func:`cnn_jax.config.resolved` resolve it again."""
    object.__setattr__(cfg, "_resolved_values", copy.deepcopy(cfg.to_dict()))
    return cfg


def is_marked_resolved(cfg: ml_collections.ConfigDict) -> bool:
    """Whether ``cfg`` is unchanged since :func:`mark_resolved` marked it."""
    snapshot = getattr(cfg, "_resolved_values", None)
    return snapshot is not None and cfg.to_dict() == snapshot


def to_json(cfg: ml_collections.ConfigDict) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=list)


def from_json(text: str, *, resolved: bool = False) -> ml_collections.ConfigDict:
    """A config from :func:`to_json` text; ``resolved=True`` marks it as the output of
    :func:`cnn_jax.config.resolve` (for a config that was resolved before it was written)."""
    def fix(d):
        return {k: fix(v) if isinstance(v, dict) else (tuple(v) if isinstance(v, list) else v)
                for k, v in d.items()}

    cfg = ml_collections.ConfigDict(fix(json.loads(text)))
    return mark_resolved(cfg) if resolved else cfg


def diff(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict, ignore=RESUME_SAFE_KEYS):
    """Dotted keys whose values differ between two configs, as ``[(key, a, b)]``."""
    fa, fb = flatten(a), flatten(b)
    out = []
    for k in sorted(set(fa) | set(fb)):
        if k in ignore:
            continue
        va, vb = fa.get(k, "<missing>"), fb.get(k, "<missing>")
        if _norm(va) != _norm(vb):
            out.append((k, va, vb))
    return out


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def flatten(cfg, prefix: str = "") -> dict[str, Any]:
    """``{dotted_key: value}`` of a config (or a nested dict), leaves only."""
    d = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else cfg
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out
