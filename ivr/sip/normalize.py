"""Make SIP messages palatable to pyVoIP's strict parser (docs/pyvoip.md, bug 7).

pyVoIP needs exactly ``": "`` after a header name, canonical case, no compact forms,
and drops a whole message for one empty header (baresip sends ``Supported:``). This
rewrites a datagram's header block: compact names expanded (RFC 3261 §7.3.3 and the
later registrations), names in their canonical case, one ``": "``, empty headers
removed, line endings CRLF; the body is kept byte for byte (Content-Length stays true).
Anything that is not a SIP request or response gives ``None`` (to be logged and dropped).
"""

from __future__ import annotations

import re

COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "y": "Identity",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "a": "Accept-Contact",
}
CANONICAL = {
    name.lower(): name
    for name in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Max-Forwards",
        "Content-Type",
        "Content-Length",
        "Allow",
        "Supported",
        "User-Agent",
        "Server",
        "Expires",
        "Record-Route",
        "Route",
        "Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Event",
        "Refer-To",
        "Referred-By",
        "Allow-Events",
        "Session-Expires",
        "Subject",
        "Content-Encoding",
        "Accept",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Min-Expires",
        "Retry-After",
        "Reason",
        "Identity",
        "P-Asserted-Identity",
        "Privacy",
        "Date",
        "Timestamp",
        "Organization",
        "Warning",
    )
}
_START = re.compile(rb"^(?:[A-Z]+ \S+ SIP/2\.0|SIP/2\.0 \d{3} .*)$")
_HEADER = re.compile(r"^([!-9;-~]+)[ \t]*:[ \t]*(.*)$")  # token, colon, value
MAX_DATAGRAM = 65535
#: the header block, and one header line, at most (bytes): a 60 KB Via once cost
#: ~100 ms of splitting per datagram — a lever for a flood; real ones are far shorter
MAX_HEAD = 16384
MAX_LINE = 4096


def normalize(datagram: bytes) -> bytes | None:
    """The datagram with a normalised header block, or None when it is not SIP."""
    if not datagram or len(datagram) > MAX_DATAGRAM:
        return None
    head, sep, body = datagram.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = datagram.partition(b"\n\n")
    if len(head) > MAX_HEAD:
        return None
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    if not lines or not _START.match(lines[0].strip()):
        return None
    try:
        text = [line.decode("utf-8") for line in lines[1:]]
    except UnicodeDecodeError:
        return None
    headers: list[str] = []
    for line in text:
        if len(line) > MAX_LINE:
            return None
        if line[:1] in (" ", "\t") and headers:  # folded continuation line
            headers[-1] += " " + line.strip()
            continue
        match = _HEADER.match(line)
        if match is None:
            return None
        name, value = match.group(1), match.group(2).strip()
        if not value:
            continue
        lowered = name.lower()
        name = COMPACT.get(lowered) or CANONICAL.get(lowered) or name
        headers.append(f"{name}: {value}")
    try:
        start = lines[0].strip().decode("ascii")
    except UnicodeDecodeError:
        return None
    out = [start, *headers]
    return ("\r\n".join(out) + "\r\n\r\n").encode("utf-8") + body
