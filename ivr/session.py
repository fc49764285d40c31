"""The per-call session that hooks see: numbers, variables, and the application context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ivr.errors import IvrError


@dataclass(slots=True, eq=False)
class Session:
    """One call as hooks see it.

    ``vars`` are the session variables (collected digits, hook results) that prompts,
    conditions and templates read. Setting ``vars["mute"] = True`` silences every
    further prompt (silent mode): prompts count as played at once.
    ``context`` is whatever the application passed to :class:`ivr.Engine`; ``clock``
    is the runtime's (the dialogue passes its engine's).
    """

    call_id: str
    caller: str = ""
    called: str = ""
    vars: dict[str, Any] = field(default_factory=dict)
    context: Any = None
    clock: Callable[[], float] | None = field(default=None, repr=False)

    def now(self) -> float:
        """The runtime's current time in seconds (virtual in the simulator)."""
        if self.clock is None:
            raise IvrError("no clock: the runtime sets Engine.clock")
        return self.clock()

    @property
    def muted(self) -> bool:
        """True when prompts are silenced for this call."""
        return bool(self.vars.get("mute"))
