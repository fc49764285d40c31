"""``action``: call a named application hook with the session and branch on its result.

The result is looked up in ``on`` as text (``True`` -> ``"true"``, ``None`` ->
``"none"``, ``3`` -> ``"3"``); a result without a branch goes to ``next``. With
``into`` the raw result is stored in a session variable first. A hook that raises, or
returns a result with no branch and no ``next``, ends the call with the apology prompt.

Example::

    check_pin:
      kind: action
      hook: verify_pin
      on: {ok: menu, wrong: pin, locked: goodbye}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ivr.errors import HookError
from ivr.states.base import Call, Edge, State, StateName
from ivr.states.collect import VARIABLE


def result_key(result: Any) -> str:
    """The text a hook result is branched on."""
    if result is None or isinstance(result, bool):
        return str(result).lower()
    return str(result)


class Action(State):
    """Run an application hook and branch on what it returns."""

    kind: Literal["action"] = "action"
    hook: str = Field(min_length=1, description="name of a registered hook")
    into: str | None = Field(
        default=None, pattern=VARIABLE, description="store the result in this variable"
    )
    on: dict[str, StateName] = Field(
        default_factory=dict,
        description="result -> state",
        examples=[{"ok": "menu", "wrong": "pin"}],
    )
    next: StateName | None = Field(default=None, description="state for any other result")

    def edges(self) -> list[Edge]:
        edges = [Edge(f"on:{value}", target, ("on", value)) for value, target in self.on.items()]
        if self.next is not None:
            edges.append(Edge("next", self.next, ("next",)))
        return edges

    def hook_names(self) -> list[tuple[tuple[str | int, ...], str]]:
        return [(("hook",), self.hook)]

    def enter(self, call: Call) -> None:
        result = call.call_hook(self.hook)
        if self.into is not None:
            call.vars[self.into] = result
        key = result_key(result)
        if key in self.on:
            call.goto(f"on:{key}")
        elif self.next is not None:
            call.goto("next")
        else:
            call.fail(HookError(f"hook {self.hook!r} returned {key!r}; state has no branch for it"))
