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

log = logging.getLogger(__name__)

MAX_DATAGRAM = 2048


class PortsExhausted(RuntimeError):
    """Every RTP port of the range is in use."""


class PortPool:
    """Even RTP ports of ``[first, last]`` handed out at random, one per socket, and
    taken back. Random, not in order: the next call's port cannot be guessed (an
    off-path sender spraying keys at the next even port once steered a call)."""

    def __init__(self, first: int = 20000, last: int = 29999) -> None:
        if not 1024 <= first < last <= 65535:
            raise ValueError(f"bad RTP port range {first}-{last}")
        self._free = list(range(first + first % 2, last + 1, 2))
        self.size = len(self._free)
        self.in_use: set[int] = set()

    def open(self, host: str) -> socket.socket:
        """A non-blocking UDP socket on a free port (ports taken by others are skipped;
        :class:`PortsExhausted` when none is left or no socket can be opened)."""
        for _ in range(len(self._free)):
            i = secrets.randbelow(len(self._free))
            port, self._free[i] = self._free[i], self._free[-1]
            self._free.pop()
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            except OSError as exc:  # EMFILE/ENFILE: out of file descriptors
                self._free.append(port)
                raise PortsExhausted(f"no socket for RTP: {exc.strerror}") from None
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                self._free.append(port)  # busy elsewhere: maybe free again later
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
            self._free.append(port)


class RtpSession:
    """One call's RTP: sends G.711 chunks, turns received packets into keys."""

    def __init__(
        self,
        sock: socket.socket,
        offer: Offer,
        on_key: Callable[[str, str], None] | None = None,
        *,
        inband: bool | None = None,
        latch_any: bool = False,
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
        #: the one source taken from, once its first RTP packet came (see :meth:`readable`)
        self.latched: tuple[str, int] | None = None
        self.latch_any = latch_any
        #: called once, on the first packet from the peer (media may start then)
        self.on_first: Callable[[], None] | None = None
        self.last_received = time.monotonic()
        self.sent = 0
        self.received = 0
        self.ignored = 0
        self.foreign = 0

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

    def retarget(self, offer: Offer) -> None:
        """A new offer (re-INVITE): send there, and latch again on its first packet."""
        self.offer = offer
        self.remote = (offer.address, offer.port)
        self.latched = None

    def talkspurt(self) -> None:
        """The next packet starts a new prompt (marker bit)."""
        self.packetizer.new_talkspurt()

    def readable(self, sock: socket.socket) -> None:
        """Read every waiting datagram (called by the loop). Only the peer's are
        taken: the first RTP packet from the host its SDP names latches its source,
        and from then on packets from any other source are dropped (rtpengine's
        strict source). With ``latch_any`` (callers behind NAT, whose SDP names a
        private address) the first packet from anywhere latches, and our packets go
        back to that source (symmetric RTP, "comedia")."""
        for _ in range(64):
            try:
                data, source = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if source != self.latched and not self._latch(data, source):
                self.foreign += 1
                if self.foreign in (1, 100, 10_000):
                    log.warning(
                        "dropped %d RTP datagram(s) on port %d not from the call's peer",
                        self.foreign,
                        self.port,
                    )
                continue
            self.datagram(data)

    def _latch(self, data: bytes, source: tuple[str, int]) -> bool:
        if self.latched is not None or RtpPacket.parse(data) is None:
            return False
        if source[0] != self.offer.address and not self.latch_any:
            return False
        self.latched = source
        if self.latch_any:
            self.remote = source
        if self.on_first is not None:
            self.on_first()
        return True

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
