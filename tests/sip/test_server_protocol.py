"""The SIP runtime at the datagram level: one regression test per pyVoIP bug a serving
IVR meets (docs/pyvoip.md), and bad input that must never hurt other calls."""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from ivr.sip.server import SipServer
from tests.sip.conftest import (
    UNKNOWN,
    Peer,
    in_dialog,
    invite,
    start_server,
    to_tag,
)
from tests.sip.peers import eventually


def rtp_port_of(response: str) -> int:
    match = re.search(r"m=audio (\d+) RTP/AVP (\d+)", response)
    assert match, response
    return int(match.group(1))


def answer(server: SipServer, peer: Peer, call_id: str, **kwargs: object) -> str:
    """INVITE, wait for 200, ACK; returns the 200."""
    peer.send(invite(peer, call_id, **kwargs), server.address)  # type: ignore[arg-type]
    ok = peer.wait("SIP/2.0 200")
    peer.send(in_dialog(peer, "ACK", call_id, to_tag(ok), 1), server.address)
    return ok


def event_packet(
    event: int, *, timestamp: int, seq: int, end: bool = False, ssrc: int = 7
) -> bytes:
    header = struct.pack("!BBHII", 0x80, 101, seq, timestamp, ssrc)
    return header + struct.pack("!BBH", event, 0x80 if end else 0, 320)


def send_key(sock: socket.socket, port: int, event: int, timestamp: int) -> None:
    for i, end in enumerate((False, False, True, True, True)):
        sock.sendto(
            event_packet(event, timestamp=timestamp, seq=timestamp + i, end=end),
            ("127.0.0.1", port),
        )


# --- bug 11: 100 Trying at once, 200 retransmitted until ACK, BYE for no call = 481 ----
def test_trying_at_once_and_ok_retransmitted_until_ack(server: SipServer, peer: Peer) -> None:
    peer.send(invite(peer, "c-retrans"), server.address)
    assert peer.wait("SIP/2.0 100", timeout=1)
    first = peer.wait("SIP/2.0 200")
    again = peer.wait("SIP/2.0 200", timeout=3)  # no ACK yet: T1 retransmission
    assert again == first
    peer.send(in_dialog(peer, "ACK", "c-retrans", to_tag(first), 1), server.address)
    peer.drain(1.2)
    assert not [m for m in peer.drain(1.5) if m.startswith("SIP/2.0 200")]


def test_bye_for_an_unknown_call_is_481(server: SipServer, peer: Peer) -> None:
    peer.send(in_dialog(peer, "BYE", "no-such-call", "x", 2), server.address)
    assert peer.wait("SIP/2.0 481")


# --- bug 2: a retransmitted INVITE neither restarts RTP nor opens a second stream -----
def test_a_retransmitted_invite_repeats_the_answer_and_keeps_one_stream(
    server: SipServer, peer: Peer
) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.5)
    port = sink.getsockname()[1]
    peer.send(invite(peer, "c-dup", rtp_port=port), server.address)
    ok = peer.wait("SIP/2.0 200")
    peer.send(invite(peer, "c-dup", rtp_port=port), server.address)  # the same INVITE again
    assert peer.wait("SIP/2.0 200") == ok
    peer.send(in_dialog(peer, "ACK", "c-dup", to_tag(ok), 1), server.address)
    ssrcs, sequences = set(), []
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        data = sink.recv(2048)
        ssrcs.add(struct.unpack_from("!I", data, 8)[0])
        sequences.append(struct.unpack_from("!H", data, 2)[0])
    sink.close()
    assert len(ssrcs) == 1
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))  # one stream
    assert len(server.calls) == 1


# --- bug 4: CANCEL gets 200 and the INVITE 487; the call is never answered ------------
def test_cancel_before_answer_gives_487_and_no_call(portal_dir, no_leaks, peer: Peer) -> None:
    server = start_server(portal_dir)
    try:
        held: list[object] = []  # the dialogue's first commands never reach the loop:
        server.driver.deliver = lambda key, outcome: held.append(outcome)  # still ringing
        peer.send(invite(peer, "c-cancel"), server.address)
        peer.wait("SIP/2.0 100")
        cancel = (
            invite(peer, "c-cancel", sdp=False)
            .replace("INVITE sip", "CANCEL sip", 1)
            .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        )
        peer.send(cancel, server.address)
        got = [peer.wait("SIP/2.0 200"), peer.wait("SIP/2.0 487")]
        assert "CANCEL" in got[0]
        assert not [m for m in peer.drain(0.8) if m.startswith("SIP/2.0 200")]
        assert eventually(lambda: not server.calls and not server.ports.in_use, 5, interval=0.02)
        # the dialogue heard the hang-up
        assert eventually(lambda: server.driver.active == 0, 5, interval=0.02)
        assert held
    finally:
        server.stop()


# --- bug 3: RTP ports go back to the pool when calls end ----------------------------
def test_ports_are_released_so_a_small_range_serves_many_calls(
    portal_dir, no_leaks, peer: Peer
) -> None:
    server = start_server(portal_dir, rtp_ports=(31000, 31003))  # two ports
    try:
        for i in range(6):
            ok = answer(server, peer, f"c-port-{i}")
            peer.send(in_dialog(peer, "BYE", f"c-port-{i}", to_tag(ok), 2), server.address)
            peer.wait("SIP/2.0 200", timeout=3)
        assert eventually(lambda: not server.ports.in_use and not server.calls, 5, interval=0.02)
    finally:
        server.stop()


# --- bug 7: compact and odd headers (baresip's empty Supported:) are understood --------
def test_compact_headers_and_an_empty_header_are_accepted(server: SipServer, peer: Peer) -> None:
    text = invite(peer, "c-compact", extra="Supported:\nAllow-Events: talk\n")
    text = (
        text.replace("Via:", "v:")
        .replace("From:", "f:")
        .replace("To:", "t:")
        .replace("Call-ID:", "i:")
        .replace("Contact:", "m:")
        .replace("Content-Type:", "c:")
        .replace("Content-Length:", "l:")
    )
    peer.send(text, server.address)
    assert peer.wait("SIP/2.0 200")


# --- bug 8: OPTIONS answered; INFO carries DTMF -------------------------------------
def test_options_is_answered(server: SipServer, peer: Peer) -> None:
    peer.send(
        "OPTIONS sip:portal@127.0.0.1 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK-o\n"
        "From: <sip:x@127.0.0.1>;tag=o1\nTo: <sip:portal@127.0.0.1>\nCall-ID: opt-1\n"
        "CSeq: 1 OPTIONS\nContent-Length: 0\n\n",
        server.address,
    )
    reply = peer.wait("SIP/2.0 200")
    assert "INFO" in reply and "REFER" not in reply  # we send REFER, take none


def test_sip_info_keys_drive_the_dialogue(server: SipServer, peer: Peer) -> None:
    ok = answer(server, peer, "c-info")
    tag = to_tag(ok)
    for cseq, key in enumerate("4711#", start=2):
        body = f"Signal={key}\r\nDuration=160\r\n"
        peer.send(
            in_dialog(
                peer, "INFO", "c-info", tag, cseq, "Content-Type: application/dtmf-relay\n", body
            ),
            server.address,
        )
        peer.wait("SIP/2.0 200")
    for cseq, key in enumerate("*11", start=10):
        peer.send(
            in_dialog(peer, "INFO", "c-info", tag, cseq, "Content-Type: application/dtmf\n", key),
            server.address,
        )
        peer.wait("SIP/2.0 200")
    refer = peer.wait("REFER", timeout=10)
    assert "Refer-To: <sip:*11@" in refer
    assert server.stats.keys == 8


# --- bug 9: an offer we cannot take is answered, not left hanging --------------------
def test_an_invite_without_sdp_or_g711_gets_488(server: SipServer, peer: Peer) -> None:
    peer.send(invite(peer, "c-nosdp", sdp=False), server.address)
    assert peer.wait("SIP/2.0 488")
    peer.send(invite(peer, "c-g722", codec=9, branch="z9hG4bK-2"), server.address)
    assert peer.wait("SIP/2.0 488")
    assert not server.calls


# --- bug 10: responses go back along the Via, not to the registrar ------------------
def test_responses_go_to_the_sender_not_the_registrar(server: SipServer, peer: Peer) -> None:
    assert server.config.registrar != ("127.0.0.1", peer.port)
    peer.send(invite(peer, "c-via"), server.address)
    assert peer.wait("SIP/2.0 200")


# --- bug 5 and garbage: events > 15, RTP garbage, SIP garbage hurt nobody -------------
def test_garbage_and_odd_events_do_not_hurt_the_call(server: SipServer, peer: Peer) -> None:
    ok = answer(server, peer, "c-garbage")
    rtp_port = rtp_port_of(ok)
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for payload in (
        b"",
        b"\xff" * 40,
        b"hello",
        event_packet(16, timestamp=1, seq=1),
        event_packet(200, timestamp=2, seq=2),
    ):
        junk.sendto(payload, ("127.0.0.1", rtp_port))
    for payload in (
        b"\x00" * 10,
        b"GARBAGE / SIP/2.0\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\nVia: broken\r\n\r\n",
        bytes(range(256)),
    ):
        junk.sendto(payload, server.address)
    send_key(junk, rtp_port, 4, 1000)
    junk.close()
    assert eventually(lambda: server.stats.keys == 1, 5, interval=0.02)
    assert server.stats.bad_datagrams >= 3
    assert "c-garbage" in server.calls
    peer.send(in_dialog(peer, "BYE", "c-garbage", to_tag(ok), 2), server.address)
    assert peer.wait("SIP/2.0 200")


# --- faults: a caller who vanishes without BYE --------------------------------------
def test_a_caller_without_rtp_is_hung_up(portal_dir, no_leaks, peer: Peer) -> None:
    server = start_server(portal_dir, rtp_timeout=1.0)
    try:
        answer(server, peer, "c-vanish")
        bye = peer.wait("BYE", timeout=5)
        assert "c-vanish" in bye
        assert server.stats.ended.get("no-rtp") == 1
    finally:
        server.stop()


# --- the unknown caller --------------------------------------------------------------
def test_an_unknown_caller_hears_the_refusal_and_is_hung_up(server: SipServer, peer: Peer) -> None:
    ok = answer(server, peer, "c-unknown", caller=UNKNOWN)
    assert ok
    assert "c-unknown" in peer.wait("BYE", timeout=10)
    assert server.stats.refers == 0


# --- barge-in: playback stops within a packet of the key -----------------------------
def test_barge_in_stops_the_prompt_within_a_packet(server: SipServer, peer: Peer) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(2.0)
        ok = answer(server, peer, "c-barge", rtp_port=sink.getsockname()[1])
        sink.recv(2048)  # the greeting is playing
        time.sleep(0.3)
        sink.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:  # forget what arrived before the key
                sink.recv(2048)
        sink.settimeout(1.0)
        keys = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        send_key(keys, rtp_port_of(ok), 4, 9000)  # barge in with the PIN's first digit
        keys.close()
        old_prompt = 0
        with contextlib.suppress(TimeoutError):
            while not sink.recv(2048)[1] & 0x80:  # until a new prompt starts (marker bit)
                old_prompt += 1
        assert old_prompt <= 2  # the packet on the wire and at most one more
        assert server.stats.keys == 1
    finally:
        sink.close()


# --- in-band DTMF for callers who send tones -------------------------------------------
def test_a_caller_without_telephone_event_is_heard_in_band(server: SipServer, peer: Peer) -> None:
    import audioop

    from ivr.audio.dtmf import generate

    text = invite(peer, "c-inband", dtmf=False)
    peer.send(text, server.address)
    ok = peer.wait("SIP/2.0 200")
    assert "telephone-event" not in ok
    peer.send(in_dialog(peer, "ACK", "c-inband", to_tag(ok), 1), server.address)
    pcm = generate("4711#", tone_ms=100, gap_ms=100).tobytes()
    tones = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = rtp_port_of(ok)
    for seq, start in enumerate(range(0, len(pcm) - 319, 320)):
        payload = audioop.lin2alaw(pcm[start : start + 320], 2)
        tones.sendto(
            struct.pack("!BBHII", 0x80, 8, seq, seq * 160, 99) + payload, ("127.0.0.1", port)
        )
        time.sleep(0.002)
    tones.close()
    assert eventually(lambda: server.stats.keys == 5, 5, interval=0.02)


# --- dial: a call-back with the portal's identity, bridged both ways ---------------------
def test_dialling_out_calls_back_with_the_portals_identity_and_bridges(
    portal_dir, no_leaks, peer: Peer
) -> None:
    callee = Peer()  # the proxy and the called party in one
    server = start_server(
        portal_dir,
        registrar=("127.0.0.1", callee.port),
        register=False,
        trust=("127.0.0.1/32",),  # the test's caller talks to it directly
    )
    caller_media, callee_media = media_socket(), media_socket()
    try:
        ok = answer(server, peer, "c-dial", rtp_port=caller_media.getsockname()[1])
        keys_by_info(server, peer, "c-dial", to_tag(ok), "4711#0301234567#")
        invite_out = callee.wait("INVITE sip:+49301234567@127.0.0.1:", timeout=15)
        # outside, the public number: the demo's number block + extension 4100
        identity = '"Anywhere Portal Zentrale" <sip:+4930123454100@127.0.0.1>'
        assert f"\r\nFrom: {identity};tag=" in invite_out
        assert f"\r\nP-Asserted-Identity: {identity}\r\n" in invite_out
        assert "\r\nPrivacy: none\r\n" in invite_out
        assert "m=audio" in invite_out and " RTP/AVP 8 0 101" in invite_out  # caller's law first
        callee.send(
            reply(invite_out, "180 Ringing", tag="callee1", port=callee.port), server.address
        )
        assert rtp_payload_types(caller_media, 0.5) == {8}  # ringback, in the caller's law
        sdp = sdp_body(callee_media.getsockname()[1], 0)  # the callee answers µ-law
        callee.send(
            reply(invite_out, "200 OK", tag="callee1", port=callee.port, body=sdp),
            server.address,
        )
        ack = callee.wait(f"ACK sip:callee@127.0.0.1:{callee.port}")
        assert "tag=callee1" in ack
        portal_rtp = ("127.0.0.1", rtp_port_of(invite_out))
        drain(caller_media)
        alaw = bytes([0xD5]) * 160  # A-law near-silence, arrives as µ-law
        for seq in range(5):
            peer_rtp_send(caller_media, ("127.0.0.1", rtp_port_of(ok)), 8, seq, alaw)
            peer_rtp_send(callee_media, portal_rtp, 0, seq, bytes([0xFF]) * 160)
        got_callee = receive_rtp(callee_media, 5)
        got_caller = receive_rtp(caller_media, 5)
        assert {pt for pt, _ in got_callee} == {0}
        assert got_callee[0][1] == audioop_convert(alaw, "alaw", "ulaw")
        assert {pt for pt, _ in got_caller} == {8}  # µ-law from the callee, A-law to the caller
        callee.send(bye_from(invite_out, tag="callee1", port=callee.port), server.address)
        assert callee.wait("SIP/2.0 200")
        assert "c-dial" in peer.wait("BYE", timeout=5)
        assert eventually(lambda: not server.calls and not server.ports.in_use, 5, interval=0.02)
        assert server.stats.bridged == 1 and server.stats.ended == {"dialed": 1, "remote": 1}
    finally:
        server.stop()
        callee.close()
        caller_media.close()
        callee_media.close()


def test_early_media_of_the_called_party_replaces_the_ringback(
    portal_dir, no_leaks, peer: Peer
) -> None:
    callee = Peer()
    server = start_server(
        portal_dir,
        registrar=("127.0.0.1", callee.port),
        register=False,
        trust=("127.0.0.1/32",),
    )
    caller_media, callee_media = media_socket(), media_socket()
    try:
        ok = answer(server, peer, "c-early", rtp_port=caller_media.getsockname()[1])
        keys_by_info(server, peer, "c-early", to_tag(ok), "4711#0301234567#")
        invite_out = callee.wait("INVITE sip:+49301234567@", timeout=15)
        callee.send(
            reply(invite_out, "180 Ringing", tag="early1", port=callee.port), server.address
        )
        ringback = {struct.unpack_from("!I", caller_media.recv(2048), 8)[0] for _ in range(3)}
        sdp = sdp_body(callee_media.getsockname()[1], 8)
        callee.send(
            reply(invite_out, "183 Session Progress", tag="early1", port=callee.port, body=sdp),
            server.address,
        )
        time.sleep(0.3)
        drain(caller_media)
        portal_rtp = ("127.0.0.1", rtp_port_of(invite_out))
        announcement = bytes(range(160))
        for seq in range(5):  # "the person you called is not available ..." before any 200
            peer_rtp_send(callee_media, portal_rtp, 8, seq, announcement)
        got = [caller_media.recv(2048) for _ in range(5)]
        assert {struct.unpack_from("!I", d, 8)[0] for d in got} == {4242}  # theirs only
        assert all(d[12:] == announcement for d in got) and not ringback & {4242}
        assert server.calls["c-early"].state == "connecting"  # not bridged yet
    finally:
        server.stop()
        callee.close()
        caller_media.close()
        callee_media.close()


def test_a_busy_call_back_brings_the_caller_back_to_the_menu(
    portal_dir, no_leaks, peer: Peer
) -> None:
    callee = Peer()
    server = start_server(
        portal_dir,
        registrar=("127.0.0.1", callee.port),
        register=False,
        trust=("127.0.0.1/32",),  # the test's caller talks to it directly
    )
    try:
        ok = answer(server, peer, "c-busy")
        keys_by_info(server, peer, "c-busy", to_tag(ok), "4711#0301234567#")
        invite_out = callee.wait("INVITE sip:+49301234567@", timeout=15)
        callee.send(
            reply(invite_out, "486 Busy Here", tag="callee2", port=callee.port), server.address
        )
        assert callee.wait("ACK sip:+49301234567@")  # the transaction ACKs the 486
        assert eventually(lambda: server.calls["c-busy"].state == "answered", 5, interval=0.02)
        keys_by_info(server, peer, "c-busy", to_tag(ok), "0301234567#", cseq=100)
        again = callee.wait("INVITE sip:+49301234567@", timeout=20)  # back in the menu
        assert again.split("Call-ID: ")[1][:20] != invite_out.split("Call-ID: ")[1][:20]
        assert server.stats.dials == 2 and server.stats.bridged == 0
    finally:
        server.stop()
        callee.close()


def media_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    return sock


def keys_by_info(
    server: SipServer, peer: Peer, call_id: str, tag: str, keys: str, cseq: int = 2
) -> None:
    for n, key in enumerate(keys, start=cseq):
        extra = "Content-Type: application/dtmf\n"
        peer.send(in_dialog(peer, "INFO", call_id, tag, n, extra, key), server.address)
        peer.wait("SIP/2.0 200")


def sdp_body(port: int, pt: int) -> str:
    name = {0: "PCMU", 8: "PCMA"}[pt]
    return (
        "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {name}/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
    )


def reply(request: str, status: str, *, tag: str, port: int, body: str = "") -> str:
    """A response to ``request`` from the called party at ``port`` (its To tag, its
    Contact)."""
    keep = ("Via:", "From:", "Call-ID:", "CSeq:", "Record-Route:")
    lines = [line for line in request.split("\r\n") if line.startswith(keep)]
    to = next(line for line in request.split("\r\n") if line.startswith("To:"))
    head = [f"SIP/2.0 {status}", *lines, f"{to};tag={tag}"]
    head.append(f"Contact: <sip:callee@127.0.0.1:{port}>")
    if body:
        head.append("Content-Type: application/sdp")
    return "\n".join(head) + f"\nContent-Length: {len(body)}\n\n" + body


def bye_from(invite_out: str, *, tag: str, port: int) -> str:
    """The called party's BYE: From/To swapped, to our Contact."""
    field = {line.split(":")[0]: line for line in invite_out.split("\r\n") if ":" in line}
    our_from = field["From"].split(":", 1)[1].strip()
    our_to = field["To"].split(":", 1)[1].strip()
    contact = field["Contact"].split("<", 1)[1].split(">")[0]
    return (
        f"BYE {contact} SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-callee-bye\n"
        f"From: {our_to};tag={tag}\nTo: {our_from}\n"
        f"{field['Call-ID']}\nCSeq: 7 BYE\nContent-Length: 0\n\n"
    )


def peer_rtp_send(
    sock: socket.socket, to: tuple[str, int], pt: int, seq: int, payload: bytes
) -> None:
    sock.sendto(struct.pack("!BBHII", 0x80, pt, seq, seq * 160, 4242) + payload, to)


def receive_rtp(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    out = []
    for _ in range(count):
        data = sock.recv(2048)
        out.append((data[1] & 0x7F, data[12:]))
    return out


def rtp_payload_types(sock: socket.socket, seconds: float) -> set[int]:
    end, types = time.monotonic() + seconds, set()
    while time.monotonic() < end:
        with contextlib.suppress(TimeoutError):
            types.add(sock.recv(2048)[1] & 0x7F)
    return types


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(2048)
    sock.settimeout(2.0)


def audioop_convert(payload: bytes, source: str, target: str) -> bytes:
    import audioop

    linear = getattr(audioop, f"{source}2lin")(payload, 2)
    return bytes(getattr(audioop, f"lin2{target}")(linear, 2))


# --- transfer: the demo's sales line -------------------------------------------------
@pytest.fixture
def demo_server(no_leaks: None) -> Iterator[SipServer]:
    """The demo dialplan (1 = sales: a transfer to sip:sales@127.0.0.1) served raw."""
    from ivr.dialogue import Engine
    from ivr.dialplan.loader import load_dialplan
    from ivr.sip.serve import prompt_audio
    from ivr.sip.server import ServeConfig
    from tests.conftest import DEMO

    engine = Engine(load_dialplan(DEMO))
    config = ServeConfig(
        registrar=("127.0.0.1", 9), port=0, register=False, trust=("127.0.0.1/32",)
    )
    server = SipServer(engine, config, prompt_audio(engine))
    server.start()
    yield server
    server.stop()


def transfer_to_sales(server: SipServer, peer: Peer, call_id: str) -> tuple[str, str]:
    """Call the demo, press 1; returns (our To tag, the REFER)."""
    ok = answer(server, peer, call_id)
    body = "Signal=1\r\nDuration=160\r\n"
    extra = "Content-Type: application/dtmf-relay\n"
    peer.send(in_dialog(peer, "INFO", call_id, to_tag(ok), 2, extra, body), server.address)
    refer = peer.wait("REFER", timeout=15)
    assert "Refer-To: <sip:sales@127.0.0.1>" in refer
    return to_tag(ok), refer


def respond(request: str, status: str) -> str:
    keep = ("Via:", "From:", "To:", "Call-ID:", "CSeq:")
    lines = [line for line in request.split("\r\n") if line.startswith(keep)]
    return f"SIP/2.0 {status}\n" + "\n".join(lines) + "\nContent-Length: 0\n\n"


def sipfrag(peer: Peer, call_id: str, tag: str, cseq: int, status: str) -> str:
    extra = "Event: refer\nSubscription-State: terminated\nContent-Type: message/sipfrag\n"
    return in_dialog(peer, "NOTIFY", call_id, tag, cseq, extra, f"SIP/2.0 {status}\r\n")


def test_a_transfer_ends_our_leg_when_the_notify_says_it_connected(
    demo_server: SipServer, peer: Peer
) -> None:
    tag, refer = transfer_to_sales(demo_server, peer, "c-transfer")
    peer.send(respond(refer, "202 Accepted"), demo_server.address)
    peer.send(sipfrag(peer, "c-transfer", tag, 3, "100 Trying"), demo_server.address)
    assert peer.wait("SIP/2.0 200")
    assert not [m for m in peer.drain(0.5) if m.startswith("BYE")]  # not before the outcome
    peer.send(sipfrag(peer, "c-transfer", tag, 4, "200 OK"), demo_server.address)
    assert "c-transfer" in peer.wait("BYE", timeout=5)
    assert demo_server.stats.ended == {"transfer": 1}


@pytest.mark.parametrize("how", ["notify 486", "refer 403"])
def test_a_failed_transfer_brings_the_caller_back(
    demo_server: SipServer, peer: Peer, how: str
) -> None:
    tag, refer = transfer_to_sales(demo_server, peer, f"c-{how.split()[0]}")
    if how == "refer 403":
        peer.send(respond(refer, "403 Forbidden"), demo_server.address)
    else:
        peer.send(respond(refer, "202 Accepted"), demo_server.address)
        notify = sipfrag(peer, f"c-{how.split()[0]}", tag, 3, "486 Busy Here")
        peer.send(notify, demo_server.address)
    call_id = f"c-{how.split()[0]}"
    assert eventually(lambda: demo_server.calls[call_id].state == "answered", 5, interval=0.02)
    assert not [m for m in peer.drain(1.0) if m.startswith("BYE")]  # the caller stays
    assert demo_server.stats.ended == {}
