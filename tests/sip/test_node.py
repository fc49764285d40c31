"""``ivr serve --no-register``: a portal node behind a dispatcher, as a real process.

It sends no REGISTER (its "registrar" here is a socket of the test, which hears
nothing), answers OPTIONS with 200, and takes a call from SIPp.

The helpers here run ``ivr serve`` as a process of its own (``ServeProcess``: its own
session, signalled and stopped by its PID) and SIPp callers against it; the drain,
reload and worker tests use them too.
"""

from __future__ import annotations

import signal
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.sip.callers import RtpSink, Step, scenario
from tests.sip.conftest import ERIKA, Peer
from tests.sip.nodes import IVR, PORTAL_DIALPLAN, IvrServe
from tests.sip.peers import (
    HOST,
    SIPP,
    SippProcess,
    free_udp_port,
    sip_options,
    sipp_popen,
    spawn,
)

needs_sipp = pytest.mark.skipif(
    SIPP is None or IVR is None, reason="needs sipp (make test installs it) and the ivr command"
)
pytestmark = [needs_sipp, pytest.mark.timeout(120)]

#: "call <Call-ID>: incoming (" — one line per call taken


class ServeProcess(IvrServe):
    """``ivr --log-level info serve DIALPLAN --portal CONFIG --no-register`` on
    127.0.0.1:``port``, its "registrar" on ``registrar`` (nothing: port 9), trusting
    127.0.0.1 (the test's SIPp calls it directly). ``extra`` options go last. Its log and
    ``--stats`` file are in its run directory; it runs in its own session and is signalled
    by its PID only."""

    def __init__(
        self,
        portal_config: Path,
        *,
        port: int | None = None,
        registrar: int = 9,
        dialplan: Path = PORTAL_DIALPLAN,
        register: bool = False,
        extra: Sequence[str] = (),
        answering: Sequence[int] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        if IVR is None:
            raise RuntimeError("no ivr command beside this Python")
        self.portal_config = portal_config
        self.port = port if port is not None else free_udp_port()
        self.registrar = registrar
        self.dialplan = dialplan
        self.register = register
        self.extra = list(extra)
        #: the ports that must answer OPTIONS with 200 before start() returns
        self.answering = list(answering) if answering is not None else [self.port]
        self.ready_timeout = ready_timeout

    def command(self) -> list[str]:
        assert IVR is not None
        cmd = [IVR, "--log-level", "info", "serve", str(self.dialplan)]
        cmd += ["--portal", str(self.portal_config)]
        cmd += ["--registrar", f"{HOST}:{self.registrar}", "--bind", HOST]
        cmd += ["--port", str(self.port), "--trust", f"{HOST}/32"]
        cmd += ["--register" if self.register else "--no-register"]
        cmd += ["--stats", str(self.stats_path)]
        return cmd + self.extra

    def start(self) -> None:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ivr-serve-")
        self._proc = spawn(self.command(), self.workdir, self.log_path)
        for port in self.answering:
            self._wait_answering(port, self.ready_timeout)


def options(port: int, *, timeout: float = 2.0) -> str:
    """One OPTIONS to 127.0.0.1:``port``; the whole answer (AssertionError on silence)."""
    peer = Peer()
    try:
        tag = uuid.uuid4().hex[:12]
        peer.send(
            f"OPTIONS sip:{HOST}:{port} SIP/2.0\n"
            f"Via: SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bK{tag}\n"
            "Max-Forwards: 70\n"
            f"From: <sip:probe@{HOST}:{peer.port}>;tag={tag}\n"
            f"To: <sip:{HOST}:{port}>\n"
            f"Call-ID: {tag}@{HOST}\n"
            "CSeq: 1 OPTIONS\n"
            "Content-Length: 0\n\n",
            (HOST, port),
        )
        return peer.wait("SIP/2.0 ", timeout=timeout)
    finally:
        peer.close()


def header(message: str, name: str) -> str | None:
    """The value of the first header ``name`` of a SIP message."""
    for line in message.split("\r\n")[1:]:
        if not line:
            break
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def answers_200(port: int) -> bool:
    status = sip_options(port, timeout=0.3)
    return status is not None and " 200 " in f"{status} "


class Callers:
    """SIPp callers of the test against ``ivr serve`` on 127.0.0.1:``port``, each with an
    RTP sink; all are closed at the end."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.open: list[tuple[SippProcess, RtpSink]] = []

    def start(
        self,
        steps: list[Step],
        expect: str,
        *,
        calls: int = 1,
        caller: str = ERIKA,
        port: int | None = None,
    ) -> tuple[SippProcess, RtpSink]:
        """``calls`` callers (10 per second) doing ``steps``, then expecting ``expect``
        (see :func:`tests.sip.callers.scenario`)."""
        sink = RtpSink()
        xml = self.workdir / f"caller-{uuid.uuid4().hex[:8]}.xml"
        xml.write_text(scenario(steps, expect))
        sipp = sipp_popen(
            xml,
            f"{HOST}:{port or self.port}",
            service="portal",
            keys={"caller": caller, "sink_port": str(sink.port), "codec_pt": "8"},
            calls=calls,
            rate=10,
            limit=calls,
            timeout=60,
        )
        self.open.append((sipp, sink))
        return sipp, sink

    def call_ids(self, sipp: SippProcess, calls: int = 1) -> list[str]:
        """The Call-IDs of a SIPp run's calls (SIPp's ``[call_number]-[pid]@[local_ip]``)."""
        return [f"{n}-{sipp.popen.pid}@{HOST}" for n in range(1, calls + 1)]

    def close(self) -> None:
        for sipp, sink in self.open:
            sipp.close()
            sink.close()


@pytest.fixture
def callers(tmp_path: Path) -> Iterator[Callers]:
    """SIPp callers of the test (their port is set once the node is up)."""
    made = Callers(tmp_path, 0)
    yield made
    made.close()


# --- the tests ----------------------------------------------------------------------


def test_a_node_sends_no_register_answers_options_and_takes_a_call(
    portal_dir: Path, callers: Callers
) -> None:
    registrar = Peer()  # where a REGISTER (or a keep-alive OPTIONS) would go
    try:
        with ServeProcess(portal_dir / "portal.yaml", registrar=registrar.port) as node:
            callers.port = node.port
            reply = options(node.port)
            assert reply.startswith("SIP/2.0 200 "), reply
            assert "INVITE" in (header(reply, "Allow") or "")
            sipp, sink = callers.start(
                [("pause", 300), ("keys", "4711#"), ("pause", 500), ("hangup",)], "bye"
            )
            result = sipp.wait()
            assert result.ok, result.describe() + node.describe()
            assert len(sink.packets()) > 50  # the prompts were heard
            assert node.lines("PIN accepted"), node.describe()
            assert "not registering" in node.log()
            heard = registrar.drain(0.5)
            assert heard == [], heard  # not a REGISTER, nothing at all
            node.signal(signal.SIGTERM)
            assert node.wait(20) == 0, node.describe()
    finally:
        registrar.close()


def test_a_registering_node_does_register(portal_dir: Path) -> None:
    """The other half of the above: without --no-register the same command line sends
    its REGISTER to the registrar (what the test above listens for)."""
    registrar = Peer()
    try:
        with ServeProcess(
            portal_dir / "portal.yaml", registrar=registrar.port, register=True
        ) as node:
            register = registrar.wait("REGISTER ", timeout=10)
            assert f"sip:portal@{HOST}" in register, register
            assert node.running
            # its registrar never answers; that holds up no stop
            node.signal(signal.SIGTERM)
            assert node.wait(20) == 0, node.describe()
            assert "drained: 0 calls finished" in node.log()
    finally:
        registrar.close()
