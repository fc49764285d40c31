"""Call-backs end to end through Kamailio: Erika's mobile (SIPp) keys her PIN and a
number; the portal calls the number with its own identity — the displayed name and the
public number in From and P-Asserted-Identity — and bridges it to the mobile.

The called party is a SIPp UAS that checks the identity itself (``ereg check_it``: a
mismatch fails its call), answers, rings, is busy or is cancelled. With ``-rtp_echo`` it
sends back every RTP packet it gets: the mobile's audio returning to the mobile proves
both directions of the bridge.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.sip.server import SipServer
from tests.sip import sipp_xml
from tests.sip.b2bua import RtpRecorder, SipLog, portal_on_kamailio
from tests.sip.callers import PCAPS, Step, scenario
from tests.sip.conftest import ERIKA, start_server
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

NUMBER = "0301234567"  # fictional; dialled as +49301234567
# the portal's identity as examples/portal/kamailio.yaml presents it (regex, XML-quoted)
IDENTITY = "^\\s*&quot;Anywhere Portal Zentrale&quot; &lt;sip:\\+4930123454100@127\\.0\\.0\\.1&gt;"

_INVITE = sipp_xml.head("call-back destination") + (
    f"""  <recv request="INVITE" crlf="true" rrs="true">
    <action>
      <ereg regexp="{IDENTITY};tag=" search_in="hdr" header="From:" check_it="true"
            assign_to="from"/>
      <ereg regexp="{IDENTITY}$" search_in="hdr" header="P-Asserted-Identity:"
            check_it="true" assign_to="pai"/>
      <ereg regexp="^\\s*none$" search_in="hdr" header="Privacy:" check_it="true"
            assign_to="privacy"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="From:" assign_to="peer"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="To:" assign_to="me"/>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="cseq"/>
    </action>
  </recv>
"""
)
# the called party's own requests (its BYE): From and To as the INVITE had them, swapped
CALLEE = sipp_xml.UserAgent(
    f"[$me];tag={sipp_xml.UAS_TAG}",
    "<sip:callee@[local_ip]:[local_port]>",
    rport=False,
    call_id="[last_Call-ID:]",
)
_SDP = sipp_xml.sdp(
    "callee 1 1", "[media_port] RTP/AVP 8 101", sipp_xml.PCMA, sipp_xml.TELEPHONE_EVENT
)
_END = sipp_xml.end("from", "pai", "privacy", "peer", "me", "cseq")


def reply(status: str, sdp: bool = False, **attributes: str) -> str:
    return sipp_xml.response(
        status,
        f"Contact: {CALLEE.contact}",
        to_tag=sipp_xml.UAS_TAG,
        record_route=True,
        body=_SDP if sdp else sipp_xml.NO_BODY,
        **attributes,
    )


def answering(*, hang_up_after_ms: int | None = None) -> str:
    """Rings, answers, then waits for the portal's BYE (or sends its own)."""
    xml = _INVITE + reply("180 Ringing") + sipp_xml.pause(500)
    xml += reply("200 OK", sdp=True, retrans="500")
    xml += sipp_xml.tag("recv", request="ACK")
    if hang_up_after_ms is None:
        xml += sipp_xml.bye_answered(timeout="30000")
    else:
        xml += sipp_xml.pause(hang_up_after_ms)
        xml += sipp_xml.in_dialog(CALLEE, "BYE", 2, to="To: [$peer]")
        xml += sipp_xml.tag("recv", response="200", crlf="true")
    return xml + _END


def ringing_until_cancelled() -> str:
    xml = _INVITE + reply("180 Ringing")
    xml += sipp_xml.tag("recv", request="CANCEL", timeout="30000") + sipp_xml.ok_to_last()
    # the 487 answers the INVITE, whose CSeq the CANCEL's [last_CSeq:] is not
    terminated = reply("487 Request Terminated").replace("[last_CSeq:]", "CSeq: [$cseq] INVITE")
    return xml + terminated + sipp_xml.tag("recv", request="ACK") + _END


def busy() -> str:
    return _INVITE + reply("486 Busy Here") + sipp_xml.tag("recv", request="ACK") + _END


@pytest.fixture
def kamailio_and_port() -> Iterator[tuple[Kamailio, int]]:
    port = free_udp_port()  # the portal's: the proxy keeps its P-Asserted-Identity
    with Kamailio(trusted=f"{HOST}:{port}") as proxy:
        yield proxy, port


class Setup:
    """The portal on Kamailio, the called party (SIPp UAS) and the mobile's audio port."""

    def __init__(self, tmp_path: Path, kamailio: Kamailio, server: SipServer) -> None:
        self.tmp_path, self.kamailio, self.server = tmp_path, kamailio, server
        self.sent = SipLog(server)
        self.sink = RtpRecorder()
        self.states: list[str] = []
        server.driver.engine.listeners.append(lambda _d, _t, _s, dest: self.states.append(dest))

    def callee(self, xml: str, port: int, *, echo: bool = False) -> SippProcess:
        path = self.tmp_path / "callee.xml"
        path.write_text(xml)
        extra = ["-rtp_echo"] if echo else []
        uas = sipp_popen(path, None, port=port, timeout=60, extra=extra)
        assert listening(uas)
        return uas

    def mobile(self, steps: list[Step], expect: str = "bye") -> SippProcess:
        xml = self.tmp_path / "mobile.xml"
        xml.write_text(scenario(steps, expect))
        keys = {"caller": ERIKA, "sink_port": str(self.sink.port), "codec_pt": "8"}
        return sipp_popen(xml, self.kamailio.address, service="portal", keys=keys, timeout=60)


@pytest.fixture
def setup(
    kamailio_and_port: tuple[Kamailio, int], portal_dir: Path, tmp_path: Path
) -> Iterator[tuple[Setup, int]]:
    kamailio, port = kamailio_and_port
    config = portal_on_kamailio(portal_dir, kamailio.rpc_port)
    callee_port = free_udp_port()
    server = start_server(
        portal_dir,
        config.name,
        registrar=(HOST, kamailio.port),
        port=port,
        dial_target=f"sip:{{number}}@{HOST}:{callee_port}",  # relayed by the proxy
    )
    assert registered(server), kamailio.log()[-2000:]
    parts = Setup(tmp_path, kamailio, server)
    yield parts, callee_port
    parts.sink.close()
    server.stop()


#: PIN, the number, and the ~6.5 s of "Sie werden mit 0 3 0 ... verbunden" before the call
DIAL: list[Step] = [("pause", 800), ("keys", "4711#"), ("pause", 300), ("keys", f"{NUMBER}#")]
DIALLED: list[Step] = [*DIAL, ("pause", 7000)]


def test_the_called_party_sees_the_portals_name_and_number_and_both_hear_each_other(
    setup: tuple[Setup, int],
) -> None:
    parts, port = setup
    with parts.callee(answering(), port, echo=True) as callee:
        audio: list[Step] = [("pause", 1000), ("audio", f"{PCAPS}/g711a.pcap"), ("pause", 2000)]
        with parts.mobile([*DIALLED, *audio, ("hangup",)]) as caller:
            invite = parts.sent.first("INVITE sip:+49301234567@", timeout=30)
            assert invite.to == (HOST, parts.kamailio.port)  # through the proxy
            result = caller.wait()
        assert result.ok, result.describe()
        called = callee.wait(timeout=10)  # its identity checks held, the BYE came
    assert called.ok and called.successful == 1, called.describe()
    ack = parts.sent.first("ACK sip:callee@")
    ours = {p.ssrc for p in parts.sink.packets if p.at < ack.at}  # prompts, ringback
    echoed = [p for p in parts.sink.packets if p.at > ack.at and p.ssrc not in ours]
    assert len(echoed) > 50, "the mobile's audio did not come back through the bridge"
    assert {p.payload_type for p in echoed} <= {8, 101}
    assert parts.server.stats.bridged == 1
    assert parts.server.stats.ended == {"dialed": 1, "caller": 1}
    assert "dial" in parts.states
    assert ended_cleanly(parts.server)


def test_the_called_party_hanging_up_ends_the_mobiles_call(setup: tuple[Setup, int]) -> None:
    parts, port = setup
    with parts.callee(answering(hang_up_after_ms=1500), port) as callee:
        with parts.mobile(DIAL, expect="bye") as caller:  # the portal's BYE ends it
            result = caller.wait()
        assert result.ok, result.describe()
        assert callee.wait(timeout=10).ok
    assert parts.server.stats.ended == {"dialed": 1, "remote": 1}
    assert ended_cleanly(parts.server)


def test_hanging_up_while_it_rings_cancels_the_call_back(setup: tuple[Setup, int]) -> None:
    parts, port = setup
    with parts.callee(ringing_until_cancelled(), port) as callee:
        with parts.mobile([*DIALLED, ("pause", 1500), ("hangup",)]) as caller:
            result = caller.wait()
        assert result.ok, result.describe()
        called = callee.wait(timeout=10)  # it got the CANCEL, answered 487, got the ACK
    assert called.ok and called.successful == 1, called.describe()
    assert parts.sent.all("CANCEL sip:+49301234567@")
    ringback = [p for p in parts.sink.packets if p.payload_type == 8]
    assert ringback  # the caller heard something while it rang
    assert parts.server.stats.bridged == 0
    assert ended_cleanly(parts.server)


def test_busy_is_announced_and_the_caller_is_back_in_the_menu(setup: tuple[Setup, int]) -> None:
    parts, port = setup
    with parts.callee(busy(), port) as callee:
        with parts.mobile([*DIALLED, ("pause", 3000), ("hangup",)]) as caller:
            result = caller.wait()
        assert result.ok, result.describe()
        assert callee.wait(timeout=10).ok
    dial = parts.states.index("dial")
    assert parts.states[dial + 1 : dial + 3] == ["dial_busy", "menu"]
    assert parts.server.stats.bridged == 0 and parts.server.stats.dials == 1
    assert ended_cleanly(parts.server)


def test_a_blocked_number_is_never_invited(setup: tuple[Setup, int]) -> None:
    parts, _port = setup
    steps: list[Step] = [*DIAL[:-1], ("keys", "09001234567#"), ("pause", 4000), ("hangup",)]
    with parts.mobile(steps) as caller:
        result = caller.wait()
    assert result.ok, result.describe()
    assert "blocked" in parts.states and "dial" not in parts.states
    assert not parts.sent.all("INVITE ")
    assert eventually(lambda: ended_cleanly(parts.server), 5)
