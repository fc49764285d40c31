"""The user agent's dialogs, sans-I/O: incoming calls (UAS), the legs it places (UAC),
in-dialog requests with both tags checked, what it does with bad input, and registration
as a client of its transaction layer. Datagrams and times in; exact datagrams and leg
events out. No socket, thread or sleep."""

from __future__ import annotations

import hashlib
import re

import pytest

from ivr.sip.agent import ANSWER_TIMEOUT, UserAgent
from ivr.sip.legs import (
    IncomingCall,
    InfoReceived,
    LegAcked,
    LegAnswered,
    LegEnded,
    LegProgress,
    NotifyReceived,
    OfferReceived,
    ReferAnswered,
)
from ivr.sip.message import ALLOW
from ivr.sip.registration import Registration
from tests.sip.test_transactions import (
    CALLER_SDP,
    CAPPED,
    OUR_SDP,
    PEER,
    PROXY,
    Address,
    ack_of,
    answered,
    body_of,
    branch_of,
    established,
    events,
    first_line,
    header,
    incoming,
    invite,
    lines_sent,
    new_agent,
    outgoing,
    reply,
    request,
    run,
    run_sent,
    sent,
    tag_of,
    values,
)

BOB: Address = ("10.0.0.7", 5070)
BOB_CONTACT = "Contact: <sip:bob@10.0.0.7:5070>"
NOT_FOUND_481 = "SIP/2.0 481 Call/Transaction Does Not Exist"


def next_sent(agent: UserAgent, limit: float) -> tuple[float, bytes, Address]:
    """Fire the agent's timers one by one until one sends a datagram: when, what, where."""
    assert agent.datagrams_to_send() == []
    while (when := agent.next_timer()) is not None and when <= limit:
        agent.handle_timer(when)
        out = agent.datagrams_to_send()
        if out:
            [(data, address)] = out
            return when, data, address
    raise AssertionError(f"nothing sent by {limit}")


def kinds(agent: UserAgent) -> list[str]:
    """The class names of the agent's events so far (drained)."""
    return [type(event).__name__ for event in events(agent)]


# === incoming calls (UAS) ==================================================================
def test_an_incoming_invite_gets_100_at_once_and_one_incoming_call() -> None:
    agent = new_agent()
    data = invite(extra=("Record-Route: <sip:10.0.0.9;lr>",))
    agent.receive_datagram(data, PEER, 0.0)
    [(trying, address)] = sent(agent)
    assert address == PEER
    assert first_line(trying) == "SIP/2.0 100 Trying"
    assert header(trying, "Via") == "SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-inv1"
    assert header(trying, "From") == "<sip:alice@10.0.0.2>;tag=caller1"
    assert header(trying, "To") == "<sip:portal@10.0.0.1>"  # no tag on a 100
    assert header(trying, "Call-ID") == "call-1" and header(trying, "CSeq") == "1 INVITE"
    assert values(trying, "Record-Route") == []  # only 2xx carry it back
    [event] = events(agent)
    assert isinstance(event, IncomingCall)
    leg = event.leg
    assert leg.incoming and leg.call_id == "call-1" and leg.state == "early"
    assert leg.invite is not None and leg.invite.caller == "alice"
    assert leg.invite.body == CALLER_SDP.encode()
    assert agent.legs == {"call-1": leg}


def test_all_vias_are_copied_into_responses() -> None:
    agent = new_agent()
    data = invite().replace(
        b"Max-Forwards: 70", b"Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-p1\r\nMax-Forwards: 70"
    )
    agent.receive_datagram(data, PEER, 0.0)
    [(trying, _)] = sent(agent)
    assert values(trying, "Via") == [
        "SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-inv1",
        "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-p1",
    ]


def test_answer_sends_200_with_sdp_contact_and_to_tag() -> None:
    agent = new_agent()
    leg = incoming(agent, extra=("Record-Route: <sip:10.0.0.9;lr>",))
    agent.answer(leg, OUR_SDP, 1.0)
    [(ok, address)] = sent(agent)
    assert address == PEER
    assert first_line(ok) == "SIP/2.0 200 OK"
    assert header(ok, "To") == f"<sip:portal@10.0.0.1>;tag={leg.local_tag}"
    assert header(ok, "Contact") == "<sip:portal@10.0.0.1:5060>" == agent.contact
    assert header(ok, "Allow") == ALLOW
    assert header(ok, "Record-Route") == "<sip:10.0.0.9;lr>"
    assert header(ok, "Content-Type") == "application/sdp"
    assert header(ok, "Content-Length") == str(len(OUR_SDP))
    assert body_of(ok) == OUR_SDP
    assert leg.state == "confirmed" and leg.local_sdp == OUR_SDP
    assert leg.dialog is not None and leg.dialog.local_tag == leg.local_tag
    assert leg.dialog.remote_tag == "caller1"
    assert events(agent) == []


def test_the_ack_reports_leg_acked_once() -> None:
    agent = new_agent()
    leg, ok = answered(agent)
    agent.receive_datagram(ack_of(ok), PEER, 0.25)
    [acked] = events(agent)
    assert isinstance(acked, LegAcked) and acked.leg is leg and leg.acked
    agent.receive_datagram(ack_of(ok), PEER, 0.5)  # the ACK again
    agent.receive_datagram(ack_of(ok, branch="z9hG4bK-ack2"), PEER, 0.75)
    assert events(agent) == [] and sent(agent) == []


def test_an_ack_with_wrong_tags_is_not_the_ack() -> None:
    agent = new_agent()
    _leg, ok = answered(agent)
    agent.receive_datagram(request("ACK", branch="z9hG4bK-a", to_tag="other"), PEER, 0.25)
    bad_from = request("ACK", branch="z9hG4bK-b", from_tag="x", to_tag=tag_of(header(ok, "To")))
    agent.receive_datagram(bad_from, PEER, 0.25)
    assert events(agent) == [] and sent(agent) == []
    assert run(agent, 0.5) == [(0.5, "SIP/2.0 200 OK")]  # still retransmitted


@pytest.mark.parametrize("method", ["BYE", "INFO"])
@pytest.mark.parametrize("wrong", ["from_tag", "to_tag", "call_id"])
def test_an_in_dialog_request_with_a_wrong_tag_is_481_and_no_event(method: str, wrong: str) -> None:
    agent = new_agent()
    leg, tag = established(agent)
    fields = {"from_tag": "caller1", "to_tag": tag, "call_id": "call-1"}
    fields[wrong] = "someone-else"
    data = request(
        method,
        branch=f"z9hG4bK-{method}",
        cseq=2,
        body="Signal=5\r\nDuration=160\r\n" if method == "INFO" else "",
        content_type="application/dtmf-relay",
        **fields,  # type: ignore[arg-type]
    )
    agent.receive_datagram(data, PEER, 1.0)
    [(response, address)] = sent(agent)
    assert first_line(response) == NOT_FOUND_481 and address == PEER
    assert header(response, "CSeq") == f"2 {method}"
    assert events(agent) == []
    assert leg.state == "confirmed" and agent.legs == {"call-1": leg}


def test_a_bye_in_the_dialog_ends_the_leg() -> None:
    agent = new_agent()
    leg, tag = established(agent)
    agent.receive_datagram(request("BYE", branch="z9hG4bK-bye", to_tag=tag, cseq=2), PEER, 3.0)
    [(ok, address)] = sent(agent)
    assert first_line(ok) == "SIP/2.0 200 OK" and address == PEER
    assert header(ok, "To") == f"<sip:portal@10.0.0.1>;tag={tag}"
    [ended] = events(agent)
    assert isinstance(ended, LegEnded) and ended.reason == "bye" and ended.leg is leg
    assert leg.ended and agent.legs == {}


def test_an_info_in_the_dialog_is_reported_with_its_body() -> None:
    agent = new_agent()
    leg, tag = established(agent)
    body = "Signal=5\r\nDuration=160\r\n"
    data = request(
        "INFO",
        branch="z9hG4bK-info",
        to_tag=tag,
        cseq=2,
        body=body,
        content_type="application/dtmf-relay",
    )
    agent.receive_datagram(data, PEER, 2.0)
    assert lines_sent(agent) == ["SIP/2.0 200 OK"]
    [info] = events(agent)
    assert isinstance(info, InfoReceived) and info.leg is leg
    assert info.content_type == "application/dtmf-relay" and info.body == body.encode()
    agent.receive_datagram(data, PEER, 2.5)  # retransmitted: the 200 again, no event
    assert lines_sent(agent) == ["SIP/2.0 200 OK"] and events(agent) == []


def test_a_reinvite_gets_200_with_the_legs_sdp_and_offer_received() -> None:
    agent = new_agent()
    leg, tag = established(agent)
    offer = CALLER_SDP.replace("40000", "40002")
    data = request("INVITE", branch="z9hG4bK-re1", to_tag=tag, cseq=2, body=offer)
    agent.receive_datagram(data, PEER, 5.0)
    [(ok, address)] = sent(agent)
    assert first_line(ok) == "SIP/2.0 200 OK" and address == PEER
    assert header(ok, "CSeq") == "2 INVITE"
    assert header(ok, "To") == f"<sip:portal@10.0.0.1>;tag={tag}"
    assert header(ok, "Contact") == agent.contact
    assert body_of(ok) == OUR_SDP
    [offered] = events(agent)
    assert isinstance(offered, OfferReceived) and offered.leg is leg
    assert offered.request.body == offer.encode()
    assert leg.state == "confirmed"


def test_a_reinvite_with_wrong_tags_is_481() -> None:
    agent = new_agent()
    established(agent)
    data = request("INVITE", branch="z9hG4bK-re1", to_tag="nope", cseq=2, body=CALLER_SDP)
    agent.receive_datagram(data, PEER, 5.0)
    assert lines_sent(agent) == [NOT_FOUND_481]
    assert events(agent) == []


def test_the_ack_of_a_reinvite_stops_its_200() -> None:
    agent = new_agent()
    _leg, tag = established(agent)
    data = request("INVITE", branch="z9hG4bK-re1", to_tag=tag, cseq=2, body=CALLER_SDP)
    agent.receive_datagram(data, PEER, 5.0)
    [(ok, _)] = sent(agent)
    events(agent)
    agent.receive_datagram(ack_of(ok, branch="z9hG4bK-re1ack", cseq=2), PEER, 5.25)
    assert run(agent, 60.0) == []


def test_an_invite_for_an_existing_call_id_on_another_branch_is_482() -> None:
    agent = new_agent()
    leg = incoming(agent)
    agent.receive_datagram(invite(branch="z9hG4bK-loop"), PEER, 0.5)
    [(loop, address)] = sent(agent)
    assert first_line(loop).startswith("SIP/2.0 482 ") and address == PEER  # phrase: see REASONS
    assert header(loop, "Via") == "SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-loop"
    assert tag_of(header(loop, "To")) not in ("", leg.local_tag)
    assert events(agent) == [] and agent.legs == {"call-1": leg}


def test_options_gets_200_with_allow() -> None:
    agent = new_agent()
    agent.receive_datagram(request("OPTIONS", call_id="ping", branch="z9hG4bK-o"), PEER, 0.0)
    [(ok, address)] = sent(agent)
    assert first_line(ok) == "SIP/2.0 200 OK" and address == PEER
    assert header(ok, "Allow") == ALLOW
    assert header(ok, "Accept") == "application/sdp"
    assert tag_of(header(ok, "To")) != ""
    assert events(agent) == [] and agent.legs == {}


@pytest.mark.parametrize("method", ["UPDATE", "SUBSCRIBE", "MESSAGE", "PRACK"])
def test_an_unsupported_method_gets_405_with_allow(method: str) -> None:
    agent = new_agent()
    agent.receive_datagram(request(method, call_id="x", branch="z9hG4bK-u"), PEER, 0.0)
    [(refusal, _)] = sent(agent)
    assert first_line(refusal) == "SIP/2.0 405 Method Not Allowed"
    assert header(refusal, "Allow") == ALLOW
    assert method not in ALLOW.split(", ")
    assert events(agent) == []


def test_a_refused_refer_is_not_listed_in_allow() -> None:
    agent = new_agent()
    agent.receive_datagram(request("REFER", call_id="x", branch="z9hG4bK-r"), PEER, 0.0)
    [(response, _)] = sent(agent)
    if first_line(response) == "SIP/2.0 405 Method Not Allowed":
        assert "REFER" not in header(response, "Allow").split(", ")


def test_an_unknown_method_gets_an_answer() -> None:
    agent = new_agent()
    agent.receive_datagram(request("PUBLISH", call_id="x", branch="z9hG4bK-p"), PEER, 0.0)
    assert lines_sent(agent) in (
        ["SIP/2.0 405 Method Not Allowed"],
        ["SIP/2.0 501 Not Implemented"],
    )


def test_notify_in_the_dialog_is_200_outside_481() -> None:
    agent = new_agent()
    leg, tag = established(agent)
    agent.receive_datagram(request("NOTIFY", branch="z9hG4bK-n1", to_tag=tag, cseq=2), PEER, 1.0)
    agent.receive_datagram(request("NOTIFY", branch="z9hG4bK-n2", call_id="no"), PEER, 1.0)
    assert lines_sent(agent) == ["SIP/2.0 200 OK", NOT_FOUND_481]
    [notify] = events(agent)  # the one in the dialog is reported (a REFER's progress)
    assert isinstance(notify, NotifyReceived) and notify.leg is leg


def test_an_incoming_call_not_answered_in_32s_gets_500_and_leg_ended() -> None:
    agent = new_agent()
    leg = incoming(agent, now=2.0)
    assert run(agent, 2.0 + ANSWER_TIMEOUT - 0.25) == [] and events(agent) == []
    assert run(agent, 34.0) == [(34.0, "SIP/2.0 500 Server Internal Error")]
    [ended] = events(agent)
    assert isinstance(ended, LegEnded) and ended.reason == "unanswered" and ended.leg is leg
    assert leg.ended and agent.legs == {}
    assert run(agent, 35.0) == [(34.5, "SIP/2.0 500 Server Internal Error")]  # Timer G
    agent.receive_datagram(request("ACK", to_tag=leg.local_tag), PEER, 35.0)
    assert run(agent, 100.0) == [] and events(agent) == []


def test_answering_in_time_cancels_the_unanswered_guard() -> None:
    agent = new_agent()
    leg = incoming(agent)
    assert run(agent, 31.75) == []
    agent.answer(leg, OUR_SDP, 31.75)
    [(ok, _)] = sent(agent)
    agent.receive_datagram(ack_of(ok), PEER, 31.875)
    assert kinds(agent) == ["LegAcked"]
    assert run(agent, 100.0) == [] and events(agent) == []  # no 500, no LegEnded
    assert leg.state == "confirmed"


def test_an_ack_after_our_bye_still_stops_the_200() -> None:
    agent = new_agent()
    leg, ok = answered(agent)
    agent.hang_up(leg, 0.125)
    sent(agent)
    agent.receive_datagram(ack_of(ok), PEER, 0.25)
    assert lines_sent(agent) == ["BYE sip:alice@10.0.0.2:5062 SIP/2.0"]  # now, not before
    assert [line for _, line in run(agent, 40.0) if line == "SIP/2.0 200 OK"] == []


def test_hang_up_before_the_ack_sends_bye_once_acked() -> None:
    agent = new_agent()
    leg, ok = answered(agent)
    agent.hang_up(leg, 0.125)
    assert sent(agent) == []
    agent.receive_datagram(ack_of(ok), PEER, 0.25)
    assert lines_sent(agent) == ["BYE sip:alice@10.0.0.2:5062 SIP/2.0"]


def test_hang_up_before_answering_is_480() -> None:
    agent = new_agent()
    leg = incoming(agent)
    agent.hang_up(leg, 1.0)
    assert lines_sent(agent) == ["SIP/2.0 480 Temporarily Unavailable"]
    assert events(agent) == [] and leg.ended and agent.legs == {}


def test_hang_up_of_an_incoming_call_uses_its_record_route() -> None:
    agent = new_agent()
    leg = incoming(agent, extra=("Record-Route: <sip:10.0.0.9:5080;lr>, <sip:10.0.0.8;lr>",))
    agent.answer(leg, OUR_SDP, 0.0)
    [(ok, _)] = sent(agent)
    agent.receive_datagram(ack_of(ok), PEER, 0.25)
    events(agent)
    agent.hang_up(leg, 10.0)
    [(bye, address)] = sent(agent)
    assert address == ("10.0.0.9", 5080)
    assert first_line(bye) == "BYE sip:alice@10.0.0.2:5062 SIP/2.0"
    assert values(bye, "Route") == ["<sip:10.0.0.9:5080;lr>", "<sip:10.0.0.8;lr>"]
    assert header(bye, "From") == f"<sip:portal@10.0.0.1>;tag={leg.local_tag}"
    assert header(bye, "To") == "<sip:alice@10.0.0.2>;tag=caller1"
    assert header(bye, "Call-ID") == "call-1"
    assert leg.ended and agent.legs == {}
    agent.receive_datagram(reply(bye, 200), ("10.0.0.9", 5080), 10.25)
    assert sent(agent) == [] and events(agent) == [] and agent.stats.stray_responses == 0


def test_a_from_with_a_parameter_after_the_tag_still_matches_the_dialog() -> None:
    agent = new_agent()
    agent.receive_datagram(invite().replace(b";tag=caller1", b";tag=caller1;epid=x1"), PEER, 0.0)
    sent(agent)
    [event] = events(agent)
    assert isinstance(event, IncomingCall)
    agent.answer(event.leg, OUR_SDP, 0.0)
    [(ok, _)] = sent(agent)
    tag = tag_of(header(ok, "To"))
    ack = ack_of(ok).replace(b";tag=caller1", b";tag=caller1;epid=x1")
    agent.receive_datagram(ack, PEER, 0.25)
    assert kinds(agent) == ["LegAcked"]
    bye = request("BYE", branch="z9hG4bK-bye", to_tag=tag, cseq=2)
    agent.receive_datagram(bye.replace(b";tag=caller1", b";tag=caller1;epid=x1"), PEER, 1.0)
    assert lines_sent(agent) == ["SIP/2.0 200 OK"]


def test_answering_a_cancelled_call_does_nothing() -> None:
    agent = new_agent()
    leg = incoming(agent)
    agent.receive_datagram(request("CANCEL", cseq_method="CANCEL"), PEER, 1.0)
    sent(agent)
    assert kinds(agent) == ["LegEnded"]
    agent.answer(leg, OUR_SDP, 1.5)  # the runtime had not seen the LegEnded yet
    agent.hang_up(leg, 2.0)
    assert sent(agent) == []
    assert leg.ended


# === legs the agent places (UAC) ==============================================================
def test_invite_is_well_formed_and_goes_to_the_destination() -> None:
    agent = new_agent()
    leg = agent.invite(
        "sip:bob@example.com",
        PROXY,
        0.0,
        from_='"Portal" <sip:portal@10.0.0.1>',
        to="<sip:bob@example.com>",
        sdp=OUR_SDP,
        headers=[("Replaces", "abc;to-tag=1;from-tag=2")],
        owner="mine",
    )
    [(data, address)] = sent(agent)
    assert address == PROXY
    assert first_line(data) == "INVITE sip:bob@example.com SIP/2.0"
    assert re.fullmatch(
        r"SIP/2\.0/UDP 10\.0\.0\.1:5060;branch=z9hG4bK[0-9a-f]{20};rport", header(data, "Via")
    )
    assert header(data, "Max-Forwards") == "70"
    assert header(data, "From") == f'"Portal" <sip:portal@10.0.0.1>;tag={leg.local_tag}'
    assert re.fullmatch(r"[0-9a-f]{12}", leg.local_tag)
    assert header(data, "To") == "<sip:bob@example.com>"  # no tag
    assert header(data, "Call-ID") == leg.call_id and leg.call_id.endswith("@10.0.0.1")
    assert re.fullmatch(r"\d+ INVITE", header(data, "CSeq"))
    assert header(data, "Contact") == "<sip:portal@10.0.0.1:5060>"
    assert header(data, "Allow") == ALLOW
    assert header(data, "Replaces") == "abc;to-tag=1;from-tag=2"
    assert header(data, "Content-Type") == "application/sdp"
    assert header(data, "Content-Length") == str(len(OUR_SDP))
    assert body_of(data) == OUR_SDP
    assert not leg.incoming and leg.state == "early" and leg.owner == "mine"
    assert agent.legs == {leg.call_id: leg}
    assert events(agent) == []


def test_each_invite_has_its_own_branch_call_id_and_tag() -> None:
    agent = new_agent()
    (_, one), (_, two) = outgoing(agent), outgoing(agent)
    for name in ("Call-ID", "From"):
        assert header(one, name) != header(two, name)
    assert branch_of(one) != branch_of(two)


def test_provisional_responses_are_leg_progress_but_100_is_not() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    agent.receive_datagram(reply(data, 100), PROXY, 0.25)
    assert events(agent) == []
    agent.receive_datagram(reply(data, 180, to_tag="bob1"), PROXY, 0.5)
    agent.receive_datagram(reply(data, 183, to_tag="bob1", body=CALLER_SDP), PROXY, 0.75)
    progress = events(agent)
    assert [(type(e), e.response.status) for e in progress if isinstance(e, LegProgress)] == [
        (LegProgress, 180),
        (LegProgress, 183),
    ]
    assert all(e.leg is leg for e in progress) and len(progress) == 2
    assert sent(agent) == []


def test_a_200_with_record_route_is_acked_along_the_reversed_route_set() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    ok = reply(
        data,
        200,
        to_tag="bob1",
        extra=(
            "Record-Route: <sip:10.0.0.20:5090;lr>",
            "Record-Route: <sip:10.0.0.10:5080;lr>",
            BOB_CONTACT,
        ),
        body=CALLER_SDP,
    )
    agent.receive_datagram(ok, PROXY, 0.25)
    [(ack, address)] = sent(agent)
    assert address == ("10.0.0.10", 5080)  # the proxy nearest us: the last Record-Route
    assert first_line(ack) == "ACK sip:bob@10.0.0.7:5070 SIP/2.0"
    assert values(ack, "Route") == ["<sip:10.0.0.10:5080;lr>", "<sip:10.0.0.20:5090;lr>"]
    assert header(ack, "From") == header(data, "From")
    assert header(ack, "To") == "<sip:bob@example.com>;tag=bob1"
    assert header(ack, "Call-ID") == leg.call_id
    assert header(ack, "CSeq") == header(data, "CSeq").replace("INVITE", "ACK")
    assert header(ack, "Contact") == "" and body_of(ack) == b""
    [answer] = events(agent)
    assert isinstance(answer, LegAnswered) and answer.leg is leg
    assert answer.response.body == CALLER_SDP.encode()
    assert leg.state == "confirmed" and leg.dialog is not None
    assert leg.dialog.remote_tag == "bob1" and leg.dialog.local_tag == leg.local_tag

    agent.hang_up(leg, 10.0)
    [(bye, bye_to)] = sent(agent)
    assert bye_to == ("10.0.0.10", 5080)
    assert first_line(bye) == "BYE sip:bob@10.0.0.7:5070 SIP/2.0"
    assert values(bye, "Route") == ["<sip:10.0.0.10:5080;lr>", "<sip:10.0.0.20:5090;lr>"]
    assert header(bye, "To") == "<sip:bob@example.com>;tag=bob1"
    assert header(bye, "From") == header(data, "From")
    cseq = int(header(data, "CSeq").split()[0])
    assert header(bye, "CSeq") == f"{cseq + 1} BYE"
    assert branch_of(bye) not in (branch_of(data), branch_of(ack))
    assert leg.ended and agent.legs == {}
    agent.receive_datagram(reply(bye, 200), ("10.0.0.10", 5080), 10.25)
    assert events(agent) == [] and agent.stats.stray_responses == 0


def test_a_200_with_one_comma_separated_record_route_header() -> None:
    agent = new_agent()
    _leg, data = outgoing(agent)
    rr = "Record-Route: <sip:10.0.0.20:5090;lr>, <sip:10.0.0.10:5080;lr>"
    agent.receive_datagram(reply(data, 200, to_tag="b", extra=(rr, BOB_CONTACT)), PROXY, 0.25)
    [(ack, address)] = sent(agent)
    assert address == ("10.0.0.10", 5080)
    assert values(ack, "Route") == ["<sip:10.0.0.10:5080;lr>", "<sip:10.0.0.20:5090;lr>"]


def test_a_bye_from_the_called_party_ends_an_outgoing_leg() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    agent.receive_datagram(reply(data, 200, to_tag="bob1", extra=(BOB_CONTACT,)), PROXY, 0.25)
    sent(agent)
    events(agent)
    bye = "\r\n".join(
        [
            "BYE sip:portal@10.0.0.1:5060 SIP/2.0",
            "Via: SIP/2.0/UDP 10.0.0.7:5070;branch=z9hG4bK-bobbye",
            "From: <sip:bob@example.com>;tag=bob1",
            f"To: {header(data, 'From')}",
            f"Call-ID: {leg.call_id}",
            "CSeq: 1 BYE",
            "Content-Length: 0",
            "",
            "",
        ]
    ).encode()
    agent.receive_datagram(bye, BOB, 5.0)
    [(ok, address)] = sent(agent)
    assert first_line(ok) == "SIP/2.0 200 OK" and address == BOB
    [ended] = events(agent)
    assert isinstance(ended, LegEnded) and ended.reason == "bye" and ended.leg is leg


def test_hang_up_of_an_early_outgoing_leg_sends_cancel_once_a_1xx_came() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    agent.hang_up(leg, 0.125)
    assert sent(agent) == []
    agent.receive_datagram(reply(data, 100), PROXY, 0.25)
    [(cancel, address)] = sent(agent)
    assert address == PROXY and first_line(cancel) == "CANCEL sip:bob@example.com SIP/2.0"
    assert branch_of(cancel) == branch_of(data)
    agent.hang_up(leg, 0.375)  # again: nothing more
    assert sent(agent) == [] and events(agent) == []


def test_a_2xx_from_a_second_fork_is_acked_and_byed() -> None:
    agent = new_agent()
    _leg, data = outgoing(agent)
    agent.receive_datagram(reply(data, 200, to_tag="bob1", extra=(BOB_CONTACT,)), PROXY, 0.25)
    sent(agent)
    assert kinds(agent) == ["LegAnswered"]
    other = reply(data, 200, to_tag="bob2", extra=("Contact: <sip:bob@10.0.0.8:5070>",))
    agent.receive_datagram(other, PROXY, 0.375)
    out = sent(agent)
    assert [(first_line(d), tag_of(header(d, "To")), a) for d, a in out] == [
        ("ACK sip:bob@10.0.0.8:5070 SIP/2.0", "bob2", ("10.0.0.8", 5070)),
        ("BYE sip:bob@10.0.0.8:5070 SIP/2.0", "bob2", ("10.0.0.8", 5070)),
    ]
    assert events(agent) == []


# === REFER ==================================================================================
def test_refer_is_sent_in_the_dialog_and_its_final_is_refer_answered() -> None:
    agent = new_agent()
    leg, tag = established(agent)
    agent.refer(leg, "sip:sales@example.com", 10.0)
    [(refer, address)] = sent(agent)
    assert address == PEER
    assert first_line(refer) == "REFER sip:alice@10.0.0.2:5062 SIP/2.0"
    assert header(refer, "Refer-To") == "<sip:sales@example.com>"
    assert header(refer, "Referred-By") == agent.contact
    assert header(refer, "From") == f"<sip:portal@10.0.0.1>;tag={tag}"
    assert header(refer, "To") == "<sip:alice@10.0.0.2>;tag=caller1"
    assert header(refer, "Call-ID") == "call-1"
    assert header(refer, "Contact") == agent.contact
    assert leg.dialog is not None and header(refer, "CSeq") == f"{leg.dialog.local_cseq} REFER"
    agent.receive_datagram(reply(refer, 100), PEER, 10.125)
    assert events(agent) == []
    agent.receive_datagram(reply(refer, 202), PEER, 10.25)
    [answer] = events(agent)
    assert isinstance(answer, ReferAnswered) and answer.leg is leg and answer.status == 202
    agent.receive_datagram(reply(refer, 202), PEER, 10.5)  # retransmitted: absorbed
    assert events(agent) == [] and sent(agent) == []


def test_a_refused_refer_reports_its_status() -> None:
    agent = new_agent()
    leg, _tag = established(agent)
    agent.refer(leg, "sip:sales@example.com", 10.0)
    [(refer, _)] = sent(agent)
    agent.receive_datagram(reply(refer, 603), PEER, 10.25)
    assert [(type(e), getattr(e, "status", 0)) for e in events(agent)] == [(ReferAnswered, 603)]


def test_an_unanswered_refer_is_retransmitted_then_answered_408() -> None:
    agent = new_agent()
    leg, _tag = established(agent)
    agent.refer(leg, "sip:sales@example.com", 10.0)
    sent(agent)
    out = run(agent, 60.0)
    assert out == [(10.0 + t, "REFER sip:alice@10.0.0.2:5062 SIP/2.0") for t in CAPPED]
    [answer] = events(agent)
    assert isinstance(answer, ReferAnswered) and answer.status == 408


def test_a_refer_of_an_outgoing_leg_follows_its_route_set() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    rr = ("Record-Route: <sip:10.0.0.10:5080;lr>", BOB_CONTACT)
    agent.receive_datagram(reply(data, 200, to_tag="bob1", extra=rr), PROXY, 0.25)
    sent(agent)
    events(agent)
    agent.refer(leg, "sip:sales@example.com", 2.0)
    [(refer, address)] = sent(agent)
    assert address == ("10.0.0.10", 5080)
    assert first_line(refer) == "REFER sip:bob@10.0.0.7:5070 SIP/2.0"
    assert values(refer, "Route") == ["<sip:10.0.0.10:5080;lr>"]
    assert tag_of(header(refer, "To")) == "bob1"


# === bad input ===================================================================================
@pytest.mark.parametrize(
    "data",
    [
        b"hello",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the SIP port
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"INVITE sip:portal@10.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n",  # no headers
        b"INVITE sip:portal@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-x"
        b"\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:p@c>\r\nCSeq: 1 INVITE\r\n\r\n",  # no Call-ID
        b"SIP/2.0 200 OK\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:p@c>\r\nCall-ID: x\r\n"
        b"CSeq: 1 OPTIONS\r\n\r\n",  # a response without Via
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx\r\nCall-ID: x\r\n\r\n",
        b"INVITE sip:portal@10.0.0.1 SIP/2.0\r\n\xff\xfe: \xff\r\n\r\n",  # not UTF-8
        b"\x00" * 100,
        b"SIP/2.0 200 OK\r\n" + b"X-Pad: " + b"a" * 70000 + b"\r\n\r\n",  # oversized
    ],
    ids=[
        "text",
        "tls",
        "http",
        "no-headers",
        "no-call-id",
        "response-no-via",
        "response-no-cseq",
        "not-utf8",
        "zeros",
        "oversized",
    ],
)
def test_garbage_counts_as_bad_datagrams_and_sends_nothing(data: bytes) -> None:
    agent = new_agent()
    agent.receive_datagram(data, PEER, 0.0)
    assert agent.stats.bad_datagrams == 1 and agent.stats.stray_responses == 0
    assert sent(agent) == [] and events(agent) == [] and agent.legs == {}
    assert agent.next_timer() is None


@pytest.mark.parametrize("data", [b"\r\n\r\n", b"\r\n", b"\0\0\0\0"])
def test_keepalives_are_neither_bad_nor_answered(data: bytes) -> None:
    agent = new_agent()
    agent.receive_datagram(data, PEER, 0.0)
    assert agent.stats.bad_datagrams == 0
    assert sent(agent) == [] and events(agent) == []


def test_garbage_between_messages_does_not_disturb_a_call() -> None:
    agent = new_agent()
    leg, ok = answered(agent)
    agent.receive_datagram(b"garbage", PEER, 0.125)
    agent.receive_datagram(ack_of(ok), PEER, 0.25)
    assert kinds(agent) == ["LegAcked"] and leg.state == "confirmed"
    assert agent.stats.bad_datagrams == 1


def test_responses_matching_no_transaction_are_stray() -> None:
    agent = new_agent()
    _leg, data = outgoing(agent)
    other_branch = reply(data, 200, to_tag="b").replace(
        branch_of(data).encode(), b"z9hG4bK-someone-else"
    )
    agent.receive_datagram(other_branch, PROXY, 0.25)
    other_method = reply(data, 200, to_tag="b").replace(b" INVITE\r\n", b" BYE\r\n")
    agent.receive_datagram(other_method, PROXY, 0.25)
    agent.receive_datagram(reply(request("OPTIONS"), 200), PROXY, 0.25)
    assert agent.stats.stray_responses == 3 and agent.stats.bad_datagrams == 0
    assert sent(agent) == [] and events(agent) == []
    assert run(agent, 0.5) == [(0.5, "INVITE sip:bob@example.com SIP/2.0")]  # still calling


# === registration ==================================================================================
REGISTRAR: Address = ("10.0.0.9", 5060)
CHALLENGE = 'WWW-Authenticate: Digest realm="example.com", nonce="n0nce", algorithm=MD5'


def registration(agent: UserAgent, *, expires: int = 120, keepalive: float = 0.0) -> Registration:
    return Registration(
        agent,
        registrar=REGISTRAR,
        user="portal",
        password="secret",
        expires=expires,
        keepalive=keepalive,
    )


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def register(agent: UserAgent) -> bytes:
    """The one REGISTER the agent has to send now."""
    [(data, address)] = sent(agent)
    assert first_line(data) == "REGISTER sip:10.0.0.9 SIP/2.0" and address == REGISTRAR
    return data


def registered(agent: UserAgent, reg: Registration, *, expires: int = 60) -> bytes:
    """Start ``reg`` at 0: REGISTER, 401, authenticated REGISTER, 200 at 0.5."""
    reg.start(0.0)
    first = register(agent)
    agent.receive_datagram(reply(first, 401, to_tag="r1", extra=(CHALLENGE,)), REGISTRAR, 0.25)
    second = register(agent)
    contact = f"Contact: <sip:portal@10.0.0.1:5060;transport=UDP>;expires={expires}"
    agent.receive_datagram(reply(second, 200, to_tag="r1", extra=(contact,)), REGISTRAR, 0.5)
    assert reg.state == "registered"
    return second


def test_register_answers_a_digest_challenge_and_refreshes_before_expiry() -> None:
    agent = new_agent()
    reg = registration(agent)
    reg.start(0.0)
    first = register(agent)
    call_id = header(first, "Call-ID")
    assert re.fullmatch(r"[0-9a-f]{32}@10\.0\.0\.1", call_id)
    assert call_id != hashlib.sha256(b"1").hexdigest()[:32] + "@10.0.0.1:5060"  # pyVoIP's
    assert re.fullmatch(
        r"SIP/2\.0/UDP 10\.0\.0\.1:5060;branch=z9hG4bK\w+;rport", header(first, "Via")
    )
    assert header(first, "Expires") == "120" and header(first, "Authorization") == ""
    assert reg.state == "registering"

    agent.receive_datagram(reply(first, 401, to_tag="r1", extra=(CHALLENGE,)), REGISTRAR, 0.25)
    second = register(agent)
    assert header(second, "Call-ID") == call_id
    assert branch_of(second) != branch_of(first)
    assert int(header(second, "CSeq").split()[0]) > int(header(first, "CSeq").split()[0])
    digest = md5(
        f"{md5('portal:example.com:secret')}:n0nce:{md5('REGISTER:sip:10.0.0.9;transport=UDP')}"
    )
    assert header(second, "Authorization") == (
        'Digest username="portal",realm="example.com",nonce="n0nce",'
        f'uri="sip:10.0.0.9;transport=UDP",response="{digest}",algorithm=MD5'
    )
    contact = "Contact: <sip:portal@10.0.0.1:5060;transport=UDP>;expires=60"
    agent.receive_datagram(reply(second, 200, to_tag="r1", extra=(contact,)), REGISTRAR, 0.5)
    assert reg.state == "registered" and reg.registrations == 1 and reg.failures == 0
    assert sent(agent) == [] and events(agent) == []

    out = run_sent(agent, 48.5)  # refresh at min(0.8·60, 60 - 5) = 48 s after the 200
    assert [(when, first_line(data)) for when, data, _ in out] == [
        (48.5, "REGISTER sip:10.0.0.9 SIP/2.0")
    ]
    third = out[0][1]
    assert header(third, "Call-ID") not in ("", call_id)
    assert re.fullmatch(r"[0-9a-f]{32}@10\.0\.0\.1", header(third, "Call-ID"))


def test_the_expires_header_sets_the_refresh_time() -> None:
    agent = new_agent()
    reg = registration(agent)
    reg.start(0.0)
    first = register(agent)
    agent.receive_datagram(reply(first, 200, to_tag="r", extra=("Expires: 100",)), REGISTRAR, 0.25)
    assert reg.state == "registered"
    assert run(agent, 80.25) == [(80.25, "REGISTER sip:10.0.0.9 SIP/2.0")]  # 0.8 · 100


def test_every_register_attempt_has_a_new_random_call_id() -> None:
    agent = new_agent()
    call_ids = set()
    for _ in range(3):
        reg = registration(agent)
        reg.start(0.0)
        call_ids.add(header(register(agent), "Call-ID"))
        reg.stop(0.0)
    assert len(call_ids) == 3


def test_a_200_for_another_branch_is_ignored() -> None:
    agent = new_agent()
    reg = registration(agent)
    reg.start(0.0)
    first = register(agent)
    forged = reply(first, 200, to_tag="r").replace(branch_of(first).encode(), b"z9hG4bKforged")
    agent.receive_datagram(forged, REGISTRAR, 0.25)
    assert reg.state == "registering" and agent.stats.stray_responses == 1
    agent.receive_datagram(reply(first, 200, to_tag="r"), REGISTRAR, 0.375)
    assert reg.state == "registered"


def test_a_second_challenge_is_a_failure_retried_with_backoff() -> None:
    agent = new_agent()
    reg = registration(agent)
    reg.start(0.0)
    first = register(agent)
    agent.receive_datagram(reply(first, 401, to_tag="r", extra=(CHALLENGE,)), REGISTRAR, 0.25)
    second = register(agent)
    agent.receive_datagram(reply(second, 401, to_tag="r", extra=(CHALLENGE,)), REGISTRAR, 0.5)
    assert reg.state == "unregistered" and reg.failures == 1 and sent(agent) == []
    assert run(agent, 1.5) == [(1.5, "REGISTER sip:10.0.0.9 SIP/2.0")]  # 1 s later
    assert reg.state == "registering"


def test_a_refusal_backs_off_doubling() -> None:
    agent = new_agent()
    reg = registration(agent)
    reg.start(0.0)
    data, now = register(agent), 0.0
    gaps: list[float] = []
    for _ in range(4):
        now += 0.25
        agent.receive_datagram(reply(data, 403, to_tag="r"), REGISTRAR, now)
        when, data, address = next_sent(agent, now + 100.0)
        assert first_line(data) == "REGISTER sip:10.0.0.9 SIP/2.0" and address == REGISTRAR
        gaps.append(when - now)
        now = when
    assert gaps == [1.0, 2.0, 4.0, 8.0]
    assert reg.failures == 4 and reg.state == "registering"


def test_no_answer_from_the_registrar_is_retried_after_timer_f() -> None:
    agent = new_agent()
    reg = registration(agent)
    reg.start(0.0)
    register(agent)
    out = run(agent, 33.0)
    assert [when for when, _ in out] == [*CAPPED, 33.0]  # Timer E, then F at 32 + 1 s backoff
    assert reg.failures == 1 and reg.state == "registering"


def test_a_lost_keepalive_registers_again() -> None:
    agent = new_agent()
    reg = registration(agent, expires=3600, keepalive=30.0)
    registered(agent, reg, expires=3600)
    assert run(agent, 33.5) == [
        (30.5, "OPTIONS sip:10.0.0.9:5060 SIP/2.0"),
        (31.0, "OPTIONS sip:10.0.0.9:5060 SIP/2.0"),  # Timer E
        (32.0, "OPTIONS sip:10.0.0.9:5060 SIP/2.0"),
        (33.5, "REGISTER sip:10.0.0.9 SIP/2.0"),  # lost at 32.5, then 1 s backoff
    ]
    assert reg.state == "registering" and reg.failures == 1


def test_an_answered_keepalive_keeps_the_binding() -> None:
    agent = new_agent()
    reg = registration(agent, expires=3600, keepalive=30.0)
    registered(agent, reg, expires=3600)
    when, options, address = next_sent(agent, 100.0)
    assert (when, first_line(options), address) == (
        30.5,
        "OPTIONS sip:10.0.0.9:5060 SIP/2.0",
        REGISTRAR,
    )
    agent.receive_datagram(reply(options, 200, to_tag="p"), REGISTRAR, 30.75)
    assert run(agent, 60.75) == [(60.75, "OPTIONS sip:10.0.0.9:5060 SIP/2.0")]
    assert reg.state == "registered"


def test_register_lines_end_in_crlf() -> None:
    agent = new_agent()
    reg = registration(agent, keepalive=30.0)
    second = registered(agent, reg)
    reg.stop(1.0)
    deregister = register(agent)
    reg2 = registration(agent)
    reg2.start(2.0)
    first = register(agent)
    for data in (first, second, deregister):
        head = data.split(b"\r\n\r\n", 1)[0]
        assert head.count(b"\n") == head.count(b"\r\n"), head


def test_stop_removes_the_binding_with_expires_0() -> None:
    agent = new_agent()
    reg = registration(agent, keepalive=30.0)
    registered(agent, reg)
    reg.stop(5.0)
    [(data, address)] = sent(agent)
    assert first_line(data) == "REGISTER sip:10.0.0.9 SIP/2.0" and address == REGISTRAR
    assert header(data, "Expires") == "0"
    assert reg.state == "stopped"
    assert run(agent, 1000.0) == [(5.0 + t, "REGISTER sip:10.0.0.9 SIP/2.0") for t in CAPPED]
