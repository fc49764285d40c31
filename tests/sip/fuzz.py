"""A seeded mutational fuzzer for the SIP and RTP input paths (the test and the bench
share it): real message texts — INVITE, ACK, BYE, INFO, CANCEL, OPTIONS, NOTIFY, REFER,
REGISTER responses — mangled by a few operators each, and RTP-shaped garbage.

Nothing here is a test; ``datagrams(seed, n)`` and ``rtp_garbage(seed, n)`` are
deterministic for a seed.
"""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Callable, Iterator

_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\na=sendrecv\r\n"
)


def _message(start: str, headers: list[str], body: str = "") -> bytes:
    lines = [start, *headers, f"Content-Length: {len(body.encode())}"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def seeds(port: int) -> list[bytes]:
    """Well-formed messages a portal sees, from a peer at 127.0.0.1:``port``."""
    via = f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-fz1;rport"
    dialog = [
        "From: <sip:+491711234567@127.0.0.1>;tag=fz1",
        "To: <sip:portal@127.0.0.1>;tag=abc",
        "Call-ID: fuzz-1@127.0.0.1",
    ]
    invite_headers = [
        via,
        "Max-Forwards: 70",
        'From: "Erika" <sip:+491711234567@127.0.0.1>;tag=fz1',
        "To: <sip:portal@127.0.0.1>",
        "Call-ID: fuzz-1@127.0.0.1",
        "CSeq: 1 INVITE",
        f"Contact: <sip:erika@127.0.0.1:{port}>",
        "Record-Route: <sip:127.0.0.1:5060;lr>",
        "P-Asserted-Identity: <sip:+491711234567@127.0.0.1>",
        "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY, REFER",
        "Supported: replaces, timer",
        "Content-Type: application/sdp",
    ]
    return [
        _message("INVITE sip:portal@127.0.0.1 SIP/2.0", invite_headers, _SDP),
        _message("ACK sip:portal@127.0.0.1 SIP/2.0", [via, *dialog, "CSeq: 1 ACK"]),
        _message("BYE sip:portal@127.0.0.1 SIP/2.0", [via, *dialog, "CSeq: 2 BYE"]),
        _message(
            "INFO sip:portal@127.0.0.1 SIP/2.0",
            [via, *dialog, "CSeq: 3 INFO", "Content-Type: application/dtmf-relay"],
            "Signal=5\r\nDuration=160\r\n",
        ),
        _message(
            "CANCEL sip:portal@127.0.0.1 SIP/2.0",
            [via, *dialog[:1], "To: <sip:portal@127.0.0.1>", dialog[2], "CSeq: 1 CANCEL"],
        ),
        _message("OPTIONS sip:portal@127.0.0.1 SIP/2.0", [via, *dialog, "CSeq: 9 OPTIONS"]),
        _message(
            "NOTIFY sip:portal@127.0.0.1 SIP/2.0",
            [via, *dialog, "CSeq: 4 NOTIFY", "Event: refer", "Content-Type: message/sipfrag"],
            "SIP/2.0 200 OK\r\n",
        ),
        _message(
            "REFER sip:portal@127.0.0.1 SIP/2.0",
            [via, *dialog, "CSeq: 5 REFER", "Refer-To: <sip:evil@127.0.0.1>"],
        ),
        _message(
            "SIP/2.0 401 Unauthorized",
            [
                "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-reg1;rport=5080",
                'From: "portal" <sip:portal@127.0.0.1>;tag=r1',
                'To: "portal" <sip:portal@127.0.0.1>;tag=x1',
                "Call-ID: reg-1@127.0.0.1",
                "CSeq: 1 REGISTER",
                'WWW-Authenticate: Digest realm="127.0.0.1", nonce="abc", algorithm=MD5',
            ],
        ),
        _message(
            "SIP/2.0 200 OK",
            [
                "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-reg2;rport=5080",
                'From: "portal" <sip:portal@127.0.0.1>;tag=r1',
                'To: "portal" <sip:portal@127.0.0.1>;tag=x1',
                "Call-ID: reg-1@127.0.0.1",
                "CSeq: 2 REGISTER",
                "Contact: <sip:portal@127.0.0.1:5080>;expires=86400",
                "Expires: 86400",
            ],
        ),
        _message(
            "SIP/2.0 180 Ringing",
            [via, *dialog, "CSeq: 1 INVITE", "Contact: <tel:+4930>"],
        ),
    ]


_NUMBER = re.compile(rb"\d+")
_EXTREMES = [b"0", b"-1", b"65536", b"70000", b"99999999999999999999", b"4294967296", b""]
_JUNK = [
    b"\x00",
    b"\xff\xfe",
    b"\r",
    b"\n",
    b"\r\n\r\n",
    b";;;",
    b"<<>>",
    b'"',
    b"\xc3\x28",
    "ü€\U0001f600".encode(),
    b"%00",
    b"\t",
    b" " * 40,
    b"sip:",
    b"tel:",
    b"@@",
    b":",
]


def _flip(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _insert(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.choice(_JUNK) * rng.randint(1, 4) + data[at:]


def _delete(rng: random.Random, data: bytes) -> bytes:
    if len(data) < 2:
        return data
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 60) :]


def _lines(rng: random.Random, data: bytes) -> bytes:
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if len(lines) < 2:
        return data
    i = rng.randrange(1, len(lines))
    choice = rng.randrange(5)
    if choice == 0:
        del lines[i]
    elif choice == 1:
        lines.insert(i, lines[i])  # a repeated header
    elif choice == 2:
        j = rng.randrange(1, len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif choice == 3:
        name, _, value = lines[i].partition(b":")
        lines[i] = name.lower() + b":" + value  # odd case
    else:
        lines[i] = lines[i] + b"x" * rng.choice([100, 5000, 60000])  # a huge header
    return b"\r\n".join(lines) + sep + body


def _number(rng: random.Random, data: bytes) -> bytes:
    numbers = list(_NUMBER.finditer(data))
    if not numbers:
        return data
    match = rng.choice(numbers)
    return data[: match.start()] + rng.choice(_EXTREMES) + data[match.end() :]


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _line_endings(rng: random.Random, data: bytes) -> bytes:
    return data.replace(b"\r\n", rng.choice([b"\n", b"\r", b"\r\r\n", b"\n\r"]))


def _body(rng: random.Random, data: bytes) -> bytes:
    swaps = [
        (b"IN IP4 127.0.0.1", b"IN IP6 ::1"),
        (b"IN IP4 127.0.0.1", b"IN IP4 host.invalid"),
        (b"IN IP4 127.0.0.1", b"IN IP4 0.0.0.0"),
        (b"m=audio 40000", b"m=audio 0"),
        (b"RTP/AVP 8 0 101", b"RTP/AVP 96 97"),
        (b"a=rtpmap:8 PCMA/8000", b"a=rtpmap:99 PCMA/8000"),
        (b"application/sdp", b"multipart/mixed"),
        (b"Signal=5", b"Signal=Z"),
        (b"SIP/2.0 200 OK", b"SIP/2.0 9999 Huh"),
    ]
    old, new = rng.choice(swaps)
    return data.replace(old, new)


MUTATORS: list[Callable[[random.Random, bytes], bytes]] = [
    _flip,
    _insert,
    _delete,
    _lines,
    _number,
    _truncate,
    _line_endings,
    _body,
]


def datagrams(seed: int, count: int, port: int = 5062) -> Iterator[bytes]:
    """``count`` mutated SIP datagrams (at most 65,000 bytes each)."""
    rng = random.Random(seed)
    base = seeds(port)
    for _ in range(count):
        data = rng.choice(base)
        for _ in range(rng.randint(1, 4)):
            data = rng.choice(MUTATORS)(rng, data)
        yield data[:65000]


def rtp_garbage(seed: int, count: int) -> Iterator[bytes]:
    """``count`` datagrams for an RTP port: random bytes, RTP headers with odd fields
    (CSRC counts, extensions, padding beyond the end), and telephone-events of every
    kind (events > 15, zero durations, end bits, reused timestamps)."""
    rng = random.Random(seed)
    for _ in range(count):
        kind = rng.randrange(4)
        if kind == 0:
            yield rng.randbytes(rng.randrange(0, 1500))
        elif kind == 1:
            first = 0x80 | rng.randrange(64)  # version 2, random P/X/CC
            header = struct.pack(
                "!BBHII",
                first,
                rng.randrange(256),
                rng.randrange(65536),
                rng.randrange(2**32),
                rng.randrange(2**32),
            )
            yield header + rng.randbytes(rng.randrange(0, 400))
        elif kind == 2:
            event = struct.pack(
                "!BBH", rng.randrange(256), rng.randrange(256), rng.randrange(65536)
            )
            header = struct.pack(
                "!BBHII",
                0x80,
                rng.choice([101, 96, 0x80 | 101]),
                rng.randrange(65536),
                rng.randrange(4) * 160,
                7,
            )
            yield header + event
        else:
            header = struct.pack(
                "!BBHII",
                0x80,
                rng.choice([0, 8, 13, 101]),
                rng.randrange(65536),
                rng.randrange(2**32),
                rng.randrange(2**32),
            )
            yield header + rng.randbytes(160)
