"""The trust boundary and the limits, sans-I/O: who the agent takes requests from, whose
word on the caller counts (every identity mode), forged registrar replies, calls that
could never be ended, and new calls beyond the rate or the cap."""

from __future__ import annotations

import pytest

from ivr.sip.agent import UserAgent
from ivr.sip.legs import IncomingCall
from ivr.sip.limits import SourceLimiter
from ivr.sip.message import parse
from ivr.sip.registration import Registration
from ivr.sip.trust import Trust, caller_number
from tests.sip.test_agent import REGISTRAR, register, registration
from tests.sip.test_transactions import (
    PEER,
    US,
    events,
    first_line,
    header,
    invite,
    lines_sent,
    reply,
    sent,
)

PROXY = ("10.0.0.9", 5060)
SPOOFER = ("10.0.0.66", 5060)
ERIKA_PAI = "P-Asserted-Identity: <sip:+491711234567@pbx.example>"


def behind(proxy: tuple[str, int] = PROXY, networks: tuple[str, ...] = ()) -> UserAgent:
    return UserAgent(*US, trust=Trust.of([proxy], networks))


def test_only_the_proxy_is_heard_everybody_else_gets_nothing() -> None:
    agent = behind()
    for source in (SPOOFER, (PROXY[0], 5061), PEER):  # another host, port, the caller
        agent.receive_datagram(invite(call_id=f"c-{source[1]}"), source, 0.0)
    assert sent(agent) == [] and events(agent) == [] and agent.legs == {}
    assert agent.stats.untrusted == 3
    agent.receive_datagram(invite(), PROXY, 1.0)
    assert lines_sent(agent) == ["SIP/2.0 100 Trying"]
    assert [type(e) for e in events(agent)] == [IncomingCall]


def test_trusted_networks_are_heard_from_any_port() -> None:
    agent = behind(networks=("10.0.0.0/30", "fd00::/8"))
    agent.receive_datagram(invite(), ("10.0.0.2", 40000), 0.0)
    agent.receive_datagram(invite(call_id="c-2"), ("10.0.0.5", 5060), 0.0)
    assert len(agent.legs) == 1 and agent.stats.untrusted == 1


def test_a_bad_trusted_network_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not a network"):
        Trust.of([PROXY], ["10.0.0.0/33"])


@pytest.mark.parametrize(
    ("mode", "pai", "caller"),
    [
        ("pai", ERIKA_PAI, "+491711234567"),
        ("pai", None, "alice"),  # no PAI: the From user
        ("pai-only", ERIKA_PAI, "+491711234567"),
        ("pai-only", None, ""),  # anonymous: the portal refuses
        ("from", ERIKA_PAI, "alice"),  # PAI ignored
        ("from", None, "alice"),
        (
            "pai",
            'P-Asserted-Identity: "Erika" <tel:+491711234567>, <sip:1001@pbx>',
            "+491711234567",
        ),
    ],
)
def test_the_caller_by_identity_mode(mode: str, pai: str | None, caller: str) -> None:
    message = parse(invite(extra=(pai,) if pai else ()))
    assert caller_number(message, mode) == caller


def test_an_unknown_identity_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="identity mode"):
        caller_number(parse(invite()), "trust-me")


def test_a_reply_from_elsewhere_does_not_answer_our_register() -> None:
    agent = UserAgent(*US, trust=Trust.of([REGISTRAR], ["0.0.0.0/0"]))
    reg: Registration = registration(agent)
    reg.start(0.0)
    first = register(agent)
    forged = reply(first, 200, to_tag="x", extra=("Expires: 86400",))
    agent.receive_datagram(forged, SPOOFER, 0.1)  # right branch and Call-ID, wrong host
    assert reg.state == "registering" and agent.stats.stray_responses == 1
    agent.receive_datagram(reply(first, 200, to_tag="x", extra=("Expires: 86400",)), REGISTRAR, 0.2)
    assert reg.state == "registered"
    refresh = agent.next_timer()
    assert refresh is not None and refresh < 0.2 + 120  # never the 86400 s it was told


@pytest.mark.parametrize(
    ("contact", "status"),
    [
        ("Contact: <tel:+491711234567>", "416 Unsupported URI Scheme"),
        ("Contact: <urn:service:sos>", "416 Unsupported URI Scheme"),
        ("Contact: <sip:>", "400 Bad Request"),
        ("Contact: sip:alice@", "400 Bad Request"),
    ],
)
def test_a_call_we_could_never_end_is_refused_at_once(contact: str, status: str) -> None:
    agent = UserAgent(*US)
    data = invite().replace(b"Contact: <sip:alice@10.0.0.2:5062>", contact.encode())
    agent.receive_datagram(data, PEER, 0.0)
    assert lines_sent(agent) == [f"SIP/2.0 {status}"]
    assert agent.legs == {} and events(agent) == []


def test_new_calls_beyond_the_rate_get_503_with_retry_after() -> None:
    agent = UserAgent(*US, call_rate=SourceLimiter(rate=2, burst=3))
    for i in range(5):
        agent.receive_datagram(invite(call_id=f"c{i}", branch=f"z9hG4bK-{i}"), PEER, 0.0)
    answers = [(first_line(d), header(d, "Retry-After")) for d, _ in sent(agent)]
    assert (
        answers == [("SIP/2.0 100 Trying", "")] * 3 + [("SIP/2.0 503 Service Unavailable", "5")] * 2
    )
    agent.receive_datagram(invite(call_id="later", branch="z9hG4bK-l"), PEER, 1.0)  # refilled
    assert lines_sent(agent) == ["SIP/2.0 100 Trying"]
    other = ("10.0.0.3", 5062)
    agent.receive_datagram(invite(call_id="other", branch="z9hG4bK-o"), other, 0.0)
    assert lines_sent(agent) == ["SIP/2.0 100 Trying"]  # a bucket per source
    assert agent.stats.rate_limited == 2


def test_calls_beyond_the_cap_get_503() -> None:
    agent = UserAgent(*US, max_calls=2)
    for i in range(3):
        agent.receive_datagram(invite(call_id=f"c{i}", branch=f"z9hG4bK-{i}"), PEER, 0.0)
    assert lines_sent(agent) == ["SIP/2.0 100 Trying"] * 2 + ["SIP/2.0 503 Service Unavailable"]
    assert agent.stats.over_capacity == 1 and len(agent.legs) == 2


def test_the_limiter_forgets_the_oldest_sources_first() -> None:
    limiter = SourceLimiter(rate=1, burst=1)
    assert limiter.allow("a", 0.0) and not limiter.allow("a", 0.0)
    for i in range(5000):
        limiter.allow(f"s{i}", 0.0)
    assert limiter.allow("a", 0.0)  # forgotten: a full bucket again (bounded memory)
