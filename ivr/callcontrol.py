"""What a runtime needs from call control to connect a caller: the coordinates of a
running SIP dialog to take over (RFC 3891 Replaces), and what the engine context's
``apply`` may answer.

An engine context may have ``apply(command, session)``; runtimes call it for
``PullCall`` and ``Dial`` when the dialogue emits them (and for ``Transfer``/``Hangup``
when the dialogue ends). It returns:

- a result word of :data:`ivr.events.CALL_CONTROL_RESULTS` when call control decided
  (a simulated PBX: ``connected``; a refused number: ``blocked``; no such call:
  ``failed``) — the simulator reports it as it is; the SIP runtime reports anything
  but ``connected`` as it is;
- a :class:`Replaces` for a pull the SIP runtime must carry out itself (an INVITE with
  ``Replaces`` to the remote party, the runtime bridging the media);
- ``None``: nothing to decide (``connected`` in the simulator; the SIP runtime places
  the call itself).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Replaces:
    """A running dialog between a desk device and a remote party, as the remote party
    knows it: an INVITE to ``target`` with ``Replaces: call_id;to-tag;from-tag`` makes
    the remote party leave the desk device for the sender (RFC 3891)."""

    target: str  # the remote party's URI (its Contact): where the INVITE goes
    call_id: str
    to_tag: str  # the remote party's own tag
    from_tag: str  # the desk device's tag
    remote: str = ""  # the remote party's URI as the dialog knows it (the To of our INVITE)

    def header(self) -> str:
        """The ``Replaces`` header value."""
        return f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}"


Connect = str | Replaces | None
