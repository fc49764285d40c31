"""DTMF as it arrives over SIP: RFC 4733 telephone-events in RTP, and SIP INFO bodies.

pyVoIP takes a key only from the RTP packet with the marker bit and does not dedupe
(docs/pyvoip.md, bugs 5 and 6). Here one key is reported per *event*: an event
is identified by its RTP SSRC and timestamp (RFC 4733 §2.5.1: all packets of one event
share the timestamp of its start), so repeated packets and the usual three end packets
count once, a lost first packet does not lose the key, and a sender that never sets the
marker bit still works. Events above 15 (flash, tones) are ignored, never a crash.

Some senders reuse a timestamp for a new event (SIPp replaying the same DTMF pcap twice
for "11"): after an event ended (end bit seen), a packet with the same SSRC and
timestamp that is not an end packet and comes ``REPLAY_GAP`` or more after the event's
last packet starts a new event. Reordered packets of the old event arrive sooner.
"""

from __future__ import annotations

import re
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

#: RFC 4733 event codes 0-15 -> DTMF keys
EVENT_KEYS = "0123456789*#ABCD"
#: a reused (SSRC, timestamp) this long after its event ended is a new event (seconds)
REPLAY_GAP = 0.15
#: how many recent events are remembered per call for deduplication
REMEMBERED_EVENTS = 64


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 payload: event code, end bit, volume, duration (timestamp units)."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent | None:
        """Decode the 4-byte payload; None when it is too short."""
        if len(payload) < 4:
            return None
        event, flags, duration = struct.unpack("!BBH", payload[:4])
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def key(self) -> str | None:
        """The DTMF key of this event, or None for events above 15."""
        return EVENT_KEYS[self.event] if self.event < len(EVENT_KEYS) else None


class TelephoneEventReceiver:
    """Turns telephone-event packets of one call into keys, one per event."""

    def __init__(self) -> None:
        # (ssrc, timestamp) -> (ended, arrival of its last packet)
        self._seen: OrderedDict[tuple[int, int], tuple[bool, float]] = OrderedDict()

    def packet(
        self, *, ssrc: int, timestamp: int, payload: bytes, now: float | None = None
    ) -> str | None:
        """Feed one RTP packet's telephone-event payload; returns a new key or None."""
        event = TelephoneEvent.parse(payload)
        if event is None:
            return None
        key = event.key()
        if key is None:
            return None
        now = time.monotonic() if now is None else now
        ident = (ssrc, timestamp)
        previous = self._seen.get(ident)
        self._seen[ident] = (event.end or (previous is not None and previous[0]), now)
        if previous is not None:
            ended, last = previous
            if not (ended and not event.end and now - last >= REPLAY_GAP):
                return None
            self._seen[ident] = (False, now)  # a new event that reuses the timestamp
        self._seen.move_to_end(ident)
        if len(self._seen) > REMEMBERED_EVENTS:
            self._seen.popitem(last=False)
        return key


_SIGNAL = re.compile(r"^\s*signal\s*=\s*(\S+)\s*$", re.IGNORECASE | re.MULTILINE)
_NUMERIC = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


def info_key(content_type: str, body: bytes | str) -> str | None:
    """The key in a SIP INFO body (``application/dtmf-relay`` ``Signal=5``, or
    ``application/dtmf`` ``5``); None when there is none or the type is another."""
    kind = content_type.split(";")[0].strip().lower()
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if kind == "application/dtmf-relay":
        match = _SIGNAL.search(text)
        value = match.group(1) if match else ""
    elif kind == "application/dtmf":
        value = text.strip()
    else:
        return None
    value = _NUMERIC.get(value, value).upper()
    return value if len(value) == 1 and value in EVENT_KEYS else None
