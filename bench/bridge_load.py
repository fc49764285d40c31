"""Bridged-call load: N call-backs relayed by `ivr serve`, and the same streams by rtpengine.

For each level N (default 50, 100, 200, 300) and each relay:

* **ivr** — Kamailio (``tests/sip/peers.py``) and the Anywhere Portal as its own
  process (``ivr serve dialplans/anywhere_portal.yaml``, the example Kamailio portal
  configuration in silent mode without PIN, cheap PIN hashes, ``--rtp-timeout 0``; run
  as ``python -c GC_WRAPPER ... serve ...``: the ``ivr`` entry point with a
  ``gc.callbacks`` note of every garbage collection >= 0.5 ms, nothing else changed). The
  load driver of this file (one process, one epoll loop, no thread per call) places N
  calls from Erika's mobile to ``portal`` through Kamailio (raw SIP over UDP: INVITE,
  ACK, then the number as SIP INFO ``application/dtmf``, one key per INFO, each waiting
  for its 200: ``0301xxxxxx#``, a distinct number per call). The portal calls the number
  back through Kamailio; the driver's callee socket answers every such INVITE at once
  (200 with SDP, PCMA + telephone-event) and takes the portal's ACK as "bridged".
* **rtpengine** — ``rtpengine`` (userspace, ``bench/rtpengine.py``) with the same N
  calls set up by ``offer``/``answer`` over ``ng`` (no SIP), the same endpoints, the same
  streams.

Once every call is up, each of the 2N legs sends 50 PCMA packets/s (own SSRC, sequence
numbers from 0, 160-byte payload) on its own UDP socket to the relay, paced by absolute
deadlines; the legs are spread over ``--slots`` send times per 20 ms (default 100, i.e.
every 0.2 ms a few legs send: calls are not in phase, and the relay cannot batch a whole
20 ms tick per wakeup). The driver waits in epoll (millisecond timeouts) until ~1 ms
before a send time and sleeps the rest (``clock_nanosleep``), so sends leave within
~0.1 ms of their deadline. Every received packet is checked (SSRC, and that it came
from the relay port the leg sends to) and recorded. After ``--warmup`` s the steady
phase of ``--steady`` s is measured:

* **lost** — packets sent minus packets received by the other leg, per direction (a =
  caller -> b = callee, b -> a), over the whole streaming phase. When packets are lost,
  the capture and the kernel's per-socket drop counters (``/proc/net/udp``) say where:
  never entered the relay, entered it but never left, left it but never read by the
  driver.
* **added latency** — from a ``dumpcap`` capture on ``lo`` (relay's port range,
  snaplen 64, started and stopped by PID): each packet entering a relay port, matched by
  SSRC and sequence number to the same packet leaving the relay towards the other leg;
  the difference of the two capture timestamps (µs) is the time spent in the relay
  (socket queue + processing). p50/p99/max over the packets sent in the steady phase.
* **jitter** — p99 of |inter-arrival gap - 20 ms| per stream, as the packets leave the
  relay (capture on ``lo`` = when they reach the receiver's socket), steady phase; the
  same figure for the packets entering the relay (the driver's own pacing) next to it,
  so the relay's share shows. Also the RFC 3550 interarrival jitter J at the relay's
  output (the largest J of each stream in the steady phase, p99 over the streams), in
  the details and the JSON output.
* **CPU** — the relay's time on CPU over the steady phase (schedstat, all threads):
  per bridged call (ms of CPU per second of call) and per relayed packet (µs); the ratio
  ivr / rtpengine of the CPU per packet, per level. Next to it, for context: the CPU of
  the driver, dumpcap and Kamailio, and how long the relay's threads waited for a CPU
  (run queue) — the machine may have only a few cores shared by all of them.
* **RSS** — the relay's resident memory in the steady phase minus before the calls, per
  call (for ivr this includes the SIP server transactions of the set-up, kept 32 s by
  Timer J).
* **GC** (ivr) — the portal's garbage-collection pauses in the steady phase, and its
  longest full collection from the first call on: every pause stops the one I/O loop.

``--churn R`` places R extra calls per second while the N calls stream (through the
portal's dialogue and SIP, hung up as soon as bridged; for rtpengine offer, answer and
delete): calls come and go as in production, which is what lets full collections happen
while media flows.

A level holds when every call was bridged, 0 packets were lost and the added latency
p99 is <= 5 ms. Loopback only; every process this starts (Kamailio, the portal,
rtpengine, dumpcap) is stopped by its PID / process group.

    .venv/bin/python bench/bridge_load.py [--levels 50,100,200,300] [--steady 10]
        [--relays ivr,rtpengine] [--churn 0] [--json figures.json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import heapq
import itertools
import json
import math
import os
import re
import resource
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rtp_stats import read_pcap  # noqa: E402
from bench.rtpengine import (  # noqa: E402
    Rtpengine,
    find_free_port_span,
    make_sdp,
    proc_cpu_seconds_precise,
    proc_rss_bytes,
    sdp_media,
)
from tests.sip.peers import Kamailio, kill_group, spawn  # noqa: E402

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
ERIKA = "+491711234567"  # the demo directory's mobile number of Erika (fictional)
PTIME = 0.020
PAYLOAD = b"\xd5" * 160  # 20 ms of A-law silence
PT_PCMA = 8
RTP_HEAD = struct.Struct("!BBHII")
SEQ_SSRC = struct.Struct("!2xH4xI")  # sequence number, SSRC of an RTP header
T1 = 0.5  # SIP retransmission interval, doubled up to T2
T2 = 4.0
MAX_TRIES = 7  # 0.5 + 1 + 2 + 4 + 4 + 4 s of retransmissions, then the call failed
LATENCY_GOAL_MS = 5.0
COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
}
NUMBER_RE = re.compile(r"^INVITE sip:\+49301(\d{6})@")


# --- SIP text ------------------------------------------------------------------------


@dataclass
class Sip:
    """One parsed SIP message (just what the driver needs)."""

    first: str
    headers: list[tuple[str, str]]  # (lower-case name, value), in order
    raw_head: list[str]  # the header lines as received
    body: bytes

    @property
    def status(self) -> int:
        """The status code of a response, 0 for a request."""
        if not self.first.startswith("SIP/2.0 "):
            return 0
        try:
            return int(self.first.split(" ", 2)[1])
        except (IndexError, ValueError):
            return 0

    @property
    def method(self) -> str:
        """The request method, or the CSeq method of a response."""
        if self.status:
            return self.get("cseq").split()[-1] if self.get("cseq") else ""
        return self.first.split(" ", 1)[0]

    @property
    def cseq(self) -> int:
        try:
            return int(self.get("cseq").split()[0])
        except (IndexError, ValueError):
            return -1

    def get(self, name: str) -> str:
        for key, value in self.headers:
            if key == name:
                return value
        return ""

    def lines(self, name: str) -> list[str]:
        """Header lines ``name`` exactly as received (for copying into a response)."""
        out = []
        for line in self.raw_head:
            key = line.split(":", 1)[0].strip().lower()
            if COMPACT.get(key, key) == name:
                out.append(line)
        return out


def parse_sip(data: bytes) -> Sip | None:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("utf-8", "replace").split("\r\n")
    raw: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and raw:
            raw[-1] += " " + line.strip()
        else:
            raw.append(line)
    headers = []
    for line in raw:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers.append((COMPACT.get(key, key), value.strip()))
    return Sip(lines[0], headers, raw, body)


def sip_text(first: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"{first}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def sdp_body(port: int, session: int) -> bytes:
    return (
        "v=0\r\n"
        f"o=bench {session} 1 IN IP4 {HOST}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {HOST}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP 8 101\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    ).encode()


def sdp_address(body: bytes) -> tuple[str, int] | None:
    try:
        return sdp_media(body.decode("utf-8", "replace"))
    except ValueError:
        return None


def uri_of(value: str) -> str:
    """The URI inside <...> of a header value (or the value up to ';')."""
    if "<" in value:
        return value.split("<", 1)[1].split(">", 1)[0]
    return value.split(";", 1)[0].strip()


def route_set(response: Sip) -> list[str]:
    """The route set of a UAC dialog: the 2xx's Record-Route entries, reversed."""
    entries: list[str] = []
    for key, value in response.headers:
        if key == "record-route":
            entries += re.findall(r"<[^>]*>", value)
    return entries[::-1]


# --- the load driver -------------------------------------------------------------------


class Retrans:
    """A message sent again at T1, 2T1 ... (capped at T2) until ``active`` goes False."""

    __slots__ = ("active", "data", "dest", "interval", "tries")

    def __init__(self, data: bytes, dest: tuple[str, int]) -> None:
        self.data, self.dest = data, dest
        self.interval, self.tries, self.active = T1, 1, True


@dataclass(eq=False)
class Leg:
    """One endpoint's RTP: its socket, where it sends, what it must receive."""

    sock: socket.socket
    ssrc: int  # what it sends
    expect_ssrc: int  # what it must receive (the other leg's SSRC)
    dest: tuple[str, int] | None = None  # the relay port it sends to (and hears from)
    sent: int = 0
    send_errors: int = 0
    received: int = 0
    duplicates: int = 0
    other: int = 0  # ringback, prompts, strays: not the other leg's packets
    arrivals: array[float] = field(default_factory=lambda: array("d"))

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])


@dataclass(eq=False)
class Call:
    index: int
    a: Leg  # the caller (Erika's mobile)
    b: Leg  # the called party
    call_id: str = ""
    state: str = "idle"  # idle inviting keys dialled up | failed ending ended
    why: str = ""
    to_tag: str = ""
    target: str = ""  # the portal's Contact URI
    routes: list[str] = field(default_factory=list)
    cseq: int = 1
    keys: str = ""
    pending: Retrans | None = None
    callee_ok: Retrans | None = None
    callee_call_id: str = ""
    callee_bye: bool = False
    caller_bye_ok: bool = False
    t_invite: float = 0.0
    t_up: float = 0.0


class Driver:
    """Both ends of N calls in one epoll loop: SIP (ivr) or none (rtpengine), and RTP."""

    def __init__(self, n: int, *, slots: int, run_tag: str, churn: int = 0) -> None:
        self.n = n  # calls 0..n-1 stream; n..n+churn-1 are set up and hung up meanwhile
        self.run_tag = run_tag
        self.ep = select.epoll()
        self.handlers: dict[int, Callable[[float], None]] = {}
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.calls: list[Call] = []
        self.by_call_id: dict[str, Call] = {}
        base = secrets.randbits(32) & 0xFFFF0000  # this run's SSRCs: base | 0..2n-1
        for i in range(n + churn):
            a = Leg(self._rtp_socket(), base | (2 * i), base | (2 * i + 1))
            b = Leg(self._rtp_socket(), base | (2 * i + 1), base | (2 * i))
            self.calls.append(Call(i, a, b))
        for call in self.calls:
            for leg in (call.a, call.b):
                self._watch(leg.sock, functools.partial(self._rtp_readable, leg))
        self.slots = slots
        self.streaming = False
        self.t0 = 0.0
        self.slot = 0
        self.last_slot = 0
        self.late_slots = 0
        self.groups: list[list[Leg]] = []
        self.streamers: list[Call] = []
        self.sip_a: socket.socket | None = None
        self.sip_b: socket.socket | None = None
        self.proxy: tuple[str, int] = (HOST, 0)
        self.user = ""
        self.stray_sip = 0

    # sockets and timers

    def _rtp_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        return sock

    def _watch(self, sock: socket.socket, handler: Callable[[float], None]) -> None:
        self.ep.register(sock.fileno(), select.EPOLLIN)
        self.handlers[sock.fileno()] = handler

    def at(self, when: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (when, next(self._seq), callback))

    def close(self) -> None:
        self.ep.close()
        for call in self.calls:
            call.a.sock.close()
            call.b.sock.close()
        for sock in (self.sip_a, self.sip_b):
            if sock is not None:
                sock.close()

    def legs(self) -> list[Leg]:
        """The legs that stream (before streaming: of the first n calls that are up)."""
        calls = self.streamers or [c for c in self.calls[: self.n] if c.state == "up"]
        return [leg for call in calls for leg in (call.a, call.b)]

    # the loop

    def run(self, done: Callable[[], bool], deadline: float) -> bool:
        """Serve sockets, timers and the RTP schedule until ``done()`` or ``deadline``;
        True if done. Bounded by the deadline and by a count of wakeups."""
        polls = 0
        limit = int(max(0.0, deadline - time.monotonic()) * 200_000) + 1000
        while polls < limit:
            polls += 1
            now = time.monotonic()
            if done():
                return True
            if now >= deadline:
                return False
            wake = deadline
            if self.streaming:
                due = self.t0 + self.slot * (PTIME / self.slots)
                while self.slot < self.last_slot and due <= now:
                    if now - due > PTIME:
                        self.late_slots += 1
                    self._send_slot()
                    self.slot += 1
                    due = self.t0 + self.slot * (PTIME / self.slots)
                if self.slot < self.last_slot:
                    wake = min(wake, due)
            timers = self.timers
            for _ in range(10_000):
                if not timers or timers[0][0] > now:
                    break
                heapq.heappop(timers)[2]()
            if timers:
                wake = min(wake, timers[0][0])
            # epoll's timeout has millisecond resolution (rounded up): wait that way only
            # up to ~1 ms before the next send time, then sleep (clock_nanosleep) to it
            wait = max(0.0, wake - time.monotonic())
            if not self.streaming:
                events = self.ep.poll(wait, 1024)
            else:
                events = self.ep.poll(wait - 0.0011 if wait > 0.0021 else 0, 1024)
                left = wake - time.monotonic()
                if not events and 0 < left <= 0.0021:
                    time.sleep(left)
            now = time.monotonic()
            handlers = self.handlers
            for fd, _mask in events:
                handlers[fd](now)
        return done()

    # RTP

    def start_streaming(self, ticks: int) -> float:
        """Every leg of every call that is up sends ``ticks`` packets from now on."""
        self.streamers = [c for c in self.calls[: self.n] if c.state == "up"]
        legs = self.legs()
        for leg in legs:
            leg.arrivals = array("d", [math.nan]) * ticks
        slots = max(1, min(self.slots, len(legs)))
        self.slots = slots
        self.groups = [legs[k::slots] for k in range(slots)]
        self.slot, self.last_slot = 0, ticks * slots
        self.t0 = time.monotonic() + 0.005
        self.streaming = True
        return self.t0

    def _send_slot(self) -> None:
        seq = self.slot // self.slots
        head = RTP_HEAD.pack
        ts = (seq * 160) & 0xFFFFFFFF
        for leg in self.groups[self.slot % self.slots]:
            packet = head(0x80, PT_PCMA, seq & 0xFFFF, ts, leg.ssrc) + PAYLOAD
            try:
                leg.sock.sendto(packet, leg.dest)  # type: ignore[arg-type]
                leg.sent += 1
            except OSError:
                leg.send_errors += 1

    def _rtp_readable(self, leg: Leg, now: float) -> None:
        """Read what arrived for ``leg`` (all of it; bounded per wakeup)."""
        sock = leg.sock
        unpack = SEQ_SSRC.unpack_from
        arrivals = leg.arrivals
        for _ in range(64):
            try:
                data, source = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(data) < 12:
                leg.other += 1
                continue
            seq, ssrc = unpack(data)
            if ssrc != leg.expect_ssrc or source != leg.dest or seq >= len(arrivals):
                leg.other += 1
                continue
            if arrivals[seq] == arrivals[seq]:  # not NaN: seen before
                leg.duplicates += 1
                continue
            arrivals[seq] = now
            leg.received += 1

    # SIP (the ivr relay)

    def open_sip(self, proxy_port: int, user: str) -> int:
        """The callers' and the callees' SIP sockets; returns the callees' port."""
        self.proxy, self.user = (HOST, proxy_port), user
        self.sip_a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for sock in (self.sip_a, self.sip_b):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind((HOST, 0))
            sock.setblocking(False)
        self._watch(self.sip_a, lambda now: self._sip_readable(self.sip_a, self._caller_got))
        self._watch(self.sip_b, lambda now: self._sip_readable(self.sip_b, self._callee_got))
        return int(self.sip_b.getsockname()[1])

    def _sip_readable(
        self, sock: socket.socket | None, handle: Callable[[Sip, tuple[str, int]], None]
    ) -> None:
        assert sock is not None
        for _ in range(256):
            try:
                data, source = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error of an earlier send: read on
                continue
            message = parse_sip(data)
            if message is None:
                self.stray_sip += 1
                continue
            handle(message, source)

    def _send_retrans(
        self, sock: socket.socket, item: Retrans, on_fail: Callable[[], None]
    ) -> None:
        with contextlib.suppress(OSError):
            sock.sendto(item.data, item.dest)

        def again() -> None:
            if not item.active:
                return
            if item.tries >= MAX_TRIES:
                item.active = False
                on_fail()
                return
            item.tries += 1
            item.interval = min(T2, item.interval * 2)
            with contextlib.suppress(OSError):
                sock.sendto(item.data, item.dest)
            self.at(time.monotonic() + item.interval, again)

        self.at(time.monotonic() + item.interval, again)

    def _fail(self, call: Call, why: str) -> None:
        if call.state not in ("up", "failed", "ended"):
            call.state, call.why = "failed", why

    def _caller_headers(self, call: Call, method: str, cseq: int) -> list[tuple[str, str]]:
        port = self.sip_a.getsockname()[1]  # type: ignore[union-attr]
        branch = f"z9hG4bK{self.run_tag}c{call.index}x{method}{cseq}"
        headers = [("Via", f"SIP/2.0/UDP {HOST}:{port};branch={branch};rport")]
        if call.to_tag:
            headers += [("Route", r) for r in call.routes]
        to = f"<sip:{self.user}@{HOST}>" + (f";tag={call.to_tag}" if call.to_tag else "")
        return [
            *headers,
            ("Max-Forwards", "70"),
            ("From", f"<sip:{ERIKA}@{HOST}>;tag=a{self.run_tag}{call.index}"),
            ("To", to),
            ("Call-ID", call.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:mobile{call.index}@{HOST}:{port}>"),
        ]

    def invite(self, call: Call) -> None:
        """The mobile calls the portal through the proxy."""
        assert self.sip_a is not None
        call.call_id = f"bridge-{self.run_tag}-{call.index}@{HOST}"
        self.by_call_id[call.call_id] = call
        call.keys = f"0301{call.index:06d}#"
        call.state, call.t_invite = "inviting", time.monotonic()
        uri = f"sip:{self.user}@{HOST}:{self.proxy[1]}"
        headers = [
            *self._caller_headers(call, "INVITE", 1),
            ("Content-Type", "application/sdp"),
        ]
        body = sdp_body(call.a.port, 2 * call.index + 1)
        call.pending = Retrans(sip_text(f"INVITE {uri} SIP/2.0", headers, body), self.proxy)
        self._send_retrans(self.sip_a, call.pending, lambda: self._fail(call, "no answer"))

    def _in_dialog(self, call: Call, method: str, body: bytes = b"", ctype: str = "") -> None:
        assert self.sip_a is not None
        call.cseq += 1
        headers = self._caller_headers(call, method, call.cseq)
        if ctype:
            headers.append(("Content-Type", ctype))
        data = sip_text(f"{method} {call.target} SIP/2.0", headers, body)
        call.pending = Retrans(data, self.proxy)
        self._send_retrans(
            self.sip_a, call.pending, lambda: self._fail(call, f"no answer to {method}")
        )

    def _ack(self, call: Call) -> None:
        assert self.sip_a is not None
        headers = self._caller_headers(call, "ACK", 1)
        with contextlib.suppress(OSError):
            self.sip_a.sendto(sip_text(f"ACK {call.target} SIP/2.0", headers), self.proxy)

    def _next_key(self, call: Call) -> None:
        key, call.keys = call.keys[0], call.keys[1:]
        self._in_dialog(call, "INFO", key.encode(), "application/dtmf")

    def bye(self, call: Call) -> None:
        call.state = "ending"
        self._in_dialog(call, "BYE")

    def _caller_got(self, message: Sip, source: tuple[str, int]) -> None:
        call = self.by_call_id.get(message.get("call-id"))
        if call is None:
            self.stray_sip += 1
            return
        status = message.status
        if not status:  # a request from the portal (a BYE: it hung up on the mobile)
            self._reply(self.sip_a, message, source, 200)
            if message.method == "BYE" and call.state not in ("ending", "ended"):
                call.state, call.why = "failed", "the portal hung up the mobile"
            return
        method = message.method
        if method == "INVITE":
            if status < 200:
                if call.pending is not None:
                    call.pending.active = False  # provisional: no more retransmissions
                return
            if status >= 300:
                if call.pending is not None:
                    call.pending.active = False
                self._fail(call, f"INVITE answered {status}")
                return
            tag = message.get("to").rsplit(";tag=", 1)
            if not call.to_tag:
                call.to_tag = tag[1].split(";")[0] if len(tag) == 2 else ""
                call.target = uri_of(message.get("contact"))
                call.routes = route_set(message)
                media = sdp_address(message.body)
                if media is None or not call.target:
                    self._fail(call, "unusable 200 OK")
                    return
                call.a.dest = media
            if call.pending is not None:
                call.pending.active = False
            self._ack(call)  # also for a retransmitted 200
            if call.state == "inviting":
                call.state = "keys"
                self._next_key(call)
            return
        if message.cseq != call.cseq or call.pending is None or not call.pending.active:
            return  # a retransmitted response
        call.pending.active = False
        if status >= 300:
            self._fail(call, f"{method} answered {status}")
            return
        if method == "INFO" and call.state == "keys":
            if call.keys:
                self._next_key(call)
            else:
                call.state = "dialled"
        elif method == "BYE":
            call.caller_bye_ok = True

    def _reply(
        self, sock: socket.socket | None, request: Sip, source: tuple[str, int], status: int
    ) -> None:
        assert sock is not None
        lines = request.lines("via")
        for name in ("from", "to", "call-id", "cseq"):
            lines += request.lines(name)
        reason = {200: "OK", 404: "Not Found", 481: "Call/Transaction Does Not Exist"}[status]
        text = f"SIP/2.0 {status} {reason}\r\n" + "".join(f"{x}\r\n" for x in lines)
        with contextlib.suppress(OSError):
            sock.sendto((text + "Content-Length: 0\r\n\r\n").encode(), source)

    def _callee_got(self, message: Sip, source: tuple[str, int]) -> None:
        """The called parties' SIP socket: INVITE -> 200 + SDP; ACK -> up; BYE -> 200."""
        assert self.sip_b is not None
        method = message.method
        if message.status:
            return  # a response to nothing we sent
        if method == "INVITE":
            match = NUMBER_RE.match(message.first)
            index = int(match.group(1)) if match else -1
            if not 0 <= index < len(self.calls):
                self._reply(self.sip_b, message, source, 404)
                return
            call = self.calls[index]
            if call.callee_ok is not None:  # a retransmitted INVITE
                with contextlib.suppress(OSError):
                    self.sip_b.sendto(call.callee_ok.data, source)
                return
            media = sdp_address(message.body)
            if media is None:
                self._fail(call, "callee: no SDP in the INVITE")
                return
            call.b.dest = media
            call.callee_call_id = message.get("call-id")
            self.by_call_id[call.callee_call_id] = call
            port = self.sip_b.getsockname()[1]
            lines = message.lines("via") + message.lines("record-route")
            for name in ("from",):
                lines += message.lines(name)
            lines.append(f"To: {message.get('to')};tag=b{self.run_tag}{index}")
            lines += message.lines("call-id") + message.lines("cseq")
            lines.append(f"Contact: <sip:callee{index}@{HOST}:{port}>")
            lines.append("Content-Type: application/sdp")
            body = sdp_body(call.b.port, 2 * index + 2)
            text = "SIP/2.0 200 OK\r\n" + "".join(f"{x}\r\n" for x in lines)
            text += f"Content-Length: {len(body)}\r\n\r\n"
            call.callee_ok = Retrans(text.encode() + body, source)
            self._send_retrans(
                self.sip_b, call.callee_ok, lambda: self._fail(call, "callee: no ACK")
            )
            return
        known = self.by_call_id.get(message.get("call-id"))
        if known is None:
            self._reply(self.sip_b, message, source, 481)
            return
        if method == "ACK":
            if known.callee_ok is not None:
                known.callee_ok.active = False
            if known.state in ("dialled", "keys"):
                known.state, known.t_up = "up", time.monotonic()
                if known.index >= self.n:  # a churn call: the mobile hangs up at once
                    self.bye(known)
        elif method == "BYE":
            self._reply(self.sip_b, message, source, 200)
            known.callee_bye = True
            if known.state == "up":
                known.state, known.why = "failed", "the portal hung up the callee"
        elif method != "CANCEL":
            self._reply(self.sip_b, message, source, 200)


# --- measurement helpers -----------------------------------------------------------------


def udp_drops(ports: set[int]) -> int:
    """Datagrams the kernel dropped (full receive buffer) on the UDP sockets of ``ports``."""
    total = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) in ports:
                total += int(fields[-1])
    return total


def group_members(pgid: int) -> list[int]:
    """The PIDs of the processes of process group ``pgid`` (Kamailio and its workers)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
                members.append(int(entry))
    return members


def sched_wait(pid: int) -> tuple[float, int]:
    """(seconds the process's threads waited on a run queue, involuntary context
    switches): how much the CPU was taken from it by others."""
    waited_ns = switches = 0
    with os.scandir(f"/proc/{pid}/task") as tasks:
        for task in tasks:
            with contextlib.suppress(OSError, ValueError, IndexError):
                waited_ns += int(Path(task.path, "schedstat").read_text().split()[1])
                for line in Path(task.path, "status").read_text().splitlines():
                    if line.startswith("nonvoluntary_ctxt_switches:"):
                        switches += int(line.split()[1])
    return waited_ns / 1e9, switches


def machine_threads() -> dict[int, int]:
    """Time on CPU (ns, schedstat) of every live thread of the machine, by thread id.

    /proc/stat would be simpler, but its tick sampling misses most of the short bursts
    of event-driven programs like these."""
    threads: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{entry}/task"):
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        stat = Path(f"/proc/{entry}/task/{task}/schedstat").read_text()
                        threads[int(task)] = int(stat.split()[0])
    return threads


def machine_cpu(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds of all threads between two :func:`machine_threads` (threads that
    ended in between are not counted)."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


def cpu_of(pids: list[int]) -> float:
    """Time on CPU of these processes (schedstat), in seconds."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += proc_cpu_seconds_precise(pid)
    return total


class Capture:
    """dumpcap on ``lo`` for a UDP port range: started and stopped by its PID, bounded in
    duration and size (classic pcap, snaplen 64: headers and the RTP header only)."""

    def __init__(self, path: Path, first: int, last: int, seconds: float, max_mb: int) -> None:
        self.path = path
        self.log = path.with_name(path.stem + "-dumpcap.log")
        cmd = ["dumpcap", "-i", "lo", "-P", "-s", "64", "-B", "64"]
        cmd += ["-f", f"udp portrange {first}-{last}", "-w", str(path)]
        cmd += ["-a", f"duration:{math.ceil(seconds)}", "-a", f"filesize:{max_mb * 1000}"]
        self.proc = spawn(cmd, path.parent, self.log)
        self.received = self.dropped = -1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if "File:" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"dumpcap did not start: {self.log.read_text(errors='replace')}")

    def cpu(self) -> float:
        with contextlib.suppress(OSError):
            return proc_cpu_seconds_precise(self.proc.pid)
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            time.sleep(0.5)  # dumpcap reads the kernel ring in blocks: let it catch up
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                kill_group(self.proc, grace=1.0)
        self.proc.wait()
        text = self.log.read_text(errors="replace")
        found = re.search(r"Packets received/dropped on interface '[^']*': (\d+)/(\d+)", text)
        if found:
            self.received, self.dropped = int(found.group(1)), int(found.group(2))


#: runs ``ivr`` (sys.argv[2:]) with a note of every garbage collection of 0.5 ms or more
#: (wall time at its end, generation, milliseconds) in the file sys.argv[1]
GC_WRAPPER = """
import gc, sys, time
log = open(sys.argv.pop(1), "w", buffering=1)
began = [0.0]
def note(phase, info):
    if phase == "start":
        began[0] = time.perf_counter()
    elif (pause := time.perf_counter() - began[0]) >= 0.0005:
        log.write(f"{time.time():.6f} {info['generation']} {pause * 1000:.3f}\\n")
gc.callbacks.append(note)
sys.argv[0] = "ivr"
from ivr.cli import main
main()
"""


def read_gc_log(path: Path) -> list[tuple[float, int, float]]:
    out = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                at, gen, ms = line.split()
                out.append((float(at), int(gen), float(ms)))
    return out


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None if empty)."""
    if not values:
        return None
    rank = max(1, math.ceil(len(values) * q / 100))
    return values[rank - 1]


def analyse_capture(
    path: Path, first: int, last: int, ssrcs: set[int], window: tuple[float, float]
) -> tuple[dict[str, Any], set[int], set[int]]:
    """Relay latency, loss in the relay and jitter from the capture (see the docstring).

    ``window`` is (start, end) in wall-clock seconds: packets that entered the relay then.
    """
    inside = range(first, last + 1)
    t_in: dict[int, float] = {}
    t_out: dict[int, float] = {}
    hdr = struct.Struct("!HH4xBBHII")  # UDP ports, length, checksum; RTP v/pt, seq, ts, ssrc
    rtp_ts: dict[int, int] = {}
    with path.open("rb") as fh:
        for linktype, t, frame in read_pcap(fh):
            if linktype != 1 or len(frame) < 54 or frame[12:14] != b"\x08\x00":
                continue
            ihl = (frame[14] & 0x0F) * 4
            if frame[23] != 17 or len(frame) < 14 + ihl + 20:
                continue
            sport, dport, b0, _pt, seq, ts, ssrc = hdr.unpack_from(frame, 14 + ihl)
            if b0 >> 6 != 2 or ssrc not in ssrcs:
                continue
            key = (ssrc << 16) | seq
            if dport in inside and sport not in inside:
                t_in.setdefault(key, t)
                rtp_ts[key] = ts
            elif sport in inside and dport not in inside:
                t_out.setdefault(key, t)
    start, end = window
    latency = []
    relay_lost = 0
    for key, t in t_in.items():
        if not start <= t < end:
            continue
        out = t_out.get(key)
        if out is None:
            relay_lost += 1
        else:
            latency.append((out - t) * 1000)
    latency.sort()

    def jitter(times: dict[int, float]) -> tuple[list[float], list[float]]:
        gaps: list[float] = []
        finals: list[float] = []
        streams: dict[int, list[tuple[int, float]]] = {}
        for key, t in times.items():
            if start <= t < end + 0.1:
                streams.setdefault(key >> 16, []).append((key & 0xFFFF, t))
        for points in streams.values():
            points.sort()
            j = worst = 0.0
            for (s0, t0), (s1, t1) in itertools.pairwise(points):
                if s1 == s0 + 1:
                    gaps.append(abs((t1 - t0) - PTIME) * 1000)
                d = (t1 - t0) - (s1 - s0) * PTIME  # RFC 3550 D(i-1, i), in seconds
                j += (abs(d) - j) / 16
                worst = max(worst, j)
            finals.append(worst * 1000)
        gaps.sort()
        finals.sort()
        return gaps, finals

    gaps_out, rfc_out = jitter(t_out)
    gaps_in, _rfc_in = jitter(t_in)
    return (
        {
            "matched": len(latency),
            "relay_lost": relay_lost,
            "latency_p50_ms": percentile(latency, 50),
            "latency_p99_ms": percentile(latency, 99),
            "latency_max_ms": latency[-1] if latency else None,
            "jitter_out_p99_ms": percentile(gaps_out, 99),
            "jitter_in_p99_ms": percentile(gaps_in, 99),
            "rfc3550_jitter_out_p99_ms": percentile(rfc_out, 99),
            "captured_in": len(t_in),
            "captured_out": len(t_out),
        },
        set(t_in),
        set(t_out),
    )


# --- one level ---------------------------------------------------------------------------


@dataclass
class Level:
    relay: str
    calls: int
    bridged: int = 0
    failed_why: dict[str, int] = field(default_factory=dict)
    setup_s: float = 0.0
    setup_p50_ms: float | None = None  # one call: INVITE -> the callee has the ACK (bridged)
    setup_p99_ms: float | None = None
    sent: int = 0
    lost_ab: int = 0
    lost_ba: int = 0
    lost_where: str = ""
    duplicates: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    latency_matched: int = 0
    jitter_out_p99_ms: float | None = None
    jitter_in_p99_ms: float | None = None
    jitter_rx_p99_ms: float | None = None  # as the driver read them (its own scheduling)
    rfc3550_jitter_out_p99_ms: float | None = None
    cpu_ms_per_call_s: float | None = None
    cpu_us_per_packet: float | None = None
    relay_cpu_share: float | None = None  # of one core, steady phase
    rss_mib: float | None = None
    rss_per_call_kib: float | None = None
    driver_cpu_share: float | None = None
    dumpcap_cpu_share: float | None = None
    kamailio_cpu_share: float | None = None
    rest_cpu_share: float | None = None  # other programs (their threads' time on CPU)
    relay_runqueue_ms_s: float | None = None  # ms per s its threads waited for a CPU
    relay_preempted: int = 0  # involuntary context switches in the steady phase
    churn_placed: int = 0  # extra calls set up and ended while streaming
    churn_done: int = 0
    gc_steady_pauses: int | None = None  # the portal's collections >= 0.5 ms, steady phase
    gc_steady_max_ms: float | None = None
    gc_full_max_ms: float | None = None  # longest full collection, first call to steady end
    capture_dropped: int = 0
    late_slots: int = 0
    relay_socket_drops: int = 0
    driver_socket_drops: int = 0
    error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.lost_ab + self.lost_ba

    @property
    def holds(self) -> bool:
        return (
            not self.error
            and self.bridged == self.calls
            and self.lost == 0
            and self.latency_p99_ms is not None
            and self.latency_p99_ms <= LATENCY_GOAL_MS
        )


@dataclass
class Options:
    steady: float
    warmup: float
    drain: float
    rate: float
    slots: int
    churn: float
    setup_timeout: float
    work: Path
    keep: bool


def portal_config(work: Path, rpc_port: int) -> Path:
    """The example Kamailio portal, silent, without PIN, with cheap hashes."""
    from ivr.portal.demo import copy_with_cheap_hashes

    target = work / "portal"
    target.mkdir(exist_ok=True)
    copy_with_cheap_hashes(ROOT / "examples" / "portal", target)
    path = target / "bench.yaml"
    text = (target / "kamailio.yaml").read_text()
    for old, new in (
        ("silent_mode: false", "silent_mode: true"),
        ("pin_authentication: true", "pin_authentication: false"),
        ("127.0.0.1:8090", f"127.0.0.1:{rpc_port}"),
    ):
        if old not in text:
            raise RuntimeError(f"examples/portal/kamailio.yaml has no {old!r}")
        text = text.replace(old, new)
    path.write_text(text)
    return path


def wait_registered(proxy_port: int, user: str, timeout: float = 30.0) -> None:
    """Until the proxy routes requests for ``user`` (an OPTIONS through it is answered)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(0.3)
        me = sock.getsockname()[1]
        deadline = time.monotonic() + timeout
        for attempt in range(int(timeout / 0.3) + 1):
            if time.monotonic() > deadline:
                break
            request = sip_text(
                f"OPTIONS sip:{user}@{HOST}:{proxy_port} SIP/2.0",
                [
                    ("Via", f"SIP/2.0/UDP {HOST}:{me};branch=z9hG4bKreg{attempt}"),
                    ("From", f"<sip:bench@{HOST}>;tag=r{attempt}"),
                    ("To", f"<sip:{user}@{HOST}>"),
                    ("Call-ID", f"reg-{attempt}-{time.monotonic_ns()}"),
                    ("CSeq", "1 OPTIONS"),
                    ("Max-Forwards", "70"),
                ],
            )
            sock.sendto(request, (HOST, proxy_port))
            try:
                reply = sock.recv(4096).decode(errors="replace")
            except (TimeoutError, ConnectionRefusedError):
                continue
            if reply.startswith("SIP/2.0 200"):
                return
            time.sleep(0.3)
    raise TimeoutError(f"{user} did not register at the proxy")


def stream_and_measure(
    driver: Driver,
    level: Level,
    opts: Options,
    *,
    relay_pid: int,
    port_range: tuple[int, int],
    rss_idle: int,
    kamailio_pid: int | None,
    churn: Callable[[int], None] | None = None,
    gc_log: Path | None = None,
    since: float = 0.0,
) -> None:
    """Stream on every call that is up, capture, measure the steady phase. ``churn(j)``
    sets up (and ends) the j-th extra call, --churn per second while streaming."""
    ticks = round((opts.warmup + opts.steady) / PTIME)
    first, last = port_range
    pcap = opts.work / f"{level.relay}-{level.calls}.pcap"
    total = opts.warmup + opts.steady + opts.drain + 2
    max_mb = max(50, int(level.calls * 4 * 50 * 80 * total / 1e6 * 1.5))
    capture = Capture(pcap, first, last, total + 30, max_mb)
    marks: dict[str, Any] = {}
    kamailio = group_members(kamailio_pid) if kamailio_pid else []

    def mark(name: str) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        marks[name] = {
            "mono": time.monotonic(),
            "wall": time.time(),
            "relay": proc_cpu_seconds_precise(relay_pid),
            "waits": sched_wait(relay_pid),
            "rss": proc_rss_bytes(relay_pid),
            "driver": usage.ru_utime + usage.ru_stime,
            "dumpcap": capture.cpu(),
            "kamailio": cpu_of(kamailio),
            "machine": machine_threads(),
            "received": sum(leg.received for leg in driver.legs()),
        }

    try:
        gc.collect()
        gc.disable()
        t0 = driver.start_streaming(ticks)
        driver.at(t0 + opts.warmup, lambda: mark("start"))
        driver.at(t0 + opts.warmup + opts.steady, lambda: mark("end"))
        if churn is not None:
            for j in range(len(driver.calls) - driver.n):
                driver.at(t0 + j / opts.churn, functools.partial(churn, j))
        driver.run(lambda: "end" in marks and driver.slot >= driver.last_slot, t0 + total + 5)
        driver.streaming = False
        driver.run(lambda: False, time.monotonic() + opts.drain)  # the last packets
        gc.enable()
        level.relay_socket_drops = udp_drops(set(range(first, last + 1)))
        level.driver_socket_drops = udp_drops({leg.port for leg in driver.legs()})
    finally:
        gc.enable()
        capture.stop()
    level.late_slots = driver.late_slots
    if gc_log is not None and "end" in marks:
        start, end = marks["start"]["wall"], marks["end"]["wall"]
        pauses = read_gc_log(gc_log)
        steady = [ms for at, _gen, ms in pauses if start <= at <= end]
        level.gc_steady_pauses, level.gc_steady_max_ms = len(steady), max(steady, default=0.0)
        full = [ms for at, gen, ms in pauses if gen == 2 and since <= at <= end]
        level.gc_full_max_ms = max(full, default=None)
    level.capture_dropped = max(0, capture.dropped)
    legs = list(driver.legs())
    level.sent = sum(leg.sent for leg in legs)
    level.duplicates = sum(leg.duplicates for leg in legs)
    for call in driver.streamers:
        level.lost_ab += call.a.sent - call.b.received
        level.lost_ba += call.b.sent - call.a.received
    if "start" not in marks or "end" not in marks:
        level.error = "the steady phase did not complete"
        return
    s, e = marks["start"], marks["end"]
    seconds = e["mono"] - s["mono"]
    cpu = e["relay"] - s["relay"]
    packets = e["received"] - s["received"]
    level.cpu_ms_per_call_s = 1000 * cpu / max(1, level.bridged) / seconds
    level.cpu_us_per_packet = 1e6 * cpu / max(1, packets)
    level.relay_cpu_share = cpu / seconds
    level.rss_mib = e["rss"] / 2**20
    level.rss_per_call_kib = (e["rss"] - rss_idle) / 1024 / max(1, level.bridged)
    level.driver_cpu_share = (e["driver"] - s["driver"]) / seconds
    level.relay_runqueue_ms_s = 1000 * (e["waits"][0] - s["waits"][0]) / seconds
    level.relay_preempted = e["waits"][1] - s["waits"][1]
    level.dumpcap_cpu_share = (e["dumpcap"] - s["dumpcap"]) / seconds
    if kamailio_pid:
        level.kamailio_cpu_share = (e["kamailio"] - s["kamailio"]) / seconds
    ours = sum(e[k] - s[k] for k in ("relay", "driver", "dumpcap", "kamailio")) / seconds
    level.rest_cpu_share = machine_cpu(s["machine"], e["machine"]) / seconds - ours
    # jitter as the driver read the packets (includes the driver's own scheduling)
    rx_gaps: list[float] = []
    lo = round(opts.warmup / PTIME)
    for leg in legs:
        arr = leg.arrivals
        for k in range(lo + 1, min(len(arr), ticks)):
            if arr[k] == arr[k] and arr[k - 1] == arr[k - 1]:
                rx_gaps.append(abs(arr[k] - arr[k - 1] - PTIME) * 1000)
    rx_gaps.sort()
    level.jitter_rx_p99_ms = percentile(rx_gaps, 99)
    ssrcs = {leg.ssrc for leg in legs}
    figures, seen_in, seen_out = analyse_capture(pcap, first, last, ssrcs, (s["wall"], e["wall"]))
    level.latency_p50_ms = figures["latency_p50_ms"]
    level.latency_p99_ms = figures["latency_p99_ms"]
    level.latency_max_ms = figures["latency_max_ms"]
    level.latency_matched = figures["matched"]
    level.jitter_out_p99_ms = figures["jitter_out_p99_ms"]
    level.jitter_in_p99_ms = figures["jitter_in_p99_ms"]
    level.rfc3550_jitter_out_p99_ms = figures["rfc3550_jitter_out_p99_ms"]
    if level.lost:  # where: before the relay, in it, or after it (from the capture)
        sent = {(leg.ssrc << 16) | k for leg in legs for k in range(leg.sent)}
        got = {
            (leg.expect_ssrc << 16) | k
            for leg in legs
            for k, t in enumerate(leg.arrivals)
            if t == t  # not NaN
        }
        level.lost_where = (
            f"never entered the relay {len(sent - seen_in)}, entered but never left it "
            f"{len(seen_in - seen_out)}, left it but not read by the driver "
            f"{len(seen_out - got)} (capture); kernel socket drops: relay "
            f"{level.relay_socket_drops}, driver {level.driver_socket_drops}; send errors "
            f"{sum(leg.send_errors for leg in legs)}"
        )
    if not opts.keep:
        pcap.unlink(missing_ok=True)


def churn_count(opts: Options) -> int:
    """How many extra calls --churn places while streaming."""
    return int(opts.churn * (opts.warmup + opts.steady)) if opts.churn > 0 else 0


def run_ivr(n: int, opts: Options, run_tag: str) -> Level:
    level = Level("ivr", n)
    extra = churn_count(opts)
    span = 4 * (n + extra) + 200
    first = find_free_port_span(span)
    last = first + span - 1
    driver = Driver(n, slots=opts.slots, run_tag=run_tag, churn=extra)
    portal_port = find_free_port_span(1, lowest=last + 1)
    user = f"portal{run_tag}"
    try:
        with Kamailio(trusted=f"{HOST}:{portal_port}") as proxy:
            callee_port = driver.open_sip(proxy.port, user)
            config = portal_config(opts.work, proxy.rpc_port)
            stats = opts.work / f"ivr-{n}-stats.json"
            gc_log = opts.work / f"ivr-{n}-gc.log"
            # `ivr serve`, run by its entry point under a note of every GC pause
            cmd = [sys.executable, "-c", GC_WRAPPER, str(gc_log), "serve"]
            cmd += [str(ROOT / "dialplans" / "anywhere_portal.yaml"), "--portal", str(config)]
            cmd += ["--registrar", f"{HOST}:{proxy.port}", "--user", user]
            cmd += ["--port", str(portal_port)]
            cmd += ["--dial-target", f"sip:{{number}}@{HOST}:{callee_port}"]
            cmd += ["--rtp-ports", f"{first}-{last}", "--rtp-timeout", "0"]
            # capacity is measured here, not admission: every call comes from the one
            # proxy, whose new calls the default per-source limit (50/s) would thin out
            cmd += ["--call-rate", "10000", "--call-burst", "10000"]
            cmd += ["--stats", str(stats)]
            log = opts.work / f"ivr-{n}.log"
            portal = spawn(cmd, opts.work, log)
            try:
                wait_registered(proxy.port, user)
                time.sleep(0.5)
                rss_idle = proc_rss_bytes(portal.pid)
                kamailio = proxy._proc.pid if proxy._proc is not None else None
                # set-up: N calls at --rate per second
                calls = driver.calls[:n]
                t_start, since = time.monotonic(), time.time()
                for call in calls:
                    at = t_start + call.index / opts.rate
                    driver.at(at, functools.partial(driver.invite, call))
                driver.run(
                    lambda: all(c.state in ("up", "failed") for c in calls),
                    t_start + n / opts.rate + opts.setup_timeout,
                )
                level.setup_s = time.monotonic() - t_start
                for call in calls:
                    if call.state != "up":
                        why = call.why or f"still {call.state}"
                        level.failed_why[why] = level.failed_why.get(why, 0) + 1
                level.bridged = sum(c.state == "up" for c in calls)
                took = sorted(1000 * (c.t_up - c.t_invite) for c in calls if c.state == "up")
                level.setup_p50_ms = percentile(took, 50)
                level.setup_p99_ms = percentile(took, 99)
                if level.bridged == 0:
                    level.error = "no call was bridged"
                else:
                    stream_and_measure(
                        driver,
                        level,
                        opts,
                        relay_pid=portal.pid,
                        port_range=(first, last),
                        rss_idle=rss_idle,
                        kamailio_pid=kamailio,
                        churn=lambda j: driver.invite(driver.calls[n + j]),
                        gc_log=gc_log,
                        since=since,
                    )
                # tear down: the mobiles hang up; the portal BYEs the called parties
                for call in driver.calls:
                    if call.to_tag and call.state in ("up", "keys", "dialled", "failed"):
                        driver.bye(call)
                asked = [c for c in driver.calls if c.state == "ending"]
                ok = driver.run(
                    lambda: all(
                        c.caller_bye_ok and (c.callee_bye or not c.callee_call_id) for c in asked
                    ),
                    time.monotonic() + 15,
                )
                if not ok:
                    level.notes.append(
                        f"teardown: {sum(not c.caller_bye_ok for c in asked)} BYE unanswered, "
                        f"{sum(not c.callee_bye for c in asked)} callee legs not hung up"
                    )
                churned = driver.calls[n:]
                level.churn_placed = sum(c.state != "idle" for c in churned)
                level.churn_done = sum(c.caller_bye_ok and c.callee_bye for c in churned)
                if portal.poll() is not None:
                    level.error = f"the portal exited with {portal.returncode} during the run"
            finally:
                kill_group(portal, grace=15.0)
            with contextlib.suppress(OSError, ValueError, KeyError):
                counters = json.loads(stats.read_text())
                level.notes.append(
                    "portal stats: "
                    + ", ".join(
                        f"{k}={counters[k]}"
                        for k in ("calls", "dials", "bridged", "relayed", "keys", "ended")
                    )
                )
            lines = log.read_text(errors="replace").splitlines()
            errors = [x for x in lines if x.startswith(("ERROR", "CRITICAL", "Traceback"))]
            if errors:
                level.notes.append(f"portal log: {len(errors)} errors, first: {errors[0]}")
    finally:
        driver.close()
    return level


def run_rtpengine(n: int, opts: Options, run_tag: str) -> Level:
    level = Level("rtpengine", n)
    extra = churn_count(opts)
    driver = Driver(n, slots=opts.slots, run_tag=run_tag, churn=extra)
    try:
        with Rtpengine(port_span=max(1000, 4 * (n + extra) + 200)) as rtpe:
            assert rtpe.port_min is not None and rtpe.port_max is not None
            time.sleep(0.3)
            rss_idle = rtpe.rss_bytes()

            def set_up(call: Call) -> None:
                call_id = f"bridge-{run_tag}-{call.index}"
                from_tag, to_tag = f"a{call.index}", f"b{call.index}"
                sdp_a = make_sdp(call.a.port, session_id=2 * call.index + 1, pt=PT_PCMA)
                to_callee = rtpe.offer(call_id, from_tag, sdp_a)
                sdp_b = make_sdp(call.b.port, session_id=2 * call.index + 2, pt=PT_PCMA)
                to_caller = rtpe.answer(call_id, from_tag, to_tag, sdp_b)
                rtpe.calls[call_id] = from_tag
                call.a.dest = (HOST, sdp_media(to_caller)[1])
                call.b.dest = (HOST, sdp_media(to_callee)[1])
                call.state = "up"

            def churn(j: int) -> None:
                call = driver.calls[n + j]
                call.state = "ending"
                with contextlib.suppress(Exception):
                    set_up(call)
                    rtpe.delete(f"bridge-{run_tag}-{call.index}", f"a{call.index}")
                    call.state, call.caller_bye_ok = "ended", True

            t_start = time.monotonic()
            for call in driver.calls[:n]:
                try:
                    set_up(call)
                except Exception as exc:  # a call that cannot be set up is counted
                    call.state, call.why = "failed", f"{type(exc).__name__}: {exc}"
                    level.failed_why[call.why] = level.failed_why.get(call.why, 0) + 1
            level.setup_s = time.monotonic() - t_start
            level.bridged = sum(c.state == "up" for c in driver.calls[:n])
            if level.bridged == 0:
                level.error = "no call was set up"
            else:
                stream_and_measure(
                    driver,
                    level,
                    opts,
                    relay_pid=rtpe.pid,
                    port_range=(rtpe.port_min, rtpe.port_max),
                    rss_idle=rss_idle,
                    kamailio_pid=None,
                    churn=churn,
                )
            level.churn_placed = sum(c.state != "idle" for c in driver.calls[n:])
            level.churn_done = sum(c.caller_bye_ok for c in driver.calls[n:])
            with contextlib.suppress(Exception):
                rtpe.delete_all()
    finally:
        driver.close()
    return level


# --- output ------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(levels: list[Level]) -> str:
    head = (
        "| relay | calls | bridged | pkts sent | lost a>b / b>a | latency p50 / p99 / max "
        "| jitter p99 out (in) | CPU ms/s per call | CPU µs/pkt | relay CPU | RSS/call "
        "| holds |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for lv in levels:
        latency = (
            f"{fmt(lv.latency_p50_ms)} / {fmt(lv.latency_p99_ms)} / {fmt(lv.latency_max_ms)} ms"
        )
        jitter = f"{fmt(lv.jitter_out_p99_ms)} ({fmt(lv.jitter_in_p99_ms)}) ms"
        share = "-" if lv.relay_cpu_share is None else f"{100 * lv.relay_cpu_share:.0f} %"
        rss = "-" if lv.rss_per_call_kib is None else f"{lv.rss_per_call_kib:.0f} KiB"
        holds = "yes" if lv.holds else ("ERROR" if lv.error else "no")
        rows.append(
            f"| {lv.relay} | {lv.calls} | {lv.bridged} | {lv.sent} | {lv.lost_ab} / {lv.lost_ba} "
            f"| {latency} | {jitter} | {fmt(lv.cpu_ms_per_call_s)} "
            f"| {fmt(lv.cpu_us_per_packet, 1)} | {share} | {rss} | {holds} |"
        )
    return "\n".join([head, *rows])


def details(lv: Level) -> list[str]:
    out = []
    if lv.error:
        out.append(f"  ERROR: {lv.error}")
    if lv.failed_why:
        out.append(f"  calls not bridged: {lv.failed_why}")
    if lv.lost_where:
        out.append(f"  lost where: {lv.lost_where}")
    per_call = ""
    if lv.setup_p50_ms is not None:
        per_call = f" (a call: INVITE to bridged p50 {fmt(lv.setup_p50_ms, 0)} ms, "
        per_call += f"p99 {fmt(lv.setup_p99_ms, 0)} ms)"
    context = (
        f"  set-up {lv.setup_s:.1f} s{per_call}; steady phase CPU: relay "
        f"{fmt(lv.relay_cpu_share and 100 * lv.relay_cpu_share, 0)} %, driver "
        f"{fmt(lv.driver_cpu_share and 100 * lv.driver_cpu_share, 0)} %, dumpcap "
        f"{fmt(lv.dumpcap_cpu_share and 100 * lv.dumpcap_cpu_share, 0)} %"
    )
    if lv.kamailio_cpu_share is not None:
        context += f", kamailio {100 * lv.kamailio_cpu_share:.0f} %"
    if lv.rest_cpu_share is not None:
        context += f"; other programs {100 * lv.rest_cpu_share:.0f} %"
    out.append(context + " (of one core)")
    if lv.relay_runqueue_ms_s is not None:
        out.append(
            f"  relay waited for a CPU {lv.relay_runqueue_ms_s:.1f} ms/s (sum over its "
            f"threads), preempted {lv.relay_preempted} times (steady phase)"
        )
    out.append(
        f"  jitter p99 as the driver read them {fmt(lv.jitter_rx_p99_ms)} ms; RFC 3550 "
        f"jitter p99 (relay out) {fmt(lv.rfc3550_jitter_out_p99_ms)} ms; latency samples "
        f"{lv.latency_matched}; RSS {fmt(lv.rss_mib, 0)} MiB"
    )
    problems = []
    if lv.late_slots:
        problems.append(f"driver late on {lv.late_slots} send slots (> 20 ms)")
    if lv.capture_dropped:
        problems.append(f"dumpcap dropped {lv.capture_dropped} packets")
    if lv.duplicates:
        problems.append(f"{lv.duplicates} duplicate packets")
    if lv.relay_socket_drops or lv.driver_socket_drops:
        problems.append(
            f"socket drops: relay {lv.relay_socket_drops}, driver {lv.driver_socket_drops}"
        )
    if problems:
        out.append("  " + "; ".join(problems))
    if lv.churn_placed:
        out.append(
            f"  churn: {lv.churn_placed} extra calls set up and ended while streaming, "
            f"{lv.churn_done} completed"
        )
    if lv.gc_steady_pauses is not None:
        out.append(
            f"  portal GC: {lv.gc_steady_pauses} pauses >= 0.5 ms in the steady phase (max "
            f"{fmt(lv.gc_steady_max_ms)} ms); longest full collection from the first call "
            f"to the end of the steady phase {fmt(lv.gc_full_max_ms)} ms"
        )
    out += [f"  {note}" for note in lv.notes]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="50,100,200,300", help="concurrent bridged calls")
    ap.add_argument("--relays", default="ivr,rtpengine")
    ap.add_argument("--steady", type=float, default=10.0, help="measured seconds per level")
    ap.add_argument("--warmup", type=float, default=1.0, help="streaming before measuring")
    ap.add_argument("--drain", type=float, default=0.5, help="wait for the last packets")
    ap.add_argument("--rate", type=float, default=50.0, help="call set-ups per second")
    ap.add_argument("--slots", type=int, default=100, help="send times per 20 ms")
    ap.add_argument(
        "--churn",
        type=float,
        default=0.0,
        help="extra calls per second set up and hung up at once while the N calls stream "
        "(ivr: through the portal's dialogue and SIP; rtpengine: offer, answer, delete)",
    )
    ap.add_argument("--setup-timeout", type=float, default=30.0)
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--keep", type=Path, help="keep captures and logs in this directory")
    args = ap.parse_args()
    relays = [r.strip() for r in args.relays.split(",") if r.strip()]
    if not set(relays) <= {"ivr", "rtpengine"}:
        ap.error("--relays: ivr and/or rtpengine")
    levels = [int(x) for x in args.levels.split(",")]
    for tool in ("kamailio", "dumpcap", "rtpengine"):
        if not (shutil_which(tool)):
            print(f"needs {tool}", file=sys.stderr)
            return 2
    command = "$ " + " ".join([".venv/bin/python", "bench/bridge_load.py", *sys.argv[1:]])
    print(command, flush=True)
    results: list[Level] = []
    with tempfile.TemporaryDirectory(prefix="bridge-load-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        opts = Options(
            steady=args.steady,
            warmup=args.warmup,
            drain=args.drain,
            rate=args.rate,
            slots=args.slots,
            churn=args.churn,
            setup_timeout=args.setup_timeout,
            work=work,
            keep=args.keep is not None,
        )
        for count, n in enumerate(levels):
            for relay in relays:
                tag = f"{os.getpid() % 10000}{count}{relay[0]}"
                try:
                    runner = run_ivr if relay == "ivr" else run_rtpengine
                    level = runner(n, opts, tag)
                except Exception as exc:  # a level that breaks is reported, not fatal
                    level = Level(relay, n, error=f"{type(exc).__name__}: {exc}")
                results.append(level)
                print(table([level]).splitlines()[-1], flush=True)
                for line in details(level):
                    print(line, flush=True)
    print()
    print(command)
    print(
        f"{os.cpu_count()} CPU cores shared by the load driver, dumpcap, Kamailio and the relay;"
        f" steady phase {args.steady:g} s after {args.warmup:g} s of warm-up; 50 pkt/s per leg"
        " each way; latency and jitter from dumpcap on lo (µs timestamps)."
    )
    print(table(results))
    print()
    print(
        f"CPU per relayed packet, ivr / rtpengine (goal: >= 200 calls, 0 lost, latency p99 "
        f"<= {LATENCY_GOAL_MS:g} ms):"
    )
    for n in levels:
        ivr = next((lv for lv in results if lv.relay == "ivr" and lv.calls == n), None)
        rtpe = next((lv for lv in results if lv.relay == "rtpengine" and lv.calls == n), None)
        if ivr and rtpe and ivr.cpu_us_per_packet and rtpe.cpu_us_per_packet:
            ratio = ivr.cpu_us_per_packet / rtpe.cpu_us_per_packet
            print(
                f"  {n} calls: {ivr.cpu_us_per_packet:.1f} / {rtpe.cpu_us_per_packet:.1f} µs "
                f"= {ratio:.1f}x"
            )
    for relay in relays:
        held = [lv.calls for lv in results if lv.relay == relay and lv.holds]
        print(f"  {relay}: highest level that holds: {max(held) if held else 'none'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": command,
                    "levels": [asdict(lv) | {"holds": lv.holds} for lv in results],
                },
                indent=1,
            )
        )
    return 0


def shutil_which(tool: str) -> str | None:
    import shutil

    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


if __name__ == "__main__":
    sys.exit(main())
