"""Keras-style model summaries computed with ``jax.eval_shape`` (no weights allocated).

Rows are the leaf layers in call order (found by intercepting every submodule call while
tracing ``model.init`` abstractly), with their output shape, parameter count,
multiply-accumulate count and output size.

Parameters are counted as Keras counts them: a layer's count and ``Total params`` include
its non-trainable statistics (BatchNorm's moving mean and variance, the ``batch_stats``
collection), so a BatchNorm over C channels shows 4·C (scale, bias, mean, variance); the
footer splits the total into ``Trainable params`` (what torchvision counts) and
``Non-trainable params``.

Conventions (all per example, i.e. for a batch of one):

* **MACs** (multiply-accumulates): a convolution ``H_out · W_out · k_h · k_w · C_in / groups
  · C_out``; a transposed convolution ``H_in · W_in · k_h · k_w · C_in · C_out``; a dense
  layer ``in · out`` (times the positions it is applied at, for inputs of rank > 2). Every
  other layer (normalisation, pooling, dropout, global heads) counts 0, as do biases,
  activation functions and residual additions, which are not layers here. These are the
  figures torchvision lists as "GFLOPS" (VGG-16: 15.47 G).
* **Activation memory**: the bytes of every leaf layer's output, summed. It approximates
  what a forward pass keeps for the backward pass; activation functions, additions and
  concatenations, which are not layers, are not counted, so it is a lower bound.
"""

from __future__ import annotations

import dataclasses
import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.errors import UserError

FORMATS = ("table", "markdown", "json")


@dataclasses.dataclass
class Row:
    """One leaf layer: ``output_shape`` has ``None`` for the batch; ``macs`` and
    ``output_bytes`` are per example."""

    name: str
    type: str
    output_shape: tuple
    params: int  # trainable and non-trainable (BatchNorm statistics), as Keras counts
    macs: int = 0
    output_bytes: int = 0


@dataclasses.dataclass
class Summary:
    rows: list[Row]
    trainable_params: int
    non_trainable_params: int
    input_shape: tuple
    num_classes: int | None = None

    @property
    def total_params(self) -> int:
        """Trainable parameters plus non-trainable statistics (Keras's ``Total params``)."""
        return self.trainable_params + self.non_trainable_params

    @property
    def total_macs(self) -> int:
        """Multiply-accumulates of one forward pass of one example."""
        return sum(r.macs for r in self.rows)

    @property
    def activation_bytes(self) -> int:
        """Bytes of all leaf-layer outputs for one example."""
        return sum(r.output_bytes for r in self.rows)

    def _footer(self) -> list[str]:
        lines = [
            f"Total MACs: {self.total_macs:,} ({_si(self.total_macs)}MACs) per example",
            f"Activation memory: {_bytes(self.activation_bytes)} per example (layer outputs)",
        ]
        lines.append(f"Total params: {self.total_params:,}")
        lines.append(f"Trainable params: {self.trainable_params:,}")
        lines.append(f"Non-trainable params: {self.non_trainable_params:,}")
        return lines

    def table(self) -> str:
        """Keras-style table; the last lines are ``Total params: N``, ``Trainable params: N``
        and ``Non-trainable params: N``."""
        headers = ("Layer", "Type", "Output shape", "Params", "MACs")
        body = [
            (r.name, r.type, _shape(r.output_shape), f"{r.params:,}", f"{r.macs:,}")
            for r in self.rows
        ]
        body.insert(0, ("input", "Input", _shape((None, *self.input_shape)), "0", "0"))
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
        total_w = sum(widths) + 3 * (len(widths) - 1)

        def fmt(cells):
            return "   ".join(
                c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        lines = ["=" * total_w, fmt(headers), "=" * total_w]
        lines += [fmt(b) for b in body]
        lines += ["=" * total_w]
        return "\n".join(lines + self._footer())

    def markdown(self) -> str:
        lines = [
            "| layer | type | output shape | params | MACs |",
            "|---|---|---|---:|---:|",
        ]
        lines += [
            f"| {r.name} | {r.type} | {_shape(r.output_shape)} | {r.params:,} | {r.macs:,} |"
            for r in self.rows
        ]
        return "\n".join(lines + [""] + self._footer())

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "total_macs": self.total_macs,
            "activation_bytes": self.activation_bytes,
            "layers": [
                {"name": r.name, "type": r.type, "output_shape": list(r.output_shape),
                 "params": r.params, "macs": r.macs, "output_bytes": r.output_bytes}
                for r in self.rows
            ],
        }

    def render(self, fmt: str = "table") -> str:
        """``table`` (Keras style, ending with the parameter counts), ``markdown`` or ``json``."""
        if fmt == "json":
            return json.dumps(self.to_dict())
        if fmt == "markdown":
            return self.markdown()
        if fmt == "table":
            return self.table()
        raise UserError(f"unknown summary format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def _shape(s) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in s) + ")"


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:g} "


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def _kernel(params) -> tuple | None:
    k = params.get("kernel") if isinstance(params, dict) else None
    return tuple(k.shape) if k is not None and hasattr(k, "shape") else None


def layer_macs(module: nn.Module, params, in_shape: tuple | None, out_shape: tuple) -> int:
    """Multiply-accumulates of one call of ``module`` for one example (see the module
    docstring); ``in_shape``/``out_shape`` include the batch axis."""
    kernel = _kernel(params)
    if kernel is None or not out_shape:
        return 0
    if isinstance(module, nn.ConvTranspose):
        if in_shape is None:
            return 0
        return math.prod(in_shape[1:-1]) * math.prod(kernel)
    if isinstance(module, (nn.Conv, nn.Dense)):
        # conv kernel (k_h, k_w, C_in / groups, C_out); dense kernel (in, out)
        return math.prod(out_shape[1:-1]) * math.prod(kernel)
    return 0


def _out_bytes(out) -> int:
    total = 0
    for leaf in jax.tree.leaves(out):
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype") and len(leaf.shape) >= 1:
            total += math.prod(leaf.shape[1:]) * np.dtype(leaf.dtype).itemsize
    return total


def summarize_model(model: nn.Module, input_shape: tuple[int, ...]) -> Summary:
    """The model summary of ``model`` on inputs of shape ``(batch, *input_shape)``: its layer
    table (shapes, parameters, MACs, output bytes) and totals. (Not to be confused with
    ``cnn_jax.train.summarize``, the means of summed metrics.)"""
    calls: list[tuple[tuple[str, ...], str, nn.Module, object, object]] = []
    parents: set[tuple[str, ...]] = set()

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        mod = context.module
        path = tuple(mod.scope.path) if mod.scope is not None else ()
        if context.method_name == "__call__" and path:
            typ = type(mod).__name__
            if isinstance(getattr(mod, "kind", None), str):
                typ += f"({mod.kind})"
            x = args[0] if args else None
            in_shape = tuple(x.shape) if hasattr(x, "shape") else None
            calls.append((path, typ, mod, in_shape, out))
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
    stats = variables.get("batch_stats", {})
    rows, seen = [], set()
    for path, typ, mod, in_shape, out in calls:
        if path in parents or path in seen:
            continue
        seen.add(path)
        sub, sub_stats = _at(params, path), _at(stats, path)
        shape = tuple(out.shape) if hasattr(out, "shape") else ()
        rows.append(Row(
            "/".join(path), typ, (None, *shape[1:]), _count(sub) + _count(sub_stats),
            macs=layer_macs(mod, sub, in_shape, shape), output_bytes=_out_bytes(out),
        ))
    num_classes = getattr(model, "num_classes", None)
    return Summary(
        rows=rows,
        trainable_params=_count(params),
        non_trainable_params=_count(stats),
        input_shape=tuple(input_shape),
        num_classes=num_classes if isinstance(num_classes, int) else None,
    )


def _at(tree, path: tuple[str, ...]):
    """The subtree of a variable collection at a module path (``{}`` where there is none)."""
    for p in path:
        tree = tree.get(p, {}) if isinstance(tree, dict) else {}
    return tree
