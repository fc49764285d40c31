"""The long fuzz run: `ivr serve` (a separate process, the portal, trusting the bench's
loopback address) takes a million mutated SIP datagrams and a stream of garbage RTP
against live calls (tests/sip/fuzz.py, seeded), paced so the point is parsing, not
kernel drops. Then: is the process alive, does it still answer and serve a call, how
much memory, how many threads and descriptors, and how many tracebacks in its log.

    .venv/bin/python bench/sip_fuzz.py [--sip 1000000] [--rtp 200000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.portal.demo import copy_with_cheap_hashes  # noqa: E402
from tests.sip.fuzz import datagrams, rtp_garbage  # noqa: E402
from tests.sip.peers import free_udp_port, sip_options  # noqa: E402

BIN = Path(sys.executable).parent
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def proc_status(pid: int) -> dict[str, int]:
    """RSS (KiB), threads and open descriptors of a process."""
    out = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            out[key] = int(value.split()[0])
    return out


def start_call(sock: socket.socket, portal: tuple[str, int], n: int) -> int:
    """INVITE, 200, ACK from ``sock``; the portal's RTP port of that call."""
    port = sock.getsockname()[1]
    call_id, body = f"bench-live-{n}", SDP.format(port=port)
    via = f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-b{n}\r\n"
    caller = f"From: <sip:+491711234567@127.0.0.1>;tag=b{n}\r\n"
    invite = (
        f"INVITE sip:portal@127.0.0.1 SIP/2.0\r\n{via}{caller}To: <sip:portal@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:b@127.0.0.1:{port}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )
    sock.sendto(invite.encode(), portal)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = sock.recv(65535).decode(errors="replace")
        if data.startswith("SIP/2.0 200"):
            tag = data.split("To: ", 1)[1].split("tag=", 1)[1].split("\r\n", 1)[0]
            ack = (
                f"ACK sip:portal@127.0.0.1 SIP/2.0\r\n{via.replace('-b', '-a')}{caller}"
                f"To: <sip:portal@127.0.0.1>;tag={tag}\r\n"
                f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(ack.encode(), portal)
            return int(data.split("m=audio ", 1)[1].split()[0])
    raise RuntimeError("the portal did not answer the live call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sip", type=int, default=1_000_000)
    parser.add_argument("--rtp", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work dir (the log)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ivr-fuzz-"))
    portal_dir = work / "portal"
    portal_dir.mkdir()
    copy_with_cheap_hashes(ROOT / "examples" / "portal", portal_dir)
    port = free_udp_port()
    stats_file, log_file = work / "stats.json", work / "serve.log"
    command = [
        str(BIN / "ivr"),
        "--log-level",
        "info",
        "serve",
        str(ROOT / "dialplans" / "anywhere_portal.yaml"),
        "--portal",
        str(portal_dir / "portal.yaml"),
        "--registrar",
        "127.0.0.1:9",
        "--port",
        str(port),
        "--trust",
        "127.0.0.1/32",
        "--rtp-timeout",
        "0",
        "--stats",
        str(stats_file),
    ]
    with log_file.open("wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
        )
    portal = ("127.0.0.1", port)
    try:
        for _ in range(200):
            if sip_options(port) is not None:
                break
            time.sleep(0.05)
        live_socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
        for sock in live_socks:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(2.0)
        rtp_ports = [start_call(sock, portal, n) for n, sock in enumerate(live_socks)]
        before = proc_status(proc.pid)
        fuzzer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        fuzzer.bind(("127.0.0.1", 0))
        fuzzer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        fuzz_port = fuzzer.getsockname()[1]
        started = time.monotonic()
        for n, data in enumerate(datagrams(args.seed, args.sip, port=fuzz_port)):
            fuzzer.sendto(data, portal)
            if n % 500 == 499:  # ~8,000/s: what the parser takes, not the kernel's drops
                time.sleep(0.06)
        sip_seconds = time.monotonic() - started
        started = time.monotonic()
        for n, data in enumerate(rtp_garbage(args.seed, args.rtp)):
            fuzzer.sendto(data, ("127.0.0.1", rtp_ports[n % len(rtp_ports)]))
            if n % 1000 == 999:
                time.sleep(0.005)
        rtp_seconds = time.monotonic() - started
        time.sleep(5.0)  # abandoned transactions and calls expire (64 x T1 = 32 s for some)
        answers = sip_options(port, timeout=2.0)
        peak = proc_status(proc.pid)
        time.sleep(30.0)
        after = proc_status(proc.pid)
        alive = proc.poll() is None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    text = log_file.read_text(errors="replace")
    tracebacks = text.count("Traceback (most recent call last)")
    print(
        f"$ .venv/bin/python bench/sip_fuzz.py --sip {args.sip} --rtp {args.rtp} --seed {args.seed}"
    )
    print(
        f"SIP: {args.sip:,} mutated datagrams in {sip_seconds:.0f} s "
        f"({args.sip / sip_seconds:,.0f}/s offered), {stats.get('sip', {}).get('datagrams', 0):,} "
        f"read by the portal; RTP: {args.rtp:,} garbage packets in {rtp_seconds:.0f} s "
        f"against {len(rtp_ports)} live calls"
    )
    print(f"process alive afterwards: {alive}; OPTIONS answered: {answers}; exit {proc.returncode}")
    print(
        f"RSS KiB before/peak/30 s later: {before['VmRSS']}/{peak['VmRSS']}/{after['VmRSS']}; "
        f"threads {before['Threads']}/{after['Threads']}; fds {before['fds']}/{after['fds']}"
    )
    print(f"tracebacks in the log: {tracebacks}; log lines: {text.count(chr(10))}")
    print(f"counters at exit: {json.dumps(stats)}")
    kinds = sorted(
        {
            line.split(": ", 2)[1].split(" from ")[0]
            for line in text.splitlines()
            if "WARNING" in line and ": " in line
        }.__iter__()
    )
    print(f"kinds of warning lines: {len(kinds)}")
    if args.keep:
        print(f"log: {log_file}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
