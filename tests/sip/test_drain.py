"""SIGTERM drains ``ivr serve``: OPTIONS and new INVITEs get 503 with Retry-After (a
dispatcher stops sending calls here), running calls go on — audio and DTMF — until they
end, then the process exits 0; calls still running when ``--drain`` seconds have passed
get a BYE; a second SIGTERM (or SIGINT) stops at once. A real process, SIPp callers."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest

from ivr.sip.server import SipServer
from tests.sip.callers import Step
from tests.sip.conftest import Peer, in_dialog, invite, to_tag
from tests.sip.peers import HOST, eventually
from tests.sip.test_node import Callers, ServeProcess, callers, header, needs_sipp, options
from tests.sip.test_server_protocol import answer

__all__ = ["callers"]  # the fixture
pytestmark = [pytest.mark.timeout(120)]


def ack_of_failure(request: str, response: str) -> str:
    """The ACK of a non-2xx final ``response`` to the INVITE ``request`` (same branch)."""
    lines = request.split("\n")
    keep = [line for line in lines if line.split(":")[0] in ("Via", "From", "Call-ID")]
    cseq = header(response, "CSeq") or "1 INVITE"
    return (
        f"ACK sip:portal@{HOST} SIP/2.0\n"
        + "\n".join(keep)
        + f"\nTo: {header(response, 'To')}\nCSeq: {cseq.split()[0]} ACK\nContent-Length: 0\n\n"
    )


def refused_while_draining(port: int) -> str:
    """A new INVITE's final answer (ACKed)."""
    peer = Peer()
    try:
        request = invite(peer, f"late-{uuid.uuid4().hex[:8]}", branch=f"z9hG4bK{uuid.uuid4().hex}")
        peer.send(request, (HOST, port))
        final = peer.wait("SIP/2.0 5", timeout=5)
        peer.send(ack_of_failure(request, final), (HOST, port))
        return final
    finally:
        peer.close()


def drain_node(portal_dir: Path, drain: float) -> ServeProcess:
    return ServeProcess(portal_dir / "portal.yaml", extra=["--drain", f"{drain:g}"])


def all_taken(node: ServeProcess, count: int) -> bool:
    return len(node.calls()) >= count


@needs_sipp
def test_running_calls_finish_while_new_ones_get_503(portal_dir: Path, callers: Callers) -> None:
    with drain_node(portal_dir, 60) as node:
        callers.port = node.port
        # three calls: answered, a pause (SIGTERM comes in it), the PIN, a while in the
        # menu, then the caller hangs up; a fourth pulls its call (REFER, our BYE)
        steps: list[Step] = [("pause", 4000), ("keys", "4711#"), ("pause", 1000), ("hangup",)]
        sipp, sink = callers.start(steps, "bye", calls=3)
        pull: list[Step] = [("pause", 4000), ("keys", "4711#"), ("pause", 500), ("keys", "*11")]
        puller, _ = callers.start(pull, "refer")
        assert eventually(lambda: all_taken(node, 4), 15), node.describe()
        node.signal(signal.SIGTERM)
        assert eventually(lambda: node.lines("draining: 4 calls running"), 10), node.describe()
        sink.packets()  # what came before the drain

        reply = options(node.port)
        assert reply.startswith("SIP/2.0 503 "), reply
        assert header(reply, "Retry-After") == "30", reply
        refused = refused_while_draining(node.port)
        assert refused.startswith("SIP/2.0 503 "), refused
        assert header(refused, "Retry-After") == "30", refused

        result = sipp.wait()
        assert result.ok and result.successful == 3, result.describe() + node.describe()
        pulled = puller.wait()
        assert pulled.ok, pulled.describe() + node.describe()
        assert node.wait(20) == 0, node.describe()
        assert len(sink.packets()) > 100  # the prompts went on after SIGTERM
        log = node.log()
        assert "drained: 4 calls finished, 0 hung up" in log, log
        # the PINs were keyed after the drain began, and taken
        draining_at = log.index("draining: 4 calls running")
        assert log.count("PIN accepted", draining_at) == 4, log
        assert "Traceback" not in log
        stats = json.loads(node.stats_path.read_text())
        assert stats["ended"] == {"caller": 3, "pullcall": 1}, stats
        assert stats["refers"] == 1, stats
        assert stats["sip"]["draining"] == 2, stats  # the OPTIONS and the INVITE
        assert len(node.calls()) == 4  # the late INVITE was not taken


@needs_sipp
def test_calls_left_when_the_drain_time_is_up_get_bye(portal_dir: Path, callers: Callers) -> None:
    with drain_node(portal_dir, 2) as node:
        callers.port = node.port
        # callers that never hang up (the PIN prompt waits longer than the drain)
        sipp, _ = callers.start([], "bye", calls=2)
        assert eventually(lambda: all_taken(node, 2), 15), node.describe()
        assert eventually(lambda: node.lines("PIN"), 1) is None  # no PIN yet
        node.signal(signal.SIGTERM)
        assert node.wait(30) == 0, node.describe()
        result = sipp.wait()  # each got a BYE, and answered it
        assert result.ok and result.successful == 2, result.describe() + node.describe()
        log = node.log()
        assert "drained: 0 calls finished, 2 hung up after 2 s" in log, log
        stats = json.loads(node.stats_path.read_text())
        assert stats["ended"] == {"drain": 2}, stats


@needs_sipp
@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_stops_at_once(
    portal_dir: Path, callers: Callers, second: signal.Signals
) -> None:
    with drain_node(portal_dir, 120) as node:
        callers.port = node.port
        sipp, _ = callers.start([], "bye")
        assert eventually(lambda: all_taken(node, 1), 15), node.describe()
        node.signal(signal.SIGTERM)
        assert eventually(lambda: node.lines("draining: 1 calls running"), 10), node.describe()
        assert node.wait(1) is None  # draining: the call goes on
        node.signal(second)
        assert node.wait(20) == 0, node.describe()  # not the 120 s of the drain
        result = sipp.wait()  # the call got its BYE
        assert result.ok, result.describe() + node.describe()
        assert "stopping now: 1 calls hung up" in node.log(), node.describe()


def test_a_calls_own_options_is_answered_200_while_draining(server: SipServer, peer: Peer) -> None:
    """An OPTIONS in a running call's dialog (a keep-alive: a 503 may end the call at the
    other side) is answered 200 while draining; a probe (no dialog) gets 503."""
    ok = answer(server, peer, "kept")
    tag = to_tag(ok)
    peer.drain(0.3)  # the provisional answers
    server.drain()
    peer.send(in_dialog(peer, "OPTIONS", "kept", tag, 2), server.address)
    assert peer.wait("SIP/2.0 ").startswith("SIP/2.0 200 ")
    peer.send(in_dialog(peer, "OPTIONS", "other", "not-a-call", 1), server.address)
    assert peer.wait("SIP/2.0 ").startswith("SIP/2.0 503 ")
    probe = options(server.address[1])
    assert probe.startswith("SIP/2.0 503 ") and header(probe, "Retry-After") == "30", probe
    assert "kept" in server.calls  # the call goes on
    peer.send(in_dialog(peer, "BYE", "kept", tag, 3), server.address)
    assert peer.wait("SIP/2.0 ").startswith("SIP/2.0 200 ")
    assert eventually(lambda: server.settled(), 5)
