"""The media bridge: RTP relayed between two legs of one call, in the I/O loop.

When a pull or a call-back connects, each leg's :class:`~ivr.sip.media.RtpSession`
hands every datagram it receives to a :class:`Relay` towards the other leg instead of
the dialogue: no thread per call, no buffering, one ``sendto`` per packet as it
arrives (so the only added latency is the loop's own turn). A packet keeps its SSRC,
sequence number, timestamp and marker; what changes is what the other leg negotiated:

- the audio payload type, and the G.711 law when the legs answered different ones
  (A-law <-> µ-law by a 256-byte table per direction, exact per ITU-T G.711);
- the telephone-event payload type (RFC 4733 keys from the mobile reach the remote
  party as keys); events are dropped when the other leg negotiated none;
- anything else (comfort noise, other payload types, garbage) is dropped and counted.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from ivr.audio.convert import law_table
from ivr.sip.rtp import PAYLOAD_TYPES, RtpPacket

if TYPE_CHECKING:
    from ivr.sip.media import RtpSession

log = logging.getLogger(__name__)


#: G.711 law conversion per byte, made once
_TABLES = {
    (a, b): law_table(a, b)  # type: ignore[arg-type]
    for a in PAYLOAD_TYPES
    for b in PAYLOAD_TYPES
}


class Relay:
    """One direction of a bridge: packets from ``source``'s leg to ``target``'s."""

    __slots__ = ("dropped", "relayed", "rules", "sock", "target")

    def __init__(self, source: RtpSession, target: RtpSession) -> None:
        self.target = target
        self.sock: socket.socket = target.sock
        #: source payload type -> (target payload type, law table or None)
        self.rules: dict[int, tuple[int, bytes | None]] = {
            PAYLOAD_TYPES[source.codec]: (
                PAYLOAD_TYPES[target.codec],
                _TABLES[source.codec, target.codec],
            )
        }
        if source.offer.dtmf_pt is not None and target.offer.dtmf_pt is not None:
            self.rules[source.offer.dtmf_pt] = (target.offer.dtmf_pt, None)
        self.relayed = 0
        self.dropped = 0

    def __call__(self, data: bytes) -> None:
        """Relay one datagram received from the source leg."""
        if len(data) < 12 or data[0] >> 6 != 2:
            self.dropped += 1
            return
        rule = self.rules.get(data[1] & 0x7F)
        if rule is None:
            self.dropped += 1
            return
        pt, table = rule
        if table is not None or pt != data[1] & 0x7F:
            data = self._rewrite(data, pt, table)
            if not data:
                self.dropped += 1
                return
        try:
            self.sock.sendto(data, self.target.remote)
        except OSError as exc:  # the other leg's peer went away: its RTP timeout ends it
            self.dropped += 1
            log.debug("relay send failed: %s", exc)
            return
        self.relayed += 1

    @staticmethod
    def _rewrite(data: bytes, pt: int, table: bytes | None) -> bytes:
        second = (data[1] & 0x80) | pt
        if table is None:
            return data[:1] + bytes((second,)) + data[2:]
        if data[0] & 0x3F == 0:  # no padding, extension or CSRCs: payload at 12
            return data[:1] + bytes((second,)) + data[2:12] + data[12:].translate(table)
        packet = RtpPacket.parse(data)
        if packet is None:
            return b""
        return RtpPacket(
            payload_type=pt,
            sequence=packet.sequence,
            timestamp=packet.timestamp,
            ssrc=packet.ssrc,
            payload=packet.payload.translate(table),
            marker=packet.marker,
        ).pack()


def bridge(a: RtpSession, b: RtpSession) -> tuple[Relay, Relay]:
    """Connect two legs both ways; each session now relays instead of listening."""
    to_b, to_a = Relay(a, b), Relay(b, a)
    a.relay, b.relay = to_b, to_a
    return to_b, to_a
