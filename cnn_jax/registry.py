"""Named registries: models, pooling kinds, activations, losses, optimizers, datasets.

One registry per kind, in the manner of timm's ``@register_model``: a new entry is one
registration, errors list the valid names, and tests iterate :meth:`Registry.names`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from cnn_jax.errors import UserError, suggest

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to objects with clear errors for unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__``), with
        optional metadata (``meta``) that code asks of an entry instead of testing its name."""

        def deco(obj: T) -> T:
            self.add(name or obj.__name__, obj, **meta)  # type: ignore[attr-defined]
            return obj

        return deco

    def add(self, name: str, obj: T, **meta: Any) -> None:
        if name in self._entries:
            raise UserError(
                f"{self.kind} {name!r} is already registered; give yours a name that is not "
                f"taken (registered: {', '.join(self.names())})"
            )
        self._entries[name] = obj
        self._meta[name] = dict(meta)

    def meta(self, name: str, key: str, default: Any = None) -> Any:
        """Metadata ``key`` of entry ``name`` (``default`` when it was not declared)."""
        self.get(name)
        return self._meta[name].get(key, default)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UserError(
                f"unknown {self.kind} {name!r}{suggest(str(name), self._entries)}; "
                f"choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
