"""SIP normalisation in front of pyVoIP's strict parser."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ivr.sip.normalize import normalize

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\n"

BARESIP_INVITE = (
    b"INVITE sip:4100@127.0.0.1 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1;rport\r\n"
    b"f: <sip:+491711234567@127.0.0.1>;tag=a\r\n"
    b"t: <sip:4100@127.0.0.1>\r\n"
    b"i: abc@127.0.0.1\r\n"
    b"CSEQ:1 INVITE\r\n"
    b"m: <sip:u@127.0.0.1:5062>\r\n"
    b"Supported:\r\n"
    b"User-Agent: baresip\r\n"
    b"c: application/sdp\r\n"
    b"l: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)


def test_a_baresip_style_invite_becomes_canonical() -> None:
    out = normalize(BARESIP_INVITE)
    assert out is not None
    head, body = out.split(b"\r\n\r\n", 1)
    assert body == SDP
    assert head.decode().split("\r\n") == [
        "INVITE sip:4100@127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1;rport",
        "From: <sip:+491711234567@127.0.0.1>;tag=a",
        "To: <sip:4100@127.0.0.1>",
        "Call-ID: abc@127.0.0.1",
        "CSeq: 1 INVITE",
        "Contact: <sip:u@127.0.0.1:5062>",
        "User-Agent: baresip",
        "Content-Type: application/sdp",
        f"Content-Length: {len(SDP)}",
    ]


def test_responses_folding_and_bare_lf() -> None:
    out = normalize(b"SIP/2.0 200 OK\nvia: SIP/2.0/UDP x\n  ;branch=1\nX-Custom:  y \n\n")
    assert out == b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x ;branch=1\r\nX-Custom: y\r\n\r\n"


def test_garbage_is_none() -> None:
    for junk in (
        b"",
        b"hello",
        b"\x00\x01\x02",
        b"GET / HTTP/1.1\r\n\r\n",
        b"INVITE x SIP/2.0\r\n:bad\r\n\r\n",
    ):
        assert normalize(junk) is None


@given(st.binary(max_size=400))
def test_any_bytes_never_raise(data: bytes) -> None:
    normalize(data)


def test_long_header_blocks_and_lines_are_not_sip() -> None:
    """A 60 KB Via once cost ~100 ms of splitting per datagram: a flood lever."""
    from ivr.sip.normalize import MAX_HEAD, MAX_LINE, normalize

    start = b"OPTIONS sip:portal@127.0.0.1 SIP/2.0\r\n"
    fine = start + b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK" + b"x" * 3000 + b"\r\n\r\n"
    assert normalize(fine) is not None
    long_line = start + b"Via: " + b"x" * MAX_LINE + b"\r\n\r\n"
    assert normalize(long_line) is None
    many = start + b"Subject: hello\r\n" * (MAX_HEAD // 16 + 10) + b"\r\n"
    assert normalize(many) is None
    folded = start + b"Subject: a\r\n" + b" continued\r\n" * 2000 + b"\r\n"
    assert normalize(folded) is None
