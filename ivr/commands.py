"""Commands: what a runtime must do. A Dialogue returns them from ``handle()``.

All commands are frozen, slotted, keyword-only dataclasses that validate on construction.
``Hangup`` ends the dialogue. ``Transfer``, ``PullCall`` and ``Dial`` ask the runtime
to connect the caller to another party; the runtime answers with
:class:`~ivr.events.CallControlResult` (``connected`` ends the dialogue).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ivr.events import check_count, check_name

HANGUP_REASONS = frozenset({"normal", "refused", "error"})


class Command:
    """Base class of all commands."""

    __slots__ = ()


#: the shared, read-only empty parameter mapping
NO_PARAMS: Mapping[str, Any] = MappingProxyType({})


def _freeze(params: Any) -> Mapping[str, Any]:
    if isinstance(params, MappingProxyType):
        return params
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict, got {params!r}")
    for key in params:
        check_name("parameter name", key)
    return MappingProxyType(dict(params))


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayPrompt(Command):
    """Play prompt ``prompt`` (with ``params`` filled in) as playback number ``playback``.

    ``bargein`` says whether a key press stops it. The runtime answers with
    ``PromptFinished(playback=...)`` when it played to the end.
    """

    prompt: str
    playback: int
    params: Mapping[str, Any] = field(default_factory=lambda: NO_PARAMS)
    bargein: bool = True

    def __post_init__(self) -> None:
        check_name("prompt", self.prompt)
        check_count("playback", self.playback)
        object.__setattr__(self, "params", _freeze(self.params))
        if not isinstance(self.bargein, bool):
            raise ValueError(f"bargein must be a bool, got {self.bargein!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StopPrompt(Command):
    """Stop playback ``playback`` now (barge-in); no ``PromptFinished`` follows."""

    playback: int

    def __post_init__(self) -> None:
        check_count("playback", self.playback)


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer(Command):
    """Start (or restart) timer ``timer``; answer with ``TimerFired`` after ``seconds``."""

    timer: str
    seconds: float

    def __post_init__(self) -> None:
        check_name("timer", self.timer)
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int | float):
            raise ValueError(f"seconds must be a number, got {self.seconds!r}")
        if not self.seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {self.seconds!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer(Command):
    """Cancel timer ``timer``; a ``TimerFired`` for it that races the cancel is ignored."""

    timer: str

    def __post_init__(self) -> None:
        check_name("timer", self.timer)


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer(Command):
    """Blind-transfer the caller to ``target`` (a number or SIP URI); a
    :class:`~ivr.events.CallControlResult` follows."""

    target: str

    def __post_init__(self) -> None:
        check_name("target", self.target)


@dataclass(frozen=True, slots=True, kw_only=True)
class PullCall(Command):
    """Pull the running call ``call`` onto the caller's leg; a
    :class:`~ivr.events.CallControlResult` follows."""

    call: str

    def __post_init__(self) -> None:
        check_name("call", self.call)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dial(Command):
    """Call ``number`` for the caller, presenting ``caller_id`` and ``display_name``, and
    connect them when it answers (at most ``timeout`` seconds of ringing); a
    :class:`~ivr.events.CallControlResult` follows."""

    number: str
    caller_id: str = ""
    display_name: str = ""
    timeout: float = 30.0

    def __post_init__(self) -> None:
        check_name("number", self.number)
        if not isinstance(self.caller_id, str) or not isinstance(self.display_name, str):
            raise ValueError("caller_id and display_name must be strings")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float):
            raise ValueError(f"timeout must be a number, got {self.timeout!r}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup(Command):
    """Hang up. ``reason`` is ``normal``, ``refused`` or ``error``. Ends the dialogue."""

    reason: str = "normal"

    def __post_init__(self) -> None:
        if self.reason not in HANGUP_REASONS:
            raise ValueError(f"reason must be one of {sorted(HANGUP_REASONS)}, got {self.reason!r}")


#: commands that end the dialogue
ENDING_COMMANDS = (Hangup,)
#: commands the runtime answers with a CallControlResult
CONNECTING_COMMANDS = (Transfer, PullCall, Dial)
