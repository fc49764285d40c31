"""linphonec (tests/sip/linphone.py) as the remote party of a call that is taken over
with an RFC 3891 ``Replaces`` INVITE, the way the portal pulls a running call.

SIPp plays the desk phone: it calls linphone directly and waits for a BYE. A raw
socket (``Peer``) plays the portal: it sends linphone an INVITE with
``Replaces: <call-id>;to-tag=<linphone's tag>;from-tag=<SIPp's tag>``. linphone answers
it with 200 and SDP, sends BYE on the old dialog, and sends its WAV (a 1 kHz tone) as
G.711 to the port the portal's SDP named.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ivr.audio.convert import decode
from ivr.sip.rtp import RtpPacket
from tests.sip import sipp_xml
from tests.sip.conftest import Peer, to_tag
from tests.sip.linphone import LINPHONEC, Linphone, write_tone
from tests.sip.peers import HOST, SIPP, SippProcess, sip_options

pytestmark = [
    pytest.mark.skipif(LINPHONEC is None, reason="linphonec (linphone-cli) is not on PATH"),
    pytest.mark.timeout(60),
]
needs_sipp = pytest.mark.skipif(SIPP is None, reason="sipp (SIPp) is not on PATH")

TONE_HZ = 1000.0

# The desk phone: calls linphone, ACKs, writes linphone's To tag to totag.txt (in its
# working directory) and waits for the BYE. Call-ID comes from -cid_str, From tag from
# -key ftag, so the test knows both without parsing anything.
DESK = sipp_xml.user_agent("Desk", "desk", with_port=True, from_tag="[ftag]")
DESK_SCENARIO = (
    sipp_xml.head("desk_replaced", doctype=True)
    + sipp_xml.invite(
        DESK,
        sipp_xml.SERVICE,
        body=sipp_xml.sdp(
            "desk 1 1",
            "[media_port] RTP/AVP 0 8 101",
            sipp_xml.PCMU,
            sipp_xml.PCMA,
            sipp_xml.TELEPHONE_EVENT,
        ),
    )
    + sipp_xml.provisional("100", "180", "183")
    + """  <recv response="200" rrs="true">
    <action>
      <ereg regexp="tag=([^;> ]+)" search_in="hdr" header="To:" assign_to="whole,totag"/>
      <exec command="echo [$totag] > totag.txt"/>
    </action>
  </recv>
"""
    + sipp_xml.ack(DESK)
    + sipp_xml.bye_answered()
    + sipp_xml.end("whole")
)


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    """Three seconds of 1 kHz (linphone loops it, with 0.5 s of silence in between)."""
    return write_tone(tmp_path / "tone.wav", 3.0, TONE_HZ)


class Audio:
    """RTP received on one loopback port."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.packets: list[RtpPacket] = []
        self.other = 0  # datagrams that are not RTP (linphone sends STUN binding requests)

    def listen(self, seconds: float) -> list[RtpPacket]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            packet = RtpPacket.parse(data)
            if packet is None:
                self.other += 1
            else:
                self.packets.append(packet)
        return self.packets

    def pcm(self) -> np.ndarray:
        """The G.711 payloads (PCMU or PCMA) decoded to 16-bit samples."""
        codecs = {0: "pcmu", 8: "pcma"}
        chunks = [
            decode(p.payload, codecs[p.payload_type])  # type: ignore[arg-type]
            for p in self.packets
            if p.payload_type in codecs
        ]
        return np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float64)

    def rms(self) -> float:
        samples = self.pcm()
        return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0

    def peak_hz(self, rate: int = 8000) -> float:
        samples = self.pcm()
        spectrum = np.abs(np.fft.rfft(samples))
        return float(np.argmax(spectrum) * rate / samples.size)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def audio() -> Iterator[Audio]:
    sink = Audio()
    yield sink
    sink.close()


@pytest.fixture
def portal() -> Iterator[Peer]:
    """The portal's SIP side: a raw socket on loopback."""
    p = Peer()
    yield p
    p.close()


def sdp(rtp_port: int) -> str:
    return (
        f"v=0\r\no=portal 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )


class Takeover:
    """The portal's new dialog with linphone (one INVITE, its ACK and BYE)."""

    def __init__(self, portal: Peer, linphone: Linphone, rtp_port: int) -> None:
        self.portal = portal
        self.linphone = linphone
        self.rtp_port = rtp_port
        self.call_id = f"portal-{uuid.uuid4().hex[:12]}"
        self.tag = f"p{uuid.uuid4().hex[:10]}"
        self.remote_tag = ""
        self.provisional: list[str] = []

    def _dialog_headers(self, method: str, cseq: int, branch: str) -> str:
        to = f"<{self.linphone.uri}>" + (f";tag={self.remote_tag}" if self.remote_tag else "")
        return (
            f"{method} {self.linphone.uri} SIP/2.0\n"
            f"Via: SIP/2.0/UDP {HOST}:{self.portal.port};branch=z9hG4bK{branch};rport\n"
            "Max-Forwards: 70\n"
            f'From: "Portal" <sip:portal@{HOST}:{self.portal.port}>;tag={self.tag}\n'
            f"To: {to}\n"
            f"Call-ID: {self.call_id}\n"
            f"CSeq: {cseq} {method}\n"
        )

    def invite(self, extra: str) -> None:
        """Send the INVITE; ``extra`` holds Replaces / Require / Supported lines."""
        body = sdp(self.rtp_port)
        self.portal.send(
            self._dialog_headers("INVITE", 1, uuid.uuid4().hex[:10])
            + f"Contact: <sip:portal@{HOST}:{self.portal.port}>\n"
            + extra
            + f"Content-Type: application/sdp\nContent-Length: {len(body)}\n\n"
            + body,
            (HOST, self.linphone.port),
        )

    def final(self, timeout: float = 5.0) -> str:
        """The first final response to the INVITE ("" if none came within timeout)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                response = self.portal.wait("SIP/2.0 ", timeout=left)
            except AssertionError:  # Peer.wait's "nothing came"
                break
            code = int(response.split(" ", 2)[1])
            if code < 200:
                self.provisional.append(response.split("\r\n", 1)[0])
                continue
            if code < 300:
                self.remote_tag = to_tag(response)
            return response
        return ""

    def ack(self) -> None:
        self.portal.send(
            self._dialog_headers("ACK", 1, uuid.uuid4().hex[:10]) + "Content-Length: 0\n\n",
            (HOST, self.linphone.port),
        )

    def bye(self) -> str:
        self.portal.send(
            self._dialog_headers("BYE", 2, uuid.uuid4().hex[:10]) + "Content-Length: 0\n\n",
            (HOST, self.linphone.port),
        )
        return self.portal.wait("SIP/2.0 ", timeout=5)


def replaces(call_id: str, linphone_tag: str, other_tag: str) -> str:
    return f"Replaces: {call_id};to-tag={linphone_tag};from-tag={other_tag}\n"


REQUIRE = "Require: replaces\nSupported: replaces\n"


class Desk:
    """SIPp as the desk phone in a call with linphone (it ends when linphone sends BYE)."""

    def __init__(self, linphone: Linphone, workdir: Path, timeout: float = 30) -> None:
        scenario = workdir / "desk_replaced.xml"
        scenario.write_text(DESK_SCENARIO)
        prefix = f"desk-{uuid.uuid4().hex[:12]}"
        self.call_id = f"{prefix}-1"  # -cid_str with %u, the call number
        self.tag = f"d{uuid.uuid4().hex[:10]}"
        self.sipp = SippProcess(
            scenario,
            linphone.address,
            service=linphone.user,
            keys={"ftag": self.tag},
            timeout=timeout,
            extra=["-cid_str", f"{prefix}-%u"],
        )

    def linphone_tag(self, timeout: float = 10.0) -> str:
        """linphone's tag (the To tag of its 200 OK), once SIPp has seen the 200."""
        path = self.sipp.workdir / "totag.txt"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().strip():
                return path.read_text().strip()
            if self.sipp.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("SIPp saw no 200 OK from linphone:\n" + self.sipp.result().describe())

    def close(self) -> None:
        self.sipp.close()

    def __enter__(self) -> Desk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tag_of(header: str | None) -> str:
    match = re.search(r";\s*tag=([^;>\s]+)", header or "")
    assert match, f"no tag in {header!r}"
    return match.group(1)


def assert_tone(audio: Audio, seconds: float = 1.5) -> None:
    """linphone's RTP reaches the port of the portal's SDP and carries the 1 kHz tone."""
    packets = audio.listen(seconds)
    assert len(packets) >= 0.8 * seconds * 50, (len(packets), audio.other)  # 20 ms packets
    assert {p.payload_type for p in packets} <= {0, 8}
    assert audio.rms() > 1000, audio.rms()
    assert abs(audio.peak_hz() - TONE_HZ) < 20, audio.peak_hz()


# -- the wrapper ---------------------------------------------------------------------


def test_linphone_listens_on_loopback_and_has_no_calls() -> None:
    with Linphone() as phone:
        assert phone.startup_seconds is not None and phone.startup_seconds < 10
        assert sip_options(phone.port) == "SIP/2.0 200 Ok"
        assert phone.calls() == []
        assert "Using files." in phone.send("soundcard show")
        assert phone.send("ports").startswith(f"sip port = {phone.port}")
        workdir = phone.workdir
    assert not workdir.exists()
    assert sip_options(phone.port, timeout=0.3) is None


def test_two_linphones_call_and_hang_up(tone: Path) -> None:
    """Two instances side by side (own HOME, own port): alice calls bob, who answers
    automatically; alice hangs up and bob's call ends too."""
    with Linphone("alice", audio=tone) as alice, Linphone("bob", auto_answer=True) as bob:
        assert alice.port != bob.port
        call = alice.call(bob.uri)
        alice.wait_call_state(call, "StreamsRunning")
        (incoming,) = bob.calls()
        assert incoming.state == "StreamsRunning", bob.describe()
        assert "sip:alice@127.0.0.1" in incoming.remote
        invite = next(m for m in alice.sip_messages() if m.first_line.startswith("INVITE "))
        assert invite.direction == "sent" and invite.first_line.startswith(f"INVITE {bob.uri} ")
        alice.hangup()
        bob.wait_for(rf"Call {incoming.id} with .* ended")
        assert bob.calls() == [] and alice.calls() == []


def test_linphone_rings_without_auto_answer_until_told() -> None:
    with Linphone("alice") as alice, Linphone("bob", auto_answer=False) as bob:
        call = alice.call(bob.uri)
        alice.wait_call_state(call, "OutgoingRinging")
        (incoming,) = bob.calls()
        assert incoming.state == "IncomingReceived"
        bob.answer(incoming.id)
        alice.wait_call_state(call, "StreamsRunning")
        bob.hangup_all()
        alice.wait_for(rf"Call {call} with .* ended")


# -- Replaces ------------------------------------------------------------------------


@needs_sipp
@pytest.mark.parametrize(
    ("auto_answer", "headers"),
    [
        (True, REQUIRE),
        (False, REQUIRE),  # liblinphone accepts a replacing INVITE on its own
        (True, ""),  # Require: replaces is not needed
    ],
    ids=["auto-answer", "manual-answer", "no-require"],
)
def test_replaces_takes_over_the_call_from_the_desk(
    tmp_path: Path, portal: Peer, audio: Audio, tone: Path, auto_answer: bool, headers: str
) -> None:
    with (
        Linphone("mobile", audio=tone, auto_answer=auto_answer) as mobile,
        Desk(mobile, tmp_path) as desk,
    ):
        if not auto_answer:
            first = mobile.wait_for(r"Receiving new incoming call from .*, assigned id (\d+)")
            mobile.answer(int(first.group(1)))
        linphone_tag = desk.linphone_tag()
        mobile.wait_for("Media streams established")

        takeover = Takeover(portal, mobile, audio.port)
        takeover.invite(replaces(desk.call_id, linphone_tag, desk.tag) + headers)
        answer = takeover.final()
        assert answer.startswith("SIP/2.0 200 "), answer
        assert "Content-Type: application/sdp" in answer and "m=audio " in answer, answer
        takeover.ack()

        result = desk.sipp.wait(timeout=10)  # the desk scenario ends with BYE / 200
        assert result.ok and result.successful == 1, result.describe() + mobile.describe()
        bye = [m for m in mobile.sip_messages() if m.first_line.startswith("BYE ")]
        assert [m.header("Call-ID") for m in bye] == [desk.call_id]
        assert tag_of(bye[0].header("From")) == linphone_tag
        assert tag_of(bye[0].header("To")) == desk.tag

        assert_tone(audio)
        (call,) = mobile.calls()
        assert call.state == "StreamsRunning" and "sip:portal@" in call.remote

        assert takeover.bye().startswith("SIP/2.0 200 ")
        mobile.wait_for(rf"Call {call.id} with .* ended")
        assert mobile.calls() == []


@needs_sipp
def test_unmatched_replaces_rings_as_a_second_call(
    tmp_path: Path, portal: Peer, audio: Audio
) -> None:
    """A Replaces that matches no dialog (here: the tags swapped) is not refused with
    481: linphone rings (180) with a second call and the desk call goes on."""
    with Linphone("mobile") as mobile, Desk(mobile, tmp_path) as desk:
        linphone_tag = desk.linphone_tag()
        mobile.wait_for("Media streams established")
        takeover = Takeover(portal, mobile, audio.port)
        takeover.invite(replaces(desk.call_id, desk.tag, linphone_tag) + REQUIRE)
        assert takeover.final(timeout=2) == ""
        assert takeover.provisional == ["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing"]
        states = sorted(call.state for call in mobile.calls())
        assert states == ["IncomingReceived", "StreamsRunning"]
        assert desk.sipp.popen.poll() is None  # no BYE for the desk


@needs_sipp
def test_require_is_not_checked(tmp_path: Path, portal: Peer, audio: Audio) -> None:
    """linphone ignores Require: an unknown option-tag gets no 420."""
    with Linphone("mobile") as mobile, Desk(mobile, tmp_path) as desk:
        linphone_tag = desk.linphone_tag()
        mobile.wait_for("Media streams established")
        takeover = Takeover(portal, mobile, audio.port)
        takeover.invite(replaces(desk.call_id, linphone_tag, desk.tag) + "Require: x-unknown\n")
        assert takeover.final().startswith("SIP/2.0 200 ")
        takeover.ack()
        assert desk.sipp.wait(timeout=10).successful == 1


def test_replaces_a_call_that_linphone_placed(portal: Peer, audio: Audio, tone: Path) -> None:
    """linphone as the caller of the replaced dialog: its tag is the From tag there.
    The other party (a second linphone) gets the BYE and its call ends."""
    with Linphone("mobile", audio=tone) as mobile, Linphone("desk") as desk:
        call = mobile.call(desk.uri)
        mobile.wait_call_state(call, "StreamsRunning")
        messages = mobile.sip_messages()
        invite = next(m for m in messages if m.first_line.startswith("INVITE "))
        ok = next(
            m
            for m in messages
            if m.first_line.startswith("SIP/2.0 200 ") and "INVITE" in (m.header("CSeq") or "")
        )
        takeover = Takeover(portal, mobile, audio.port)
        call_id = invite.header("Call-ID") or ""
        takeover.invite(
            replaces(call_id, tag_of(invite.header("From")), tag_of(ok.header("To"))) + REQUIRE
        )
        assert takeover.final().startswith("SIP/2.0 200 ")
        takeover.ack()
        desk.wait_for(r"Call \d+ with .* ended")
        assert desk.calls() == []
        assert_tone(audio)
        (current,) = mobile.calls()
        assert "sip:portal@" in current.remote
