"""linphonec (Debian 12's linphone-cli 5.1.65) as a headless SIP peer on 127.0.0.1.

``Linphone`` writes a throwaway HOME with a ``linphonerc`` (SIP on UDP 127.0.0.1:port
only, no TCP/TLS, RTP on 127.0.0.1 with a port the kernel picks, no video), starts
``linphonec -c linphonerc`` in its own process group and drives it through stdin, one
console command a line. The first command is ``soundcard use files``: no sound card is
opened, and what linphone sends in a call is the WAV named ``[sound] hold_music`` (the
``audio`` argument, else a silent WAV), looped with 0.5 s of silence in between. Any
rate works (it is resampled); G.711 only by default. Without files mode, or without a
WAV it can open, linphone sends no RTP at all (its default, an .mkv, fails to open).

It is started with the helpers' ``spawn`` with a pipe for stdin: linphonec quits on
end of input. ``--pipe`` (the ``linphonecsh`` socket) is no way out: its path is
``/tmp/linphonec-<uid>``, shared by every instance of the user. Stopping reuses
``kill_group`` (``quit`` first, then SIGTERM / SIGKILL to the group).

What linphone prints (``console()``) is the readline echo of each command, the command
output, and call events such as ``Call 2 with <uri> connected.``; ``log()`` is the
debug log (``-d 6``) with every SIP message sent and received.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

from tests.sip.peers import HOST, PeerProcess, free_udp_port, kill_group, spawn

LINPHONEC = shutil.which("linphonec")
PROMPT = "linphonec> "
_FILES_MODE = "Using wav files instead of soundcard."
_ROW = re.compile(r"^(\d+)\s+\| (.*?)\s+\| (\w+)\s*\|\s*(.*)$")
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3} ")
_SIP_START = re.compile(r"(SIP/2\.0 \d{3} |[A-Z]+ \S+ SIP/2\.0\n)")


def write_tone(
    path: Path, seconds: float, hz: float = 1000.0, *, amplitude: int = 8000, rate: int = 8000
) -> Path:
    """A mono 16-bit WAV of a sine tone (``amplitude=0``: silence)."""
    frames = b"".join(
        struct.pack("<h", round(amplitude * math.sin(2 * math.pi * hz * i / rate)))
        for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return path


@dataclass(frozen=True)
class LinphoneCall:
    """One row of linphonec's ``calls`` table."""

    id: int
    remote: str
    state: str  # IncomingReceived, OutgoingRinging, StreamsRunning, ...
    flags: str = ""


@dataclass(frozen=True)
class SipTrace:
    """A SIP message from linphone's debug log."""

    direction: str  # "sent" or "received"
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), if any."""
        for line in self.text.split("\n"):
            key, colon, value = line.partition(":")
            if colon and key.strip().lower() == name.lower():
                return value.strip()
            if not line.strip():
                break
        return None


class Linphone(PeerProcess):
    """linphonec on 127.0.0.1:port as a context manager (see the module docstring).

    ``auto_answer`` is linphonec's ``-a``: it answers an incoming call when no other call
    is running (a second call rings). INVITEs with a matching ``Replaces`` are accepted
    by liblinphone itself, with or without it (``[sip] auto_answer_replacing_calls``).
    """

    name = "linphonec"

    def __init__(
        self,
        user: str = "linphone",
        *,
        port: int | None = None,
        auto_answer: bool = True,
        audio: Path | None = None,
        codecs: tuple[str, ...] = ("PCMU", "PCMA"),
        debug_level: int = 6,
        ready_timeout: float = 15.0,
    ) -> None:
        if LINPHONEC is None:
            raise RuntimeError("linphonec is not installed (apt-get install linphone-cli)")
        if audio is not None and not Path(audio).is_file():
            raise FileNotFoundError(audio)
        self.user = user
        self.port = port if port is not None else free_udp_port()
        self.auto_answer = auto_answer
        self.audio = Path(audio).resolve() if audio is not None else None
        self.codecs = codecs
        self.debug_level = debug_level
        self.ready_timeout = ready_timeout
        self.startup_seconds: float | None = None

    # -- configuration -----------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def uri(self) -> str:
        """The SIP URI that reaches this linphone directly."""
        return f"sip:{self.user}@{self.address}"

    @property
    def audio_file(self) -> Path:
        """The WAV linphone sends in every call: ``audio``, or silence."""
        return self.audio if self.audio is not None else self.workdir / "silence.wav"

    @property
    def config_path(self) -> Path:
        return self.workdir / "linphonerc"

    def config(self) -> str:
        """The ``linphonerc``: loopback only, no registration, no video."""
        lines = [
            "[sip]",
            f"sip_port={self.port}",
            "sip_tcp_port=0",  # 0 disables a transport, -1 would pick a random port
            "sip_tls_port=0",
            f"bind_address={HOST}",
            "use_ipv6=0",
            "guess_hostname=0",  # else the From host is a guessed address, not 127.0.0.1
            f'contact="{self.user}" <sip:{self.user}@{HOST}>',
            "auto_answer_replacing_calls=1",
            "inc_timeout=120",
            "[rtp]",
            "audio_rtp_port=0",  # 0: a port the kernel picks, so instances never collide
            f"bind_address={HOST}",
            "[net]",
            "firewall_policy=0",
            "[video]",
            "enabled=0",
            "capture=0",
            "display=0",
            "[sound]",
            "echocancellation=0",
            f"hold_music={self.audio_file}",  # what a call sends, in files mode
        ]
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        assert LINPHONEC is not None
        cmd = [LINPHONEC, "-c", str(self.config_path), "-d", str(self.debug_level)]
        cmd += ["-l", str(self.workdir / "linphone.log")]
        if self.auto_answer:
            cmd.append("-a")
        return cmd

    def environment(self) -> dict[str, str]:
        """HOME is the temporary directory (database, zrtp cache, readline history)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "PULSE"))}
        env.pop("DISPLAY", None)
        env.update(HOME=str(self.workdir), TERM="dumb", LANG="C.UTF-8")  # TERM: no escapes
        return env

    # -- process -------------------------------------------------------------------

    def console(self) -> str:
        """Everything linphonec printed so far (readline echo, output, call events)."""
        return self._read_workdir("console.log")

    def log(self) -> str:
        """The debug log (``-d 6``: every SIP message, media and state changes)."""
        return self._read_workdir("linphone.log")

    def describe(self) -> str:
        """The console and the tail of the log, for assertion messages."""
        return f"--- linphonec console ---\n{self.console()[-3000:]}\n--- log ---\n{self.log()[-3000:]}"

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("linphonec is already running")
        self._tmp = tempfile.TemporaryDirectory(prefix="linphone-")
        # without this directory the core never starts: no database, no SIP listener
        (self.workdir / ".local" / "share" / "linphone").mkdir(parents=True)
        if self.audio is None:
            write_tone(self.audio_file, 5.0, amplitude=0)
        self.config_path.write_text(self.config())
        started = time.monotonic()
        log = self.workdir / "console.log"
        env = self.environment()
        self._proc = spawn(self.command(), self.workdir, log, stdin=subprocess.PIPE, env=env)
        self.send("soundcard use files", expect=re.escape(_FILES_MODE))
        if self.codecs:
            self.set_codecs(self.codecs)
        self._wait_answering(self.port, self.ready_timeout)
        self.startup_seconds = time.monotonic() - started

    def stop(self, grace: float = 3.0) -> None:
        """``quit`` (ends the calls with BYE), then the process group is killed."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None and proc.stdin is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.stdin.write(b"quit\n")
                proc.stdin.flush()
                proc.wait(timeout=grace)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        kill_group(proc, grace=1.0, sweep=True)

    # -- commands ------------------------------------------------------------------

    def send(self, line: str, *, expect: str | None = None, timeout: float = 5.0) -> str:
        """Type one command; its output (up to the next prompt, or up to and including
        the first match of the regex ``expect``)."""
        self._check_alive()
        assert self._proc is not None and self._proc.stdin is not None
        offset = len(self.console())
        self._proc.stdin.write(line.encode() + b"\n")
        self._proc.stdin.flush()
        echo = re.escape(line) + r"\n"
        end = expect if expect is not None else re.escape(PROMPT)
        pattern = re.compile(echo + r"(.*?" + f"(?:{end}))", re.S)
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(self.console(), offset)
            if match:
                output = match.group(1)
                return output if expect is not None else output[: -len(PROMPT)]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to {line!r} within {timeout} s:\n{self.describe()}")
            self._check_alive()
            time.sleep(0.02)

    def wait_for(self, pattern: str, timeout: float = 10.0, since: int = 0) -> re.Match[str]:
        """The first match of the regex ``pattern`` in the console after offset ``since``."""
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.console(), since)
            if match:
                return match
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {pattern!r} within {timeout} s:\n{self.describe()}")
            self._check_alive()
            time.sleep(0.02)

    def call(self, uri: str) -> int:
        """Place a call (one at a time: linphonec refuses while in a call); its id."""
        output = self.send(
            f"call {uri}",
            expect=r"assigned id \d+|Terminate or hold on the current call first\.|Error from linphone_core_invite\.",
        )
        match = re.search(r"assigned id (\d+)", output)
        if match is None:
            raise RuntimeError(f"call {uri} failed: {output.strip()}\n{self.describe()}")
        return int(match.group(1))

    def answer(self, call_id: int | None = None) -> str:
        return self.send("answer" if call_id is None else f"answer {call_id}")

    def hangup(self, call_id: int | None = None) -> str:
        """``terminate`` the current call, or the one with ``call_id``."""
        return self.send("terminate" if call_id is None else f"terminate {call_id}")

    def hangup_all(self) -> str:
        return self.send("terminate all")

    def set_auto_answer(self, enabled: bool) -> None:
        self.send(f"autoanswer {'enable' if enabled else 'disable'}")
        self.auto_answer = enabled

    def set_codecs(self, names: tuple[str, ...]) -> None:
        """Enable only these audio codecs (at 8 kHz), e.g. ``("PCMU", "PCMA")``.

        ``[audio_codec_N]`` sections in linphonerc do not do it: liblinphone appends
        every codec missing there with its default enablement (opus, speex, G729 on).
        """
        self.send("codec disable all")
        wanted = {name.lower() for name in names}
        for line in self.send("codec list").splitlines():
            match = re.match(r"\s*(\d+): (\S+) \((\d+)\)", line)
            if match and match.group(2).lower() in wanted and match.group(3) == "8000":
                self.send(f"codec enable {match.group(1)}")

    def calls(self) -> list[LinphoneCall]:
        """The calls linphone has now (``calls`` command)."""
        rows = []
        for line in self.send("calls").splitlines():
            match = _ROW.match(line.strip())
            if match:
                call_id, remote, state, flags = match.groups()
                rows.append(LinphoneCall(int(call_id), remote.strip(), state, flags.strip()))
        return rows

    def wait_call_state(self, call_id: int, state: str, timeout: float = 10.0) -> LinphoneCall:
        """Poll ``calls`` until call ``call_id`` is in ``state``."""
        deadline = time.monotonic() + timeout
        while True:
            current = {call.id: call for call in self.calls()}
            if call_id in current and current[call_id].state == state:
                return current[call_id]
            if time.monotonic() > deadline:
                raise TimeoutError(f"call {call_id} not {state} within {timeout} s: {current}")
            time.sleep(0.1)

    def sip_messages(self) -> list[SipTrace]:
        """The SIP messages in the debug log, sent and received, oldest first."""
        traces: list[SipTrace] = []
        direction: str | None = None
        body: list[str] = []
        for line in [*self.log().splitlines(), "0000-00-00 00:00:00:000 end"]:
            if not _STAMP.match(line):
                if direction is not None:
                    body.append(line)
                continue
            if direction is not None and body:
                traces.append(SipTrace(direction, "\n".join(body).strip() + "\n"))
            body = []
            direction = "sent" if "message sent to" in line else None
            if "new bytes from" in line:
                direction = "received"
        return [trace for trace in traces if _SIP_START.match(trace.text)]
