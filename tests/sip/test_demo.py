"""``make run``'s demo without a human: ``examples/run_portal.sh`` brings up Kamailio,
the portal, a running desk call (SIPp ``1001`` with linphonec, which talks) and a
call-back destination (linphonec registered as 030 5550199), and prints how to call.

baresip plays Erika's mobile exactly as the printed instructions say: ``baresip -f DIR``
on a terminal (a pseudo-terminal here), ``/dial ...``, then the keys typed one by one
(DTMF). ``4711#`` ``*11``: the desk phone gets the BYE, Kamailio lists the desk call no
more, and what baresip heard (its ``sndfile`` dump, the script's no-sound-card mode)
contains the remote party's rendered speech. ``4711#`` ``0305550199#``: the From and
P-Asserted-Identity the destination got, and what its display shows, as the script
prints them, are the portal's name and number, and baresip hears the destination's
speech. Then SIGINT to the script's process group (Ctrl-C) stops everything it started:
no process of it is left (by PID and start time) and its run directory is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.sip.baresip import module_path
from tests.sip.peers import HOST, ROOT, eventually, free_udp_port, kill_group

SCRIPT = ROOT / "examples" / "run_portal.sh"
TOOLS = ("kamailio", "sipp", "linphonec", "baresip", "espeak-ng")

pytestmark = [
    pytest.mark.skipif(
        not all(shutil.which(t) or shutil.which(t, path="/usr/sbin") for t in TOOLS)
        or module_path() is None,
        reason=f"needs {', '.join(TOOLS)} (make system installs them)",
    ),
    pytest.mark.timeout(90),
]

PORTAL_IDENTITY = '"Anywhere Portal Zentrale" <sip:+4930123454100@127.0.0.1>'
KEY_GAP = 0.3  # seconds between typed keys


# --- processes ------------------------------------------------------------------------------
def stat(pid: int) -> tuple[int, int, str, int] | None:
    """(parent, process group, state, start time) of a process, None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[2]), fields[0], int(fields[19])


def started_by(parent: int) -> dict[int, int]:
    """The processes ``parent`` started and their process groups (Kamailio's workers),
    as {pid: start time}."""
    table = {int(p): stat(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    live = {pid: s for pid, s in table.items() if s is not None}
    groups = {s[1] for s in live.values() if s[0] == parent}
    return {pid: s[3] for pid, s in live.items() if s[0] == parent or s[1] in groups}


def running(processes: dict[int, int]) -> list[int]:
    """Those of ``processes`` that still run (same PID and start time, not a zombie)."""
    left = []
    for pid, start in processes.items():
        now = stat(pid)
        if now is not None and now[3] == start and now[2] not in "ZX":
            left.append(pid)
    return left


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_until(check: Any, timeout: float, why: Any = "") -> Any:
    """check()'s first truthy value within timeout seconds, else an AssertionError."""
    result = eventually(check, timeout)
    if result is None:
        raise AssertionError(f"not within {timeout} s: {why() if callable(why) else why}")
    return result


class Demo:
    """examples/run_portal.sh in its own process group, its output in a file."""

    def __init__(self, workdir: Path) -> None:
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_udp_port())
        self.sip_port, self.portal_port, self.rpc_port = sorted(ports)
        bin_dir = Path(sys.executable).parent
        env = dict(os.environ)
        env.update(
            SIP_PORT=str(self.sip_port),
            PORTAL_PORT=str(self.portal_port),
            RPC_PORT=str(self.rpc_port),
            BARESIP_AUDIO="files",  # baresip dumps what it hears, whatever the machine has
            PYTHON=sys.executable,
            IVR=str(bin_dir / "ivr") if (bin_dir / "ivr").exists() else "ivr",
        )
        self.log = workdir / "demo.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(SCRIPT)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.processes: dict[int, int] = {}

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        regex = re.compile(pattern, re.M)

        def found() -> re.Match[str] | None:
            match = regex.search(self.output())
            if match is None and self.proc.poll() is not None:
                raise AssertionError(f"the script ended ({self.proc.returncode}):\n{self.output()}")
            return match

        match: re.Match[str] = wait_until(found, timeout, lambda: self.output()[-3000:])
        return match

    def rpc(self, method: str) -> Any:
        request = {"jsonrpc": "2.0", "method": method, "params": [], "id": 1}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            sock.sendto(json.dumps(request).encode(), (HOST, self.rpc_port))
            return json.loads(sock.recv(65535))["result"]

    def desk_calls(self) -> list[dict[str, Any]]:
        """Kamailio's answered calls of the desk phone sip:1001."""
        return [
            d
            for d in self.rpc("dlg.list")
            if d.get("state") == 4 and "sip:1001@" in d["from_uri"] + d["to_uri"]
        ]

    def stop(self, sig: int, timeout: float = 30.0) -> int | None:
        """``sig`` to the script's process group; its exit status (None: it hung)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Whatever is left of the script and of what it started (never anything else)."""
        if self.proc.poll() is None:
            self.processes.update(started_by(self.proc.pid))
            kill_group(self.proc, grace=30.0, sweep=True)  # its trap stops the pieces
        for pid in running(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Terminal:
    """A program on a pseudo-terminal (baresip's stdio UI reads keys from a tty)."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            env={**os.environ, "TERM": "dumb"},
        )
        os.close(slave)
        self.master = master
        self.data = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the program is gone
                return
            if not chunk:
                return
            self.data += chunk

    def output(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", bytes(self.data).decode(errors="replace"))

    def type(self, text: str, gap: float = KEY_GAP) -> None:
        for char in text:
            os.write(self.master, char.encode())
            time.sleep(gap)

    def command(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> re.Match[str]:
        regex = re.compile(pattern)
        match: re.Match[str] = wait_until(
            lambda: regex.search(self.output(), since), timeout, lambda: self.output()[-3000:]
        )
        return match

    def close(self) -> None:
        kill_group(self.proc, grace=2.0, sweep=True)
        self.reader.join(timeout=2)
        with contextlib.suppress(OSError):
            os.close(self.master)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running_demo = Demo(tmp_path)
    try:
        yield running_demo
    finally:
        running_demo.kill()


# --- audio ----------------------------------------------------------------------------------
def read_wav(path: Path) -> tuple[np.ndarray[Any, Any], int]:
    with wave.open(str(path)) as wav:
        frames = wav.readframes(wav.getnframes())
        samples = np.frombuffer(frames, dtype="<i2").astype(float)
        return samples.reshape(-1, wav.getnchannels())[:, 0], wav.getframerate()


def to_8k(samples: np.ndarray[Any, Any], rate: int) -> np.ndarray[Any, Any]:
    """Resampled to 8 kHz through the spectrum (an ideal low-pass at 4 kHz)."""
    length = round(len(samples) * 8000 / rate)
    spectrum = np.fft.rfft(samples)[: length // 2 + 1]
    return np.fft.irfft(spectrum, length) * length / len(samples)


def heard(dump: Path, reference: Path) -> float:
    """How well ``reference`` (a WAV the peer sends) is found in ``dump`` (what baresip
    heard): the best correlation coefficient of a 1.5 s piece of it anywhere in the
    dump. Over 0.9 for the same speech through G.711; ~0.2 for other speech."""
    got, _ = read_wav(dump)
    ref = to_8k(*read_wav(reference))
    best = 0.0
    for start in (1.0, 1.5, 2.0):
        piece = ref[int(start * 8000) : int((start + 1.5) * 8000)]
        if len(got) <= len(piece):
            break
        size = len(got) + len(piece)
        corr = np.fft.irfft(np.fft.rfft(got, size) * np.conj(np.fft.rfft(piece, size)), size)
        lag = int(np.argmax(corr[: len(got) - len(piece)]))
        window = got[lag : lag + len(piece)]
        if window.std() > 0:
            best = max(best, float(np.corrcoef(window, piece)[0, 1]))
    return best


def dumps(directory: Path) -> set[Path]:
    """baresip's WAV files of what it heard, one per call."""
    return set(directory.glob("dump-*-dec.wav"))


def closed(dump: Path) -> bool:
    """Has baresip closed ``dump`` (a header that counts all the samples)?"""
    try:
        with wave.open(str(dump)) as wav:
            frames = wav.getnframes()
    except (OSError, EOFError, wave.Error):
        return False
    return frames > 0 and dump.stat().st_size >= 2 * frames + 44


# --- the test -------------------------------------------------------------------------------
def call_portal(phone: Terminal, dial: str) -> int:
    """``/dial`` as printed; waits for the answer and the greeting. Output offset."""
    since = len(phone.output())
    phone.command(dial)
    phone.wait_for(r"Call established", 10, since)
    time.sleep(1.5)  # some of the greeting (keys barge in and count for the PIN)
    return since


def hang_up(phone: Terminal, since: int) -> None:
    phone.type("b", gap=0)
    phone.wait_for(r"terminated \(duration", 10, since)


def test_make_run_demo_pull_and_call_back_then_everything_stops(demo: Demo, tmp_path: Path) -> None:
    started = time.monotonic()
    ready = demo.wait_for(r"Ctrl-C stops everything\.$", 40)
    startup = time.monotonic() - started
    text = demo.output()
    run_dir = Path(re.findall(r"the others in (\S+)\. Ctrl-C", text)[-1])
    baresip_command = re.search(r"^\s+(baresip -f \S+)$", text, re.M)
    dial = re.search(r"^\s+(/dial sip:portal@127\.0\.0\.1:\d+)\s", text, re.M)
    assert ready and baresip_command and dial, text
    assert dial.group(1) == f"/dial sip:portal@127.0.0.1:{demo.sip_port}"
    demo.processes = started_by(demo.proc.pid)
    names = {pid: cmdline(pid) for pid in demo.processes}
    for piece in ("kamailio", "ivr", "linphonec", "sipp", "probe.py watch"):
        assert any(piece in line for line in names.values()), names
    [desk_pid] = [pid for pid, line in names.items() if "desk.xml" in line]
    assert len(demo.desk_calls()) == 1  # the running desk call, answered

    erika = Path(baresip_command.group(1).split()[-1])
    phone = Terminal(baresip_command.group(1).split(), cwd=tmp_path)
    try:
        phone.wait_for(r"baresip is ready", 10)

        # the pull: 4711# *11
        since = call_portal(phone, dial.group(1))
        phone.type("4711#")
        demo.wait_for(r"PIN accepted", 5)
        phone.type("*11")
        demo.wait_for(r"pull connected", 10)
        demo.wait_for(r"^>>> remote party: INVITE with Replaces", 5)
        demo.wait_for(r"^>>> desk phone 1001: BYE", 5)
        wait_until(lambda: not demo.desk_calls(), 5, demo.desk_calls)
        wait_until(lambda: not running({desk_pid: demo.processes[desk_pid]}), 5, "desk SIPp")
        time.sleep(4.0)  # the remote party talks
        hang_up(phone, since)
        [pulled] = wait_until(lambda: dumps(erika), 5, "no dump")
        wait_until(lambda: closed(pulled), 5, "dump not closed")
        scores = [heard(pulled, run_dir / "remote.wav"), heard(pulled, run_dir / "callback.wav")]
        assert scores[0] > 0.8 and scores[1] < 0.5, scores

        # the call-back: 4711# 0305550199#
        since = call_portal(phone, dial.group(1))
        phone.type("4711#")
        wait_until(lambda: demo.output().count("PIN accepted") == 2, 5, demo.output)
        phone.type("0305550199#")
        demo.wait_for(r"dial connected", 15)
        shown = demo.wait_for(r"^>>>\s+P-Asserted-Identity: (.*)$", 5)
        assert shown.group(1) == PORTAL_IDENTITY
        from_ = re.search(r"^>>>\s+From: (.*)$", demo.output(), re.M)
        assert from_ and from_.group(1).startswith(PORTAL_IDENTITY + ";tag="), demo.output()
        display = demo.wait_for(r"^>>>\s+its display \(linphonec\): (.*)$", 5)
        assert display.group(1) == PORTAL_IDENTITY
        time.sleep(4.0)  # the destination talks
        hang_up(phone, since)
        [called] = wait_until(lambda: dumps(erika) - {pulled}, 5, "no second dump")
        wait_until(lambda: closed(called), 5, "dump not closed")
        scores += [heard(called, run_dir / "callback.wav"), heard(called, run_dir / "remote.wav")]
        assert scores[2] > 0.8 and scores[3] < 0.5, scores
        phone.type("q", gap=0)
        phone.proc.wait(timeout=5)
    finally:
        phone.close()

    # Ctrl-C: SIGINT to the script's process group (the pieces run in groups of their
    # own: the script stops them, by group, in reverse order)
    stopping = time.monotonic()
    status = demo.stop(signal.SIGINT)
    stop_seconds = time.monotonic() - stopping
    assert status == 128 + signal.SIGINT, demo.output()[-3000:]
    assert demo.output().rstrip().endswith("stopped.")
    assert running(demo.processes) == [], {p: cmdline(p) for p in running(demo.processes)}
    assert not run_dir.exists()
    print(f"ready after {startup:.1f} s, stopped in {stop_seconds:.1f} s; heard {scores}")
