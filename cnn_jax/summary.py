"""Keras-style model summaries computed with ``jax.eval_shape`` (no weights allocated).

Rows are the leaf layers in call order (found by intercepting every submodule call while
tracing ``model.init`` abstractly), with their output shape and parameter count.
"""

from __future__ import annotations

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class Row:
    name: str
    type: str
    output_shape: tuple
    params: int


@dataclasses.dataclass
class Summary:
    rows: list[Row]
    total_params: int
    non_trainable: int
    input_shape: tuple

    def table(self) -> str:
        headers = ("Layer", "Type", "Output shape", "Params")
        body = [
            (r.name, r.type, _shape(r.output_shape), f"{r.params:,}") for r in self.rows
        ]
        body.insert(0, ("input", "Input", _shape((None, *self.input_shape)), "0"))
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
        total_w = sum(widths) + 3 * (len(widths) - 1)

        def fmt(cells):
            return "   ".join(
                c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        lines = ["=" * total_w, fmt(headers), "=" * total_w]
        lines += [fmt(b) for b in body]
        lines += ["=" * total_w]
        if self.non_trainable:
            lines.append(f"Non-trainable (BatchNorm statistics): {self.non_trainable:,}")
        lines.append(f"Total params: {self.total_params:,}")
        return "\n".join(lines)


    def markdown(self) -> str:
        lines = ["| layer | type | output shape | params |", "|---|---|---|---:|"]
        lines += [
            f"| {r.name} | {r.type} | {_shape(r.output_shape)} | {r.params:,} |" for r in self.rows
        ]
        return "\n".join(lines + ["", f"Total params: {self.total_params:,}"])

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "total_params": self.total_params,
            "non_trainable": self.non_trainable,
            "layers": [
                {"name": r.name, "type": r.type, "output_shape": list(r.output_shape),
                 "params": r.params}
                for r in self.rows
            ],
        }

    def render(self, fmt: str = "table") -> str:
        """``table`` (Keras style, last line ``Total params: N``), ``markdown`` or ``json``."""
        if fmt == "json":
            return json.dumps(self.to_dict())
        if fmt == "markdown":
            return self.markdown()
        return self.table()


def _shape(s) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in s) + ")"


def _count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def summarize(model: nn.Module, input_shape: tuple[int, ...]) -> Summary:
    """Layer table of ``model`` on inputs of shape ``(batch, *input_shape)``."""
    calls: list[tuple[tuple[str, ...], str, object]] = []
    parents: set[tuple[str, ...]] = set()

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        mod = context.module
        path = tuple(mod.scope.path) if mod.scope is not None else ()
        if context.method_name == "__call__" and path:
            typ = type(mod).__name__
            if isinstance(getattr(mod, "kind", None), str):
                typ += f"({mod.kind})"
            calls.append((path, typ, out))
            parents.update(path[:i] for i in range(1, len(path)))
        return out

    def init():
        with nn.intercept_methods(interceptor):
            return model.init(
                {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1),
                 "pool": jax.random.PRNGKey(2)},
                jnp.zeros((1, *input_shape), jnp.float32),
                train=False,
            )

    variables = jax.eval_shape(init)
    params = variables.get("params", {})
    rows, seen = [], set()
    for path, typ, out in calls:
        if path in parents or path in seen:
            continue
        seen.add(path)
        sub = params
        for p in path:
            sub = sub.get(p, {}) if isinstance(sub, dict) else {}
        shape = out.shape if hasattr(out, "shape") else ()
        rows.append(Row("/".join(path), typ, (None, *shape[1:]), _count(sub)))
    return Summary(
        rows=rows,
        total_params=_count(params),
        non_trainable=_count(variables.get("batch_stats", {})),
        input_shape=tuple(input_shape),
    )
