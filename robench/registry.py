"""Name → factory registries (``register`` / ``create`` / ``names``), timm-style.

Unknown names raise :class:`~robench.errors.UserError` listing the known ones.
"""

from __future__ import annotations

import fnmatch
from typing import Callable, Generic, TypeVar

from robench.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of factories of one kind (datasets, models, losses, attacks)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register ``factory`` under ``name`` (names are unique)."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorate

    def get(self, name: str) -> Callable[..., T]:
        """The factory for ``name``; a UserError naming the valid choices otherwise."""
        try:
            return self._factories[name]
        except KeyError:
            raise UserError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}"
            ) from None

    def create(self, name: str, *args, **kwargs) -> T:
        """Call the factory registered under ``name``."""
        return self.get(name)(*args, **kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching the shell-style ``pattern``, sorted."""
        return sorted(n for n in self._factories if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self._factories
