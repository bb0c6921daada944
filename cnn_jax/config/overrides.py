"""``--config.a.b=value`` overrides and typed changes of a config: each value is typed by
the field it replaces; an unknown key fails with a suggestion; a model option the
experiment's config lacks is added when the model has it."""

from __future__ import annotations

import ast
import copy
from typing import Any

import ml_collections

from cnn_jax.errors import UserError, suggest


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_value(key: str, text: str, current: Any) -> Any:
    """Converts override ``text`` to the type of the ``current`` value of ``key``."""
    if isinstance(current, (dict, ml_collections.ConfigDict)):
        raise UserError(f"config key {key!r} is a group; set one of its keys ({key}.NAME=...)")
    if current is None:
        return _literal(text)
    try:
        if isinstance(current, bool):
            return _parse_bool(text)
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, str):
            return text
        if isinstance(current, (tuple, list)):
            if text.strip()[:1] in "([":
                v = _literal(text)
                if not isinstance(v, (tuple, list)):
                    raise ValueError
            else:  # comma-separated, each item typed like the current first item
                items = [t.strip() for t in text.split(",") if t.strip()]
                v = [parse_value(key, t, current[0]) if current else _literal(t) for t in items]
            return type(current)(v)
    except (ValueError, UserError):
        pass
    kind = type(current).__name__
    raise UserError(
        f"invalid value for {key}: {text!r} is not a valid {kind} (current value {current!r})"
    )


def _keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    out = []
    for k, v in cfg.items():
        out.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            out.extend(_keys(v, prefix + k + "."))
    return out


def _free_form(cfg, option: str) -> bool:
    """Whether model option ``option`` is a dict of kind-specific options (e.g.
    ``pool_options``), which takes new keys: read from the model's own declaration."""
    from cnn_jax import models

    name = cfg.model.get("name")
    return name in models.MODELS and isinstance(models.options(name).get(option), dict)


def _node_for(cfg: ml_collections.ConfigDict, key: str):
    """The group holding dotted ``key`` (created for a model option the experiment's config
    lacks but its model has, and for a new key of a free-form options dict); an unknown key
    fails with a suggestion."""
    parts = key.split(".")
    node = cfg
    for i, p in enumerate(parts):
        here = ".".join(parts[: i + 1])
        if not isinstance(node, ml_collections.ConfigDict) or p not in node:
            if i == 1 and parts[0] == "model" and _model_has_option(cfg, p):
                from cnn_jax import models

                with node.unlocked():
                    node[p] = to_config_value(models.options(cfg.model.name)[p])
            elif (i == 2 == len(parts) - 1 and parts[0] == "model" and _free_form(cfg, parts[1])
                  and isinstance(node, ml_collections.ConfigDict)):
                pass  # a new key of a free-form options dict (checked by the pool kind)
            else:
                raise UserError(
                    f"unknown config key {here!r}{suggest(here, _keys(cfg) + _model_keys(cfg))}"
                )
        if i < len(parts) - 1:
            node = node[p]
    return node, parts[-1]


def set_key(cfg: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Applies one command-line override ``key=text`` (parsed to the type of the field)."""
    node, last = _node_for(cfg, key)
    _assign(node, key, last, parse_value(key, text, node[last] if last in node else None))


def set_value(cfg: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Sets dotted ``key`` to the Python ``value``: the one typed way to change a config
    (sweeps use it; no text round trip). Unknown keys fail as on the command line; a model
    option missing from the experiment's config is added when the model has it; a string
    given for a numeric or boolean field is parsed as on the command line."""
    node, last = _node_for(cfg, key)
    if last in node and isinstance(value, str):
        current = node[last]
        if isinstance(current, (bool, int, float)) and current is not None:
            value = parse_value(key, value, current)
    _assign(node, key, last, value)


def _assign(node, key: str, last: str, value: Any) -> None:
    current = node[last] if last in node else None
    if isinstance(current, ml_collections.ConfigDict):
        raise UserError(f"config key {key!r} is a group; set one of its keys ({key}.NAME=...)")
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    with node.ignore_type():
        node[last] = value


def _model_has_option(cfg, key: str) -> bool:
    from cnn_jax import models

    return cfg.model.get("name") in models.MODELS and key in models.options(cfg.model.name)


def _model_keys(cfg) -> list[str]:
    from cnn_jax import models

    if cfg.model.get("name") not in models.MODELS:
        return []
    return ["model." + k for k in models.options(cfg.model.name)]


def to_config_value(v: Any) -> Any:
    """A model option's default as a config value (a dict as a ConfigDict, a list as a tuple)."""
    if isinstance(v, dict):
        return ml_collections.ConfigDict(v)
    if isinstance(v, list):
        return tuple(v)
    return v


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: list[tuple[str, str]]):
    """Applies ``[(dotted_key, text), ...]``; ``model.name`` first so that model options
    of the chosen model are recognised whatever the order on the command line."""
    cfg = copy.deepcopy(cfg)
    ordered = sorted(overrides, key=lambda kv: kv[0] != "model.name")
    for key, text in ordered:
        set_key(cfg, key, text)
        if key == "model.name":
            _drop_foreign_model_options(cfg)
    return cfg


def _drop_foreign_model_options(cfg: ml_collections.ConfigDict) -> None:
    """After switching ``model.name``, options the new model lacks (set by the experiment
    for its own model, e.g. ``pool`` when switching to ``mlp``) no longer apply."""
    from cnn_jax import models

    if cfg.model.name not in models.MODELS:
        return
    valid = models.options(cfg.model.name)
    with cfg.model.unlocked():
        for k in [k for k in cfg.model if k != "name" and k not in valid]:
            del cfg.model[k]
