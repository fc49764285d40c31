"""RTP packets, G.711 packetizing, and the one pacer for every call."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from ivr.audio.convert import encode
from ivr.sip.pacer import MAX_CATCH_UP, PACKET_SECONDS, Pacer
from ivr.sip.rtp import G711Packetizer, RtpPacket


def test_rtp_round_trip_and_garbage() -> None:
    packet = RtpPacket(
        payload_type=8, sequence=65535, timestamp=2**32 - 1, ssrc=42, payload=b"abc", marker=True
    )
    assert RtpPacket.parse(packet.pack()) == packet
    assert RtpPacket.parse(b"\x00" * 20) is None  # version 0
    assert RtpPacket.parse(b"\x80") is None


@given(st.binary(max_size=64))
def test_garbage_never_raises(data: bytes) -> None:
    RtpPacket.parse(data)


def test_pcma_is_a_law_and_pcmu_is_mu_law() -> None:
    pcm = struct.pack("<160h", *([1000] * 160))
    a = RtpPacket.parse(G711Packetizer("pcma", 1).packet(pcm))
    u = RtpPacket.parse(G711Packetizer("pcmu", 1).packet(pcm))
    assert a is not None and u is not None
    assert (a.payload_type, u.payload_type) == (8, 0)
    assert a.payload == encode(pcm, "pcma") != u.payload == encode(pcm, "pcmu")


def test_sequence_timestamp_and_marker() -> None:
    packetizer = G711Packetizer("pcmu", 7, sequence=65534, timestamp=0)
    packets = [RtpPacket.parse(packetizer.packet(b"")) for _ in range(3)]
    assert [(p.sequence, p.timestamp, p.marker) for p in packets if p] == [
        (65534, 0, True),
        (65535, 160, False),
        (0, 320, False),
    ]
    packetizer.new_talkspurt()
    last = RtpPacket.parse(packetizer.packet(b""))
    assert last is not None and last.marker and len(last.payload) == 160


def drive(pacer: Pacer, until: float, step: float) -> list[tuple[float, object, bytes]]:
    sent: list[tuple[float, object, bytes]] = []
    now = 0.0
    while now <= until:
        sent += [(now, key, chunk) for key, chunk in pacer.due(now)]
        now = round(now + step, 6)
    return sent


def test_packets_are_due_every_20_ms_without_drift() -> None:
    pacer = Pacer()
    pacer.play("a", [bytes([i]) for i in range(100)], now=0.0)
    sent = drive(pacer, until=2.5, step=0.001)
    times = [t for t, _, _ in sent]
    assert len(sent) == 100
    assert times[-1] == round(99 * PACKET_SECONDS, 6)  # no accumulated lateness
    assert [c for _, _, c in sent] == [bytes([i]) for i in range(100)]


def test_many_streams_interleave_and_late_wakeups_catch_up_in_order() -> None:
    pacer = Pacer()
    for call in range(300):
        pacer.play(call, [b"x"] * 10, now=0.0)
    sent = drive(pacer, until=0.3, step=0.007)  # a sloppy 7 ms loop
    assert len(sent) == 3000
    per_call = {call: [t for t, k, _ in sent if k == call] for call in range(300)}
    assert all(len(times) == 10 for times in per_call.values())


def test_a_stream_far_behind_skips_ahead_instead_of_bursting() -> None:
    pacer = Pacer()
    pacer.play("a", [bytes([i]) for i in range(50)], now=0.0)
    first = pacer.due(0.0)
    burst = pacer.due(0.5)  # woke up 500 ms late: 25 packets due
    assert first == [("a", b"\x00")]
    assert len(burst) <= MAX_CATCH_UP + 2
    assert pacer.skipped > 0


def test_stop_drops_the_rest_at_once_and_drained_is_reported() -> None:
    drained: list[object] = []
    pacer = Pacer(on_drained=drained.append)
    pacer.play("a", [b"1", b"2", b"3"], now=0.0)
    pacer.play("b", [b"x"], now=0.0)
    assert sorted(pacer.due(0.0)) == [("a", b"1"), ("b", b"x")]
    assert drained == ["b"]
    pacer.stop("a")  # barge-in after the first packet
    assert pacer.due(1.0) == []
    assert pacer.next_wakeup() is None
    pacer.play("a", [b"n"], now=2.0)
    assert pacer.due(2.0) == [("a", b"n")]
    pacer.remove("a")
    assert len(pacer) == 1
