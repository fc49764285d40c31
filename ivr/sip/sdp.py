"""SDP offer/answer for one G.711 audio stream plus telephone-event (RFC 3264, 4733).

The offer is read from pyVoIP's SDP parse; the answer picks the first offered codec we
speak (PCMU or PCMA — really A-law for PCMA, unlike pyVoIP: bug 1) and echoes the
offer's telephone-event payload type. ``RTP/AVPF`` offers are answered too (bug 9).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

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
    protocol: str
    direction: str


def read_offer(sdp: dict[str, Any], prefer: tuple[str, ...] = ("pcma", "pcmu")) -> Offer:
    """The answerable part of a parsed offer (pyVoIP's body dict)."""
    audio = next((m for m in sdp.get("m", []) if m.get("type") == "audio"), None)
    if audio is None:
        raise SdpError("no audio stream offered")
    connections = sdp.get("c") or []
    if not connections:
        raise SdpError("no connection address")
    offered: dict[str, str] = {}
    dtmf_pt = None
    for pt in audio.get("methods", []):
        rtpmap = audio.get("attributes", {}).get(pt, {}).get("rtpmap")
        name = (rtpmap or {}).get("name", "").lower() if rtpmap else STATIC_CODECS.get(pt, "")
        if name in CODEC_NAMES:
            offered.setdefault(name, pt)
        elif name == "telephone-event" and dtmf_pt is None:
            dtmf_pt = int(pt)
    order = [str(pt) for pt in audio.get("methods", [])]
    choices = sorted(offered, key=lambda c: (order.index(offered[c]), prefer.index(c)))
    if not choices:
        raise SdpError("no G.711 codec (PCMU/PCMA) offered")
    transmit = sdp.get("a", {}).get("transmit_type")
    return Offer(
        address=str(connections[0]["address"]),
        port=int(audio["port"]),
        codec=choices[0],
        dtmf_pt=dtmf_pt,
        protocol=str(getattr(audio.get("protocol"), "value", "RTP/AVP")),
        direction=str(getattr(transmit, "value", "sendrecv")),
    )


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
