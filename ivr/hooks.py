"""Application hooks: Python functions a dialplan's ``action`` states call by name.

    hooks = Hooks()

    @hooks.register("verify_pin")
    def verify_pin(session: Session) -> str:
        return "ok" if session.vars["pin"] == "4711" else "wrong"

A hook gets the call's :class:`ivr.Session` and returns a result to branch on.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ivr.session import Session

Hook = Callable[["Session"], Any]
F = TypeVar("F", bound=Hook)


class Hooks:
    """A registry of hooks by name."""

    def __init__(self, hooks: dict[str, Hook] | None = None) -> None:
        self._hooks: dict[str, Hook] = {}
        for name, fn in (hooks or {}).items():
            self.add(name, fn)

    def add(self, name: str, fn: Hook) -> None:
        """Register ``fn`` as hook ``name``; a name can be registered once."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"hook name must be a non-empty string, got {name!r}")
        if not callable(fn):
            raise TypeError(f"hook {name!r} must be callable, got {fn!r}")
        if name in self._hooks:
            raise ValueError(f"hook {name!r} is already registered")
        self._hooks[name] = fn

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: register the function under ``name`` (default: its own name)."""

        def decorate(fn: F) -> F:
            self.add(name or fn.__name__, fn)
            return fn

        return decorate

    def __contains__(self, name: object) -> bool:
        return name in self._hooks

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._hooks))

    def __len__(self) -> int:
        return len(self._hooks)

    def __getitem__(self, name: str) -> Hook:
        return self._hooks[name]


def import_hooks(reference: str) -> Hooks:
    """Import ``"package.module:attribute"`` (attribute default ``hooks``) as a Hooks registry."""
    module_name, _, attribute = reference.partition(":")
    module = importlib.import_module(module_name)
    hooks = getattr(module, attribute or "hooks", None)
    if not isinstance(hooks, Hooks):
        raise TypeError(f"{reference!r} is not an ivr.Hooks registry")
    return hooks
