"""One small registry for everything a user can add by name: backbones (``@register_backbone``) and data sources
(``@register_data``). Both follow the same rules:

* a name is letters, digits, ``_``, ``.`` or ``-`` (no ``:``, which marks ``package.module:function`` specs);
* a name already taken by another function is refused unless ``overwrite=True``; registering the same definition
  again (a reloaded module) is allowed;
* an unknown name is an error that lists what is registered and suggests the closest name.

Example::

    from matryoshka.registry import Registry

    colours = Registry("colour")

    @colours.register("red")
    def red():
        return (255, 0, 0)

    colours.get("red")()            # (255, 0, 0); colours.get("rde") -> "unknown colour 'rde' (did you mean red?)"
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Generic, TypeVar

from matryoshka.errors import InputError, MatryoshkaError

T = TypeVar("T", bound=Callable)
NAME = re.compile(r"[A-Za-z0-9_][\w.-]*")


class Registry(Generic[T]):
    """Functions by name. ``error`` is the exception type raised for bad or unknown names."""

    def __init__(self, kind: str, error: type[MatryoshkaError] = InputError) -> None:
        self.kind, self.error = kind, error
        self._items: dict[str, T] = {}

    def register(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
        """A decorator registering a function under ``name``."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise self.error(f"{self.kind} name {name!r} must be letters, digits, '_', '.' or '-' (no ':')")

        def add(item: T) -> T:
            old = self._items.get(name)
            same = old is not None and _where(old) == _where(item)
            if old is not None and not (overwrite or same):
                raise self.error(
                    f"a {self.kind} named {name!r} is registered already; pass overwrite=True to replace it"
                )
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise self.error(self.unknown(name))
        return self._items[name]

    def unknown(self, name: str) -> str:
        """The message for a name nobody registered: what is, and the closest one."""
        close = difflib.get_close_matches(name, self._items, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; registered: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def _where(item: Callable) -> tuple[str, str]:
    return (getattr(item, "__module__", ""), getattr(item, "__qualname__", repr(item)))
