"""INVITE dialogs (RFC 3261 §12): what in-dialog requests need, for both sides.

A dialog is made by the UAS from the INVITE it answers (:meth:`Dialog.from_invite`) or
by the UAC from the 2xx it received (:meth:`Dialog.from_response`). It builds our
in-dialog requests (BYE, REFER, ACK of a 2xx) with the route set, CSeq and tags, and
says where they go first.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from ivr.sip.message import Message, Request, address_of, new_branch, tag_of, uri_of, via


@dataclass(slots=True)
class Dialog:
    """Our side of one INVITE dialog."""

    call_id: str
    local: str  # our From in requests we send (name-addr with our tag)
    remote: str  # their To in requests we send (name-addr with their tag)
    remote_target: str  # their Contact URI
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 0
    contact: str = ""

    @property
    def local_tag(self) -> str:
        return tag_of(self.local)

    @property
    def remote_tag(self) -> str:
        return tag_of(self.remote)

    @classmethod
    def from_invite(cls, invite: Message, local_tag: str, contact: str) -> Dialog:
        """The UAS side: made from the INVITE we answer with a 2xx."""
        to = invite.header("To")
        return cls(
            call_id=invite.call_id,
            local=to if ";tag=" in to else f"{to};tag={local_tag}",
            remote=invite.header("From"),
            remote_target=uri_of(invite.header("Contact")) or uri_of(invite.header("From")),
            route_set=invite.all("Record-Route"),
            local_cseq=secrets.randbelow(10_000) + 1,
            contact=contact,
        )

    @classmethod
    def from_response(cls, request: Request, response: Message) -> Dialog:
        """The UAC side: made from the 2xx to our INVITE (route set = Record-Route
        reversed, remote target = the 2xx's Contact)."""
        return cls(
            call_id=request.header("Call-ID"),
            local=request.header("From"),
            remote=response.header("To"),
            remote_target=uri_of(response.header("Contact")) or request.uri,
            route_set=list(reversed(response.all("Record-Route"))),
            local_cseq=request.cseq,
            contact=request.header("Contact"),
        )

    def matches(self, message: Message) -> bool:
        """Whether an incoming in-dialog request belongs to this dialog (Call-ID and
        both tags: their From tag is our remote tag, their To tag our local tag)."""
        return (
            message.call_id == self.call_id
            and message.from_tag == self.remote_tag
            and message.to_tag == self.local_tag
        )

    def request(
        self,
        method: str,
        via_host: str,
        via_port: int,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str = "",
        cseq: int | None = None,
    ) -> Request:
        """An in-dialog request (a new CSeq unless ``cseq`` is given, as for an ACK)."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        lines = [("Via", via(via_host, via_port, new_branch())), ("Max-Forwards", "70")]
        lines += [("Route", route) for route in self.route_set]
        lines += [
            ("From", self.local),
            ("To", self.remote),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        if method != "ACK":
            lines.append(("Contact", self.contact))
        lines += headers or []
        return Request(method, self.remote_target, lines, body, content_type)

    def first_hop(self) -> tuple[str, int]:
        """Where in-dialog requests go: the first route, else the remote target (a
        :class:`~ivr.sip.message.SipParseError` when neither names a SIP host)."""
        return address_of(uri_of(self.route_set[0]) if self.route_set else self.remote_target)
