"""rtpengine as a reference RTP relay for relay benchmarks (loopback only).

:class:`Rtpengine` runs Debian's ``rtpengine`` (package ``rtpengine-daemon``) in the
foreground from a temporary directory: interface 127.0.0.1 only, the ``ng`` control
protocol on a UDP port of 127.0.0.1, userspace forwarding (``--table=-1``), no config
file (``--config-file=none``: the packaged ``/etc/rtpengine/rtpengine.conf`` would
otherwise add recording, CLI and HTTP listeners), no redis, no recording, log in the
temp directory. It is started in its own session and stopped by process group.

The ``ng`` protocol is a cookie, a space and a bencoded dictionary per UDP datagram;
the cookie must be unique per request (rtpengine answers a repeated cookie from its
cache without running the command). One bridged call::

    with Rtpengine() as rtpe:
        to_a, to_b = rtpe.relay_pair(caller_port, callee_port)
        # caller sends to 127.0.0.1:to_a and receives from it; callee likewise with to_b

Plain RTP between two loopback ports needs no flags: rtpengine is symmetric by default
(it sends each leg's media from the port the leg sends to, and to the SDP address until
it has learned the real source). Run ``python bench/rtpengine.py`` for a self-check that
relays 20 calls x 2 directions x 50 packets/s and prints rtpengine's CPU per 1000
packets.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
BINARY = "rtpengine"
PACKET_INTERVAL_S = 0.020
PAYLOAD_BYTES = 160  # G.711, 20 ms
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")

BValue = int | str | bytes | list[Any] | dict[str, Any]


# --- bencode -------------------------------------------------------------------------


def bencode(value: BValue) -> bytes:
    """Encode ints, strings (UTF-8), bytes, lists and str-keyed dicts (keys sorted)."""
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode(), v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    """Decode one bencoded value; strings come back as str (UTF-8, surrogateescape)."""
    value, end = _bdecode_at(data, 0)
    if end != len(data):
        raise ValueError(f"trailing bytes after bencoded value at {end}")
    return value


def _bdecode_at(data: bytes, i: int) -> tuple[Any, int]:
    """Decode the value starting at ``data[i]``; return it and the index after it."""
    head = data[i : i + 1]
    if head == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1 : end]), end + 1
    if head in (b"l", b"d"):
        items: list[Any] = []
        i += 1
        while data[i : i + 1] != b"e":
            if i >= len(data):
                raise ValueError("unterminated list or dict")
            item, i = _bdecode_at(data, i)
            items.append(item)
        if head == b"l":
            return items, i + 1
        return dict(zip(items[::2], items[1::2], strict=True)), i + 1
    if head.isdigit():
        colon = data.index(b":", i)
        start = colon + 1
        end = start + int(data[i:colon])
        if end > len(data):
            raise ValueError("truncated string")
        return data[start:end].decode("utf-8", "surrogateescape"), end
    raise ValueError(f"bad bencode at {i}: {head!r}")


# --- /proc figures -------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of a whole process (all threads, live and exited) from /proc, in s.

    Resolution is one clock tick (1/SC_CLK_TCK, 10 ms here).
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # fields 14 and 15 of stat


def proc_cpu_seconds_precise(pid: int) -> float:
    """Time on CPU of a process's live threads (/proc/<pid>/task/*/schedstat), in s.

    Nanosecond resolution; threads that already exited are not counted.
    """
    total_ns = 0
    with os.scandir(f"/proc/{pid}/task") as tasks:
        for task in tasks:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total_ns += int(Path(task.path, "schedstat").read_text().split()[0])
    return total_ns / 1e9


def proc_rss_bytes(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE


def bound_udp_ports() -> set[int]:
    """Local ports of all UDP sockets on this machine (IPv4 and IPv6)."""
    ports: set[int] = set()
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(name).read_text().splitlines()[1:]:
                local = line.split()[1]
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def find_free_port_span(size: int, *, lowest: int = 10000) -> int:
    """First port of ``size`` consecutive UDP ports that nothing has bound.

    Searches below the kernel's ephemeral range (so that sockets bound to port 0 by
    the benchmark's own endpoints never land inside rtpengine's range), or above it.
    """
    eph_low, eph_high = _ephemeral_range()
    used = bound_udp_ports()
    spans = [(lowest, eph_low), (eph_high + 1, 65536)]
    for low, high in spans:
        for start in range(low, high - size + 1, size):
            if not used.intersection(range(start, start + size)):
                return start
    raise RuntimeError(f"no {size} consecutive free UDP ports outside the ephemeral range")


# --- SDP helpers ---------------------------------------------------------------------


def make_sdp(port: int, host: str = HOST, *, session_id: int = 1, pt: int = 0) -> str:
    """A minimal audio SDP: one RTP/AVP stream of payload type ``pt`` at host:port."""
    return (
        "v=0\r\n"
        f"o=- {session_id} 1 IN IP4 {host}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {host}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP {pt}\r\n"
        "a=sendrecv\r\n"
    )


def sdp_media(sdp: str) -> tuple[str, int]:
    """The (connection address, port) of the first audio stream of an SDP."""
    port = re.search(r"^m=audio (\d+) ", sdp, re.M)
    if port is None:
        raise ValueError(f"no m=audio line in SDP:\n{sdp}")
    # the media-level c= wins over the session-level one; take the last before m=audio
    head = sdp[: port.start()]
    tail = sdp[port.end() :].split("\nm=", 1)[0]
    addrs = re.findall(r"^c=IN IP[46] (\S+)", tail, re.M) or re.findall(
        r"^c=IN IP[46] (\S+)", head, re.M
    )
    if not addrs:
        raise ValueError(f"no c= line in SDP:\n{sdp}")
    return addrs[-1], int(port.group(1))


# --- ng control client ---------------------------------------------------------------


class NgError(RuntimeError):
    """rtpengine answered ``result: error``, or never answered."""


class NgClient:
    """Client of rtpengine's ``ng`` control protocol over UDP (thread-safe)."""

    def __init__(
        self, port: int, host: str = HOST, *, timeout_s: float = 1.0, retries: int = 3
    ) -> None:
        self.addr = (host, port)
        self.timeout_s = timeout_s
        self.retries = retries
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.connect(self.addr)
        self._lock = threading.Lock()
        self._cookies = itertools.count(1)
        self._prefix = f"{os.getpid():x}.{time.monotonic_ns() & 0xFFFFFF:x}."

    def close(self) -> None:
        """Close the control socket."""
        self._sock.close()

    def command(self, name: str, **params: BValue) -> dict[str, Any]:
        """Send one command; return the reply dict (raises NgError on ``error``).

        Keyword names use ``_`` for ``-`` (``call_id`` -> ``call-id``). A lost request
        is resent with the same cookie, which rtpengine treats as a retransmission.
        """
        body: dict[str, Any] = {"command": name}
        body.update({k.replace("_", "-"): v for k, v in params.items()})
        with self._lock:
            cookie = f"{self._prefix}{next(self._cookies)}".encode()
            request = cookie + b" " + bencode(body)
            for _attempt in range(self.retries):
                self._sock.send(request)
                deadline = time.monotonic() + self.timeout_s
                for _stale in range(100):  # bounded: skip late replies to older cookies
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._sock.settimeout(left)
                    try:
                        reply = self._sock.recv(65535)
                    except (TimeoutError, ConnectionRefusedError):
                        break
                    got_cookie, _, payload = reply.partition(b" ")
                    if got_cookie == cookie:
                        return _check_reply(name, bdecode(payload))
            raise NgError(f"no reply to {name!r} from rtpengine at {self.addr}")

    def ping(self) -> bool:
        """True if rtpengine answers ``pong``."""
        return self.command("ping").get("result") == "pong"

    def offer(self, call_id: str, from_tag: str, sdp: str, **params: BValue) -> str:
        """Send the caller's SDP; return rtpengine's SDP for the callee."""
        reply = self.command("offer", call_id=call_id, from_tag=from_tag, sdp=sdp, **params)
        return str(reply["sdp"])

    def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str, **params: BValue) -> str:
        """Send the callee's SDP; return rtpengine's SDP for the caller."""
        reply = self.command(
            "answer", call_id=call_id, from_tag=from_tag, to_tag=to_tag, sdp=sdp, **params
        )
        return str(reply["sdp"])

    def delete(self, call_id: str, from_tag: str | None = None, **params: BValue) -> None:
        """Delete a call (the whole call when ``from_tag`` is None)."""
        if from_tag is not None:
            params["from_tag"] = from_tag
        self.command("delete", call_id=call_id, **params)

    def query(self, call_id: str) -> dict[str, Any]:
        """rtpengine's state and per-stream packet counters of one call."""
        return self.command("query", call_id=call_id)

    def statistics(self) -> dict[str, Any]:
        """Global statistics (sessions, packet rates, totals)."""
        return self.command("statistics")


def _check_reply(name: str, reply: Any) -> dict[str, Any]:
    """Return a reply dict, raising NgError for ``result: error``."""
    if not isinstance(reply, dict):
        raise NgError(f"{name}: reply is not a dict: {reply!r}")
    if reply.get("result") == "error":
        raise NgError(f"{name}: {reply.get('error-reason', reply)}")
    return reply


# --- the daemon ----------------------------------------------------------------------


class Rtpengine:
    """rtpengine in the foreground on loopback, started and stopped by this object.

    ``num_threads`` is rtpengine's ``--num-threads`` (worker/poller threads; rtpengine's
    default is max(CPUs, 4)); ``media_threads`` is ``--media-num-threads`` (media
    playback; 0 disables it, default is num_threads). ``extra_args`` are appended.
    """

    def __init__(
        self,
        *,
        port_min: int | None = None,
        port_max: int | None = None,
        ng_port: int | None = None,
        port_span: int = 4000,
        num_threads: int | None = None,
        media_threads: int | None = 0,
        log_level: int = 5,
        extra_args: Sequence[str] = (),
        binary: str = BINARY,
        start_timeout_s: float = 10.0,
        keep_dir: bool = False,
    ) -> None:
        self.port_min = port_min
        self.port_max = port_max
        self.ng_port = ng_port
        self.port_span = port_span
        self.num_threads = num_threads
        self.media_threads = media_threads
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.binary = binary
        self.start_timeout_s = start_timeout_s
        self.keep_dir = keep_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self.ng: NgClient | None = None
        self.argv: list[str] = []
        self.startup_s = 0.0
        self.calls: dict[str, str] = {}  # call-id -> from-tag, for relay_pair calls
        self._call_ids = itertools.count(1)
        self._last_log = ""

    # lifecycle

    def __enter__(self) -> Rtpengine:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """PID of the rtpengine process (also its process group and session id)."""
        if self.proc is None:
            raise RuntimeError("rtpengine is not running")
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        """File that rtpengine's stderr and stdout go to."""
        if self.workdir is None:
            raise RuntimeError("rtpengine was not started")
        return self.workdir / "rtpengine.log"

    def command_line(self) -> list[str]:
        """The argv used to start rtpengine (ports must be chosen already)."""
        argv = [
            self.binary,
            "--config-file=none",
            "--foreground",
            "--log-stderr",
            f"--log-level={self.log_level}",
            "--table=-1",
            f"--interface={HOST}",
            f"--listen-ng={HOST}:{self.ng_port}",
            f"--port-min={self.port_min}",
            f"--port-max={self.port_max}",
            "--delete-delay=0",
        ]
        if self.num_threads is not None:
            argv.append(f"--num-threads={self.num_threads}")
        if self.media_threads is not None:
            argv.append(f"--media-num-threads={self.media_threads}")
        return argv + self.extra_args

    def _choose_ports(self) -> None:
        """Pick the ng port and media range: free UDP ports outside the ephemeral range."""
        if self.port_min is None or self.port_max is None:
            if self.port_min is not None or self.port_max is not None:
                raise ValueError("give both port_min and port_max, or neither")
            start = find_free_port_span(self.port_span + 1)
            self.port_min, self.port_max = start, start + self.port_span - 1
            if self.ng_port is None:
                self.ng_port = self.port_max + 1
        if self.ng_port is None:
            self.ng_port = find_free_port_span(1, lowest=self.port_max + 1)
        wanted = {self.ng_port, *range(self.port_min, self.port_max + 1)}
        busy = sorted(bound_udp_ports() & wanted)
        if busy:
            raise RuntimeError(f"UDP ports already bound: {busy[:10]}")

    def start(self) -> None:
        """Start rtpengine and wait until ``ping`` answers ``pong``."""
        if self.proc is not None:
            raise RuntimeError("rtpengine already started")
        if shutil.which(self.binary) is None:
            raise FileNotFoundError(f"{self.binary} not found: apt-get install rtpengine-daemon")
        self._choose_ports()
        self.workdir = Path(tempfile.mkdtemp(prefix="rtpengine-"))
        self.argv = self.command_line()
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        assert self.ng_port is not None
        self.ng = NgClient(self.ng_port, timeout_s=0.1, retries=1)
        try:
            self._wait_ready(t0 + self.start_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        self.ng.timeout_s, self.ng.retries = 1.0, 3

    def _wait_ready(self, deadline: float) -> None:
        """Ping until ``pong``; raise if rtpengine exits or the deadline passes."""
        assert self.proc is not None and self.ng is not None
        for _try in range(int(self.start_timeout_s / 0.02) + 1):  # and by the deadline
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"rtpengine exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(NgError, OSError):
                if self.ng.ping():
                    return
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        raise TimeoutError(f"rtpengine did not answer ping:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """Stop rtpengine by process group (SIGTERM, then SIGKILL) and reap it."""
        if self.ng is not None:
            self.ng.close()
            self.ng = None
        proc, self.proc = self.proc, None
        self.calls.clear()
        code: int | None = None
        if proc is not None:
            # the process is not reaped yet, so its pid (= its pgid) cannot be reused
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout_s)
            code = proc.returncode
        if self.workdir is not None and not self.keep_dir:
            self._last_log = self.log_tail(200)
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        return code

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of rtpengine's log."""
        if self.workdir is None:
            return self._last_log
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # figures

    def cpu_seconds(self) -> float:
        """utime+stime of rtpengine, all threads (clock-tick resolution)."""
        return proc_cpu_seconds(self.pid)

    def cpu_seconds_precise(self) -> float:
        """Time on CPU of rtpengine's threads from schedstat (ns resolution)."""
        return proc_cpu_seconds_precise(self.pid)

    def rss_bytes(self) -> int:
        """Resident set size of rtpengine."""
        return proc_rss_bytes(self.pid)

    def threads(self) -> int:
        """Number of rtpengine's threads."""
        return len(os.listdir(f"/proc/{self.pid}/task"))

    # ng commands

    def _client(self) -> NgClient:
        if self.ng is None:
            raise RuntimeError("rtpengine is not running")
        return self.ng

    def offer(self, call_id: str, from_tag: str, sdp: str, **params: BValue) -> str:
        """``offer`` the caller's SDP; return the SDP for the callee."""
        return self._client().offer(call_id, from_tag, sdp, **params)

    def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str, **params: BValue) -> str:
        """``answer`` with the callee's SDP; return the SDP for the caller."""
        return self._client().answer(call_id, from_tag, to_tag, sdp, **params)

    def delete(self, call_id: str, from_tag: str | None = None, **params: BValue) -> None:
        """``delete`` a call."""
        self._client().delete(call_id, from_tag, **params)
        self.calls.pop(call_id, None)

    def query(self, call_id: str) -> dict[str, Any]:
        """``query`` one call."""
        return self._client().query(call_id)

    def statistics(self) -> dict[str, Any]:
        """``statistics`` of the daemon."""
        return self._client().statistics()

    def relay_pair(
        self,
        caller_port: int,
        callee_port: int,
        *,
        host: str = HOST,
        call_id: str | None = None,
        **params: BValue,
    ) -> tuple[int, int]:
        """Bridge host:caller_port and host:callee_port through rtpengine (one call).

        Returns (port the caller sends to, port the callee sends to), both on 127.0.0.1;
        each end receives the other's media from the port it sends to. ``params`` go
        into both ``offer`` and ``answer`` (e.g. ``flags=["strict source"]``).
        """
        n = next(self._call_ids)
        call_id = call_id or f"bench-{os.getpid()}-{n}"
        from_tag, to_tag = f"a{n}", f"b{n}"
        to_callee = self.offer(
            call_id, from_tag, make_sdp(caller_port, host, session_id=2 * n), **params
        )
        callee_sdp = make_sdp(callee_port, host, session_id=2 * n + 1)
        to_caller = self.answer(call_id, from_tag, to_tag, callee_sdp, **params)
        self.calls[call_id] = from_tag
        return sdp_media(to_caller)[1], sdp_media(to_callee)[1]

    def delete_all(self) -> None:
        """Delete every call made by :meth:`relay_pair`."""
        for call_id, from_tag in list(self.calls.items()):
            self.delete(call_id, from_tag)


# --- self-check: paced RTP through rtpengine ----------------------------------------


_RTP = struct.Struct("!BBHII")


def _rtp(seq: int, ssrc: int) -> bytes:
    """A G.711 u-law RTP packet (payload type 0, 160 bytes of silence)."""
    return _RTP.pack(0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + (
        b"\xff" * PAYLOAD_BYTES
    )


def _udp_socket(rcvbuf: int = 1 << 20) -> socket.socket:
    """A non-blocking UDP socket on 127.0.0.1 with an ephemeral port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


def run_load(
    rtpe: Rtpengine, calls: int, seconds: float, *, slots: int = 10, drain_s: float = 0.5
) -> dict[str, Any]:
    """Relay ``calls`` bridged calls, 50 pkt/s each way, for ``seconds``; return figures.

    One thread: every 20 ms (absolute deadlines) each of the 2*calls endpoints sends one
    packet to its rtpengine port; all endpoints are read through one selector. The
    endpoints are spread over ``slots`` send times within the 20 ms (independent calls
    are not in phase; ``slots=1`` sends every packet of a tick in one burst, which lets
    a relay handle many packets per wakeup and so lowers its CPU per packet).
    """
    legs: list[tuple[socket.socket, tuple[str, int], int]] = []  # sock, dest, ssrc
    expect: dict[int, socket.socket] = {}  # ssrc -> socket that must receive it
    relay_src: dict[socket.socket, tuple[str, int]] = {}
    for i in range(calls):
        a, b = _udp_socket(), _udp_socket()
        to_a, to_b = rtpe.relay_pair(a.getsockname()[1], b.getsockname()[1])
        ssrc_a, ssrc_b = 0x10000 + 2 * i, 0x10000 + 2 * i + 1
        legs += [(a, (HOST, to_a), ssrc_a), (b, (HOST, to_b), ssrc_b)]
        expect[ssrc_a], expect[ssrc_b] = b, a
        relay_src[a], relay_src[b] = (HOST, to_a), (HOST, to_b)
    sel = selectors.DefaultSelector()
    for sock, _dest, _ssrc in legs:
        sel.register(sock, selectors.EVENT_READ, sock)
    odd: list[str] = []
    sent = received = misrouted = send_errors = late_sends = 0
    ticks = round(seconds / PACKET_INTERVAL_S)
    slots = max(1, min(slots, len(legs)))
    groups = [legs[k::slots] for k in range(slots)]
    step = PACKET_INTERVAL_S / slots
    cpu0, cpu0_precise = rtpe.cpu_seconds(), rtpe.cpu_seconds_precise()
    own0 = time.process_time()
    t0 = time.monotonic()
    slot, last_slot = 0, ticks * slots  # send slot ``slot`` is due at t0 + slot * step
    end = t0 + ticks * PACKET_INTERVAL_S + drain_s
    # each wakeup sends one slot or reads at least one socket: a generous count bound
    max_wakeups = (last_slot + int(drain_s / step) + 10) * (len(legs) + 100)
    for _wake in range(max_wakeups):  # bounded by count and by ``end``
        now = time.monotonic()
        if slot < last_slot and now >= t0 + slot * step:
            if now - (t0 + slot * step) > PACKET_INTERVAL_S:
                late_sends += 1
            seq = slot // slots
            for sock, dest, ssrc in groups[slot % slots]:
                try:
                    sock.sendto(_rtp(seq, ssrc), dest)
                    sent += 1
                except OSError:
                    send_errors += 1
            slot += 1
            continue
        if slot >= last_slot and now >= end:
            break
        if now > end + 5.0:
            raise RuntimeError("load loop overran its deadline")
        next_at = t0 + slot * step if slot < last_slot else end
        for key, _ in sel.select(max(0.0, next_at - now)):
            sock = key.data
            for _pkt in range(256):  # bounded per wakeup
                try:
                    data, src = sock.recvfrom(2048)
                except BlockingIOError:
                    break
                ssrc = _RTP.unpack_from(data)[4] if len(data) >= _RTP.size else -1
                if expect.get(ssrc) is sock and src == relay_src[sock]:
                    received += 1
                else:
                    misrouted += 1
                    if len(odd) < 5:
                        odd.append(f"{src}->{sock.getsockname()} len={len(data)} {data[:12].hex()}")
    wall = time.monotonic() - t0
    cpu = rtpe.cpu_seconds() - cpu0
    cpu_precise = rtpe.cpu_seconds_precise() - cpu0_precise
    own_cpu = time.process_time() - own0
    sel.close()
    rtpe.delete_all()
    for sock, _dest, _ssrc in legs:
        sock.close()
    relayed = max(received, 1)
    return {
        "calls": calls,
        "seconds": seconds,
        "wall_s": round(wall, 3),
        "sent": sent,
        "received": received,
        "lost": sent - received,
        "misrouted": misrouted,
        "send_errors": send_errors,
        "slots": slots,
        "late_sends": late_sends,
        "rtpengine_cpu_s": round(cpu, 4),
        "rtpengine_cpu_s_schedstat": round(cpu_precise, 4),
        "rtpengine_cpu_ms_per_1000_pkts": round(1000 * cpu / relayed * 1000, 3),
        "rtpengine_cpu_ms_per_1000_pkts_schedstat": round(1000 * cpu_precise / relayed * 1000, 3),
        "sender_cpu_s": round(own_cpu, 4),
        "rtpengine_rss_mib": round(rtpe.rss_bytes() / 2**20, 1),
        "rtpengine_threads": rtpe.threads(),
        "misrouted_samples": odd,
    }


def _main(argv: Iterable[str] | None = None) -> int:
    """Self-check: start rtpengine, relay paced RTP, print loss and CPU per packet."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--num-threads", type=int, default=None)
    parser.add_argument("--media-threads", type=int, default=0)
    parser.add_argument("--slots", type=int, default=10, help="send times per 20 ms")
    args = parser.parse_args(None if argv is None else list(argv))
    with Rtpengine(num_threads=args.num_threads, media_threads=args.media_threads) as rtpe:
        print("command:", " ".join(rtpe.argv))
        print(f"startup: {rtpe.startup_s * 1000:.0f} ms, pid {rtpe.pid}")
        idle0 = rtpe.cpu_seconds_precise()
        time.sleep(1.0)
        print(f"idle CPU: {1000 * (rtpe.cpu_seconds_precise() - idle0):.1f} ms/s")
        figures = run_load(rtpe, args.calls, args.seconds, slots=args.slots)
    for key, value in figures.items():
        print(f"{key}: {value}")
    # a stray datagram from another program on an ephemeral port counts as misrouted
    ok = max(figures["lost"], figures["misrouted"]) <= figures["sent"] * 0.001
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(_main())
