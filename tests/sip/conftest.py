"""Fixtures for the SIP runtime: an in-process server on loopback with the demo portal
(cheap PIN hashes), and a raw-datagram SIP peer for protocol-level tests."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.portal.demo import copy_with_cheap_hashes
from ivr.portal.services import portal_engine
from ivr.sip.serve import prompt_audio
from ivr.sip.server import ServeConfig, SipServer
from tests.conftest import PORTAL_DIALPLAN, PORTAL_EXAMPLES

ERIKA = "+491711234567"
UNKNOWN = "+4922112345"

_AUDIO: dict[str, object] = {}


def start_server(
    portal_dir: Path, config_name: str = "portal.yaml", **options: object
) -> SipServer:
    """A started SIP server for the portal in ``portal_dir`` (no registration unless
    ``registrar`` is given)."""
    engine = portal_engine(PORTAL_DIALPLAN, portal_dir / config_name)
    audio = _AUDIO.get("de")
    if audio is None:
        audio = _AUDIO["de"] = prompt_audio(engine)
    registrar = options.pop("registrar", None)
    # raw peers of the test talk to it directly (any port of 127.0.0.1); behind a
    # registrar only the registrar is trusted, as in a service
    trust = options.pop("trust", () if registrar else ("127.0.0.1/32",))
    config = ServeConfig(
        registrar=registrar or ("127.0.0.1", 9),  # type: ignore[arg-type]
        trust=trust,  # type: ignore[arg-type]
        port=options.pop("port", 0),
        register=options.pop("register", registrar is not None),
        **options,  # type: ignore[arg-type]
    )
    server = SipServer(engine, config, audio)  # type: ignore[arg-type]
    server.start()
    return server


@pytest.fixture
def portal_dir(tmp_path: Path) -> Path:
    """The example portal with cheap PIN hashes, in a temporary directory."""
    target = tmp_path / "portal"
    target.mkdir()
    return copy_with_cheap_hashes(PORTAL_EXAMPLES, target)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Threads and file descriptors are back to where they started after the test."""
    threads, fds = threading.active_count(), open_fds()
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (threading.active_count() > threads or open_fds() > fds):
        time.sleep(0.05)
    assert threading.active_count() <= threads, threading.enumerate()
    assert open_fds() <= fds


@pytest.fixture
def server(portal_dir: Path, no_leaks: None) -> Iterator[SipServer]:
    srv = start_server(portal_dir)
    yield srv
    srv.stop()


class Peer:
    """A raw SIP endpoint on loopback: sends datagrams, waits for matching ones."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[str] = []

    def send(self, text: str, to: tuple[str, int]) -> None:
        data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        self.sock.sendto(data, to)

    def wait(self, start: str, timeout: float = 5.0) -> str:
        """The next message whose first line starts with ``start``."""
        deadline = time.monotonic() + timeout
        for message in self.received:
            if message.startswith(start):
                self.received.remove(message)
                return message
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65535).decode()
            except TimeoutError:
                continue
            if data.startswith(start):
                return data
            self.received.append(data)
        raise AssertionError(
            f"no {start!r} within {timeout} s; got {[m.split(chr(13))[0] for m in self.received]}"
        )

    def drain(self, seconds: float) -> list[str]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                self.received.append(self.sock.recv(65535).decode())
        out, self.received = self.received, []
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


def invite(
    peer: Peer,
    call_id: str,
    *,
    caller: str = ERIKA,
    rtp_port: int = 40000,
    branch: str = "z9hG4bK-1",
    sdp: bool = True,
    extra: str = "",
    codec: int = 8,
    dtmf: bool = True,
) -> str:
    body = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        + (
            f"m=audio {rtp_port} RTP/AVP {codec} 101\r\na=rtpmap:101 telephone-event/8000\r\n"
            if dtmf
            else f"m=audio {rtp_port} RTP/AVP {codec}\r\n"
        )
        if sdp
        else ""
    )
    ctype = "Content-Type: application/sdp\n" if sdp else ""
    return (
        f"INVITE sip:portal@127.0.0.1 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch={branch}\n"
        f"From: <sip:{caller}@127.0.0.1>;tag=caller1\n"
        f"To: <sip:portal@127.0.0.1>\n"
        f"Call-ID: {call_id}\n"
        f"CSeq: 1 INVITE\n"
        f"Contact: <sip:caller@127.0.0.1:{peer.port}>\n"
        f"{extra}{ctype}Content-Length: {len(body)}\n\n"
    ) + body


def in_dialog(
    peer: Peer, method: str, call_id: str, to_tag: str, cseq: int, extra: str = "", body: str = ""
) -> str:
    return (
        f"{method} sip:portal@127.0.0.1 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK-{method}{cseq}\n"
        f"From: <sip:{ERIKA}@127.0.0.1>;tag=caller1\n"
        f"To: <sip:portal@127.0.0.1>;tag={to_tag}\n"
        f"Call-ID: {call_id}\n"
        f"CSeq: {cseq} {method}\n"
        f"{extra}Content-Length: {len(body)}\n\n"
    ) + body


def to_tag(response: str) -> str:
    for line in response.split("\r\n"):
        if line.lower().startswith("to:") and "tag=" in line:
            return line.split("tag=")[1].split(";")[0].strip()
    raise AssertionError("no To tag in " + response)
