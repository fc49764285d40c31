"""Scale-out: portal nodes (``ivr serve --no-register``, real processes) behind
Kamailio's dispatcher (``examples/kamailio/dispatcher.cfg``), SIPp as the callers.

The proxy probes each node with OPTIONS every second here (1 s transaction timeout;
two failed probes in a row make a node inactive, one slow answer on a busy machine does
not), so a dead or draining node is noticed within ~3 s; an INVITE that reaches it
before is failed over to the other node (after 1 s of silence, or at once on 503).
Which node took a call is read from each node's own log (one ``call <Call-ID>:
incoming`` line per call), which survives a ``kill -9``. What a test measured (e.g. how
long the proxy took to notice a killed node) is printed and recorded as a property of
the test (``-rA``, ``--junitxml``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr.portal.demo import copy_with_cheap_hashes
from tests.conftest import PORTAL_EXAMPLES
from tests.sip.callers import scenario
from tests.sip.conftest import ERIKA
from tests.sip.nodes import IVR, Dispatcher, PortalNode, options_via
from tests.sip.peers import SippProcess, eventually, free_udp_port, sipp_popen
from tests.sip.test_e2e import needs_kamailio_and_sipp

pytestmark = [
    needs_kamailio_and_sipp,
    pytest.mark.skipif(IVR is None, reason="needs the ivr command"),
    pytest.mark.timeout(180),
]

#: each node its own RTP ports (they share the host), below the kernel's ephemeral
#: ports (32768-): an RTP socket can never take the SIP port of a node that is down
#: for a restart (``free_udp_port``)
RTP_PORTS = [(28000, 29999), (30000, 31999)]

#: the proxy's log line when an INVITE goes to the next node (failure_route)
FAILOVER = "trying the next portal node"

#: "draining: 17 calls running, ..." and "drained: 17 calls finished, 0 hung up ..."
_DRAINING = re.compile(r"draining: (\d+) calls running")
_DRAINED = re.compile(r"drained: (\d+) calls finished, (\d+) hung up")

#: "call <Call-ID>: PIN accepted" (the portal's log)
_PIN_ACCEPTED = re.compile(r"\bcall (\S+): PIN accepted")

Record = Callable[[str, object], None]


@dataclass
class Cluster:
    proxy: Dispatcher
    nodes: list[PortalNode]
    sink: socket.socket  # the callers' audio port: bound (no ICMP errors back), never read
    work: Path

    @property
    def sink_port(self) -> int:
        return int(self.sink.getsockname()[1])

    def taken(self) -> list[set[str]]:
        """Per node, the Call-IDs it took so far."""
        return [set(node.calls()) for node in self.nodes]

    def calls(
        self,
        count: int,
        *,
        hold_ms: int,
        rate: float,
        name: str,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> SippProcess:
        """``count`` callers (at most ``limit`` at once, default all; ``rate`` new ones a
        second) of the portal through the proxy: each keys ``4711#``, stays ``hold_ms``
        ms in the menu and hangs up (a call lasts ~``hold_ms`` + 2 s)."""
        xml = self.work / f"{name}.xml"
        steps = [("pause", 300), ("keys", "4711#"), ("pause", hold_ms), ("hangup",)]
        xml.write_text(scenario(steps, "bye"))  # type: ignore[arg-type]
        keys = {"caller": ERIKA, "sink_port": str(self.sink_port), "codec_pt": "8"}
        return sipp_popen(
            xml,
            self.proxy.address,
            service="portal",
            keys=keys,
            calls=count,
            rate=rate,
            limit=limit or count,
            timeout=timeout if timeout is not None else count / rate + hold_ms / 1000 + 30,
        )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    ports = [free_udp_port(), free_udp_port()]
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    with Dispatcher(ports, probing_threshold=2) as proxy:
        nodes: list[PortalNode] = []
        try:
            for n, port in enumerate(ports):
                portal = tmp_path / f"node{n + 1}"
                portal.mkdir()
                copy_with_cheap_hashes(PORTAL_EXAMPLES, portal)
                node = PortalNode(
                    portal / "portal.yaml", proxy.port, port=port, rtp_ports=RTP_PORTS[n]
                )
                nodes.append(node)
                node.start()
            assert eventually(lambda: all(proxy.active(p) for p in ports), 10), proxy.states()
            yield Cluster(proxy, nodes, sink, tmp_path)
        finally:
            for node in nodes:
                node.close()
            sink.close()


@pytest.fixture
def measured(record_property: Record) -> Record:
    """Record a number the test measured (a test property) and print it."""

    def record(name: str, value: object) -> None:
        record_property(name, value)
        print(f"measured: {name} = {value}")

    return record


def in_menu(cluster: Cluster) -> set[str]:
    """Call-IDs whose caller has keyed the PIN (from the nodes' logs)."""
    return {call for node in cluster.nodes for call in _PIN_ACCEPTED.findall(node.log())}


def soft_stop(sipp: SippProcess) -> None:
    """SIPp places no new calls and exits when its running calls have ended (SIGUSR1,
    as the ``q`` key)."""
    os.kill(sipp.popen.pid, signal.SIGUSR1)


def draining(node: PortalNode) -> bool:
    """The node answers an OPTIONS relayed by its proxy with 503 Service Unavailable:
    it drains. (The proxy passes a 503 on as "500 Service Unavailable": RFC 3261 16.7,
    tm's ``remap_503_500``; its own probes see the 503.)"""
    status = options_via(node.proxy_port, node.port, timeout=2.0) or ""
    return status in ("SIP/2.0 503 Service Unavailable", "SIP/2.0 500 Service Unavailable")


def drain_summary(node: PortalNode) -> tuple[int, int, int]:
    """From the node's last drain (its log): calls running at SIGTERM, calls that
    finished on their own, calls hung up when the drain time was over."""
    running = _DRAINING.findall(node.log())
    drained = _DRAINED.findall(node.log())
    assert running and drained, node.describe()
    return int(running[-1]), int(drained[-1][0]), int(drained[-1][1])


def test_forty_calls_are_spread_over_both_nodes(cluster: Cluster, measured: Record) -> None:
    with cluster.calls(40, hold_ms=1000, rate=20, name="spread") as callers:
        result = callers.wait()
    assert result.ok and result.successful == 40, result.describe()
    first, second = cluster.taken()
    measured("calls_per_node", [len(first), len(second)])
    assert len(first) + len(second) == 40 and not first & second
    # round robin: every other call (a probe that lost a race may shift one or two)
    assert min(len(first), len(second)) >= 10, (len(first), len(second))
    # nothing is running: a drained stop is at once, and the counters agree
    for node in cluster.nodes:
        node.terminate()
        assert node.wait(15) == 0, node.describe()
        assert drain_summary(node) == (0, 0, 0)
    assert [node.stats()["answered"] for node in cluster.nodes] == [len(first), len(second)]


def test_a_killed_node_is_taken_out_and_used_again_after_its_restart(
    cluster: Cluster, measured: Record
) -> None:
    proxy, a = cluster.proxy, cluster.nodes[0]
    # 10 long calls (~10 s), spread over both nodes; once every caller has keyed its
    # PIN, node A dies with its calls (a SIPp caller whose node died while SIPp still
    # played its key audio once hung: neither failed nor ended, SIPp 3.6.1)
    with cluster.calls(10, hold_ms=8000, rate=10, name="running") as running:
        assert eventually(lambda: sum(map(len, cluster.taken())) == 10, 15), cluster.taken()
        on_a, on_b = cluster.taken()
        assert on_a and on_b, (on_a, on_b)
        assert eventually(lambda: len(in_menu(cluster)) == 10, 15), cluster.taken()
        killed = time.monotonic()
        a.kill()
        failovers = cluster.proxy.log().count(FAILOVER)
        # calls placed before the proxy notices: those sent to A are failed over to B
        # after the transaction timeout (ds_next_dst)
        window = cluster.calls(4, hold_ms=300, rate=10, name="window")
        with window:
            assert eventually(lambda: proxy.inactive(a.port), 15, interval=0.02), proxy.states()
            measured("detection_s", round(time.monotonic() - killed, 2))
            in_window = window.wait()
        assert in_window.ok and in_window.successful == 4, in_window.describe()
        measured("failed_over_before_detection", proxy.log().count(FAILOVER) - failovers)
        # after detection: every new call goes to B, none fails
        after_detection = cluster.taken()
        with cluster.calls(20, hold_ms=500, rate=10, name="after") as after:
            result = after.wait()
        assert result.ok and result.successful == 20, result.describe()
        now_a, now_b = cluster.taken()
        assert now_a == on_a and len(now_b - after_detection[1]) == 20
        assert not now_a & now_b
        lost = running.wait()
    # the calls A had are lost (their BYE times out at the proxy: 408); B's went on
    measured("calls_on_killed_node", len(on_a))
    measured("calls_lost", lost.failed)
    assert (lost.failed, lost.successful) == (len(on_a), len(on_b)), lost.describe()

    restarted = time.monotonic()
    a.start()  # same port; returns when it answers OPTIONS relayed by the proxy
    assert eventually(lambda: proxy.active(a.port), 15, interval=0.02), proxy.states()
    measured("restart_to_active_s", round(time.monotonic() - restarted, 2))
    before_a, before_b = cluster.taken()
    with cluster.calls(10, hold_ms=300, rate=10, name="restarted") as again:
        result = again.wait()
    assert result.ok and result.successful == 10, result.describe()
    after_a, after_b = cluster.taken()
    assert after_a - before_a and after_b - before_b  # both take calls again
    assert len(after_a - before_a) + len(after_b - before_b) == 10


def test_rolling_restart_under_forty_long_calls_loses_none(
    cluster: Cluster, measured: Record
) -> None:
    proxy, (a, b) = cluster.proxy, cluster.nodes

    def restart(label: str, node: PortalNode, other: PortalNode) -> None:
        other_before = set(other.calls())
        failovers = proxy.log().count(FAILOVER)
        stopped = time.monotonic()
        node.terminate()  # drain: new calls go to the other node, running ones finish
        # while it drains it answers the proxy's probes (and new INVITEs) 503
        assert eventually(lambda: draining(node), 10), node.describe()
        assert eventually(lambda: proxy.inactive(node.port), 15, interval=0.02), proxy.states()
        measured(f"out_{label}_s", round(time.monotonic() - stopped, 2))
        assert node.wait(30) == 0, node.describe()
        measured(f"drain_{label}_s", round(time.monotonic() - stopped, 2))
        running, finished, hung_up = drain_summary(node)
        measured(f"running_at_sigterm_{label}", running)
        # it had calls when told to stop, and every one of them ended on its own
        assert running > 0 and (finished, hung_up) == (running, 0), node.describe()
        # meanwhile the other node took the new calls
        assert set(other.calls()) - other_before, "no new call during the drain"
        assert other.running
        # new INVITEs that reached it before the proxy noticed got 503: failed over
        measured(f"failed_over_{label}", proxy.log().count(FAILOVER) - failovers)
        taken_before = set(node.calls())
        started = time.monotonic()
        node.start()
        assert eventually(lambda: proxy.active(node.port), 15), proxy.states()
        measured(f"restart_{label}_s", round(time.monotonic() - started, 2))
        # back in: it takes new calls again
        assert eventually(lambda: set(node.calls()) - taken_before, 15), proxy.states()

    # calls of ~6 s, 40 at once (10 new ones a second while fewer run), until told to
    # stop: they cover A draining, A back, B draining, B back
    with cluster.calls(
        100_000, hold_ms=4000, rate=10, limit=40, name="rolling", timeout=150
    ) as callers:
        # 40 up on both nodes, and the first ones replaced: new calls keep coming
        assert eventually(lambda: sum(map(len, cluster.taken())) >= 45, 30), cluster.taken()
        assert min(map(len, cluster.taken())) >= 10, cluster.taken()
        restart("a", a, b)
        restart("b", b, a)
        soft_stop(callers)
        result = callers.wait()
    first, second = cluster.taken()
    measured("rolling_calls", result.successful)
    measured("rolling_failed", result.failed)
    # every call placed was answered by a node, and none failed (a soft stop exits 0)
    assert result.ok and result.successful == len(first | second), result.describe()
    assert result.successful >= 80, result.describe()
