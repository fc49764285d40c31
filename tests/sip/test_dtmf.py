"""DTMF over SIP: RFC 4733 events deduplicated per event, SIP INFO bodies."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.sip.dtmf import EVENT_KEYS, TelephoneEvent, TelephoneEventReceiver, info_key


def payload(event: int, *, end: bool = False, duration: int = 160, volume: int = 10) -> bytes:
    return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)


def send_key(
    rx: TelephoneEventReceiver,
    event: int,
    timestamp: int,
    *,
    drop_first: bool = False,
    ssrc: int = 1,
) -> list[str]:
    """A key as senders transmit it: 3 progress packets, then the end packet 3 times."""
    packets = [payload(event, duration=160 * i) for i in (1, 2, 3)]
    packets += [payload(event, end=True, duration=640)] * 3
    if drop_first:
        packets = packets[1:]
    return [k for p in packets if (k := rx.packet(ssrc=ssrc, timestamp=timestamp, payload=p))]


def test_each_event_gives_one_key_despite_repeats_and_end_packets() -> None:
    rx = TelephoneEventReceiver()
    assert send_key(rx, 4, 1000) == ["4"]
    assert send_key(rx, 7, 2000) == ["7"]
    assert send_key(rx, 7, 3000) == ["7"]  # the same key again is a new event


def test_a_lost_first_packet_or_no_marker_keeps_the_key() -> None:
    rx = TelephoneEventReceiver()
    assert send_key(rx, 11, 5000, drop_first=True) == ["#"]


def test_events_above_15_and_short_payloads_are_ignored() -> None:
    rx = TelephoneEventReceiver()
    assert rx.packet(ssrc=1, timestamp=1, payload=payload(16)) is None
    assert rx.packet(ssrc=1, timestamp=2, payload=payload(255)) is None
    assert rx.packet(ssrc=1, timestamp=3, payload=b"\x01") is None
    assert send_key(rx, 10, 4) == ["*"]


def test_two_streams_with_the_same_timestamp_are_two_events() -> None:
    rx = TelephoneEventReceiver()
    assert send_key(rx, 1, 100, ssrc=1) + send_key(rx, 1, 100, ssrc=2) == ["1", "1"]


def test_parse_fields() -> None:
    assert TelephoneEvent.parse(payload(12, end=True, duration=800, volume=7)) == TelephoneEvent(
        event=12, end=True, volume=7, duration=800
    )


@given(st.text(alphabet=EVENT_KEYS, max_size=30), st.integers(0, 2**32 - 1))
def test_any_key_sequence_comes_back_exactly(keys: str, start: int) -> None:
    rx = TelephoneEventReceiver()
    got: list[str] = []
    for i, key in enumerate(keys):
        got += send_key(
            rx, EVENT_KEYS.index(key), (start + 1600 * i) % 2**32, drop_first=i % 3 == 0
        )
    assert "".join(got) == keys


@pytest.mark.parametrize(
    ("content_type", "body", "key"),
    [
        ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", "5"),
        ("application/dtmf-relay; charset=utf-8", "signal = #\nduration=100", "#"),
        ("Application/DTMF-Relay", b"Signal=*\r\n", "*"),
        ("application/dtmf-relay", "Signal=11\r\n", "#"),
        ("application/dtmf-relay", "Signal=a\r\n", "A"),
        ("application/dtmf", "7", "7"),
        ("application/dtmf", b" 0 \r\n", "0"),
        ("application/dtmf-relay", "Duration=160", None),
        ("application/dtmf-relay", "Signal=77", None),
        ("application/dtmf", "", None),
        ("text/plain", "Signal=5", None),
    ],
)
def test_sip_info_bodies(content_type: str, body: str | bytes, key: str | None) -> None:
    assert info_key(content_type, body) == key


def test_a_replayed_event_with_the_same_timestamp_is_a_new_key_after_a_gap() -> None:
    # SIPp plays the same DTMF pcap twice for "11": same SSRC, same timestamp
    rx = TelephoneEventReceiver()
    first = [payload(1, duration=d) for d in (0, 320)] + [payload(1, end=True, duration=640)] * 3
    keys = [rx.packet(ssrc=9, timestamp=500, payload=p, now=0.01 * i) for i, p in enumerate(first)]
    again = [
        rx.packet(ssrc=9, timestamp=500, payload=p, now=0.5 + 0.01 * i) for i, p in enumerate(first)
    ]
    assert [k for k in keys + again if k] == ["1", "1"]


def test_a_reordered_packet_right_after_the_end_is_not_a_new_key() -> None:
    rx = TelephoneEventReceiver()
    assert rx.packet(ssrc=9, timestamp=500, payload=payload(5, duration=0), now=0.0) == "5"
    assert (
        rx.packet(ssrc=9, timestamp=500, payload=payload(5, end=True, duration=640), now=0.04)
        is None
    )
    assert rx.packet(ssrc=9, timestamp=500, payload=payload(5, duration=320), now=0.05) is None
