"""Helpers for the end-to-end tests of real call control (pull and call-back): the
portal on Kamailio's call control, what the portal sent (and when), RTP with arrival
times, and a tone detector. Nothing here is a test."""

from __future__ import annotations

import math
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ivr.audio.convert import decode
from ivr.sip.server import SipServer
from tests.sip.peers import HOST, eventually


def portal_on_kamailio(
    portal_dir: Path, rpc_port: int, *, config: str = "kamailio.yaml", silent: bool = False
) -> Path:
    """The example portal on the real PBX (examples/portal/kamailio.yaml) asking the
    test's Kamailio; returns the configuration file."""
    path = portal_dir / config
    text = (portal_dir / "kamailio.yaml").read_text()
    text = text.replace("127.0.0.1:8090", f"127.0.0.1:{rpc_port}")
    if silent:
        text = text.replace("silent_mode: false", "silent_mode: true")
        text = text.replace("pin_authentication: true", "pin_authentication: false")
    path.write_text(text)
    return path


@dataclass
class Sent:
    """One datagram the portal sent on its SIP socket."""

    at: float
    data: str
    to: tuple[str, int]

    @property
    def first_line(self) -> str:
        return self.data.split("\r\n", 1)[0]

    def header(self, name: str) -> str:
        for line in self.data.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
            key, _, value = line.partition(": ")
            if key.lower() == name.lower():
                return value
        return ""


class SipLog:
    """Records every SIP datagram ``server`` sends (time, text, destination)."""

    def __init__(self, server: SipServer) -> None:
        self.sent: list[Sent] = []
        send = server._send

        def recording(data: bytes, address: tuple[str, int]) -> None:
            self.sent.append(Sent(time.monotonic(), data.decode("utf-8", "replace"), address))
            send(data, address)

        server._send = recording  # type: ignore[method-assign]

    def first(self, start: str, timeout: float = 30.0) -> Sent:
        """The first datagram whose first line starts with ``start`` (waits for it)."""
        found = eventually(lambda: next(iter(self.all(start)), None), timeout, interval=0.02)
        if found is not None:
            return found
        raise AssertionError(f"the portal sent no {start!r}: {[s.first_line for s in self.sent]}")

    def all(self, start: str) -> list[Sent]:
        return [s for s in list(self.sent) if s.first_line.startswith(start)]


@dataclass
class Packet:
    at: float
    ssrc: int
    payload_type: int
    payload: bytes


@dataclass
class RtpRecorder:
    """A caller's audio port: records each RTP packet with its arrival time."""

    sock: socket.socket = field(
        default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    )
    packets: list[Packet] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._record, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _record(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) >= 12 and data[0] >> 6 == 2:
                ssrc = struct.unpack_from("!I", data, 8)[0]
                self.packets.append(Packet(time.monotonic(), ssrc, data[1] & 0x7F, data[12:]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def tone_share(payloads: list[bytes], codec: str, hz: float = 1000.0) -> float:
    """How much of the audio's energy is at ``hz`` (Goertzel over 20 ms blocks): near 1
    for a pure tone, near 0 for speech, noise or silence."""
    if not payloads:
        return 0.0
    pcm = decode(b"".join(payloads), codec)  # type: ignore[arg-type]
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    coefficient = 2 * math.cos(2 * math.pi * hz / 8000)
    tone = total = 0.0
    for start in range(0, len(samples) - 159, 160):
        block = samples[start : start + 160]
        s1 = s2 = 0.0
        for x in block:
            s1, s2 = x + coefficient * s1 - s2, s1
        tone += (s1 * s1 + s2 * s2 - coefficient * s1 * s2) / 80  # power at hz x N/2
        total += sum(x * x for x in block)
    return tone / total if total else 0.0


def tags(header: str) -> dict[str, str]:
    """``Replaces`` header parameters: call-id, to-tag, from-tag."""
    call_id, *params = header.split(";")
    out = {"call-id": call_id.strip()}
    for param in params:
        key, _, value = param.partition("=")
        out[key.strip().lower()] = value.strip()
    return out


def body_port(message: str) -> int:
    match = re.search(r"m=audio (\d+)", message)
    assert match, message
    return int(match.group(1))
