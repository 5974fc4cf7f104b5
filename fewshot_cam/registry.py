"""Registries (stage-free helper): every list of names in fewshot-cam is one of these.

A :class:`Registry` maps a name to an object (a builder, a function, a class) with a one-line help.
It lives next to what it registers; CLI ``choices``, help texts and error messages read it, never a
copied list. An unknown name raises :class:`~fewshot_cam.errors.UserError` listing the valid ones.

    BACKBONES = Registry("backbone")

    @BACKBONES.register("conv4", help="Conv-4 (Snell et al. 2017)")
    def conv4(...): ...

    BACKBONES.get("conv4")   # -> conv4
    BACKBONES.names()        # -> ["conv4", ...]
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, in registration order, each with a one-line help."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *, help: str = "") -> Any:
        """Register ``obj`` under ``name``; without ``obj``, a decorator that registers what it wraps."""
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            self._help[name] = help
            return item

        return add if obj is None else add(obj)

    def get(self, name: str, path: Any = None) -> T:
        """The object named ``name``, or a one-line UserError listing the valid names."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UserError(f"unknown {self.kind} {name!r}; choose from {', '.join(self._items)}", path) from None

    def names(self) -> list[str]:
        return list(self._items)

    def help(self, name: str) -> str:
        return self._help[name]

    def describe(self) -> str:
        """``name: help; name: help`` for a CLI help text."""
        return "; ".join(f"{n}: {h}" if h else n for n, h in self._help.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._items.items())


Builder = Callable[..., Any]
