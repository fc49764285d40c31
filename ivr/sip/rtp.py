"""RTP (RFC 3550) packets carrying G.711 at 20 ms per packet.

pyVoIP 1.6.8 encodes PCMA as µ-law (docs/pyvoip.md, bug 1) and feeds 8-bit linear
audio; here 16-bit PCM from the prompt cache becomes PCMU (payload type 0) or PCMA (8)
payloads directly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ivr.audio.convert import encode

RTP_VERSION = 2
PAYLOAD_TYPES = {"pcmu": 0, "pcma": 8}
SAMPLES_PER_PACKET = 160  # 20 ms at 8 kHz
PCM_BYTES_PER_PACKET = SAMPLES_PER_PACKET * 2
HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """An RTP packet without CSRCs or extensions."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def pack(self) -> bytes:
        """The packet's bytes."""
        return (
            HEADER.pack(
                RTP_VERSION << 6,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc,
            )
            + self.payload
        )

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket | None:
        """Decode ``data``; None for anything that is not RTP version 2 (garbage)."""
        if len(data) < HEADER.size:
            return None
        first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            return None
        offset = HEADER.size + 4 * (first & 0x0F)
        if first & 0x10:  # header extension
            if len(data) < offset + 4:
                return None
            offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
        payload = data[offset:]
        if first & 0x20 and payload:  # padding
            payload = payload[: -payload[-1]] if payload[-1] <= len(payload) else b""
        if len(data) < offset:
            return None
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=payload,
            marker=bool(second & 0x80),
        )


class G711Packetizer:
    """Cuts 16-bit PCM into 20 ms G.711 packets with running sequence and timestamp."""

    def __init__(self, codec: str, ssrc: int, *, sequence: int = 0, timestamp: int = 0) -> None:
        if codec not in PAYLOAD_TYPES:
            raise ValueError(f"codec must be one of {sorted(PAYLOAD_TYPES)}, got {codec!r}")
        self.codec = codec
        self.ssrc = ssrc
        self.sequence = sequence
        self.timestamp = timestamp
        self._talkspurt = True

    def packet(self, pcm16: bytes) -> bytes:
        """One packet for 20 ms of PCM (shorter input is padded with silence)."""
        pcm16 = pcm16.ljust(PCM_BYTES_PER_PACKET, b"\0")[:PCM_BYTES_PER_PACKET]
        packet = RtpPacket(
            payload_type=PAYLOAD_TYPES[self.codec],
            sequence=self.sequence,
            timestamp=self.timestamp,
            ssrc=self.ssrc,
            payload=encode(pcm16, self.codec),  # type: ignore[arg-type]
            marker=self._talkspurt,
        )
        self._talkspurt = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + SAMPLES_PER_PACKET) & 0xFFFFFFFF
        return packet.pack()

    def new_talkspurt(self) -> None:
        """The next packet starts a talkspurt (sets the marker bit)."""
        self._talkspurt = True
