"""Real SIP peers for tests: a local Kamailio registrar/proxy and SIPp runs.

Everything binds 127.0.0.1 only. Nothing here is a test; see ``test_peers.py``.

``Kamailio`` runs ``examples/kamailio/kamailio.cfg`` in the foreground in a
temporary directory and kills its whole process group on exit; ``Kamailio.rpc`` asks
it over its JSON-RPC UDP socket (e.g. ``dialogs()`` for the calls it tracks). ``run_sipp``
runs one SIPp scenario to completion; ``SippProcess`` runs one in the
background (e.g. a UAS, or load) and is reaped on exit as well; ``listening`` waits
until it has bound its port.

The other peers (``linphone.py``, ``baresip.py``) build on the same pieces:
``PeerProcess`` (a program in a temporary directory and its own process group, as a
context manager), ``spawn`` / ``kill_group``, ``free_udp_port`` and ``sip_options``.
``eventually`` is the tests' one way to wait for a condition.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

ROOT = Path(__file__).resolve().parents[2]
KAMAILIO_CFG = ROOT / "examples" / "kamailio" / "kamailio.cfg"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
HOST = "127.0.0.1"

KAMAILIO = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin:/sbin")
SIPP = shutil.which("sipp")

T = TypeVar("T")


def eventually(
    probe: Callable[[], T | None], timeout: float, *, interval: float = 0.05
) -> T | None:
    """The first truthy value of probe() within timeout seconds (asked every interval
    seconds, and once more when the time is up), else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value or None
        time.sleep(interval)


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def free_udp_ports(count: int) -> int:
    """The first of ``count`` consecutive UDP ports of 127.0.0.1 that were free a
    moment ago."""
    for _ in range(50):
        base = free_udp_port()
        if base + count > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for offset in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind((HOST, base + offset))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    raise RuntimeError(f"no {count} free UDP ports in a row")


def free_media_port() -> int:
    """A port for SIPp's ``-mp``: SIPp also binds the next three (RTCP, video RTP and
    RTCP), so all four must be free (a taken +2 made SIPp exit at start)."""
    return free_udp_ports(4)


def sip_options(
    port: int, *, host: str = HOST, timeout: float = 0.5, via: int | None = None
) -> str | None:
    """Send one raw OPTIONS for host:port — to it, or ``via`` a proxy on that port of
    127.0.0.1, which relays it — and return the final reply's status line, or None on
    silence. (A proxy passes a node's 503 on as "500 Service Unavailable".)"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        local = sock.getsockname()[1]
        tag = uuid.uuid4().hex[:12]
        message = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bK{tag};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{HOST}:{local}>;tag={tag}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {tag}@{HOST}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        try:
            sock.sendto(message.encode(), (HOST, via) if via is not None else (host, port))
            while True:
                status = sock.recv(65535).decode(errors="replace").split("\r\n", 1)[0]
                if not status.startswith("SIP/2.0 1"):
                    return status
        except OSError:  # timeout, or ICMP port unreachable surfacing as ECONNREFUSED
            return None


def spawn(
    command: list[str],
    cwd: Path,
    log: Path,
    *,
    stdin: int = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a peer in its own process group (for :func:`kill_group`), no stdin (or
    ``subprocess.PIPE``), stdout and stderr appended to ``log``; ``env`` replaces the
    environment."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen[bytes], grace: float, *, sweep: bool = False) -> None:
    """SIGTERM the process group led by proc, SIGKILL it after grace seconds; reap proc.

    proc must have been started with ``start_new_session=True``. With ``sweep``,
    members of the group that outlive proc (kamailio's workers) are killed too.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    if sweep:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class Closing:
    """A context manager whose exit is ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PeerProcess(Closing):
    """A peer program run in a temporary directory and its own process group, as a
    context manager: ``start()`` on enter (``close()`` if that fails), ``close()`` on
    exit, which ``stop()``s it and removes the directory.

    Subclasses name the program (``name``, for messages), say what went wrong
    (``describe()``), start it with :func:`spawn` into ``_proc`` and stop it.
    """

    name: ClassVar[str] = "peer"
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def workdir(self) -> Path:
        if self._tmp is None:
            raise RuntimeError(f"{self.name} is not started")
        return Path(self._tmp.name)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def describe(self) -> str:
        """What the program said, for error messages."""
        raise NotImplementedError

    def _read_workdir(self, name: str) -> str:
        """A file in the working directory ("" before the start, or if there is none)."""
        try:
            return (self.workdir / name).read_text(errors="replace")
        except (FileNotFoundError, RuntimeError):
            return ""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _check_alive(self) -> None:
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not started")
        if self._proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self._proc.returncode}:\n{self.describe()}"
            )

    def _wait_answering(self, port: int, timeout: float) -> None:
        """Until the program answers OPTIONS on ``port`` with 200 (or has exited)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            status = sip_options(port, timeout=0.2)
            if status is not None and " 200 " in f"{status} ":
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.name} did not answer OPTIONS on {HOST}:{port} within "
            f"{timeout} s:\n{self.describe()}"
        )

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self


class RpcError(RuntimeError):
    """Kamailio answered a JSON-RPC request with an error object."""

    def __init__(self, method: str, code: int | None, message: str) -> None:
        super().__init__(f"kamailio RPC {method}: error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message


class Kamailio(PeerProcess):
    """A local Kamailio registrar/proxy on 127.0.0.1:port, as a context manager.

    ``password`` turns on digest auth (defines WITH_AUTH, AUTH_PASSWORD): for REGISTER,
    and for INVITEs from untrusted sources, which then get P-Asserted-Identity.
    The location table is in memory: ``restart()`` forgets all registrations.
    JSON-RPC listens on UDP 127.0.0.1:``rpc_port`` (define RPC_PORT). ``trusted`` is
    one ``"IP:PORT"`` or several whose P-Asserted-Identity the proxy keeps (define
    TRUSTED_SOURCE); it strips the header from everybody else.
    """

    name = "kamailio"
    _rpc_ids: ClassVar[Iterator[int]] = itertools.count(1)

    def __init__(
        self,
        port: int | None = None,
        password: str | None = None,
        *,
        rpc_port: int | None = None,
        trusted: str | Sequence[str] | None = None,
        config: Path = KAMAILIO_CFG,
        ready_timeout: float = 10.0,
    ) -> None:
        if KAMAILIO is None:
            raise RuntimeError("kamailio is not installed")
        self.port = port if port is not None else free_udp_port()
        self.rpc_port = rpc_port if rpc_port is not None else free_udp_port()
        sources = [trusted] if isinstance(trusted, str) else list(trusted or ())
        for source in sources:
            if not source or any(c in source for c in ',"\\ '):
                raise ValueError(f"trusted source must look like IP:PORT, got {source!r}")
        self.trusted: tuple[str, ...] = tuple(sources)
        self.password = password
        self.config = config
        self.ready_timeout = ready_timeout

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    def command(self) -> list[str]:
        """The kamailio command line (runs in the foreground, logs to stderr)."""
        assert KAMAILIO is not None
        work = str(self.workdir)
        cmd = [KAMAILIO, "-f", str(self.config), "-A", f"SIP_PORT={self.port}"]
        cmd += ["-A", f"RPC_PORT={self.rpc_port}"]
        if self.trusted:
            cmd += ["-A", f'TRUSTED_SOURCE="{",".join(self.trusted)}"']
        if self.password is not None:
            quoted = self.password.replace("\\", "\\\\").replace('"', '\\"')
            cmd += ["-A", "WITH_AUTH", "-A", f'AUTH_PASSWORD="{quoted}"']
        cmd += ["-D", "-E", "-n", "1", "-m", "64", "-M", "8"]
        cmd += ["-Y", work, "-P", str(self.workdir / "kamailio.pid"), "-w", work]
        return cmd

    def log(self) -> str:
        """Kamailio's stderr so far (all runs, including before restarts)."""
        return _read(self.log_path)

    def describe(self) -> str:
        return self.log()[-4000:]

    def start(self) -> None:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kamailio-")
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("Kamailio is already running")
        self._proc = spawn(self.command(), self.workdir, self.log_path)
        self._wait_answering(self.port, self.ready_timeout)

    def stop(self) -> None:
        if self._proc is not None:
            kill_group(self._proc, grace=5.0, sweep=True)
            self._proc = None

    def restart(self) -> None:
        """Stop and start again on the same port (registrations are lost)."""
        self.stop()
        self.start()

    def rpc(self, method: str, *params: Any, timeout: float = 2.0) -> Any:
        """Send one JSON-RPC 2.0 request to the RPC socket; the reply's ``result``.

        Raises :class:`RpcError` on an error reply (e.g. ``dlg.list_match`` with no
        match answers 404 "Not found"), ``TimeoutError`` on silence and
        ``ConnectionRefusedError`` when nothing listens. A reply must fit one datagram:
        with many calls, filter (``dlg.list_match``, ``"furi", "sw", "sip:1001@"``).
        """
        request_id = next(self._rpc_ids)
        request = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": request_id}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST, 0))
            sock.sendto(json.dumps(request).encode(), (HOST, self.rpc_port))
            deadline = time.monotonic() + timeout
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    data = sock.recv(65535)
                except TimeoutError as exc:
                    raise TimeoutError(
                        f"kamailio RPC {method}: no reply from {HOST}:{self.rpc_port} "
                        f"within {timeout} s (a reply over ~64 KiB is dropped, e.g. "
                        "dlg.list with more than ~100 dialogs: see the kamailio log)"
                    ) from exc
                except ConnectionRefusedError as exc:  # ICMP port unreachable
                    raise ConnectionRefusedError(
                        f"kamailio RPC {method}: nothing listens on {HOST}:{self.rpc_port}"
                    ) from exc
                reply = json.loads(data)
                if isinstance(reply, dict) and reply.get("id") == request_id:
                    break
        if "error" in reply:
            error = reply["error"] if isinstance(reply["error"], dict) else {}
            raise RpcError(method, error.get("code"), str(error.get("message", reply["error"])))
        return reply.get("result")

    def dialogs(self) -> list[dict[str, Any]]:
        """The dialogs Kamailio tracks (``dlg.list``; ``[]`` when there are none).

        Per dialog: ``call-id``, ``state`` (1 unconfirmed, 2 early, 3 answered without
        ACK yet, 4 confirmed, 5 ended; an ended one stays listed until its BYE
        transaction is gone, about 5 s), ``from_uri``, ``to_uri``, and ``caller`` /
        ``callee`` dicts with ``tag``, ``contact``, ``cseq``, ``route_set``, ``socket``.
        """
        result = self.rpc("dlg.list")
        if not isinstance(result, list):
            raise RpcError("dlg.list", None, f"expected a list, got {result!r}")
        return result


@dataclass
class SippResult:
    """The outcome of one SIPp run."""

    command: list[str]
    returncode: int
    successful: int
    failed: int
    stdout: str
    stderr: str
    errors: str  # the -trace_err log: unexpected messages and other call errors

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0

    def describe(self) -> str:
        """Everything useful for an assertion message."""
        return (
            f"$ {' '.join(self.command)}\n"
            f"returncode={self.returncode} successful={self.successful} failed={self.failed}\n"
            f"--- errors ---\n{self.errors[-4000:]}\n"
            f"--- stderr ---\n{self.stderr[-2000:]}\n"
            f"--- stdout ---\n{self.stdout[-3000:]}"
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _stat_counts(stat_file: Path) -> tuple[int, int] | None:
    """(successful, failed) cumulative counts from the last row of a SIPp stat CSV."""
    rows = [row for row in csv.reader(_read(stat_file).splitlines(), delimiter=";") if row]
    if len(rows) < 2:
        return None
    header, last = rows[0], rows[-1]
    try:
        return (
            int(last[header.index("SuccessfulCall(C)")]),
            int(last[header.index("FailedCall(C)")]),
        )
    except (ValueError, IndexError):
        return None


def sipp_command(
    scenario: Path,
    target: str | None,
    workdir: Path,
    *,
    keys: Mapping[str, str] | None = None,
    calls: int = 1,
    rate: float | None = None,
    limit: int | None = None,
    timeout: float = 60,
    port: int | None = None,
    service: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The sipp command line; stat CSV and error log go to workdir."""
    if SIPP is None:
        raise RuntimeError("sipp is not installed")
    cmd = [SIPP, "-sf", str(scenario)]
    if target is not None:
        cmd.append(target)
    cmd += ["-m", str(calls), "-i", HOST, "-p", str(port or free_udp_port())]
    cmd += ["-mi", HOST, "-mp", str(free_media_port())]
    if service is not None:
        cmd += ["-s", service]
    if rate is not None:
        cmd += ["-r", f"{rate:g}"]
    if limit is not None:
        cmd += ["-l", str(limit)]
    for key, value in (keys or {}).items():
        cmd += ["-key", key, value]
    cmd += [
        "-nostdin",
        "-timeout",
        f"{max(1, round(timeout))}s",
        "-timeout_error",
        "-trace_err",
        "-error_file",
        str(workdir / "errors.log"),
        "-trace_stat",
        "-stf",
        str(workdir / "stat.csv"),
    ]
    cmd += list(extra)
    return cmd


class SippProcess(Closing):
    """A SIPp run in the background (a UAS, or a load generator); a context manager.

    ``wait()`` collects the result; on exit a still-running sipp is killed and reaped.
    """

    def __init__(
        self,
        scenario: Path,
        target: str | None = None,
        *,
        keys: Mapping[str, str] | None = None,
        calls: int = 1,
        rate: float | None = None,
        limit: int | None = None,
        timeout: float = 60,
        port: int | None = None,
        service: str | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.port = port if port is not None else free_udp_port()
        self.timeout = timeout
        self.calls = calls
        self._tmp = tempfile.TemporaryDirectory(prefix="sipp-")
        self.workdir = Path(self._tmp.name)
        self.command = sipp_command(
            scenario,
            target,
            self.workdir,
            keys=keys,
            calls=calls,
            rate=rate,
            limit=limit,
            timeout=timeout,
            port=self.port,
            service=service,
            extra=extra,
        )
        with (
            (self.workdir / "stdout").open("wb") as out,
            (self.workdir / "stderr").open("wb") as err,
        ):
            self.popen: subprocess.Popen[bytes] = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def result(self) -> SippResult:
        """The result of a finished run."""
        returncode = self.popen.returncode
        if returncode is None:
            raise RuntimeError("sipp is still running")
        counts = _stat_counts(self.workdir / "stat.csv")
        if counts is None:  # no stat CSV (e.g. sipp failed to start): trust the exit code
            counts = (self.calls, 0) if returncode == 0 else (0, self.calls)
        return SippResult(
            command=self.command,
            returncode=returncode,
            successful=counts[0],
            failed=counts[1],
            stdout=_read(self.workdir / "stdout"),
            stderr=_read(self.workdir / "stderr"),
            errors=_read(self.workdir / "errors.log"),
        )

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to end (killing it after timeout, default its own + 5 s)."""
        try:
            self.popen.wait(timeout=self.timeout + 5 if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.popen, grace=1.0)
        return self.result()

    def close(self) -> None:
        try:
            kill_group(self.popen, grace=1.0)
        finally:
            self._tmp.cleanup()


def listening(sipp: SippProcess, timeout: float = 5.0) -> bool:
    """Wait until this sipp itself has bound its UDP port (Linux /proc), so a call placed
    next cannot race its start or reach a process that took the port first."""

    def bound() -> bool:
        try:
            links = {os.readlink(fd) for fd in Path(f"/proc/{sipp.popen.pid}/fd").iterdir()}
        except OSError:  # sipp is gone, or an fd closed while we looked
            return False
        rows = (line.split() for line in Path("/proc/net/udp").read_text().splitlines()[1:])
        return any(
            int(row[1].split(":")[1], 16) == sipp.port and f"socket:[{row[9]}]" in links
            for row in rows
        )

    eventually(lambda: bound() or sipp.popen.poll() is not None, timeout)
    return sipp.popen.poll() is None and bound()


#: start sipp in the background; use as ``with sipp_popen(...) as uas:``
sipp_popen = SippProcess


def run_sipp(scenario: Path, target: str | None, **options: Any) -> SippResult:
    """Run one SIPp scenario to the end (options as for :class:`SippProcess`); sipp exits
    0 when all calls succeeded."""
    with sipp_popen(scenario, target, **options) as proc:
        return proc.wait()
