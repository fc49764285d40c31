"""End to end: SIPp callers reach the portal through Kamailio on loopback.

The portal registers at a Kamailio started by the test; SIPp calls ``portal`` through it,
presents the caller number, sends RFC 4733 DTMF from SIPp's own pcaps, and checks what
comes back. The portal's audio goes to an RTP sink of the test (the SDP's media port),
which checks it is non-silent G.711 — or, in silent mode, that there is none.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.sip.server import SipServer
from tests.sip.callers import RtpSink, Step, loudness, scenario
from tests.sip.conftest import ERIKA, UNKNOWN, open_fds, start_server
from tests.sip.peers import Kamailio, eventually, run_sipp

needs_kamailio_and_sipp = pytest.mark.skipif(
    not (shutil.which("kamailio") and shutil.which("sipp")),
    reason="needs kamailio and sipp (make test installs them)",
)
pytestmark = needs_kamailio_and_sipp


@pytest.fixture(scope="module")
def kamailio() -> Iterator[Kamailio]:
    with Kamailio() as proxy:
        yield proxy


def registered(server: SipServer, timeout: float = 10.0) -> bool:
    return eventually(lambda: server.registration.state == "registered", timeout) is not None


def call(
    kamailio: Kamailio,
    tmp_path: Path,
    steps: list[Step],
    expect: str,
    *,
    caller: str = ERIKA,
    codec_pt: int = 8,
) -> tuple[bool, str, list[tuple[int, bytes]]]:
    """One SIPp call through Kamailio; returns (ok, description, RTP the caller got)."""
    sink = RtpSink()
    xml = tmp_path / f"caller-{expect}.xml"
    xml.write_text(scenario(steps, expect))
    try:
        result = run_sipp(
            xml,
            kamailio.address,
            service="portal",
            keys={"caller": caller, "sink_port": str(sink.port), "codec_pt": str(codec_pt)},
            timeout=60,
        )
        time.sleep(0.2)
        return result.ok, result.describe(), sink.packets()
    finally:
        sink.close()


@pytest.fixture
def portal(kamailio: Kamailio, portal_dir: Path) -> Iterator[SipServer]:
    threads, fds = threading.active_count(), open_fds()
    server = start_server(portal_dir, registrar=("127.0.0.1", kamailio.port))
    assert registered(server), kamailio.log()[-2000:]
    yield server
    server.stop()
    assert threading.active_count() <= threads
    assert open_fds() <= fds


def ended_cleanly(server: SipServer) -> bool:
    def idle() -> bool:
        return not server.calls and not server.ports.in_use and server.driver.active == 0

    return eventually(idle, 5) is not None


def test_erika_pulls_her_call(kamailio: Kamailio, portal: SipServer, tmp_path: Path) -> None:
    ok, why, rtp = call(
        kamailio,
        tmp_path,
        [("pause", 1000), ("keys", "4711#"), ("pause", 500), ("keys", "*11")],
        "refer",
    )
    assert ok, why
    audio = [payload for pt, payload in rtp if pt == 8]
    assert len(audio) > 100  # seconds of prompts, PCMA as negotiated
    assert loudness(audio, 8) > 500  # not silence
    assert portal.stats.refers == 1 and portal.stats.ended == {"pullcall": 1}
    assert ended_cleanly(portal)


def test_pcmu_callers_get_pcmu(kamailio: Kamailio, portal: SipServer, tmp_path: Path) -> None:
    ok, why, rtp = call(kamailio, tmp_path, [("pause", 1500), ("hangup",)], "bye", codec_pt=0)
    assert ok, why
    assert {pt for pt, _ in rtp} == {0}
    assert loudness([p for _, p in rtp], 0) > 500


def test_three_wrong_pins_end_with_bye_and_no_refer(
    kamailio: Kamailio, portal: SipServer, tmp_path: Path
) -> None:
    steps: list[Step] = [("pause", 3000)]
    for _ in range(3):
        steps += [("keys", "1111#"), ("pause", 2000)]
    ok, why, _ = call(kamailio, tmp_path, steps, "bye")
    assert ok, why
    assert portal.stats.refers == 0
    assert ended_cleanly(portal)


def test_silent_portal_pulls_without_a_word(
    kamailio: Kamailio, portal_dir: Path, tmp_path: Path
) -> None:
    server = start_server(portal_dir, "silent.yaml", registrar=("127.0.0.1", kamailio.port))
    try:
        assert registered(server)
        ok, why, rtp = call(kamailio, tmp_path, [("pause", 200), ("keys", "*11")], "refer")
        assert ok, why
        assert rtp == []  # no prompt audio at all, before or after the REFER
        assert server.stats.refers == 1
    finally:
        server.stop()


def test_unknown_caller_is_refused(kamailio: Kamailio, portal: SipServer, tmp_path: Path) -> None:
    ok, why, rtp = call(kamailio, tmp_path, [], "bye", caller=UNKNOWN)
    assert ok, why
    assert rtp  # the refusal is spoken
    assert portal.stats.refers == 0 and portal.stats.ended == {"refused": 1}


def test_caller_hangs_up_during_the_greeting(
    kamailio: Kamailio, portal: SipServer, tmp_path: Path
) -> None:
    ok, why, _ = call(kamailio, tmp_path, [("pause", 400), ("hangup",)], "bye")
    assert ok, why
    assert portal.stats.ended == {"caller": 1}
    assert ended_cleanly(portal)
