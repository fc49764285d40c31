"""The media bridge: what one leg's packets look like when they leave on the other leg
(payload types, G.711 law, RFC 4733 keys, what is dropped), on loopback sockets."""

from __future__ import annotations

import audioop
import socket
import struct
from collections.abc import Iterator

import pytest

from ivr.sip.bridge import bridge
from ivr.sip.media import RtpSession
from ivr.sip.rtp import RtpPacket
from ivr.sip.sdp import Offer


def offer(port: int, codec: str, dtmf_pt: int | None) -> Offer:
    return Offer("127.0.0.1", port, codec, dtmf_pt)


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    for _ in range(4):  # leg A's and leg B's RTP sockets, and their peers
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(1.0)
        made.append(sock)
    yield made
    for sock in made:
        sock.close()


def legs(
    sockets: list[socket.socket],
    a: tuple[str, int | None],
    b: tuple[str, int | None],
) -> tuple[RtpSession, RtpSession, socket.socket, socket.socket]:
    """Two bridged legs; returns them and the sockets standing for their far ends."""
    leg_a, leg_b, far_a, far_b = sockets
    session_a = RtpSession(leg_a, offer(far_a.getsockname()[1], *a))
    session_b = RtpSession(leg_b, offer(far_b.getsockname()[1], *b))
    bridge(session_a, session_b)
    return session_a, session_b, far_a, far_b


def packet(pt: int, payload: bytes, *, seq: int = 7, marker: bool = False) -> bytes:
    return RtpPacket(pt, seq, 1600, 0xCAFE, payload, marker).pack()


def test_same_codec_passes_unchanged(sockets: list[socket.socket]) -> None:
    a, _b, _far_a, far_b = legs(sockets, ("pcma", 101), ("pcma", 101))
    data = packet(8, bytes(range(160)), marker=True)
    a.datagram(data)
    assert far_b.recv(2048) == data


def test_the_law_is_converted_and_everything_else_kept(sockets: list[socket.socket]) -> None:
    a, b, far_a, far_b = legs(sockets, ("pcma", 101), ("pcmu", 96))
    alaw = audioop.lin2alaw(struct.pack("<160h", *range(-8000, 8000, 100)), 2)
    a.datagram(packet(8, alaw, seq=42, marker=True))
    got = RtpPacket.parse(far_b.recv(2048))
    assert got is not None
    assert (got.payload_type, got.sequence, got.timestamp, got.ssrc, got.marker) == (
        0,
        42,
        1600,
        0xCAFE,
        True,
    )
    assert got.payload == audioop.lin2ulaw(audioop.alaw2lin(alaw, 2), 2)
    b.datagram(packet(0, got.payload))  # and back: µ-law -> A-law
    back = RtpPacket.parse(far_a.recv(2048))
    assert back is not None and back.payload_type == 8


def test_padding_and_extensions_are_skipped_when_transcoding(
    sockets: list[socket.socket],
) -> None:
    a, _b, _far_a, far_b = legs(sockets, ("pcma", None), ("pcmu", None))
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10, 8, 1, 160, 9)  # padding + extension
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x10\x01\x00\x00"
    payload = b"\xd5" * 160
    a.datagram(header + extension + payload + b"\x00\x00\x03")  # 3 bytes of padding
    got = RtpPacket.parse(far_b.recv(2048))
    assert got is not None  # the payload was found after the extension, before the padding
    assert got.payload == audioop.lin2ulaw(audioop.alaw2lin(payload, 2), 2)


def test_keys_are_relayed_with_the_other_legs_event_type(sockets: list[socket.socket]) -> None:
    a, _b, _far_a, far_b = legs(sockets, ("pcma", 101), ("pcma", 96))
    event = struct.pack("!BBH", 5, 0x80, 320)  # key 5, end
    a.datagram(packet(101, event))
    got = RtpPacket.parse(far_b.recv(2048))
    assert got is not None and (got.payload_type, got.payload) == (96, event)


def test_what_the_other_leg_did_not_negotiate_is_dropped(sockets: list[socket.socket]) -> None:
    a, _b, _far_a, far_b = legs(sockets, ("pcma", 101), ("pcma", None))
    assert a.relay is not None
    for data in (
        packet(101, struct.pack("!BBH", 5, 0x80, 320)),  # keys: B has no telephone-event
        packet(13, b"\x40"),  # comfort noise
        packet(0, b"\xff" * 160),  # a law nobody negotiated
        b"\x00" * 20,  # not RTP version 2
        b"junk",
    ):
        a.datagram(data)
    far_b.settimeout(0.2)
    with pytest.raises(TimeoutError):
        far_b.recv(2048)
    assert a.relay.dropped == 5 and a.relay.relayed == 0  # type: ignore[attr-defined]
