"""Building blocks of SIPp XML scenarios, for the scenarios the tests write on the fly.

A scenario is text: ``head()``, then elements (``tag()`` for the empty ones such as
``<recv .../>``), then ``end()``. ``send(*lines)`` is one ``<send>`` of a SIP message
given as its lines (start line, headers, ``""`` and the body); SIPp strips the
indentation. The helpers built on it write the messages the test peers send again and
again: a UAC's ``invite`` and the ``ack`` of its 2xx, a request ``in_dialog`` (e.g.
BYE), and a UAS's ``response`` to the last request (``ok_to_last``); a message ends with
``NO_BODY`` or an ``sdp(...)`` body. A peer's identity (From with its tag, Contact, Via
with or without ``rport``, where its ``[routes]`` go) is a :class:`UserAgent`.

What is written is exactly what the scenarios always sent: the order of the headers
differs between peers and is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

UTF8 = '<?xml version="1.0" encoding="UTF-8"?>'
LATIN1 = '<?xml version="1.0" encoding="ISO-8859-1" ?>'
DOCTYPE = '<!DOCTYPE scenario SYSTEM "sipp.dtd">'

#: the request URI of sipp's ``-s`` service at the remote host
SERVICE = "sip:[service]@[remote_ip]:[remote_port]"

#: SIPp's tags: the From tag of a UAC's calls, the To tag a UAS gives its answers
UAC_TAG = "[pid]SIPpTag00[call_number]"
UAS_TAG = "[pid]SIPpTag01[call_number]"

PCMU = "a=rtpmap:0 PCMU/8000"
PCMA = "a=rtpmap:8 PCMA/8000"
TELEPHONE_EVENT = "a=rtpmap:101 telephone-event/8000"

#: the end of a message without a body (the blank line that ends the message included)
NO_BODY: tuple[str, ...] = ("Content-Length: 0", "")


def head(name: str, *, declaration: str = UTF8, doctype: bool = False) -> str:
    """The start of a scenario: the XML declaration, maybe the DOCTYPE, ``<scenario>``."""
    return f"{declaration}\n" + (f"{DOCTYPE}\n" if doctype else "") + f'<scenario name="{name}">\n'


def end(*variables: str) -> str:
    """The end of a scenario, with a ``<Reference>`` to the variables that are only
    assigned (else SIPp refuses the scenario)."""
    if not variables:
        return "</scenario>\n"
    return f'  <Reference variables="{",".join(variables)}"/>\n</scenario>\n'


def tag(name: str, **attributes: str | int) -> str:
    """One empty element on its own line: ``tag("recv", response="180", optional="true")``."""
    return f"  <{name}{_attributes(attributes)}/>\n"


def provisional(*codes: str, **attributes: str) -> str:
    """Optional ``<recv>`` of these provisional responses (e.g. "100", "180")."""
    return "".join(tag("recv", response=code, optional="true", **attributes) for code in codes)


def pause(milliseconds: int | None = None) -> str:
    """A ``<pause>``: that long, or (no milliseconds) sipp's ``-d``."""
    return tag("pause") if milliseconds is None else tag("pause", milliseconds=milliseconds)


def send(*lines: str, **attributes: str) -> str:
    """A ``<send>`` of one SIP message, given line by line (``""``: a blank line; the
    helpers below end each message with one, after its body)."""
    text = "".join(f"      {line}\n" if line else "\n" for line in lines)
    return f"  <send{_attributes(attributes)}>\n    <![CDATA[\n{text}    ]]>\n  </send>\n"


def sdp(origin: str, media: str, *attributes: str) -> tuple[str, ...]:
    """The end of a message with an SDP offer or answer of one audio stream (its
    Content-Type and Content-Length, the body, the blank line): ``origin`` is the o=
    line's username, session id and version, ``media`` the m= line after ``audio``."""
    return (
        "Content-Type: application/sdp",
        "Content-Length: [len]",
        "",
        "v=0",
        f"o={origin} IN IP[local_ip_type] [local_ip]",
        "s=-",
        "c=IN IP[media_ip_type] [media_ip]",
        "t=0 0",
        f"m=audio {media}",
        *attributes,
        "",
    )


@dataclass(frozen=True)
class UserAgent:
    """How a SIPp peer writes its own requests: ``sender`` is the From header's value
    (with the tag), ``contact`` the Contact's; ``rport`` adds ``;rport`` to the Via;
    ``routes_first`` puts ``[routes]`` right after the Via, else after the To;
    ``call_id`` is the Call-ID line."""

    sender: str
    contact: str
    rport: bool = True
    routes_first: bool = True
    call_id: str = "Call-ID: [call_id]"

    @property
    def via(self) -> str:
        rport = ";rport" if self.rport else ""
        return f"Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]{rport}"


def user_agent(
    display: str,
    user: str,
    *,
    with_port: bool = False,
    from_tag: str = UAC_TAG,
    contact_user: str | None = None,
    rport: bool = True,
    routes_first: bool = True,
) -> UserAgent:
    """A UAC named ``"display" <sip:user@[local_ip]>`` (``with_port``: and its port),
    with Contact ``<sip:contact_user@[local_ip]:[local_port]>`` (default: user)."""
    host = "[local_ip]:[local_port]" if with_port else "[local_ip]"
    contact = f"<sip:{contact_user or user}@[local_ip]:[local_port]>"
    sender = f'"{display}" <sip:{user}@{host}>;tag={from_tag}'
    return UserAgent(sender, contact, rport=rport, routes_first=routes_first)


def invite(
    ua: UserAgent,
    ruri: str,
    *headers: str,
    body: Sequence[str],
    cseq: int = 1,
    **attributes: str,
) -> str:
    """The INVITE that starts ua's call to ``ruri`` (also its To), retransmitted every
    500 ms; ``headers`` go after the Contact."""
    return send(
        f"INVITE {ruri} SIP/2.0",
        ua.via,
        f"From: {ua.sender}",
        f"To: <{ruri}>",
        ua.call_id,
        f"CSeq: {cseq} INVITE",
        f"Contact: {ua.contact}",
        *headers,
        "Max-Forwards: 70",
        *body,
        retrans="500",
        **attributes,
    )


def in_dialog(
    ua: UserAgent,
    method: str,
    cseq: int,
    *,
    to: str = "[last_To:]",
    body: Sequence[str] = NO_BODY,
    contact: bool = True,
    **attributes: str,
) -> str:
    """A request of ua in its dialog (to ``[next_url]`` along ``[routes]``);
    ``to`` is the To line. Anything but an ACK is retransmitted every 500 ms."""
    if method != "ACK":
        attributes = {"retrans": "500", **attributes}
    lines = [f"{method} [next_url] SIP/2.0", ua.via]
    dialog = [f"From: {ua.sender}", to]
    lines += ["[routes]", *dialog] if ua.routes_first else [*dialog, "[routes]"]
    lines += [ua.call_id, f"CSeq: {cseq} {method}"]
    lines += [f"Contact: {ua.contact}"] if contact else []
    return send(*lines, "Max-Forwards: 70", *body, **attributes)


def ack(ua: UserAgent, cseq: int = 1, *, contact: bool = True, **attributes: str) -> str:
    """The ACK of the 2xx to ua's INVITE with CSeq ``cseq``."""
    return in_dialog(ua, "ACK", cseq, contact=contact, **attributes)


def ack_failure(
    ua: UserAgent, ruri: str, cseq: int = 1, *, via: str | None = None, **attributes: str
) -> str:
    """The ACK of a final non-2xx response to ua's INVITE to ``ruri`` (``via``: the Via
    line, default ua's own)."""
    return send(
        f"ACK {ruri} SIP/2.0",
        via or ua.via,
        f"From: {ua.sender}",
        "[last_To:]",
        ua.call_id,
        f"CSeq: {cseq} ACK",
        "Max-Forwards: 70",
        *NO_BODY,
        **attributes,
    )


def response(
    status: str,
    *headers: str,
    to_tag: str | None = None,
    record_route: bool = False,
    body: Sequence[str] = NO_BODY,
    **attributes: str,
) -> str:
    """A response ``status`` (e.g. "486 Busy Here") to the last request received;
    ``to_tag`` answers a dialog-creating request, ``record_route`` echoes its
    Record-Route; ``headers`` go before the body."""
    to = "[last_To:]" if to_tag is None else f"[last_To:];tag={to_tag}"
    lines = ["[last_Via:]", "[last_From:]", to, "[last_Call-ID:]", "[last_CSeq:]"]
    lines += ["[last_Record-Route:]"] if record_route else []
    return send(f"SIP/2.0 {status}", *lines, *headers, *body, **attributes)


def ok_to_last() -> str:
    """``200 OK`` to the last request received (a BYE, a CANCEL), without a body."""
    return response("200 OK")


def bye_answered(**attributes: str) -> str:
    """Wait for a BYE (``<recv>`` attributes, e.g. a timeout) and answer it 200 OK."""
    return tag("recv", request="BYE", **attributes) + ok_to_last()


def _attributes(attributes: dict[str, str | int] | dict[str, str]) -> str:
    return "".join(f' {key}="{value}"' for key, value in attributes.items())
