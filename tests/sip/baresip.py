"""baresip as a headless SIP caller on 127.0.0.1, for end-to-end tests.

``Baresip`` writes a throwaway config directory (no sound card: the microphone is a
WAV file of silence, nothing is played; G.711 only; SIP and RTP on loopback), starts
``baresip -f DIR`` in its own process group, and drives it through the ``ctrl_tcp``
module (netstring-framed JSON commands on a TCP port of 127.0.0.1). On exit baresip
is sent SIGTERM, then SIGKILL, and reaped.

Written against baresip 1.0.0 (Debian bookworm); its ``menu`` module provides the
``dial``, ``sndcode`` (RFC 4733 DTMF) and ``hangup`` commands used here.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any

from tests.sip.peers import HOST, PeerProcess, eventually, free_udp_port, kill_group, spawn

BARESIP = shutil.which("baresip")
MODULE_PATHS = (Path("/usr/lib/baresip/modules"), Path("/usr/lib/x86_64-linux-gnu/baresip/modules"))


def module_path() -> Path | None:
    """The directory holding baresip's modules (g711.so, ctrl_tcp.so, ...), if any."""
    for path in MODULE_PATHS:
        if (path / "ctrl_tcp.so").exists():
            return path
    return None


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def write_silence(path: Path, seconds: float, rate: int = 8000) -> None:
    """A mono 16-bit WAV of silence (baresip's microphone; it drives RTP and DTMF)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\0\0" * int(seconds * rate))


def netstring(data: bytes) -> bytes:
    return str(len(data)).encode() + b":" + data + b","


class Baresip(PeerProcess):
    """baresip 1.0.0 as a SIP caller on 127.0.0.1, as a context manager.

    ``user`` is the user part of the From URI (the caller number). Calls go where
    ``dial`` says, e.g. ``sip:portal@127.0.0.1:5060`` to call through a proxy.
    """

    name = "baresip"

    def __init__(
        self,
        user: str,
        *,
        domain: str = HOST,
        sip_port: int | None = None,
        call_seconds: float = 120.0,
        ready_timeout: float = 10.0,
    ) -> None:
        if BARESIP is None:
            raise RuntimeError("baresip is not installed")
        modules = module_path()
        if modules is None:
            raise RuntimeError("baresip's modules (ctrl_tcp.so) are not installed")
        self.user = user
        self.domain = domain
        self.modules = modules
        self.sip_port = sip_port if sip_port is not None else free_udp_port()
        self.ctrl_port = free_tcp_port()
        self.call_seconds = call_seconds
        self.ready_timeout = ready_timeout
        self._ctrl: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []

    # -- configuration -------------------------------------------------------------

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    def config(self) -> str:
        """The ``config`` file: loopback only, no sound card, G.711, ctrl_tcp."""
        source = self.workdir / "silence.wav"
        lines = [
            "poll_method epoll",
            f"sip_listen {HOST}:{self.sip_port}",
            f"net_interface {HOST}",
            "call_local_timeout 120",
            "call_max_calls 4",
            f"audio_source aufile,{source}",
            "audio_player none,none",  # no such player: the call goes on without one
            "audio_alert none,none",
            "ausrc_srate 8000",
            "ausrc_channels 1",
            "audio_level no",
            "rtp_tos 0",
            "rtcp_mux no",
            "jitter_buffer_delay 5-10",
            f"module_path {self.modules}",
            "module g711.so",
            "module aufile.so",
            "module ctrl_tcp.so",
            "module_tmp account.so",
            "module_app menu.so",
            f"ctrl_tcp_listen {HOST}:{self.ctrl_port}",
            "ringback_disabled yes",
            "menu_bell no",
            "statmode_default off",
            "redial_attempts 0",
        ]
        return "\n".join(lines) + "\n"

    def accounts(self) -> str:
        """The ``accounts`` file: one account, no registration, no media NAT helpers."""
        return f"<{self.aor}>;regint=0;answermode=manual;audio_codecs=PCMA,PCMU\n"

    def command(self) -> list[str]:
        assert BARESIP is not None
        return [BARESIP, "-f", str(self.workdir)]

    # -- process ---------------------------------------------------------------------

    def output(self) -> str:
        """baresip's stdout and stderr so far."""
        return self._read_workdir("baresip.log")

    def describe(self) -> str:
        return self.output()[-4000:]

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("baresip is already running")
        self._tmp = tempfile.TemporaryDirectory(prefix="baresip-")
        write_silence(self.workdir / "silence.wav", self.call_seconds)
        (self.workdir / "config").write_text(self.config())
        (self.workdir / "accounts").write_text(self.accounts())
        (self.workdir / "contacts").write_text("")
        self._proc = spawn(self.command(), self.workdir, self.workdir / "baresip.log")
        self._connect()

    def _connect(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                sock = socket.create_connection((HOST, self.ctrl_port), timeout=0.5)
            except OSError:
                time.sleep(0.05)
                continue
            sock.settimeout(0.2)
            self._ctrl = sock
            self._reader = threading.Thread(target=self._read, name="baresip-ctrl", daemon=True)
            self._reader.start()
            return
        raise TimeoutError(
            f"baresip's ctrl_tcp did not listen on {HOST}:{self.ctrl_port} within "
            f"{self.ready_timeout} s:\n{self.describe()}"
        )

    def _read(self) -> None:
        """Collect the netstring JSON messages (events, responses) baresip sends."""
        sock = self._ctrl
        assert sock is not None
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._buffer += data
                self._parse()

    def _parse(self) -> None:
        while True:
            length, colon, rest = self._buffer.partition(b":")
            if not colon or not length.isdigit():
                return
            size = int(length)
            if len(rest) < size + 1:
                return
            payload, self._buffer = rest[:size], rest[size + 1 :]
            try:
                message = json.loads(payload)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if message.get("event"):
                self.events.append(message)
            elif message.get("response"):
                self.responses.append(message)

    def stop(self, grace: float = 3.0) -> None:
        """Close the control connection, kill the process group, join the reader."""
        try:
            if self._ctrl is not None:
                self._ctrl.close()
            if self._proc is not None:
                kill_group(self._proc, grace, sweep=True)
            if self._reader is not None:
                self._reader.join(timeout=2)
        finally:
            self._ctrl = None
            self._reader = None
            self._proc = None

    # -- commands --------------------------------------------------------------------

    def send(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Run one ctrl_tcp command; its response (``ok``, ``data``)."""
        if self._ctrl is None:
            raise RuntimeError("baresip is not started")
        token = f"t{time.monotonic_ns()}"
        message = {"command": command, "params": params, "token": token}
        self._ctrl.sendall(netstring(json.dumps(message).encode()))

        def take() -> dict[str, Any] | None:
            with self._lock:
                for response in self.responses:
                    if response.get("token") == token:
                        self.responses.remove(response)
                        return response
            return None

        response = eventually(take, timeout, interval=0.02)
        if response is not None:
            return response
        raise TimeoutError(f"no response to {command!r} within {timeout} s:\n{self.output()}")

    def dial(self, uri: str) -> None:
        response = self.send("dial", uri)
        if not response.get("ok"):
            raise RuntimeError(f"dial {uri} failed: {response}\n{self.output()[-4000:]}")

    def send_dtmf(self, keys: str, gap: float = 0.2) -> None:
        """Send keys as RFC 4733 telephone-events, one key (press + release) at a time."""
        for key in keys:
            response = self.send("sndcode", key)
            if not response.get("ok"):
                raise RuntimeError(f"sndcode {key} failed: {response}")
            time.sleep(gap)

    def hangup(self) -> None:
        self.send("hangup")

    def event_types(self) -> list[str]:
        """The types of the events seen so far (CALL_RINGING, CALL_ESTABLISHED, ...)."""
        with self._lock:
            return [str(event.get("type")) for event in self.events]

    def wait_event(self, kind: str, timeout: float = 10.0) -> bool:
        return eventually(lambda: kind in self.event_types(), timeout) is not None
