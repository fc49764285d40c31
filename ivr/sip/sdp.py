"""SDP offer/answer for one G.711 audio stream plus telephone-event (RFC 3264, 4733).

The offer is read here (not by pyVoIP, whose parser drops a whole INVITE for an
``a=rtpmap`` of a payload type the ``m=`` line does not list) and checked before
anything is sent to it: the connection address must be an IPv4 address we can send to
(not a name, not 0.0.0.0, not multicast or broadcast) and the port 1-65535 — a port of
70000 once made the first RTP send raise inside the I/O loop. The answer picks the
first offered codec we speak (PCMU or PCMA — really A-law for PCMA, unlike pyVoIP: bug
1) and echoes the offer's telephone-event payload type. ``RTP/AVPF`` offers are
answered too (bug 9).
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

STATIC_CODECS = {"0": "pcmu", "8": "pcma"}
CODEC_NAMES = {"pcmu": "PCMU", "pcma": "PCMA"}
CODEC_PT = {"pcmu": 0, "pcma": 8}
#: the telephone-event payload type of our offers
DTMF_PT = 101


class SdpError(ValueError):
    """An offer we cannot answer (no audio, no G.711)."""


@dataclass(frozen=True, slots=True)
class Offer:
    """What the caller offered: where to send audio, in which codec, DTMF payload type."""

    address: str
    port: int
    codec: str
    dtmf_pt: int | None


def read_offer(body: bytes, prefer: tuple[str, ...] = ("pcma", "pcmu")) -> Offer:
    """The answerable part of an SDP body: its first audio stream with a G.711 codec
    (:class:`SdpError` says why there is none, or why its address is unusable)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8") from None
    session_address = ""
    media: list[_Media] = []
    for raw in text.splitlines():
        line = raw.strip()
        kind, eq, value = line.partition("=")
        if not eq or len(kind) != 1:
            continue
        if kind == "m":
            media.append(_Media.parse(value))
        elif kind == "c":
            if media:
                media[-1].address = _connection(value)
            else:
                session_address = _connection(value)
        elif kind == "a" and media:
            media[-1].attribute(value)
    audio = next((m for m in media if m.type == "audio" and m.port != 0), None)
    if audio is None:
        raise SdpError("no audio stream offered")
    address = audio.address or session_address
    if not address:
        raise SdpError("no connection address")
    if not 0 < audio.port < 65536:
        raise SdpError(f"media port {audio.port} is not 1-65535")
    offered: dict[str, int] = {}
    dtmf_pt = None
    for pt in audio.formats:
        name = audio.rtpmap.get(pt) or STATIC_CODECS.get(str(pt), "")
        if name in CODEC_NAMES:
            offered.setdefault(name, pt)
        elif name == "telephone-event" and dtmf_pt is None:
            dtmf_pt = pt
    choices = sorted(offered, key=lambda c: (audio.formats.index(offered[c]), prefer.index(c)))
    if not choices:
        raise SdpError("no G.711 codec (PCMU/PCMA) offered")
    return Offer(
        address=address,
        port=audio.port,
        codec=choices[0],
        dtmf_pt=dtmf_pt,
    )


@dataclass(slots=True)
class _Media:
    type: str
    port: int
    protocol: str
    formats: list[int]
    address: str = ""
    rtpmap: dict[int, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> _Media:
        parts = value.split()
        if len(parts) < 4:
            raise SdpError(f"bad m= line {value[:60]!r}")
        port = parts[1].split("/", 1)[0]
        if not port.isdigit() or len(port) > 5:
            raise SdpError(f"bad media port {parts[1][:20]!r}")
        formats = [int(f) for f in parts[3:] if f.isdigit() and int(f) < 128]
        return cls(parts[0].lower(), int(port), parts[2], formats)

    def attribute(self, value: str) -> None:
        name, _, rest = value.partition(":")
        if name != "rtpmap":
            return
        pt, _, encoding = rest.strip().partition(" ")
        if pt.isdigit() and int(pt) in self.formats:  # an rtpmap for no listed format: ignored
            self.rtpmap[int(pt)] = encoding.split("/", 1)[0].strip().lower()


def _connection(value: str) -> str:
    """The address of a ``c=IN IP4 <address>`` line, if we can send to it."""
    parts = value.split()
    if len(parts) < 3 or parts[0] != "IN":
        raise SdpError(f"bad c= line {value[:60]!r}")
    if parts[1] != "IP4":
        raise SdpError(f"connection address type {parts[1][:10]!r} (only IP4 is served)")
    try:
        address = ipaddress.IPv4Address(parts[2].split("/", 1)[0])
    except ValueError:
        raise SdpError(f"connection address {parts[2][:40]!r} is not an IPv4 address") from None
    if address.is_unspecified or address.is_multicast or address == _BROADCAST:
        raise SdpError(f"connection address {address} cannot be sent to")
    return str(address)


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def answer(offer: Offer, address: str, port: int, session_id: int | None = None) -> bytes:
    """Our answer: one codec, telephone-event if offered."""
    return _sdp(address, port, (offer.codec,), offer.dtmf_pt, session_id)


def make_offer(
    address: str,
    port: int,
    codecs: tuple[str, ...],
    dtmf_pt: int | None = DTMF_PT,
    session_id: int | None = None,
) -> bytes:
    """Our offer on a leg we place: ``codecs`` in order of preference, telephone-event."""
    return _sdp(address, port, codecs, dtmf_pt, session_id)


def _sdp(
    address: str,
    port: int,
    codecs: tuple[str, ...],
    dtmf_pt: int | None,
    session_id: int | None,
) -> bytes:
    sid = session_id if session_id is not None else secrets.randbelow(2**31)
    formats = [str(CODEC_PT[codec]) for codec in codecs]
    if dtmf_pt is not None:
        formats.append(str(dtmf_pt))
    lines = [
        "v=0",
        f"o=ivr {sid} {sid} IN IP4 {address}",
        "s=ivr",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(formats)}",
    ]
    lines += [f"a=rtpmap:{CODEC_PT[codec]} {CODEC_NAMES[codec]}/8000" for codec in codecs]
    if dtmf_pt is not None:
        lines += [f"a=rtpmap:{dtmf_pt} telephone-event/8000", f"a=fmtp:{dtmf_pt} 0-15"]
    lines += ["a=ptime:20", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
