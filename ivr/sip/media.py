"""RTP media of one call: its socket, outgoing packets, incoming DTMF.

Replaces pyVoIP's ``RTPClient`` (three polling threads per call, bugs 1, 2, 3, 5, 6, 15,
16, 17): the socket is read by the one SIP loop, packets are sent by the loop's pacer,
ports come from a pool and go back to it when the call ends, nothing is buffered
without bound, and telephone-events go through the deduplicating receiver (any event
number, lost first packet, no marker). Callers who send tones are heard by the in-band
detector when no telephone-event payload was negotiated.
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Callable

from ivr.audio.convert import decode
from ivr.audio.dtmf import DtmfDetector
from ivr.sip.dtmf import TelephoneEventReceiver
from ivr.sip.rtp import PCM_BYTES_PER_PACKET, G711Packetizer, RtpPacket
from ivr.sip.sdp import CODEC_PT, Offer

log = logging.getLogger("ivr.sip.media")

MAX_DATAGRAM = 2048


class PortsExhausted(RuntimeError):
    """Every RTP port of the range is in use."""


class PortPool:
    """Even RTP ports of ``[first, last]`` handed out one per call and taken back."""

    def __init__(self, first: int = 20000, last: int = 29999) -> None:
        if not 1024 <= first < last <= 65535:
            raise ValueError(f"bad RTP port range {first}-{last}")
        self._free = list(range(first - first % 2 + (2 if first % 2 else 0), last + 1, 2))
        self._free.reverse()
        self.in_use: set[int] = set()

    def open(self, host: str) -> socket.socket:
        """A non-blocking UDP socket bound to a free port (ports taken by others skipped)."""
        while self._free:
            port = self._free.pop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                self._free.insert(0, port)  # busy elsewhere: try it again much later
                if len(self.in_use) + 1 >= len(self._free) + len(self.in_use):
                    break
                continue
            sock.setblocking(False)
            self.in_use.add(port)
            return sock
        raise PortsExhausted("no free RTP port")

    def close(self, sock: socket.socket) -> None:
        """Close ``sock`` and put its port back."""
        try:
            port = sock.getsockname()[1]
        except OSError:
            port = None
        sock.close()
        if port in self.in_use:
            self.in_use.discard(port)
            self._free.insert(0, port)


class RtpSession:
    """One call's RTP: sends G.711 chunks, turns received packets into keys."""

    def __init__(
        self,
        sock: socket.socket,
        offer: Offer,
        on_key: Callable[[str, str], None] | None = None,
        *,
        inband: bool | None = None,
    ) -> None:
        self.sock = sock
        self.offer = offer
        self.remote = (offer.address, offer.port)
        self.codec = offer.codec
        self.payload_type = CODEC_PT[offer.codec]
        self.packetizer = G711Packetizer(offer.codec, secrets.randbits(32))
        self.events = TelephoneEventReceiver()
        self.on_key = on_key
        use_inband = offer.dtmf_pt is None if inband is None else inband
        self.detector = DtmfDetector() if use_inband and on_key is not None else None
        #: set while bridged: every datagram goes to it (see ivr.sip.bridge)
        self.relay: Callable[[bytes], None] | None = None
        self.last_received = time.monotonic()
        self.sent = 0
        self.received = 0
        self.ignored = 0

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def send(self, pcm16: bytes) -> None:
        """Send 20 ms of audio (16-bit PCM) as one RTP packet."""
        try:
            self.sock.sendto(self.packetizer.packet(pcm16), self.remote)
            self.sent += 1
        except OSError as exc:  # unreachable peer: the no-RTP timeout ends the call
            log.debug("RTP send failed: %s", exc)

    def talkspurt(self) -> None:
        """The next packet starts a new prompt (marker bit)."""
        self.packetizer.new_talkspurt()

    def readable(self, sock: socket.socket) -> None:
        """Read every waiting datagram (called by the loop)."""
        for _ in range(64):
            try:
                data, _addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.datagram(data)

    def datagram(self, data: bytes) -> None:
        if self.relay is not None:
            self.received += 1
            self.last_received = time.monotonic()
            self.relay(data)
            return
        packet = RtpPacket.parse(data)
        if packet is None:
            self.ignored += 1
            if self.ignored in (1, 100, 10_000):
                log.warning("ignored %d non-RTP datagram(s) on port %d", self.ignored, self.port)
            return
        self.received += 1
        self.last_received = time.monotonic()
        if self.on_key is None:
            return
        if packet.payload_type == self.offer.dtmf_pt:
            key = self.events.packet(
                ssrc=packet.ssrc, timestamp=packet.timestamp, payload=packet.payload
            )
            if key is not None:
                self.on_key(key, "rfc4733")
        elif self.detector is not None and packet.payload_type == self.payload_type:
            pcm = decode(packet.payload, self.codec)  # type: ignore[arg-type]
            for key in self.detector.feed(pcm):
                self.on_key(key, "inband")


__all__ = ["PCM_BYTES_PER_PACKET", "PortPool", "PortsExhausted", "RtpSession"]
