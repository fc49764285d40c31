"""Application hooks: Python functions a dialplan's ``action`` states call by name.

    hooks = Hooks()

    @hooks.register("verify_pin")
    def verify_pin(session: Session) -> str:
        return "ok" if session.vars["pin"] == "4711" else "wrong"

A hook gets the call's :class:`ivr.Session` and returns a result to branch on.

Hooks that need services (a directory, a PBX) find them in ``session.context``, the
engine's ``context``. A registry says what that must be — ``Hooks(context=Services)`` —
so a runtime that builds an engine without it is refused before any call
(:func:`check_context`), instead of every call failing inside a hook.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ivr.errors import IvrError

if TYPE_CHECKING:
    from ivr.dialogue import Engine
    from ivr.session import Session

Hook = Callable[["Session"], Any]
F = TypeVar("F", bound=Hook)


class Hooks:
    """A registry of hooks by name.

    ``context``: the type (or types) every hook of the registry needs as
    ``session.context``; None when the hooks need no context.
    """

    def __init__(
        self,
        hooks: dict[str, Hook] | None = None,
        *,
        context: type | tuple[type, ...] | None = None,
    ) -> None:
        self._hooks: dict[str, Hook] = {}
        self.context = context
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


class ContextError(IvrError):
    """The hooks a dialplan uses need an engine context the runtime did not give (e.g. a
    portal dialplan run without a portal configuration). A usage error, not a call's."""

    def __init__(self, message: str, *, hooks: tuple[str, ...], needs: tuple[type, ...]) -> None:
        super().__init__(message)
        #: the hooks that need the context, and the type(s) they need
        self.hooks = hooks
        self.needs = needs


def check_context(hooks: Hooks, context: object, used: Iterable[str]) -> None:
    """Raise :class:`ContextError` when a hook in ``used`` (the names a dialplan calls)
    comes from a registry that declares a context and ``context`` is not of that type."""
    if hooks.context is None:
        return
    needs = hooks.context if isinstance(hooks.context, tuple) else (hooks.context,)
    if isinstance(context, needs):
        return
    names = tuple(sorted({name for name in used if name in hooks}))
    if not names:
        return
    wanted = " or ".join(t.__name__ for t in needs)
    given = "no context" if context is None else f"a {type(context).__name__}"
    which = f"hooks {', '.join(names)} need" if len(names) > 1 else f"hook {names[0]} needs"
    raise ContextError(
        f"{which} {wanted} as the engine context, got {given}",
        hooks=names,
        needs=needs,
    )


def check_engine_context(engine: Engine) -> None:
    """:func:`check_context` for the hooks ``engine``'s dialplan calls: a runtime calls
    this once it built an engine, before any call."""
    states = engine.dialplan.states.values()
    used = (hook for state in states for _, hook in state.hook_names())
    check_context(engine.hooks, engine.context, used)
