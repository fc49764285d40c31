"""RFC 3261 §17 transactions over UDP (plus RFC 6026 Timers L and M), sans-I/O: datagrams
and times go in, the exact datagrams sent and the leg events come out. No socket, thread
or sleep: the clock is whatever time the test passes.

The helpers here (datagram builders, ``run``, ``sent``, ``events``) are shared with
``test_agent.py``.
"""

from __future__ import annotations

import pytest

from ivr.sip.agent import UserAgent
from ivr.sip.legs import (
    IncomingCall,
    Leg,
    LegAcked,
    LegAnswered,
    LegEnded,
    LegEvent,
    LegFailed,
    LegProgress,
)
from ivr.sip.message import REASONS, Request, parse, via
from ivr.sip.timers import TimerQueue
from ivr.sip.transaction import TransactionLayer

Address = tuple[str, int]

US: Address = ("10.0.0.1", 5060)
PEER: Address = ("10.0.0.2", 5062)
PROXY: Address = ("10.0.0.9", 5060)
CALLER_SDP = (
    "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)
OUR_SDP = (
    b"v=0\r\no=ivr 7 7 IN IP4 10.0.0.1\r\ns=ivr\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)
#: Timer G / E retransmission offsets from the first send: T1 doubling, capped at T2
CAPPED = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
#: Timer A offsets: T1 doubling without a cap, until Timer B (32 s)
DOUBLING = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]


# --- datagrams ---------------------------------------------------------------------------
def sip(lines: list[str], body: str = "") -> bytes:
    """A datagram from its start line and header lines (Content-Length added)."""
    head = "\r\n".join([*lines, f"Content-Length: {len(body.encode())}"])
    return (head + "\r\n\r\n" + body).encode()


def request(
    method: str,
    *,
    call_id: str = "call-1",
    branch: str = "z9hG4bK-inv1",
    from_tag: str = "caller1",
    to_tag: str = "",
    cseq: int = 1,
    cseq_method: str = "",
    via_at: Address = PEER,
    extra: tuple[str, ...] = (),
    body: str = "",
    content_type: str = "application/sdp",
) -> bytes:
    """A request from the caller at ``PEER`` (alice) to the portal."""
    lines = [
        f"{method} sip:portal@10.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP {via_at[0]}:{via_at[1]};branch={branch}",
        "Max-Forwards: 70",
        f"From: <sip:alice@10.0.0.2>;tag={from_tag}",
        "To: <sip:portal@10.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
    ]
    if method not in ("ACK", "CANCEL"):
        lines.append("Contact: <sip:alice@10.0.0.2:5062>")
    lines += extra
    if body:
        lines.append(f"Content-Type: {content_type}")
    return sip(lines, body)


def invite(**kwargs: object) -> bytes:
    """An INVITE with the caller's SDP offer (keywords as for :func:`request`)."""
    return request("INVITE", body=CALLER_SDP, **kwargs)  # type: ignore[arg-type]


def reply(
    to: bytes,
    status: int,
    *,
    to_tag: str = "",
    extra: tuple[str, ...] = (),
    body: str = "",
) -> bytes:
    """The far side's response to a request the agent sent: its Via(s), From, To (with
    ``to_tag`` added), Call-ID and CSeq."""
    lines = [f"SIP/2.0 {status} {REASONS.get(status, 'Whatever')}"]
    lines += [f"Via: {value}" for value in values(to, "Via")]
    target = header(to, "To")
    if to_tag and ";tag=" not in target:
        target += f";tag={to_tag}"
    lines += [
        f"From: {header(to, 'From')}",
        f"To: {target}",
        f"Call-ID: {header(to, 'Call-ID')}",
        f"CSeq: {header(to, 'CSeq')}",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    return sip(lines, body)


# --- reading what was sent ----------------------------------------------------------------
def first_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode()


def values(data: bytes, name: str) -> list[str]:
    """Every value of header ``name`` in a datagram, in order (lines split at LF, as
    lenient peers do: see ``test_agent.test_register_lines_end_in_crlf``)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    out = []
    for line in head.split("\n")[1:]:
        key, _, value = line.rstrip("\r").partition(": ")
        if key == name:
            out.append(value)
    return out


def header(data: bytes, name: str) -> str:
    """The first value of header ``name`` ('' when absent)."""
    found = values(data, name)
    return found[0] if found else ""


def body_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[1]


def branch_of(data: bytes) -> str:
    return header(data, "Via").split("branch=", 1)[1].split(";", 1)[0]


def tag_of(value: str) -> str:
    return value.split(";tag=", 1)[1].split(";", 1)[0] if ";tag=" in value else ""


# --- driving the agent ----------------------------------------------------------------------
def sent(agent: UserAgent) -> list[tuple[bytes, Address]]:
    """What the agent has to send now (drained)."""
    return agent.datagrams_to_send()


def lines_sent(agent: UserAgent) -> list[str]:
    """First lines of what the agent has to send now (drained)."""
    return [first_line(data) for data, _ in agent.datagrams_to_send()]


def events(agent: UserAgent) -> list[LegEvent]:
    """Every event the agent reported so far (drained)."""
    out: list[LegEvent] = []
    while (event := agent.next_event()) is not None:
        out.append(event)
    return out


def run(agent: UserAgent, until: float) -> list[tuple[float, str]]:
    """Fire the agent's timers at each ``next_timer()`` up to ``until`` (the clock then
    reads ``until``); (time, first line) of every datagram sent meanwhile."""
    assert agent.datagrams_to_send() == [], "drain what was sent before running timers"
    out: list[tuple[float, str]] = []
    while (when := agent.next_timer()) is not None and when <= until:
        agent.handle_timer(when)
        out += [(when, first_line(data)) for data, _ in agent.datagrams_to_send()]
    agent.handle_timer(until)
    return out


def run_sent(agent: UserAgent, until: float) -> list[tuple[float, bytes, Address]]:
    """Like :func:`run`, with the whole datagrams and their destinations."""
    assert agent.datagrams_to_send() == [], "drain what was sent before running timers"
    out: list[tuple[float, bytes, Address]] = []
    while (when := agent.next_timer()) is not None and when <= until:
        agent.handle_timer(when)
        out += [(when, data, address) for data, address in agent.datagrams_to_send()]
    agent.handle_timer(until)
    return out


def new_agent() -> UserAgent:
    return UserAgent(*US)


def incoming(agent: UserAgent, now: float = 0.0, **kwargs: object) -> Leg:
    """Feed an INVITE from ``PEER``; the leg of its IncomingCall (the 100 is drained)."""
    agent.receive_datagram(invite(**kwargs), PEER, now)
    assert lines_sent(agent) == ["SIP/2.0 100 Trying"]
    [event] = events(agent)
    assert isinstance(event, IncomingCall)
    return event.leg


def answered(agent: UserAgent, now: float = 0.0, **kwargs: object) -> tuple[Leg, bytes]:
    """An incoming call answered (not ACKed yet): the leg and our 200."""
    leg = incoming(agent, now, **kwargs)
    agent.answer(leg, OUR_SDP, now)
    [(ok, address)] = sent(agent)
    assert first_line(ok) == "SIP/2.0 200 OK" and address == PEER
    return leg, ok


def ack_of(ok: bytes, *, branch: str = "z9hG4bK-ack1", cseq: int = 1) -> bytes:
    """The caller's ACK of our 2xx (a new branch, the 2xx's To tag)."""
    return request("ACK", branch=branch, to_tag=tag_of(header(ok, "To")), cseq=cseq)


def established(agent: UserAgent, now: float = 0.0) -> tuple[Leg, str]:
    """An incoming call answered and ACKed: the leg and our To tag."""
    leg, ok = answered(agent, now)
    agent.receive_datagram(ack_of(ok), PEER, now)
    assert [type(e) for e in events(agent)] == [LegAcked]
    assert sent(agent) == []
    return leg, tag_of(header(ok, "To"))


def outgoing(agent: UserAgent, now: float = 0.0) -> tuple[Leg, bytes]:
    """A leg the agent places via ``PROXY``: the leg and its INVITE."""
    leg = agent.invite(
        "sip:bob@example.com",
        PROXY,
        now,
        from_="<sip:portal@10.0.0.1>",
        to="<sip:bob@example.com>",
        sdp=OUR_SDP,
    )
    [(data, address)] = sent(agent)
    assert first_line(data) == "INVITE sip:bob@example.com SIP/2.0" and address == PROXY
    return leg, data


# --- the layer on its own -----------------------------------------------------------------
class Harness:
    """A :class:`TransactionLayer` on a :class:`TimerQueue` with a fake clock; what it
    sends is kept with the time it was sent."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers = TimerQueue()
        self.sent: list[tuple[float, bytes, Address]] = []
        self.layer = TransactionLayer(self.timers, self._send, lambda: self.now)

    def _send(self, data: bytes, address: Address) -> None:
        self.sent.append((self.now, data, address))

    def advance(self, until: float) -> None:
        """Run every timer due up to ``until``, each at its own time."""
        while (when := self.timers.next_deadline()) is not None and when <= until:
            self.now = when
            for handle in self.timers.pop_due(when):
                handle.callback()
        self.now = until

    def times(self) -> list[float]:
        return [when for when, _, _ in self.sent]


def options_request(branch: str = "z9hG4bK-opt1") -> Request:
    """An OPTIONS we send to ``PROXY``."""
    return Request(
        "OPTIONS",
        "sip:10.0.0.9:5060",
        [
            ("Via", via(*US, branch)),
            ("Max-Forwards", "70"),
            ("From", "<sip:portal@10.0.0.9>;tag=ours"),
            ("To", "<sip:10.0.0.9:5060>"),
            ("Call-ID", "opt-1@10.0.0.1"),
            ("CSeq", "5 OPTIONS"),
        ],
    )


# === client INVITE: Timers A, B, D, M ==========================================================
def test_timer_a_doubles_without_cap_and_timer_b_fails_the_leg_at_32s() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    out = run_sent(agent, 40.0)
    assert [when for when, _, _ in out] == DOUBLING
    assert all(again == data and address == PROXY for _, again, address in out)
    [failed] = events(agent)
    assert isinstance(failed, LegFailed) and failed.leg is leg and failed.status == 408
    assert leg.ended and agent.legs == {} and agent.next_timer() is None


def test_timer_b_fires_at_32s_exactly() -> None:
    agent = new_agent()
    outgoing(agent, now=10.0)
    run(agent, 41.75)
    assert events(agent) == []
    run(agent, 42.0)
    assert [type(e) for e in events(agent)] == [LegFailed]


def test_a_provisional_response_stops_timers_a_and_b() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    assert run(agent, 1.0) == [(0.5, "INVITE sip:bob@example.com SIP/2.0")]
    agent.receive_datagram(reply(data, 180, to_tag="bob1"), PROXY, 1.0)
    [progress] = events(agent)
    assert isinstance(progress, LegProgress) and progress.response.status == 180
    assert run(agent, 120.0) == []
    assert events(agent) == [] and leg.state == "early"


def test_timer_d_acks_a_non_2xx_final_and_every_retransmission_of_it() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    agent.receive_datagram(reply(data, 180, to_tag="bob1"), PROXY, 0.25)
    events(agent)
    busy = reply(data, 486, to_tag="bob1")
    agent.receive_datagram(busy, PROXY, 1.0)
    [(ack, address)] = sent(agent)
    assert address == PROXY
    assert first_line(ack) == "ACK sip:bob@example.com SIP/2.0"
    assert header(ack, "Via") == header(data, "Via")  # the INVITE's branch (§17.1.1.3)
    assert header(ack, "From") == header(data, "From")
    assert header(ack, "To") == "<sip:bob@example.com>;tag=bob1"
    assert header(ack, "Call-ID") == header(data, "Call-ID")
    assert header(ack, "CSeq") == header(data, "CSeq").replace("INVITE", "ACK")
    [failed] = events(agent)
    assert isinstance(failed, LegFailed) and failed.status == 486 and leg.ended

    agent.receive_datagram(busy, PROXY, 2.0)  # the 486 again: our ACK was lost
    assert sent(agent) == [(ack, PROXY)]
    assert events(agent) == []  # reported once
    assert run(agent, 32.75) == []
    agent.receive_datagram(busy, PROXY, 32.75)  # Timer D (1 + 32 s) still runs
    assert sent(agent) == [(ack, PROXY)]
    run(agent, 33.0)
    agent.receive_datagram(busy, PROXY, 33.0)  # D fired: the transaction is gone
    assert sent(agent) == [] and events(agent) == []
    assert agent.stats.stray_responses == 1


def test_a_non_2xx_final_without_provisional_is_acked_too() -> None:
    agent = new_agent()
    _leg, data = outgoing(agent)
    agent.receive_datagram(reply(data, 404, to_tag="x"), PROXY, 0.25)
    assert lines_sent(agent) == ["ACK sip:bob@example.com SIP/2.0"]
    assert [(type(e), getattr(e, "status", None)) for e in events(agent)] == [(LegFailed, 404)]
    assert run(agent, 40.0) == []  # no Timer A after the final


def test_timer_m_a_retransmitted_2xx_gets_the_same_ack_and_no_second_answer() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    ok = reply(
        data, 200, to_tag="bob1", extra=("Contact: <sip:bob@10.0.0.7:5070>",), body=CALLER_SDP
    )
    assert run(agent, 1.0) == [(0.5, "INVITE sip:bob@example.com SIP/2.0")]
    agent.receive_datagram(ok, PROXY, 1.0)
    [(ack, address)] = sent(agent)
    assert first_line(ack) == "ACK sip:bob@10.0.0.7:5070 SIP/2.0" and address == ("10.0.0.7", 5070)
    assert branch_of(ack) != branch_of(data)  # the ACK of a 2xx is its own transaction
    [answer] = events(agent)
    assert isinstance(answer, LegAnswered) and answer.leg is leg and leg.state == "confirmed"

    for now in (1.5, 2.5, 4.5):
        assert run(agent, now) == []
        agent.receive_datagram(ok, PROXY, now)
        assert sent(agent) == [(ack, ("10.0.0.7", 5070))]
    assert events(agent) == []
    run(agent, 33.0)  # Timer M (64·T1 after the 2xx) ends the transaction
    agent.receive_datagram(ok, PROXY, 33.0)
    assert sent(agent) == [] and agent.stats.stray_responses == 1


# === CANCEL races (client side) ====================================================================
def test_cancel_before_any_provisional_is_held_until_the_1xx() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    agent.hang_up(leg, 0.25)
    assert sent(agent) == []  # §9.1: no CANCEL before a provisional response
    assert run(agent, 1.0) == [(0.5, "INVITE sip:bob@example.com SIP/2.0")]
    agent.receive_datagram(reply(data, 180, to_tag="bob1"), PROXY, 1.0)
    [(cancel, address)] = sent(agent)
    assert address == PROXY
    assert first_line(cancel) == "CANCEL sip:bob@example.com SIP/2.0"
    assert header(cancel, "Via") == header(data, "Via")
    assert header(cancel, "To") == header(data, "To")  # the INVITE's To, no tag
    assert header(cancel, "From") == header(data, "From")
    assert header(cancel, "CSeq") == header(data, "CSeq").replace("INVITE", "CANCEL")
    assert events(agent) == []  # no progress for a leg being hung up
    agent.receive_datagram(reply(cancel, 200, to_tag="bob1"), PROXY, 1.25)
    agent.receive_datagram(reply(data, 487, to_tag="bob1"), PROXY, 1.5)
    assert lines_sent(agent) == ["ACK sip:bob@example.com SIP/2.0"]
    assert [(type(e), getattr(e, "status", None)) for e in events(agent)] == [(LegFailed, 487)]
    assert run(agent, 60.0) == []


def test_cancel_held_and_no_response_at_all_fails_by_timer_b() -> None:
    agent = new_agent()
    leg, _data = outgoing(agent)
    agent.hang_up(leg, 0.25)
    out = run(agent, 40.0)
    assert [when for when, _ in out] == DOUBLING
    assert {line for _, line in out} == {"INVITE sip:bob@example.com SIP/2.0"}  # never a CANCEL
    assert [(type(e), getattr(e, "status", None)) for e in events(agent)] == [(LegFailed, 408)]


def test_cancel_after_a_1xx_is_sent_at_once() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    agent.receive_datagram(reply(data, 183, to_tag="bob1", body=CALLER_SDP), PROXY, 0.25)
    assert [type(e) for e in events(agent)] == [LegProgress]
    agent.hang_up(leg, 2.0)
    assert lines_sent(agent) == ["CANCEL sip:bob@example.com SIP/2.0"]
    assert leg.state == "ending"


def test_a_2xx_crossing_our_cancel_is_acked_then_byed() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    agent.receive_datagram(reply(data, 180, to_tag="bob1"), PROXY, 0.25)
    events(agent)
    agent.hang_up(leg, 1.0)
    [(cancel, _)] = sent(agent)
    ok = reply(
        data, 200, to_tag="bob1", extra=("Contact: <sip:bob@10.0.0.7:5070>",), body=CALLER_SDP
    )
    agent.receive_datagram(ok, PROXY, 1.25)
    (ack, ack_to), (bye, bye_to) = sent(agent)
    assert first_line(ack) == "ACK sip:bob@10.0.0.7:5070 SIP/2.0" and ack_to == ("10.0.0.7", 5070)
    assert first_line(bye) == "BYE sip:bob@10.0.0.7:5070 SIP/2.0" and bye_to == ("10.0.0.7", 5070)
    assert tag_of(header(bye, "To")) == "bob1"
    cseq = int(header(data, "CSeq").split()[0])
    assert header(bye, "CSeq") == f"{cseq + 1} BYE"
    assert events(agent) == []  # the runtime hung up: no LegAnswered for it
    assert leg.ended and agent.legs == {}
    agent.receive_datagram(reply(cancel, 200, to_tag="bob1"), PROXY, 1.5)  # the CANCEL's 200
    agent.receive_datagram(reply(bye, 200), ("10.0.0.7", 5070), 1.5)
    agent.receive_datagram(ok, PROXY, 2.0)  # the 2xx again: the same ACK, nothing else
    assert sent(agent) == [(ack, ("10.0.0.7", 5070))]
    assert events(agent) == []


def test_our_cancel_without_a_final_response_gives_up_after_32s() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    agent.receive_datagram(reply(data, 180, to_tag="bob1"), PROXY, 0.25)
    events(agent)
    agent.hang_up(leg, 1.0)
    [(cancel, _)] = sent(agent)
    agent.receive_datagram(reply(cancel, 200, to_tag="bob1"), PROXY, 1.25)  # but no 487
    assert run(agent, 32.75) == [] and events(agent) == []
    assert run(agent, 33.0) == []
    [failed] = events(agent)
    assert isinstance(failed, LegFailed) and failed.status == 408 and failed.leg is leg
    assert agent.legs == {}


def test_an_unanswered_cancel_is_retransmitted_by_timer_e() -> None:
    agent = new_agent()
    leg, data = outgoing(agent)
    agent.receive_datagram(reply(data, 180, to_tag="bob1"), PROXY, 0.25)
    events(agent)
    agent.hang_up(leg, 1.0)
    sent(agent)
    out = run(agent, 40.0)
    assert out == [(1.0 + t, "CANCEL sip:bob@example.com SIP/2.0") for t in CAPPED]
    assert [(type(e), getattr(e, "status", None)) for e in events(agent)] == [(LegFailed, 408)]


# === client non-INVITE: Timers E, F, K (the layer on its own, then through the agent) =============
def test_timer_e_doubles_to_t2_and_timer_f_gives_up_at_32s() -> None:
    harness = Harness()
    timeouts: list[float] = []
    responses: list[int] = []
    harness.layer.request(
        options_request(),
        PROXY,
        on_response=lambda m: responses.append(m.status),
        on_timeout=lambda: timeouts.append(harness.now),
    )
    harness.advance(100.0)
    assert harness.times() == [0.0, *CAPPED]
    assert len({data for _, data, _ in harness.sent}) == 1  # the same bytes every time
    assert timeouts == [32.0] and responses == []
    assert harness.layer.clients == {} and harness.timers.next_deadline() is None


def test_timer_e_after_a_provisional_retransmits_every_t2_and_f_still_runs() -> None:
    harness = Harness()
    timeouts: list[float] = []
    responses: list[int] = []
    req = options_request()
    harness.layer.request(
        req,
        PROXY,
        on_response=lambda m: responses.append(m.status),
        on_timeout=lambda: timeouts.append(harness.now),
    )
    harness.advance(0.25)
    assert harness.layer.receive_response(parse(reply(req.encode(), 100)))
    harness.advance(100.0)
    assert harness.times() == [0.0, 0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert responses == [100] and timeouts == [32.0]


def test_timer_k_absorbs_retransmitted_finals_for_t4() -> None:
    harness = Harness()
    responses: list[int] = []
    timeouts: list[float] = []
    req = options_request()
    harness.layer.request(
        req,
        PROXY,
        on_response=lambda m: responses.append(m.status),
        on_timeout=lambda: timeouts.append(harness.now),
    )
    ok = parse(reply(req.encode(), 200, to_tag="r1"))
    harness.advance(1.0)
    assert harness.layer.receive_response(ok)
    harness.advance(5.75)
    assert harness.layer.receive_response(ok)  # absorbed by its transaction (Timer K)
    assert responses == [200] and harness.times() == [0.0, 0.5]  # no retransmission after it
    harness.advance(6.0)  # K = T4 = 5 s after the final
    assert not harness.layer.receive_response(ok)
    assert responses == [200] and timeouts == []


def test_timer_f_through_the_agent_reports_the_timeout_once() -> None:
    agent = new_agent()
    timeouts: list[float] = []
    responses: list[int] = []
    req = agent.new_request(
        "OPTIONS", "sip:10.0.0.9", from_="<sip:portal@10.0.0.9>", to="<sip:10.0.0.9>"
    )
    agent.send_request(
        req,
        PROXY,
        3.0,
        on_response=lambda m: responses.append(m.status),
        on_timeout=lambda: timeouts.append(agent.now),
    )
    assert lines_sent(agent) == ["OPTIONS sip:10.0.0.9 SIP/2.0"]
    out = run(agent, 100.0)
    assert [when for when, _ in out] == [3.0 + t for t in CAPPED]
    assert timeouts == [35.0] and responses == []
    agent.receive_datagram(reply(req.encode(), 200), PROXY, 100.0)  # too late: stray
    assert responses == [] and agent.stats.stray_responses == 1


# === server INVITE: Timers G, H, I, L ==============================================================
@pytest.mark.parametrize("status", [488, 403])
def test_timer_g_retransmits_a_rejection_until_the_ack(status: int) -> None:
    agent = new_agent()
    leg = incoming(agent)
    agent.reject(leg, status, 1.0)
    [(refusal, address)] = sent(agent)
    assert first_line(refusal) == f"SIP/2.0 {status} {REASONS[status]}" and address == PEER
    assert tag_of(header(refusal, "To")) == leg.local_tag
    out = run_sent(agent, 10.0)
    assert [when for when, _, _ in out] == [1.5, 2.5, 4.5, 8.5]
    assert all(data == refusal and to == PEER for _, data, to in out)
    ack = request("ACK", to_tag=leg.local_tag)  # the same branch as the INVITE (non-2xx)
    agent.receive_datagram(ack, PEER, 10.0)
    assert sent(agent) == [] and events(agent) == []
    agent.receive_datagram(ack, PEER, 11.0)  # a retransmitted ACK: absorbed (Timer I)
    agent.receive_datagram(invite(), PEER, 14.75)  # so is the INVITE, for T4 = 5 s
    assert sent(agent) == [] and events(agent) == []
    assert run(agent, 100.0) == []


def test_timer_h_stops_retransmitting_a_rejection_never_acked() -> None:
    agent = new_agent()
    leg = incoming(agent)
    agent.reject(leg, 403, 0.0)
    sent(agent)
    out = run(agent, 200.0)
    assert out == [(t, "SIP/2.0 403 Forbidden") for t in CAPPED]
    assert events(agent) == []  # the leg was refused already: nothing more to report
    assert agent.transactions.servers == {} and agent.next_timer() is None


def test_a_retransmitted_invite_during_a_rejection_gets_it_again() -> None:
    agent = new_agent()
    leg = incoming(agent)
    agent.reject(leg, 488, 0.25)
    [(refusal, _)] = sent(agent)
    agent.receive_datagram(invite(), PEER, 0.375)
    assert sent(agent) == [(refusal, PEER)]
    assert events(agent) == []  # not a new call


def test_timer_g_retransmits_our_2xx_until_the_ack() -> None:
    agent = new_agent()
    leg, ok = answered(agent)
    out = run_sent(agent, 2.0)
    assert [(when, data) for when, data, _ in out] == [(0.5, ok), (1.5, ok)]
    agent.receive_datagram(ack_of(ok), PEER, 2.0)
    assert [type(e) for e in events(agent)] == [LegAcked]
    assert run(agent, 100.0) == []
    assert leg.state == "confirmed" and agent.legs == {leg.call_id: leg}


def test_timer_h_for_a_2xx_never_acked_fails_the_leg_and_sends_bye() -> None:
    agent = new_agent()
    leg, ok = answered(agent)
    out = run_sent(agent, 32.0)
    retransmitted = [(when, data) for when, data, _ in out if data == ok]
    assert retransmitted == [(t, ok) for t in CAPPED]
    [(when, bye, address)] = [x for x in out if x[1] != ok]
    assert when == 32.0 and address == PEER  # the caller's Contact
    assert first_line(bye) == "BYE sip:alice@10.0.0.2:5062 SIP/2.0"
    assert tag_of(header(bye, "From")) == leg.local_tag
    assert tag_of(header(bye, "To")) == "caller1"
    [failed] = events(agent)
    assert isinstance(failed, LegFailed) and failed.status == 408 and failed.leg is leg
    assert agent.legs == {}


def test_a_retransmitted_invite_while_proceeding_gets_the_100_again() -> None:
    agent = new_agent()
    incoming(agent)
    agent.receive_datagram(invite(), PEER, 0.5)
    assert lines_sent(agent) == ["SIP/2.0 100 Trying"]
    assert events(agent) == []  # not a second IncomingCall
    assert len(agent.legs) == 1


def test_timer_l_retransmitted_invite_gets_the_200_again_then_is_absorbed_after_the_ack() -> None:
    agent = new_agent()
    _leg, ok = answered(agent)
    agent.receive_datagram(invite(), PEER, 0.25)
    assert sent(agent) == [(ok, PEER)]
    agent.receive_datagram(ack_of(ok), PEER, 0.375)
    assert [type(e) for e in events(agent)] == [LegAcked]
    agent.receive_datagram(invite(), PEER, 1.0)  # Timer L: absorbed
    agent.receive_datagram(ack_of(ok), PEER, 1.0)  # a retransmitted ACK: nothing more
    assert sent(agent) == [] and events(agent) == []


def test_a_retransmitted_invite_after_cancel_is_answered_487_again_not_a_new_call() -> None:
    agent = new_agent()
    leg = incoming(agent)
    cancel = request("CANCEL", cseq_method="CANCEL")
    agent.receive_datagram(cancel, PEER, 1.0)
    (ok, ok_to), (terminated, terminated_to) = sent(agent)
    assert first_line(ok) == "SIP/2.0 200 OK" and header(ok, "CSeq") == "1 CANCEL"
    assert first_line(terminated) == "SIP/2.0 487 Request Terminated"
    assert header(terminated, "CSeq") == "1 INVITE" and ok_to == terminated_to == PEER
    assert tag_of(header(terminated, "To")) == leg.local_tag
    [ended] = events(agent)
    assert isinstance(ended, LegEnded) and ended.reason == "cancel" and ended.leg is leg

    agent.receive_datagram(invite(), PEER, 1.25)  # the INVITE again
    assert sent(agent) == [(terminated, PEER)]
    agent.receive_datagram(cancel, PEER, 1.25)  # the CANCEL again (Timer J)
    assert sent(agent) == [(ok, PEER)]
    assert events(agent) == [] and agent.legs == {}
    assert run(agent, 2.0) == [(1.5, "SIP/2.0 487 Request Terminated")]  # Timer G
    agent.receive_datagram(request("ACK", to_tag=leg.local_tag), PEER, 2.0)
    assert run(agent, 60.0) == []


def test_a_cancel_for_an_answered_invite_gets_200_and_changes_nothing() -> None:
    agent = new_agent()
    leg, ok = answered(agent)
    agent.receive_datagram(request("CANCEL", cseq_method="CANCEL"), PEER, 0.25)
    [(response, _)] = sent(agent)
    assert first_line(response) == "SIP/2.0 200 OK" and header(response, "CSeq") == "1 CANCEL"
    assert events(agent) == []
    assert leg.state == "confirmed" and agent.legs == {leg.call_id: leg}
    agent.receive_datagram(ack_of(ok), PEER, 0.375)
    assert [type(e) for e in events(agent)] == [LegAcked]


def test_a_cancel_for_an_unknown_transaction_gets_481() -> None:
    agent = new_agent()
    incoming(agent)
    agent.receive_datagram(request("CANCEL", branch="z9hG4bK-other"), PEER, 0.5)
    assert lines_sent(agent) == ["SIP/2.0 481 Call/Transaction Does Not Exist"]
    agent.receive_datagram(request("CANCEL", call_id="nope"), PEER, 0.5)
    assert lines_sent(agent) == ["SIP/2.0 481 Call/Transaction Does Not Exist"]
    assert events(agent) == [] and len(agent.legs) == 1


# === server non-INVITE: Timer J ==========================================================================
def test_timer_j_a_retransmitted_bye_gets_the_same_200_and_no_second_event() -> None:
    agent = new_agent()
    leg, tag = established(agent)
    bye = request("BYE", branch="z9hG4bK-bye1", to_tag=tag, cseq=2)
    agent.receive_datagram(bye, PEER, 5.0)
    [(ok, address)] = sent(agent)
    assert first_line(ok) == "SIP/2.0 200 OK" and address == PEER
    assert [(type(e), getattr(e, "reason", "")) for e in events(agent)] == [(LegEnded, "bye")]
    for now in (5.5, 6.5, 36.75):
        assert run(agent, now) == []
        agent.receive_datagram(bye, PEER, now)
        assert sent(agent) == [(ok, PEER)]
    assert events(agent) == [] and leg.ended
    run(agent, 37.0)  # J = 64·T1 after the 200: the transaction is gone, so is the call
    agent.receive_datagram(bye, PEER, 37.0)
    assert lines_sent(agent) == ["SIP/2.0 481 Call/Transaction Does Not Exist"]


def test_non_invite_finals_are_not_retransmitted_by_the_server() -> None:
    agent = new_agent()
    agent.receive_datagram(request("OPTIONS", branch="z9hG4bK-o1"), PEER, 0.0)
    assert lines_sent(agent) == ["SIP/2.0 200 OK"]
    assert run(agent, 100.0) == []


# === bugs found =================================================================================
def test_responses_go_to_the_source_when_via_asks_for_rport() -> None:
    agent = new_agent()
    nat: Address = ("203.0.113.9", 40000)
    data = invite().replace(
        b"Via: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-inv1",
        b"Via: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bK-inv1;rport",
    )
    agent.receive_datagram(data, nat, 0.0)
    [(trying, address)] = sent(agent)
    assert first_line(trying) == "SIP/2.0 100 Trying"
    assert address == nat


def test_a_via_with_a_bad_port_is_a_bad_datagram() -> None:
    agent = new_agent()
    data = invite().replace(b"10.0.0.2:5062;branch", b"10.0.0.2:abc;branch")
    agent.receive_datagram(data, PEER, 0.0)
    assert agent.stats.bad_datagrams == 1 and sent(agent) == [] and events(agent) == []


def test_an_unknown_final_status_is_treated_as_its_class() -> None:
    agent = new_agent()
    _leg, data = outgoing(agent)
    agent.receive_datagram(reply(data, 499, to_tag="bob1"), PROXY, 0.25)
    assert lines_sent(agent) == ["ACK sip:bob@example.com SIP/2.0"]
    assert [(type(e), getattr(e, "status", None)) for e in events(agent)] == [(LegFailed, 499)]
