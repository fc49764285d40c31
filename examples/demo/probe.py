#!/usr/bin/env python3
"""Small helpers of examples/run_portal.sh (standard library only, loopback only).

    probe.py ports N                      N distinct free UDP ports on 127.0.0.1
    probe.py options PORT                 wait until 127.0.0.1:PORT answers OPTIONS with 200
    probe.py rpc RPC_PORT                 wait until Kamailio's JSON-RPC socket answers
    probe.py registered RPC_PORT USER     wait until Kamailio has a contact for USER
    probe.py dialog RPC_PORT URI_PREFIX   wait until Kamailio lists an answered call of it
    probe.py watch [--desk F] [--remote F] [--callback F] [--callback-console F]
                                          follow the demo's logs, print what happens

The waiting commands take ``--timeout S`` (default 15) and ``--pid PID`` (give up at
once when that process is gone); they exit 0 when ready, 1 otherwise. Kamailio is asked
over its JSON-RPC datagram socket (``jsonrpcs``, one request per datagram).

``watch`` follows, until ``--parent`` is gone: the SIPp desk phone's message trace (its
call ending), the remote party's linphone log (the portal's INVITE with Replaces) and
the call-back destination's linphone log and console (who calls: the From display name
and number, P-Asserted-Identity, and what linphonec shows).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
CONFIRMED = 4  # Kamailio's dialog state of an answered call


def free_ports(count: int) -> list[int]:
    """``count`` distinct UDP ports that were free a moment ago (held open together)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def options(port: int, timeout: float = 0.3) -> str | None:
    """One OPTIONS to 127.0.0.1:port; the reply's status line, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        local = sock.getsockname()[1]
        tag = uuid.uuid4().hex[:12]
        message = (
            f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bK{tag};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{HOST}:{local}>;tag={tag}\r\n"
            f"To: <sip:{HOST}:{port}>\r\n"
            f"Call-ID: {tag}@{HOST}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        try:
            sock.sendto(message.encode(), (HOST, port))
            data = sock.recv(65535)
        except OSError:
            return None
        return data.decode(errors="replace").split("\r\n", 1)[0]


def rpc(port: int, method: str, *params: str, timeout: float = 0.5) -> dict[str, Any] | None:
    """One JSON-RPC request to Kamailio; the reply (``result`` or ``error``), or None."""
    request = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(timeout)
        try:
            sock.sendto(json.dumps(request).encode(), (HOST, port))
            reply = json.loads(sock.recv(65535))
        except (OSError, ValueError):
            return None
    return reply if isinstance(reply, dict) else None


def alive(pid: int | None) -> bool:
    """Is ``pid`` running (a zombie is not)?"""
    if pid is None:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def wait(check: Callable[[], bool], timeout: float, pid: int | None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if not alive(pid):
            return False
        time.sleep(0.1)
    return check()


def answered(port: int, prefix: str) -> bool:
    dialogs = (rpc(port, "dlg.list") or {}).get("result")
    return isinstance(dialogs, list) and any(
        isinstance(d, dict)
        and d.get("state") == CONFIRMED
        and (
            str(d.get("from_uri", "")).startswith(prefix)
            or str(d.get("to_uri", "")).startswith(prefix)
        )
        for d in dialogs
    )


# --- watch ------------------------------------------------------------------------------
class Follow:
    """New complete lines of a file that may not exist yet."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.rest = path, 0, b""

    def lines(self) -> Iterator[str]:
        try:
            with self.path.open("rb") as file:
                file.seek(self.offset)
                data = file.read()
        except OSError:
            return
        self.offset += len(data)
        *complete, self.rest = (self.rest + data).split(b"\n")
        for line in complete:
            yield line.decode("utf-8", "replace").rstrip("\r")


class Messages:
    """SIP messages as they appear in a log: a marker line, then the message up to the
    first empty line (headers only)."""

    def __init__(self, path: Path, marker: re.Pattern[str]) -> None:
        self.follow, self.marker = Follow(path), marker
        self.current: list[str] | None = None

    def new(self) -> Iterator[list[str]]:
        for line in self.follow.lines():
            if self.marker.search(line):
                self.current = []
            elif self.current is not None:
                if line.strip():
                    self.current.append(line.strip())
                elif self.current:
                    yield self.current
                    self.current = None


def header(message: list[str], name: str) -> str:
    for line in message[1:]:
        key, colon, value = line.partition(":")
        if colon and key.strip().lower() == name.lower():
            return value.strip()
    return ""


def say(text: str) -> None:
    print(f">>> {text}", flush=True)


def watch(args: argparse.Namespace) -> int:
    linphone_in = re.compile(r"received \[\d+\] new bytes from")
    sipp_in = re.compile(r"message received")
    desk = Messages(Path(args.desk), sipp_in) if args.desk else None
    remote = Messages(Path(args.remote), linphone_in) if args.remote else None
    callback = Messages(Path(args.callback), linphone_in) if args.callback else None
    console = Follow(Path(args.callback_console)) if args.callback_console else None
    incoming = re.compile(r"Receiving new incoming call from (.*), assigned id")
    seen: set[str] = set()
    while alive(args.parent):
        for message in remote.new() if remote else ():
            call_id = header(message, "Call-ID")
            if message[0].startswith("INVITE ") and call_id not in seen:
                seen.add(call_id)
                if header(message, "Replaces"):
                    say(
                        "remote party: INVITE with Replaces from the portal, leaving the desk phone"
                    )
        for message in desk.new() if desk else ():
            if message[0].startswith("BYE "):
                say(
                    "desk phone 1001: BYE from the remote party, the desk call is over "
                    "(it was pulled)"
                )
        for message in callback.new() if callback else ():
            call_id = header(message, "Call-ID")
            if message[0].startswith("INVITE ") and call_id not in seen:
                seen.add(call_id)
                say(f"call-back destination {args.callback_number} rings, the caller shown:")
                say(f"  From: {header(message, 'From')}")
                say(f"  P-Asserted-Identity: {header(message, 'P-Asserted-Identity') or '(none)'}")
        for line in console.lines() if console else ():
            match = incoming.search(line)
            if match:
                say(f"  its display (linphonec): {match.group(1)}")
        time.sleep(0.2)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    ports = sub.add_parser("ports")
    ports.add_argument("count", type=int)
    waits = {
        "options": ["port"],
        "rpc": ["rpc_port"],
        "registered": ["rpc_port", "user"],
        "dialog": ["rpc_port", "prefix"],
    }
    for name, positional in waits.items():
        command = sub.add_parser(name)
        for arg in positional:
            command.add_argument(arg, type=int if arg.endswith("port") else str)
        command.add_argument("--timeout", type=float, default=15.0)
        command.add_argument("--pid", type=int)
    follow = sub.add_parser("watch")
    follow.add_argument("--parent", type=int, default=os.getppid())
    follow.add_argument("--desk")
    follow.add_argument("--remote")
    follow.add_argument("--callback")
    follow.add_argument("--callback-console")
    follow.add_argument("--callback-number", default="")
    args = parser.parse_args(argv)

    if args.command == "ports":
        print(" ".join(map(str, free_ports(args.count))))
        return 0
    if args.command == "watch":
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            return watch(args)
        return 0
    checks: dict[str, Callable[[], bool]] = {
        "options": lambda: " 200 " in f"{options(args.port)} ",
        "rpc": lambda: rpc(args.rpc_port, "core.version") is not None,
        "registered": lambda: (
            "result" in (rpc(args.rpc_port, "ul.lookup", "location", args.user) or {})
        ),
        "dialog": lambda: answered(args.rpc_port, args.prefix),
    }
    return 0 if wait(checks[args.command], args.timeout, args.pid) else 1


if __name__ == "__main__":
    sys.exit(main())
