"""SIP messages: parsed by pyVoIP, built for the dialog layer that pyVoIP lacks.

Parsing is pyVoIP's :class:`pyVoIP.SIP.SIPMessage` (after :func:`normalize`, bug 7), with
REFER, INFO, OPTIONS, NOTIFY, UPDATE, PRACK, SUBSCRIBE and MESSAGE added to the methods
it accepts (bug 8: it dropped them). Its header dictionary keeps only the first of
repeated headers, so the raw header lines are kept beside it: responses copy every
``Via`` and ``Record-Route`` verbatim (bugs 10 and 12 — pyVoIP rebuilt them and sent
its answers to the registrar instead of along the ``Via`` path).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import pyVoIP
import pyVoIP.VoIP
from pyVoIP.SIP import SIPMessage, SIPMessageType, SIPStatus

from ivr.sip.normalize import normalize

EXTRA_METHODS = ("REFER", "INFO", "OPTIONS", "NOTIFY", "UPDATE", "PRACK", "SUBSCRIBE", "MESSAGE")
for _method in EXTRA_METHODS:
    if _method not in pyVoIP.SIPCompatibleMethods:
        pyVoIP.SIPCompatibleMethods.append(_method)

USER_AGENT = "ivr"
#: the methods we accept (we send REFER, but take none)
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY"
_URI = re.compile(r"<([^>]*)>|(sip:[^;,\s]+)")
_HOSTPORT = re.compile(
    r"sips?:(?:[^@;>]*@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::(\d{1,5}))?(?=[;>?]|$)"
)
_BRANCH = re.compile(r";\s*branch=([^;,\s]+)", re.IGNORECASE)
REASONS = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    410: "Gone",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
}


class SipParseError(ValueError):
    """A datagram that is not a SIP message we can act on."""


@dataclass(slots=True)
class Message:
    """A received SIP message: pyVoIP's parse plus the raw header lines."""

    parsed: SIPMessage
    lines: list[tuple[str, str]]
    body: bytes
    start_line: str

    @property
    def is_request(self) -> bool:
        return bool(self.parsed.type == SIPMessageType.MESSAGE)

    @property
    def method(self) -> str:
        """The request's method, or the CSeq method of a response."""
        if self.is_request:
            return self.start_line.split(" ", 1)[0]
        return str(self.parsed.headers["CSeq"]["method"])

    @property
    def status(self) -> int:
        return int(self.start_line.split(" ", 2)[1]) if not self.is_request else 0

    @property
    def call_id(self) -> str:
        return str(self.parsed.headers["Call-ID"])

    @property
    def cseq(self) -> int:
        return int(self.parsed.headers["CSeq"]["check"])

    @property
    def from_tag(self) -> str:
        return tag_of(self.header("From"))

    @property
    def to_tag(self) -> str:
        return tag_of(self.header("To"))

    @property
    def caller(self) -> str:
        """The user part of the From URI (the caller's number as presented)."""
        return str(self.parsed.headers["From"].get("number") or "")

    @property
    def called(self) -> str:
        return str(self.parsed.headers["To"].get("number") or "")

    @property
    def branch(self) -> str:
        """The top Via's branch (the transaction)."""
        match = _BRANCH.search(self.header("Via"))
        return match.group(1) if match else ""

    @property
    def sent_by(self) -> tuple[str, int]:
        """The top Via's sent-by (host, port; 5060 when none is given): with the
        branch, names the transaction."""
        host, port, _params = via_parts(self.all("Via")[0])
        return host, port or 5060

    def stamp_via(self, source: tuple[str, int]) -> None:
        """Note in the top Via where the request really came from (RFC 3261 §18.2.1
        ``received``; RFC 3581 ``rport``), so responses find their way back."""
        for i, (name, value) in enumerate(self.lines):
            if name != "Via":
                continue
            first, sep, rest = value.partition(",")
            host, _port, params = via_parts(first)
            if host != source[0] and "received" not in params:
                first += f";received={source[0]}"
            if "rport" in params and not params["rport"]:
                first = _RPORT.sub(f";rport={source[1]}", first, count=1)
            self.lines[i] = (name, first + sep + rest)
            return

    def header(self, name: str) -> str:
        """The first value of header ``name`` ('' when absent)."""
        for key, value in self.lines:
            if key == name:
                return value
        return ""

    def all(self, name: str) -> list[str]:
        """Every value of header ``name``, in order (comma lists split for Via/Route)."""
        out: list[str] = []
        for key, value in self.lines:
            if key == name:
                out.extend(_split_list(value) if name in _LIST_HEADERS else [value])
        return out

    @property
    def sdp(self) -> bytes:
        """The body when it is SDP (``Content-Type: application/sdp``), else empty."""
        kind = self.header("Content-Type").split(";", 1)[0].strip().lower()
        return self.body if kind == "application/sdp" else b""


_LIST_HEADERS = {"Via", "Record-Route", "Route"}
_CSEQ = re.compile(r"^\d{1,10}\s+[A-Za-z]+$")
_VIA = re.compile(
    r"^\s*SIP\s*/\s*2\.0\s*/\s*\w+\s+"  # protocol and transport
    r"(\[[^\]]+\]|[^\s;:]+)(?:\s*:\s*(\d+))?\s*((?:;.*)?)$",  # host, port, parameters
    re.I,
)
_RPORT = re.compile(r";\s*rport(?=\s*(?:;|$))", re.I)


def via_parts(value: str) -> tuple[str, int | None, dict[str, str]]:
    """Host, port and parameters of one Via value (:class:`SipParseError` when it is
    not one)."""
    match = _VIA.match(value)
    if match is None:
        raise SipParseError(f"bad Via {value[:60]!r}")
    params: dict[str, str] = {}
    for part in match.group(3).split(";")[1:]:
        key, _, val = part.partition("=")
        params[key.strip().lower()] = val.strip()
    port = int(match.group(2)) if match.group(2) else None
    if port is not None and not 0 < port < 65536:
        raise SipParseError(f"bad Via port {port}")
    return match.group(1).strip("[]"), port, params


def tag_of(name_addr: str) -> str:
    """The ``tag`` parameter of a From/To value ('' when absent)."""
    for part in name_addr.rsplit(">", 1)[-1].split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "tag":
            return value.strip()
    return ""


def _split_list(value: str) -> list[str]:
    """Split a comma-separated header value, not inside <> or quotes."""
    if "," not in value:
        return [value.strip()] if value.strip() else []
    if '"' not in value and "<" not in value:
        return [part.strip() for part in value.split(",") if part.strip()]
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "<":
            depth += 1
        elif not quoted and char == ">":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def parse(datagram: bytes) -> Message:
    """Parse one datagram; :class:`SipParseError` for anything unusable."""
    normalized = normalize(datagram)
    if normalized is None:
        raise SipParseError("not a SIP message")
    head, _, body = normalized.partition(b"\r\n\r\n")
    text = head.decode("utf-8").split("\r\n")
    lines = [(k, v) for k, _, v in (line.partition(": ") for line in text[1:])]
    # pyVoIP parses the headers only: bodies are read by ivr.sip.sdp and ivr.sip.dtmf
    # (its body parser raised on a DTMF body, and dropped INVITEs for odd SDP)
    known = _known_to_pyvoip(text[0])
    try:
        parsed = SIPMessage(known + b"\r\n" + head.partition(b"\r\n")[2] + b"\r\n\r\n")
    except Exception as exc:  # pyVoIP raises anything from ValueError to KeyError
        raise SipParseError(f"pyVoIP could not parse it: {type(exc).__name__}: {exc}") from None
    message = Message(parsed=parsed, lines=lines, body=body, start_line=text[0])
    for name in ("Call-ID", "CSeq", "From", "To"):
        if name not in parsed.headers:
            raise SipParseError(f"no {name} header")
    vias = message.all("Via")
    if not vias:
        raise SipParseError("no Via header")
    via_parts(vias[0])  # raises for an unusable one
    if not _CSEQ.match(message.header("CSeq")):
        raise SipParseError(f"bad CSeq {message.header('CSeq')[:40]!r}")
    return message


def _known_to_pyvoip(start_line: str) -> bytes:
    """The start line as pyVoIP will take it: a status it does not know becomes its
    class (499 -> 400, RFC 3261 §8.1.3.2), a method it does not know OPTIONS (the
    real ones stay in :attr:`Message.start_line`)."""
    first, _, rest = start_line.partition(" ")
    if first == "SIP/2.0":
        code, _, reason = rest.partition(" ")
        try:
            SIPStatus(int(code))
        except ValueError:
            code = str(int(code) // 100 * 100)
        return f"SIP/2.0 {code} {reason}".encode()
    if first not in pyVoIP.SIPCompatibleMethods:
        return f"OPTIONS {rest}".encode()
    return start_line.encode()


def uri_of(value: str) -> str:
    """The URI inside a name-addr (``"x" <sip:a@b>;tag=1`` -> ``sip:a@b``)."""
    match = _URI.search(value)
    if match is None:
        return value.strip()
    return (match.group(1) or match.group(2)).strip()


def address_of(uri: str, default_port: int = 5060) -> tuple[str, int]:
    """Host and port a request to ``uri`` goes to."""
    match = _HOSTPORT.search(uri.strip())
    if match is None:
        raise SipParseError(f"no host in {uri[:80]!r}")
    port = int(match.group(2) or default_port)
    if not 0 < port < 65536:
        raise SipParseError(f"bad port in {uri[:80]!r}")
    return match.group(1).strip("[]"), port


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(10)


def response(
    request: Message,
    code: int,
    *,
    to_tag: str = "",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str = "",
) -> bytes:
    """A response to ``request``: its Via path, From, To (+ our tag), Call-ID, CSeq;
    Record-Route echoed on 2xx to INVITE so in-dialog requests follow the proxy."""
    lines = [f"SIP/2.0 {code} {REASONS.get(code, 'Unknown')}"]
    lines += [f"Via: {via}" for via in request.all("Via")]
    if 200 <= code < 300 and request.method == "INVITE":
        lines += [f"Record-Route: {rr}" for rr in request.all("Record-Route")]
    lines.append(f"From: {request.header('From')}")
    to = request.header("To")
    if to_tag and ";tag=" not in to:
        to = f"{to};tag={to_tag}"
    lines.append(f"To: {to}")
    lines.append(f"Call-ID: {request.call_id}")
    lines.append(f"CSeq: {request.header('CSeq')}")
    lines += [f"{k}: {v}" for k, v in headers or []]
    return _finish(lines, body, content_type)


_ADDED_BY_FINISH = ("User-Agent", "Content-Type", "Content-Length")


def _finish(lines: list[str], body: bytes, content_type: str) -> bytes:
    lines.append(f"User-Agent: {USER_AGENT}")
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def via_sent_by(request: Message) -> tuple[str, int]:
    """Where a response goes (RFC 3261 §18.2.2, RFC 3581): the top Via's ``received``
    and ``rport`` if present (see :meth:`Message.stamp_via`), else its sent-by."""
    host, port, params = via_parts(request.all("Via")[0])
    rport = params.get("rport", "")
    return params.get("received") or host, int(rport) if rport.isdigit() else port or 5060


@dataclass(slots=True)
class Request:
    """A request this user agent sends: its start line, headers in order, body."""

    method: str
    uri: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    content_type: str = ""

    @classmethod
    def from_text(cls, text: str) -> Request:
        """A request from text this program built (pyVoIP's REGISTER builders)."""
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        method, uri, _version = lines[0].split(" ", 2)
        headers = [(k, v) for k, _, v in (line.partition(": ") for line in lines[1:])]
        return cls(method, uri, [h for h in headers if h[0] not in _ADDED_BY_FINISH], body.encode())

    def encode(self) -> bytes:
        lines = [f"{self.method} {self.uri} SIP/2.0"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        return _finish(lines, self.body, self.content_type)

    def header(self, name: str) -> str:
        """The first value of header ``name`` ('' when absent)."""
        return next((value for key, value in self.headers if key == name), "")

    @property
    def branch(self) -> str:
        match = _BRANCH.search(self.header("Via"))
        return match.group(1) if match else ""

    @property
    def cseq(self) -> int:
        return int(self.header("CSeq").split()[0])

    def ack(self, response: Message) -> Request:
        """The ACK of a non-2xx final response to this INVITE (RFC 3261 §17.1.1.3): the
        same branch, Request-URI and Route set; the response's To."""
        return self._derived("ACK", to=response.header("To"))

    def cancel(self) -> Request:
        """The CANCEL of this INVITE (RFC 3261 §9.1): the same branch, URI, tags."""
        return self._derived("CANCEL", to=self.header("To"))

    def _derived(self, method: str, *, to: str) -> Request:
        headers = [("Via", self.header("Via"))]
        headers += [(k, v) for k, v in self.headers if k == "Route"]
        headers += [
            ("Max-Forwards", "70"),
            ("From", self.header("From")),
            ("To", to),
            ("Call-ID", self.header("Call-ID")),
            ("CSeq", f"{self.cseq} {method}"),
        ]
        return Request(method, self.uri, headers)


def via(host: str, port: int, branch: str) -> str:
    """Our Via header value (UDP, asking for rport)."""
    return f"SIP/2.0/UDP {host}:{port};branch={branch};rport"
