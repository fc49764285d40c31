"""Events: what happened on a call. Runtimes create them and feed them to a Dialogue.

All events are frozen, slotted, keyword-only dataclasses that validate on construction.
"""

from __future__ import annotations

from dataclasses import dataclass

DTMF_KEYS = frozenset("0123456789*#ABCD")
#: how a PullCall or Dial ended (see :class:`CallControlResult`)
CALL_CONTROL_RESULTS = (
    "connected",
    "failed",
    "busy",
    "not_found",
    "unavailable",
    "no_answer",
    "blocked",
)


def check_key(key: str) -> None:
    """Raise ValueError unless ``key`` is exactly one DTMF key (0-9, *, #, A-D)."""
    if not isinstance(key, str) or len(key) != 1 or key not in DTMF_KEYS:
        raise ValueError(f"not a DTMF key: {key!r} (expected one of 0-9 * # A-D)")


def check_name(kind: str, value: str) -> None:
    """Raise ValueError unless ``value`` is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{kind} must be a non-empty string, got {value!r}")


def check_count(kind: str, value: int) -> None:
    """Raise ValueError unless ``value`` is a non-negative int (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{kind} must be a non-negative int, got {value!r}")


class Event:
    """Base class of all events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(Event):
    """A call was answered. Numbers are as the network presented them (any format)."""

    caller: str
    called: str = ""
    call_id: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.caller, str):
            raise ValueError(f"caller must be a string, got {self.caller!r}")
        if not isinstance(self.called, str):
            raise ValueError(f"called must be a string, got {self.called!r}")
        if not isinstance(self.call_id, str):
            raise ValueError(f"call_id must be a string, got {self.call_id!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitReceived(Event):
    """The caller pressed one DTMF key."""

    digit: str

    def __post_init__(self) -> None:
        check_key(self.digit)


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptFinished(Event):
    """The playback started by ``PlayPrompt(playback=N)`` played to its end."""

    playback: int

    def __post_init__(self) -> None:
        check_count("playback", self.playback)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(Event):
    """The timer started by ``StartTimer(timer=...)`` ran out."""

    timer: str

    def __post_init__(self) -> None:
        check_name("timer", self.timer)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallHungUp(Event):
    """The caller hung up (BYE, CANCEL, or the line went dead)."""

    reason: str = "caller"

    def __post_init__(self) -> None:
        check_name("reason", self.reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallControlResult(Event):
    """How the ``PullCall`` or ``Dial`` the dialogue asked for ended: ``connected`` (the
    caller now talks to the other party; the dialogue ends), or why not: ``failed``,
    ``busy``, ``not_found``, ``unavailable``, ``no_answer`` or ``blocked``."""

    result: str

    def __post_init__(self) -> None:
        if self.result not in CALL_CONTROL_RESULTS:
            raise ValueError(
                f"result must be one of {', '.join(CALL_CONTROL_RESULTS)}, got {self.result!r}"
            )
