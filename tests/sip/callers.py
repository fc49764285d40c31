"""Scripted SIPp callers for the end-to-end tests, and an RTP sink that hears the portal.

A caller scenario is generated from a script: INVITE (From = the caller number, audio
to the sink's port), then steps — ``("keys", "4711#")`` sends RFC 4733 events from
SIPp's own pcaps, ``("pause", ms)``, ``("info", "5")`` sends a SIP INFO key,
``("audio", "x.pcap")`` starts playing a pcap's RTP, ``("hangup",)`` sends BYE — and then what the caller expects at the end: ``"refer"``
(REFER, 202, then the portal's BYE), ``"bye"`` (the portal hangs up), ``"refused"``
(a 403 before answering).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from tests.sip import sipp_xml

PCAPS = Path("/usr/share/sip-tester")
PCAP_NAMES = {"*": "star", "#": "pound"}
KEY_GAP_MS = 350  # each pcap lasts ~160 ms

Step = tuple[str, ...] | tuple[str, int]

#: the caller: From the caller number (``-key caller``), Contact sipp
CALLER = sipp_xml.user_agent(
    "Test", "[caller]", with_port=True, contact_user="sipp", rport=False, routes_first=False
)
_HEAD = (
    sipp_xml.head("ivr caller", declaration=sipp_xml.LATIN1)
    + sipp_xml.invite(
        CALLER,
        sipp_xml.SERVICE,
        body=sipp_xml.sdp(
            "user1 53655765 2353687637",
            "[sink_port] RTP/AVP [codec_pt] 101",
            sipp_xml.TELEPHONE_EVENT,
            "a=fmtp:101 0-15",
        ),
    )
    + sipp_xml.provisional("100", "180")
)

_ANSWERED = """  <recv response="200" rrs="true">
    <action><ereg regexp="[^ ].*" search_in="hdr" header="To:" assign_to="portal_to"/></action>
  </recv>
""" + sipp_xml.ack(CALLER)

# as a phone does after a REFER: a NOTIFY that the call went well (no Max-Forwards, and
# the sipfrag body ends the message)
_NOTIFY_200 = sipp_xml.send(
    "NOTIFY [next_url] SIP/2.0",
    CALLER.via,
    f"From: {CALLER.sender}",
    "To: [$portal_to]",
    "[routes]",
    CALLER.call_id,
    "CSeq: 50 NOTIFY",
    f"Contact: {CALLER.contact}",
    "Event: refer",
    "Subscription-State: terminated;reason=noresource",
    "Content-Type: message/sipfrag",
    "Content-Length: [len]",
    "",
    "SIP/2.0 200 OK",
    retrans="500",
) + sipp_xml.tag("recv", response="200")
_END = sipp_xml.end("portal_to")


def _reply(status: str) -> str:
    return sipp_xml.response(status, f"Contact: {CALLER.contact}")


def _keys(keys: str) -> str:
    out = []
    for key in keys:
        name = PCAP_NAMES.get(key, key)
        out.append(
            f'  <nop><action><exec play_pcap_audio="{PCAPS}/dtmf_2833_{name}.pcap"/>'
            f"</action></nop>\n{sipp_xml.pause(KEY_GAP_MS)}"
        )
    return "".join(out)


def scenario(steps: list[Step], expect: str) -> str:
    """SIPp XML for a caller doing ``steps`` and then expecting ``expect``."""
    if expect == "refused":
        return (
            _HEAD
            + sipp_xml.tag("recv", response="403")
            + sipp_xml.ack_failure(CALLER, sipp_xml.SERVICE)
            + _END
        )
    xml = _HEAD + _ANSWERED
    cseq = 2
    for step in steps:
        kind = step[0]
        if kind == "keys":
            xml += _keys(str(step[1]))
        elif kind == "pause":
            xml += sipp_xml.pause(int(step[1]))
        elif kind == "audio":  # plays in the background, from the pcap's start
            xml += f'  <nop><action><exec play_pcap_audio="{step[1]}"/></action></nop>\n'
        elif kind == "info":
            dtmf = (f"Signal={step[1]}", "Duration=160", "")
            info = ("Content-Type: application/dtmf-relay", "Content-Length: [len]", "", *dtmf)
            xml += sipp_xml.in_dialog(CALLER, "INFO", cseq, body=info)
            xml += sipp_xml.tag("recv", response="200")
            cseq += 1
        elif kind == "hangup":
            # no body: Content-Length [len] (0), and one blank line more than it needs
            bye = ("Content-Length: [len]", "", "")
            xml += sipp_xml.in_dialog(CALLER, "BYE", cseq, body=bye)
            return xml + sipp_xml.tag("recv", response="200", crlf="true") + _END
        else:
            raise ValueError(f"unknown step {step!r}")
    gap = sipp_xml.pause(KEY_GAP_MS)
    if steps and steps[-1][0] == "keys" and xml.endswith(gap):
        xml = xml[: -len(gap)]  # the answer to the last key may come at once
    if expect == "refer":  # as a phone does: 202, then a NOTIFY that the call went well
        xml += sipp_xml.tag("recv", request="REFER", timeout="30000") + _reply("202 Accepted")
        xml += _NOTIFY_200
    xml += sipp_xml.tag("recv", request="BYE", timeout="30000") + _reply("200 OK")
    return xml + sipp_xml.pause(200) + _END


@dataclass
class RtpSink:
    """A UDP socket standing in for the caller's audio port; counts what arrives."""

    sock: socket.socket = field(
        default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    )

    def __post_init__(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def packets(self) -> list[tuple[int, bytes]]:
        """Every (payload type, payload) received so far."""
        out: list[tuple[int, bytes]] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return out
            if len(data) >= 12 and data[0] >> 6 == 2:
                out.append((data[1] & 0x7F, data[12:]))

    def close(self) -> None:
        self.sock.close()


def loudness(payloads: list[bytes], codec_pt: int) -> float:
    """RMS of the decoded G.711 audio (0 = digital silence)."""
    import audioop

    pcm = b"".join(
        audioop.alaw2lin(p, 2) if codec_pt == 8 else audioop.ulaw2lin(p, 2) for p in payloads
    )
    if not pcm:
        return 0.0
    return float(audioop.rms(pcm, 2))
