"""State kinds: the ``kind:`` an engineer writes in a dialplan, one module each.

``KINDS`` maps each kind name to its class. Add a kind: write a :class:`State`
subclass with a ``kind: Literal[...]`` field and register it with :func:`register_kind`.
"""

from __future__ import annotations

from ivr.states.action import Action
from ivr.states.base import Call, Edge, PromptRef, State
from ivr.states.branch import Branch
from ivr.states.collect import Collect
from ivr.states.ending import DialState, HangupState, PullState, TransferState
from ivr.states.input import InputState
from ivr.states.menu import Menu
from ivr.states.play import Play

KINDS: dict[str, type[State]] = {}


def register_kind(cls: type[State]) -> type[State]:
    """Make ``cls`` available as ``kind: <its kind>`` in dialplans."""
    name = cls.model_fields["kind"].default
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a 'kind' field with a Literal default")
    KINDS[name] = cls
    return cls


for _cls in (Play, Menu, Collect, Action, Branch, TransferState, PullState, DialState, HangupState):
    register_kind(_cls)

__all__ = [
    "KINDS",
    "Action",
    "Branch",
    "Call",
    "Collect",
    "DialState",
    "Edge",
    "HangupState",
    "InputState",
    "Menu",
    "Play",
    "PromptRef",
    "PullState",
    "State",
    "TransferState",
    "register_kind",
]
