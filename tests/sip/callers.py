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

PCAPS = Path("/usr/share/sip-tester")
PCAP_NAMES = {"*": "star", "#": "pound"}
KEY_GAP_MS = 350  # each pcap lasts ~160 ms

Step = tuple[str, ...] | tuple[str, int]

_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="ivr caller">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Test" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [sink_port] RTP/AVP [codec_pt] 101
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
"""

_ANSWERED = """  <recv response="200" rrs="true">
    <action><ereg regexp="[^ ].*" search_in="hdr" header="To:" assign_to="portal_to"/></action>
  </recv>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Test" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

_REPLY = """  <send>
    <![CDATA[
      SIP/2.0 {code}
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
"""

_IN_DIALOG = """  <send retrans="500">
    <![CDATA[
      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Test" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
{extra}      Content-Length: [len]

{body}
    ]]>
  </send>
  <recv response="200"{crlf}/>
"""


_NOTIFY_200 = """  <send retrans="500">
    <![CDATA[
      NOTIFY [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Test" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [$portal_to]
      [routes]
      Call-ID: [call_id]
      CSeq: 50 NOTIFY
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Event: refer
      Subscription-State: terminated;reason=noresource
      Content-Type: message/sipfrag
      Content-Length: [len]

      SIP/2.0 200 OK
    ]]>
  </send>
  <recv response="200"/>
"""
_END = '  <Reference variables="portal_to"/>\n</scenario>\n'


def _keys(keys: str) -> str:
    out = []
    for key in keys:
        name = PCAP_NAMES.get(key, key)
        out.append(
            f'  <nop><action><exec play_pcap_audio="{PCAPS}/dtmf_2833_{name}.pcap"/>'
            f'</action></nop>\n  <pause milliseconds="{KEY_GAP_MS}"/>\n'
        )
    return "".join(out)


def scenario(steps: list[Step], expect: str) -> str:
    """SIPp XML for a caller doing ``steps`` and then expecting ``expect``."""
    if expect == "refused":
        return _HEAD + '  <recv response="403"/>\n' + _ack_error() + _END
    xml = _HEAD + _ANSWERED
    cseq = 2
    for step in steps:
        kind = step[0]
        if kind == "keys":
            xml += _keys(str(step[1]))
        elif kind == "pause":
            xml += f'  <pause milliseconds="{int(step[1])}"/>\n'
        elif kind == "audio":  # plays in the background, from the pcap's start
            xml += f'  <nop><action><exec play_pcap_audio="{step[1]}"/></action></nop>\n'
        elif kind == "info":
            body = f"      Signal={step[1]}\n      Duration=160\n"
            xml += _IN_DIALOG.format(
                method="INFO",
                cseq=cseq,
                extra="      Content-Type: application/dtmf-relay\n",
                body=body,
                crlf="",
            )
            cseq += 1
        elif kind == "hangup":
            xml += _IN_DIALOG.format(
                method="BYE", cseq=cseq, extra="", body="", crlf=' crlf="true"'
            )
            return xml + _END
        else:
            raise ValueError(f"unknown step {step!r}")
    pause = f'  <pause milliseconds="{KEY_GAP_MS}"/>\n'
    if steps and steps[-1][0] == "keys" and xml.endswith(pause):
        xml = xml[: -len(pause)]  # the answer to the last key may come at once
    if expect == "refer":  # as a phone does: 202, then a NOTIFY that the call went well
        xml += '  <recv request="REFER" timeout="30000"/>\n' + _REPLY.format(code="202 Accepted")
        xml += _NOTIFY_200
    xml += '  <recv request="BYE" timeout="30000"/>\n' + _REPLY.format(code="200 OK")
    return xml + '  <pause milliseconds="200"/>\n' + _END


def _ack_error() -> str:
    return """  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Test" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""


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
