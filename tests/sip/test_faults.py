"""Faults with real peers: the registrar restarting, and callers dropping mid-call while
others are served. Threads and sockets are back where they started afterwards."""

from __future__ import annotations

import threading
from pathlib import Path

from ivr.sip.server import SipServer
from tests.sip.callers import RtpSink, scenario
from tests.sip.conftest import ERIKA, open_fds, start_server
from tests.sip.peers import Kamailio, eventually, run_sipp, sipp_popen
from tests.sip.test_e2e import call, ended_cleanly, kamailio, pytestmark, registered

__all__ = ["kamailio", "pytestmark"]


def test_registrar_restart_registers_again(portal_dir: Path, tmp_path: Path) -> None:
    threads, fds = threading.active_count(), open_fds()
    with Kamailio() as proxy:
        server = start_server(portal_dir, registrar=("127.0.0.1", proxy.port), keepalive=0.3)
        try:
            assert registered(server)
            proxy.stop()  # its location table is lost with it
            assert eventually(lambda: server.registration.state != "registered", 10)
            proxy.start()
            assert registered(server, timeout=20), proxy.log()[-2000:]
            assert server.registration.registrations >= 2
            ok, why, _ = call(proxy, tmp_path, [("pause", 300), ("hangup",)], "bye")
            assert ok, why  # the binding is back: Kamailio finds the portal again
        finally:
            server.stop()
    assert threading.active_count() <= threads
    assert open_fds() <= fds


def test_ten_percent_of_callers_drop_and_nobody_else_notices(
    kamailio: Kamailio, portal_dir: Path, tmp_path: Path
) -> None:
    threads, fds = threading.active_count(), open_fds()
    full, dropping = 18, 2
    server: SipServer = start_server(portal_dir, registrar=("127.0.0.1", kamailio.port))
    # 18 Erikas pull at once: in this simulated PBX her desk call may be pulled by all
    pbx = server.driver.engine.context.call_control
    pbx.pull = lambda call_id, to: "connected"
    sink = RtpSink()
    try:
        assert registered(server)
        pulls = tmp_path / "pull.xml"
        pulls.write_text(
            scenario([("pause", 1000), ("keys", "4711#"), ("pause", 500), ("keys", "*11")], "refer")
        )
        drops = tmp_path / "drop.xml"
        drops.write_text(scenario([("pause", 1500), ("hangup",)], "bye"))
        keys = {"caller": ERIKA, "sink_port": str(sink.port), "codec_pt": "8"}
        with sipp_popen(
            pulls, kamailio.address, service="portal", keys=keys, calls=full, rate=20, limit=full
        ) as pulling:
            dropped = run_sipp(
                drops, kamailio.address, service="portal", keys=keys, calls=dropping, rate=10
            )
            pulled = pulling.wait()
        assert dropped.ok, dropped.describe()
        assert pulled.ok, pulled.describe()
        assert pulled.successful == full
        assert server.stats.refers == full
        assert server.stats.ended == {"pullcall": full, "caller": dropping}
        assert ended_cleanly(server)
    finally:
        sink.close()
        server.stop()
    assert threading.active_count() <= threads
    assert open_fds() <= fds
