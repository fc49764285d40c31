"""A real pull through Kamailio: a desk phone (SIPp, sip:1001) is in a call with a remote
party; Erika calls the portal from her mobile (SIPp), keys her PIN and ``*11``; the
portal finds the call in Kamailio's dialog list (JSON-RPC), sends the remote party an
INVITE with ``Replaces``, and bridges it to the mobile.

The remote party is linphonec (a user agent neither this project nor its tests wrote),
which sends a 1 kHz tone; the desk phone must get linphone's BYE, the mobile the tone.
A remote party that refuses (SIPp answering 420) leaves the desk call as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.sip.server import SipServer
from tests.sip import sipp_xml
from tests.sip.b2bua import RtpRecorder, SipLog, portal_on_kamailio, tags, tone_share
from tests.sip.callers import Step, scenario
from tests.sip.conftest import ERIKA, start_server
from tests.sip.linphone import LINPHONEC, Linphone, write_tone
from tests.sip.peers import (
    HOST,
    Kamailio,
    SippProcess,
    eventually,
    free_udp_port,
    listening,
    sipp_popen,
)
from tests.sip.test_e2e import ended_cleanly, needs_kamailio_and_sipp, registered

pytestmark = [needs_kamailio_and_sipp, pytest.mark.timeout(120)]
needs_linphone = pytest.mark.skipif(LINPHONEC is None, reason="needs linphonec (linphone-cli)")

# The desk phone 1001: calls [ruri] through the proxy, then waits (up to 60 s) for the
# BYE that ends its call when the remote party leaves it for the portal.
DESK_PHONE = sipp_xml.user_agent("Desk", "1001")
DESK = (
    sipp_xml.head("desk phone, replaced")
    + sipp_xml.invite(
        DESK_PHONE,
        "[ruri]",
        body=sipp_xml.sdp("desk 1 1", "[media_port] RTP/AVP 0 8", sipp_xml.PCMU, sipp_xml.PCMA),
    )
    + sipp_xml.provisional("100", "180", "183")
    + sipp_xml.tag("recv", response="200", rrs="true")
    + sipp_xml.ack(DESK_PHONE, contact=False)
    + sipp_xml.bye_answered(timeout="60000")
    + sipp_xml.end()
)

# A remote party that takes the desk call but refuses to be taken over: 200 to the
# first INVITE, 420 Bad Extension to an INVITE with Replaces (as a UA without RFC 3891
# does with Require: replaces); stays in the desk call until its BYE.
REFUSING_REMOTE = (
    sipp_xml.head("remote party refusing Replaces")
    + """  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="Replaces:" search_in="msg" check_it="false" assign_to="replaces"/>
    </action>
  </recv>
"""
    + sipp_xml.tag("nop", test="replaces", next="refuse")
    + sipp_xml.response(
        "200 OK",
        "Contact: <sip:remote@[local_ip]:[local_port]>",
        to_tag=sipp_xml.UAS_TAG,
        record_route=True,
        body=sipp_xml.sdp("remote 1 1", "[media_port] RTP/AVP 0", sipp_xml.PCMU),
    )
    + sipp_xml.tag("recv", request="ACK")
    + sipp_xml.bye_answered(timeout="60000")
    + sipp_xml.tag("nop", next="end")
    + sipp_xml.tag("label", id="refuse")
    + sipp_xml.response(
        "420 Bad Extension", "Unsupported: replaces", to_tag="[pid]SIPpTag02[call_number]"
    )
    + sipp_xml.tag("recv", request="ACK")
    + sipp_xml.tag("label", id="end")
    + sipp_xml.end()
)

PIN_AND_PULL: list[Step] = [("pause", 800), ("keys", "4711#"), ("pause", 300), ("keys", "*11")]


@pytest.fixture
def kamailio() -> Iterator[Kamailio]:
    with Kamailio() as proxy:
        yield proxy


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    return write_tone(tmp_path / "tone.wav", 3.0, 1000.0)


def portal(kamailio: Kamailio, portal_dir: Path, *, silent: bool = False) -> SipServer:
    """The portal on Kamailio's call control, registered at it."""
    config = portal_on_kamailio(portal_dir, kamailio.rpc_port, silent=silent)
    server = start_server(
        portal_dir, config.name, registrar=("127.0.0.1", kamailio.port), connect_timeout=5.0
    )
    assert registered(server), kamailio.log()[-2000:]
    return server


def desk_call(tmp_path: Path, kamailio: Kamailio, ruri: str) -> SippProcess:
    """The desk phone 1001 in a call with ``ruri``, confirmed in Kamailio's dialogs."""
    xml = tmp_path / "desk.xml"
    xml.write_text(DESK)
    desk = sipp_popen(xml, kamailio.address, keys={"ruri": ruri}, timeout=90)
    assert eventually(lambda: confirmed(kamailio), 10), kamailio.log()[-2000:]
    return desk


def calls_now(kamailio: Kamailio) -> list[str]:
    """Call-IDs of the answered calls Kamailio knows."""
    return [d["call-id"] for d in confirmed(kamailio)]


def confirmed(kamailio: Kamailio) -> list[dict[str, Any]]:
    """The answered calls Kamailio knows."""
    return [d for d in kamailio.dialogs() if d.get("state") == 4]


def mobile(tmp_path: Path, kamailio: Kamailio, steps: list[Step], sink: RtpRecorder) -> SippProcess:
    """Erika's mobile calling the portal through Kamailio, doing ``steps``, then BYE."""
    xml = tmp_path / "mobile.xml"
    xml.write_text(scenario([*steps, ("hangup",)], "bye"))
    keys = {"caller": ERIKA, "sink_port": str(sink.port), "codec_pt": "8"}
    return sipp_popen(xml, kamailio.address, service="portal", keys=keys, timeout=60)


@needs_linphone
def test_erika_pulls_her_desk_call_from_linphone(
    kamailio: Kamailio, portal_dir: Path, tmp_path: Path, tone: Path
) -> None:
    server = portal(kamailio, portal_dir)
    sent = SipLog(server)
    sink = RtpRecorder()
    with Linphone("remote", audio=tone) as remote:
        desk = desk_call(tmp_path, kamailio, remote.uri)
        try:
            [desk_dialog] = confirmed(kamailio)
            with mobile(tmp_path, kamailio, [*PIN_AND_PULL, ("pause", 4000)], sink) as caller:
                invite = sent.first("INVITE ", timeout=30)
                # Replaces names the desk call as linphone knows it: its own tag is to-tag
                assert tags(invite.header("Replaces")) == {
                    "call-id": desk_dialog["call-id"],
                    "to-tag": desk_dialog["callee"]["tag"],
                    "from-tag": desk_dialog["caller"]["tag"],
                }
                assert invite.header("Require") == "replaces"
                assert invite.first_line == f"INVITE {desk_dialog['callee']['contact']} SIP/2.0"
                desk_result = desk.wait(timeout=2.0)  # linphone's BYE ended the desk call
                assert desk_result.ok and desk_result.successful == 1, "\n".join(
                    [s.first_line for s in sent.sent]
                    + [f"{m.direction} {m.first_line}" for m in remote.sip_messages()]
                )
                ack = sent.first("ACK ", timeout=5)
                relayed = eventually(lambda: tone_packets(sink, ack.at), 5)
                assert relayed, f"no tone from linphone on the mobile ({len(sink.packets)} pkts)"
                assert relayed[0].at - ack.at <= 1.0
                # Kamailio: the desk call is gone; linphone talks to the portal (and the
                # mobile's call to the portal goes on)
                assert eventually(lambda: desk_dialog["call-id"] not in calls_now(kamailio), 5)
                now = confirmed(kamailio)
                remote_calls = [d for d in now if d["call-id"] == invite.header("Call-ID")]
                assert len(remote_calls) == 1 and len(now) == 2, now
                assert not [d for d in now if "1001@" in d["from_uri"] + d["to_uri"]]
                assert server.stats.bridged == 1 and server.stats.ended == {"pulled": 1}
                result = caller.wait()
            assert result.ok, result.describe()
            # the mobile hung up: the portal ended linphone's leg too
            assert eventually(lambda: remote.calls() == [], 5), remote.console()[-2000:]
            assert ended_cleanly(server)
            [bye] = sent.all("BYE ")  # one BYE, to linphone (the mobile sent its own)
            assert f":{remote.port};" in bye.first_line
        finally:
            desk.close()
            sink.close()
            server.stop()


def tone_packets(sink: RtpRecorder, after: float) -> list[Any]:
    """Packets of the remote party's stream (not the portal's prompts) that carry the
    1 kHz tone, from ``after`` on."""
    late = [p for p in sink.packets if p.at >= after - 0.5]
    if not late:
        return []
    prompts = {p.ssrc for p in sink.packets if p.at < after - 0.5}
    theirs = [p for p in late if p.ssrc not in prompts]
    codec = "pcma" if theirs and theirs[0].payload_type == 8 else "pcmu"
    if len(theirs) < 25 or tone_share([p.payload for p in theirs[:50]], codec) < 0.5:
        return []
    return theirs


def test_a_remote_party_refusing_the_pull_leaves_the_desk_call_as_it_was(
    kamailio: Kamailio, portal_dir: Path, tmp_path: Path
) -> None:
    server = portal(kamailio, portal_dir)
    sent = SipLog(server)
    sink = RtpRecorder()
    xml = tmp_path / "remote.xml"
    xml.write_text(REFUSING_REMOTE)
    port = free_udp_port()
    with sipp_popen(xml, None, port=port, timeout=90, calls=2) as remote:
        assert listening(remote)
        desk = desk_call(tmp_path, kamailio, f"sip:remote@{HOST}:{port}")
        try:
            [before] = confirmed(kamailio)
            steps = [*PIN_AND_PULL, ("pause", 7000)]
            with mobile(tmp_path, kamailio, steps, sink) as caller:
                invite = sent.first("INVITE ", timeout=30)
                assert "Replaces" in invite.data
                result = caller.wait()
            assert result.ok, result.describe()  # the caller was never dropped
            assert server.stats.bridged == 0 and server.stats.pulls == 1
            assert desk.popen.poll() is None  # no BYE for the desk phone
            after = confirmed(kamailio)
            assert [d["call-id"] for d in after] == [before["call-id"]]
            assert (after[0]["caller"]["tag"], after[0]["callee"]["tag"]) == (
                before["caller"]["tag"],
                before["callee"]["tag"],
            )
            assert ended_cleanly(server)
        finally:
            desk.close()
            sink.close()
            server.stop()


@needs_linphone
def test_silent_star_11_pulls_with_no_prompt_before_it(
    kamailio: Kamailio, portal_dir: Path, tmp_path: Path, tone: Path
) -> None:
    server = portal(kamailio, portal_dir, silent=True)
    sent = SipLog(server)
    sink = RtpRecorder()
    with Linphone("remote", audio=tone) as remote:
        desk = desk_call(tmp_path, kamailio, remote.uri)
        try:
            with mobile(
                tmp_path, kamailio, [("pause", 300), ("keys", "*11"), ("pause", 3000)], sink
            ) as caller:
                invite = sent.first("INVITE ", timeout=20)
                assert "Replaces" in invite.data
                ack = sent.first("ACK ", timeout=5)
                assert eventually(lambda: tone_packets(sink, ack.at), 5)
                before = [p for p in sink.packets if p.at < invite.at]
                assert before == []  # not one packet of prompt audio before the pull
                assert desk.wait(timeout=2.0).successful == 1
                assert caller.wait().ok
        finally:
            desk.close()
            sink.close()
            server.stop()
