"""RTP timing and DTMF figures from a loopback packet capture.

Reads a classic libpcap file (what ``dumpcap -i lo -P`` writes: link type 1,
Ethernet, on Linux ``lo``; Linux cooked captures v1/v2, BSD loopback and raw IP are read
too), finds the RTP packets in it (UDP payload, RTP version 2, payload type 0, 8 or the
telephone-event type) and reports per stream — keyed by (source port, destination
port, SSRC) — and overall:

* ``packets``: RTP packets; ``pps``: packets per second while the stream is active;
* inter-arrival gaps of a stream's audio packets (pcap timestamps), without gaps over 1 s
  (silence between prompts, or a stream that paused); p50/p99/max across all streams;
* RFC 4733 telephone-event packets and the number of distinct events (distinct RTP
  timestamp per stream — every packet of one event carries the event's timestamp;
  per stream because SIPp replays the same pcap, same SSRC and timestamps, in every call).

Other programs' traffic on ``lo`` lands in the capture too: filter tightly in
:func:`capture` or pass ``dst_ports``.

Run from the repository root::

    .venv/bin/python bench/rtp_stats.py capture.pcap [--dst-port 10000 ...] [--dtmf-pt 101]

prints the figures as JSON. :func:`capture` records such a file with ``dumpcap``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

AUDIO_PTS = frozenset({0, 8})
SILENCE_GAP_S = 1.0

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100

StreamKey = tuple[int, int, int]


class PcapError(ValueError):
    """The file is not a classic pcap file this module can read."""


@dataclass
class Stream:
    """One RTP stream: packets from one source port to one destination port with one SSRC."""

    src_port: int
    dst_port: int
    ssrc: int
    packets: int = 0
    audio_times: list[float] = field(default_factory=list)
    event_packets: int = 0
    event_timestamps: set[int] = field(default_factory=set)

    def gaps(self) -> list[float]:
        """Gaps between consecutive audio packets in seconds, silences (> 1 s) left out."""
        t = self.audio_times
        return [b - a for a, b in itertools.pairwise(t) if b - a <= SILENCE_GAP_S]

    def pps(self) -> float | None:
        """Audio packets per second while the stream is active (None under two packets)."""
        gaps = self.gaps()
        total = sum(gaps)
        return len(gaps) / total if gaps and total > 0 else None


# ---------------------------------------------------------------------------- reading


def read_pcap(fh: BinaryIO) -> Iterator[tuple[int, float, bytes]]:
    """Yield (link type, timestamp in seconds, captured bytes) for each record."""
    header = fh.read(24)
    if len(header) < 24:
        raise PcapError("file too short for a pcap header")
    magic = header[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        raise PcapError("pcapng file: capture with `dumpcap -P`")
    formats = {
        b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
        b"\xa1\xb2\xc3\xd4": (">", 1e-6),
        b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
        b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    }
    if magic not in formats:
        raise PcapError(f"not a pcap file (magic {magic.hex()})")
    endian, unit = formats[magic]
    (linktype,) = struct.unpack(endian + "I", header[20:24])
    linktype &= 0x0FFFFFFF  # upper bits may carry FCS information
    rec = struct.Struct(endian + "IIII")
    while True:
        h = fh.read(rec.size)
        if len(h) < rec.size:
            return
        sec, frac, incl, _orig = rec.unpack(h)
        data = fh.read(incl)
        if len(data) < incl:
            return  # truncated last record (capture killed mid-write)
        yield linktype, sec + frac * unit, data


def _network_layer(linktype: int, frame: bytes) -> tuple[int, bytes] | None:
    """(ethertype, packet) of a link-layer frame, None if not IP."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        (etype,) = struct.unpack_from("!H", frame, 12)
        off = 14
        while etype == ETH_VLAN and len(frame) >= off + 4:
            (etype,) = struct.unpack_from("!H", frame, off + 2)
            off += 4
        return etype, frame[off:]
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return None
        (etype,) = struct.unpack_from("!H", frame, 14)
        return etype, frame[16:]
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return None
        (etype,) = struct.unpack_from("!H", frame, 0)
        return etype, frame[20:]
    if linktype == LINKTYPE_NULL:
        if len(frame) < 4:
            return None
        family = struct.unpack_from("<I", frame)[0] or struct.unpack_from(">I", frame)[0]
        return (ETH_IPV4 if family == 2 else ETH_IPV6), frame[4:]
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not frame:
            return None
        return (ETH_IPV4 if frame[0] >> 4 == 4 else ETH_IPV6), frame
    raise PcapError(f"unsupported link type {linktype}")


def udp_payload(linktype: int, frame: bytes) -> tuple[int, int, bytes] | None:
    """(source port, destination port, payload) of a UDP datagram, else None."""
    net = _network_layer(linktype, frame)
    if net is None:
        return None
    etype, pkt = net
    if etype == ETH_IPV4:
        if len(pkt) < 20 or pkt[0] >> 4 != 4:
            return None
        ihl = (pkt[0] & 0x0F) * 4
        frag = struct.unpack_from("!H", pkt, 6)[0]
        if pkt[9] != 17 or frag & 0x1FFF:  # not UDP, or a non-first fragment
            return None
        total = struct.unpack_from("!H", pkt, 2)[0]
        udp = pkt[ihl : total or len(pkt)]
    elif etype == ETH_IPV6:
        if len(pkt) < 40 or pkt[6] != 17:  # no extension headers on loopback
            return None
        udp = pkt[40:]
    else:
        return None
    if len(udp) < 8:
        return None
    sport, dport, ulen = struct.unpack_from("!HHH", udp)
    return sport, dport, udp[8 : ulen if ulen >= 8 else len(udp)]


def parse_rtp(payload: bytes, pts: Iterable[int]) -> tuple[int, int, int, bool] | None:
    """(payload type, timestamp, SSRC, marker) if ``payload`` looks like RTP, else None."""
    if len(payload) < 12 or payload[0] >> 6 != 2:
        return None
    pt = payload[1] & 0x7F
    if pt not in pts:
        return None
    ts, ssrc = struct.unpack_from("!II", payload, 4)
    csrc = (payload[0] & 0x0F) * 4
    if len(payload) < 12 + csrc:
        return None
    return pt, ts, ssrc, bool(payload[1] & 0x80)


# ---------------------------------------------------------------------------- figures


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n*q/100), at least 1
    return sorted_values[int(rank) - 1]


def collect_streams(
    pcap_path: Path, *, dst_ports: set[int] | None = None, dtmf_pt: int = 101
) -> dict[StreamKey, Stream]:
    """Group the RTP packets of a capture into streams."""
    pts = AUDIO_PTS | {dtmf_pt}
    streams: dict[StreamKey, Stream] = {}
    with open(pcap_path, "rb") as fh:
        for linktype, t, frame in read_pcap(fh):
            udp = udp_payload(linktype, frame)
            if udp is None:
                continue
            sport, dport, payload = udp
            if dst_ports is not None and dport not in dst_ports:
                continue
            rtp = parse_rtp(payload, pts)
            if rtp is None:
                continue
            pt, ts, ssrc, _marker = rtp
            key = (sport, dport, ssrc)
            s = streams.get(key)
            if s is None:
                s = streams[key] = Stream(sport, dport, ssrc)
            s.packets += 1
            if pt == dtmf_pt:
                s.event_packets += 1
                s.event_timestamps.add(ts)
            else:
                s.audio_times.append(t)
    return streams


def rtp_stats(
    pcap_path: Path, *, dst_ports: set[int] | None = None, dtmf_pt: int = 101
) -> dict[str, Any]:
    """Per-stream and overall RTP figures of a pcap file (see the module docstring).

    ``dst_ports`` keeps only packets sent to those UDP ports. Gaps are in milliseconds;
    gap figures and the ``pps`` median are None when no stream has two audio packets.
    """
    streams = collect_streams(Path(pcap_path), dst_ports=dst_ports, dtmf_pt=dtmf_pt)
    per_stream: list[dict[str, Any]] = []
    all_gaps: list[float] = []
    rates: list[float] = []
    for key in sorted(streams):
        s = streams[key]
        gaps = s.gaps()
        all_gaps.extend(gaps)
        pps = s.pps()
        if pps is not None:
            rates.append(pps)
        per_stream.append(
            {
                "src_port": s.src_port,
                "dst_port": s.dst_port,
                "ssrc": s.ssrc,
                "packets": s.packets,
                "audio_packets": len(s.audio_times),
                "dtmf_packets": s.event_packets,
                "dtmf_events": len(s.event_timestamps),
                "pps": None if pps is None else round(pps, 3),
                "gap_ms_max": round(max(gaps) * 1000, 3) if gaps else None,
                "gaps_ms": [round(g * 1000, 3) for g in gaps],
            }
        )
    all_gaps.sort()

    def ms(q: float) -> float | None:
        return round(_percentile(all_gaps, q) * 1000, 3) if all_gaps else None

    return {
        "streams": len(streams),
        "audio_streams": len(rates),
        "packets": sum(s.packets for s in streams.values()),
        "pps_median": round(statistics.median(rates), 3) if rates else None,
        "gap_ms_p50": ms(50),
        "gap_ms_p99": ms(99),
        "gap_ms_max": round(all_gaps[-1] * 1000, 3) if all_gaps else None,
        "gaps": len(all_gaps),
        "dtmf_pt": dtmf_pt,
        "dtmf_packets": sum(s.event_packets for s in streams.values()),
        "dtmf_events": sum(len(s.event_timestamps) for s in streams.values()),
        "per_stream": per_stream,
    }


# ---------------------------------------------------------------------------- capture


def _port_filter(ports: range | list[int]) -> str:
    if isinstance(ports, range):
        if len(ports) == 0:
            raise ValueError("empty port range")
        return f"udp portrange {min(ports)}-{max(ports)}"
    if not ports:
        raise ValueError("no ports")
    return " or ".join(f"udp port {p}" for p in ports)


@contextmanager
def capture(
    ports: range | list[int] | None,
    path: Path,
    *,
    bpf: str | None = None,
    interface: str = "lo",
    start_timeout: float = 10.0,
    linger: float = 0.5,
) -> Iterator[Path]:
    """Record UDP traffic on ``interface`` to ``path`` (classic pcap) while the block runs.

    The capture filter is ``bpf`` if given, else ``udp portrange A-B`` for a range or
    ``udp port A or udp port B ...`` for a list. Returns once
    dumpcap is recording (its "File:" line: "Capturing on" is printed before the
    interface is even open). On exit it waits ``linger`` seconds first — dumpcap reads the
    kernel's ring buffer in blocks (~250 ms) and drops the unread block on SIGINT — then
    sends SIGINT, waits up to 5 s, then kills it.
    """
    exe = shutil.which("dumpcap")
    if exe is None:
        raise FileNotFoundError("dumpcap not found (Debian package: tshark / wireshark-common)")
    if bpf is None:
        if ports is None:
            raise ValueError("give ports or bpf")
        bpf = _port_filter(ports)
    path = Path(path)
    # -P: classic libpcap format (this dumpcap has no `-F pcap`; -P works in every version)
    cmd = [exe, "-q", "-P", "-i", interface, "-w", str(path), "-f", bpf]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    started = threading.Event()
    lines: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            # "Capturing on" comes before the interface is open; "File:" once packets
            # are being recorded (after the filter is installed and the file created)
            if line.startswith("File:"):
                started.set()

    reader = threading.Thread(target=pump, name="dumpcap-stderr", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not started.wait(0.02):
            if proc.poll() is not None or time.monotonic() > deadline:
                reader.join(1)
                raise RuntimeError(f"dumpcap did not start capturing: {' | '.join(lines[:3])}")
        yield path
    finally:
        if proc.poll() is None:
            time.sleep(linger)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(1)


# ---------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="RTP stream figures of a pcap file, as JSON.")
    ap.add_argument("pcap", type=Path)
    ap.add_argument(
        "--dst-port", type=int, action="append", help="keep packets to this port (repeatable)"
    )
    ap.add_argument("--dtmf-pt", type=int, default=101, help="telephone-event payload type")
    ap.add_argument("--gaps", action="store_true", help="keep every gap in the per-stream output")
    args = ap.parse_args(argv)
    try:
        stats = rtp_stats(
            args.pcap,
            dst_ports=set(args.dst_port) if args.dst_port else None,
            dtmf_pt=args.dtmf_pt,
        )
    except (OSError, PcapError) as exc:
        print(f"rtp_stats: {exc}", file=sys.stderr)
        return 2
    if not args.gaps:
        for s in stats["per_stream"]:
            del s["gaps_ms"]
    json.dump(stats, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
