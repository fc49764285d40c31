"""Call legs and what happens to them: the user agent's interface to the runtime.

A :class:`Leg` is one INVITE dialog of the user agent: a caller who called in (UAS),
or a leg the portal placed itself (UAC: a pull with Replaces, a call-back). The agent
reports what happened to a leg as events (frozen dataclasses, like the core's); the
runtime answers through the agent's methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ivr.sip.dialog import Dialog
from ivr.sip.message import Message, Request
from ivr.sip.timers import TimerHandle
from ivr.sip.transaction import ClientTransaction, ServerTransaction


@dataclass(eq=False)
class Leg:
    """One INVITE dialog: ``early`` -> ``confirmed`` -> ``ending`` -> ``ended``."""

    call_id: str
    incoming: bool
    local_tag: str
    state: str = "early"
    #: incoming: the INVITE and its server transaction
    invite: Message | None = None
    server: ServerTransaction | None = None
    #: the latest re-INVITE we answered (its ACK stops its 200)
    update: ServerTransaction | None = None
    #: outgoing: our INVITE and its client transaction
    request: Request | None = None
    client: ClientTransaction | None = None
    dialog: Dialog | None = None
    local_sdp: bytes = b""
    #: the ACK we sent for the 2xx (outgoing), sent again for each retransmitted 2xx
    ack: tuple[bytes, tuple[str, int]] | None = None
    acked: bool = False
    #: the runtime's object for this leg
    owner: Any = None
    guard: TimerHandle | None = field(default=None, repr=False)

    @property
    def ended(self) -> bool:
        return self.state == "ended"


class LegEvent:
    """Base class of what the user agent reports about a leg."""

    __slots__ = ()
    leg: Leg


@dataclass(frozen=True, slots=True)
class IncomingCall(LegEvent):
    """A new INVITE (100 Trying already sent): answer or reject it."""

    leg: Leg


@dataclass(frozen=True, slots=True)
class LegAcked(LegEvent):
    """The caller ACKed our 2xx: the call is up."""

    leg: Leg


@dataclass(frozen=True, slots=True)
class LegProgress(LegEvent):
    """A provisional response (180, 183 with early media) to our INVITE."""

    leg: Leg
    response: Message


@dataclass(frozen=True, slots=True)
class LegAnswered(LegEvent):
    """A 2xx to our INVITE: the agent ACKed it; the dialog is up."""

    leg: Leg
    response: Message


@dataclass(frozen=True, slots=True)
class LegFailed(LegEvent):
    """The leg never came up: a final non-2xx to our INVITE (``status``), no answer
    in time (408), or no ACK for our 2xx (408). The agent has forgotten it."""

    leg: Leg
    status: int


@dataclass(frozen=True, slots=True)
class LegEnded(LegEvent):
    """The other side ended the leg: ``bye`` (200 sent) or ``cancel`` (200 and 487
    sent), or the runtime never answered it (``unanswered``: 500 sent)."""

    leg: Leg
    reason: str


@dataclass(frozen=True, slots=True)
class InfoReceived(LegEvent):
    """A SIP INFO inside the leg's dialog (200 sent)."""

    leg: Leg
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class OfferReceived(LegEvent):
    """A re-INVITE with a new offer; the agent answered with the leg's ``local_sdp``."""

    leg: Leg
    request: Message


@dataclass(frozen=True, slots=True)
class NotifyReceived(LegEvent):
    """A NOTIFY inside the leg's dialog (200 sent): for a REFER, the progress of the
    call it asked for (``message/sipfrag``, RFC 3515)."""

    leg: Leg
    request: Message


@dataclass(frozen=True, slots=True)
class ReferAnswered(LegEvent):
    """The final response to our REFER (408 when none came)."""

    leg: Leg
    status: int
