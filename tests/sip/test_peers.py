"""The SIP test peers work: Kamailio registers and proxies, SIPp calls through it; Kamailio
lists its dialogs over JSON-RPC and keeps P-Asserted-Identity only from trusted sources."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sip import sipp_xml
from tests.sip.peers import (
    HOST,
    KAMAILIO,
    SCENARIOS,
    SIPP,
    Kamailio,
    RpcError,
    SippProcess,
    eventually,
    free_udp_port,
    listening,
    run_sipp,
    sip_options,
    sipp_popen,
)

pytestmark = [
    pytest.mark.skipif(SIPP is None, reason="sipp (SIPp) is not on PATH"),
    pytest.mark.skipif(KAMAILIO is None, reason="kamailio is not on PATH (nor in /usr/sbin)"),
]

REGISTER = SCENARIOS / "register.xml"
UAS = SCENARIOS / "uas_answer.xml"
UAC = SCENARIOS / "uac_basic.xml"

# A desk phone: INVITE [ruri] From sip:[caller]@127.0.0.1 with one more header line
# [extra] (never empty: an empty line would end the headers), 200, ACK, pause for
# sipp's -d ms, BYE. Echoes the Record-Route set like uac_basic.xml.
DESK = sipp_xml.user_agent("Desk", "[caller]")
DESK_SDP = sipp_xml.sdp("desk 53655765 2353687637", "[media_port] RTP/AVP 0", sipp_xml.PCMU)


def _talk_and_hang_up(ack_cseq: int, **ack_attributes: str) -> str:
    """From the 2xx to the INVITE with CSeq ack_cseq on: ACK, pause, BYE, its 200."""
    return (
        sipp_xml.ack(DESK, ack_cseq, **ack_attributes)
        + sipp_xml.pause()
        + sipp_xml.in_dialog(DESK, "BYE", ack_cseq + 1)
        + sipp_xml.tag("recv", response="200", crlf="true")
        + sipp_xml.end()
    )


DESK_UAC = (
    sipp_xml.head("desk phone", doctype=True)
    + sipp_xml.invite(DESK, "[ruri]", "[extra]", body=DESK_SDP)
    + sipp_xml.provisional("100", "180")
    + sipp_xml.tag("recv", response="200", rrs="true")
    + _talk_and_hang_up(1)
)

# The desk phone of DESK_UAC behind a proxy that wants digest auth (kamailio WITH_AUTH):
# INVITE (CSeq 1), 407, ACK, the INVITE again (CSeq 2) with sipp's [authentication]
# (a Proxy-Authorization header from -au USER -ap PASSWORD), then as DESK_UAC. The sipp
# transactions (start_txn/response_txn) make a 407 or 403 to the second INVITE fail
# the call: without them sipp takes any 407 to an INVITE for a retransmission of the
# first, re-sends its ACK and waits until its timeout.
DESK_UAC_AUTH = (
    sipp_xml.head("desk phone, proxy auth", doctype=True)
    + sipp_xml.invite(DESK, "[ruri]", "[extra]", body=DESK_SDP, start_txn="challenged")
    + sipp_xml.provisional("100", response_txn="challenged")
    + sipp_xml.tag("recv", response="407", auth="true", response_txn="challenged")
    + sipp_xml.ack_failure(DESK, "[ruri]", via="[last_Via:]", ack_txn="challenged")
    + sipp_xml.invite(
        DESK, "[ruri]", "[authentication]", "[extra]", body=DESK_SDP, cseq=2, start_txn="invite"
    )
    + sipp_xml.provisional("100", "180", response_txn="invite")
    + sipp_xml.tag("recv", response="200", rrs="true", response_txn="invite")
    + _talk_and_hang_up(2, ack_txn="invite")
)

PAI = "P-Asserted-Identity: <sip:+4922112345@127.0.0.1>"


def desk_call(
    tmp_path: Path,
    kamailio: Kamailio,
    ruri: str,
    *,
    extra: str = "Subject: desk call",
    port: int | None = None,
    hold_ms: int = 0,
    auth: tuple[str, str] | None = None,
) -> SippProcess:
    """Start the desk phone 1001 calling ruri through kamailio (from port, if given).

    With ``auth`` (user, password) it answers one 407 challenge (DESK_UAC_AUTH) and a
    refused call ends without sipp's abort BYE (which the proxy would relay to ruri:
    it carries the refusal's To tag, so it looks in-dialog)."""
    scenario = tmp_path / ("desk_uac.xml" if auth is None else "desk_uac_auth.xml")
    scenario.write_text(DESK_UAC if auth is None else DESK_UAC_AUTH)
    credentials: list[str] = []
    if auth is not None:
        credentials = ["-au", auth[0], "-ap", auth[1], "-default_behaviors", "all,-bye"]
    return sipp_popen(
        scenario,
        kamailio.address,
        keys={"ruri": ruri, "caller": "1001", "extra": extra},
        port=port,
        timeout=15,
        extra=["-d", str(hold_ms), *credentials],
    )


def call_answered(
    tmp_path: Path, kamailio: Kamailio, uas: SippProcess, ruri: str, **options: Any
) -> None:
    """The desk phone calls ruri (the uas) through kamailio (``desk_call`` options):
    both sides end their call well."""
    with desk_call(tmp_path, kamailio, ruri, **options) as desk:
        called = desk.wait()
    answered = uas.wait(timeout=10)
    why = f"{called.describe()}\n--- uas ---\n{answered.describe()}\n--- kamailio ---\n"
    assert called.ok and answered.ok, why + kamailio.log()[-3000:]


@contextlib.contextmanager
def remote_party(port: int, messages: Path) -> Iterator[SippProcess]:
    """The remote party (uas_answer.xml) on port, listening, every message it gets
    traced to the file messages."""
    trace = ["-trace_msg", "-message_file", str(messages)]
    with sipp_popen(UAS, port=port, timeout=10, extra=trace) as uas:
        assert listening(uas), uas.wait(timeout=1).describe()
        yield uas


def received_invite(message_log: Path) -> str:
    """The head of the first INVITE in a sipp -trace_msg log (CRLF line ends)."""
    text = message_log.read_bytes().decode(errors="replace")  # read_text() drops the CRs
    start = text.index("INVITE sip:")
    end = text.find("\r\n\r\n", start)
    return text[start:] if end < 0 else text[start:end]


@pytest.fixture
def kamailio() -> Iterator[Kamailio]:
    with Kamailio() as proxy:
        yield proxy


def test_kamailio_answers_options(kamailio: Kamailio) -> None:
    assert sip_options(kamailio.port) == "SIP/2.0 200 OK"
    assert kamailio.address == f"127.0.0.1:{kamailio.port}"


def test_kamailio_restart_keeps_port(kamailio: Kamailio) -> None:
    port = kamailio.port
    kamailio.restart()
    assert kamailio.port == port
    assert sip_options(port) == "SIP/2.0 200 OK"


def test_call_through_kamailio_to_registered_sipp_uas(kamailio: Kamailio) -> None:
    uas_port = free_udp_port()
    with sipp_popen(UAS, port=uas_port, timeout=15) as uas:
        reg = run_sipp(
            REGISTER,
            kamailio.address,
            keys={"user": "portal", "contact_port": str(uas_port)},
            timeout=5,
        )
        assert reg.ok, reg.describe()
        assert reg.successful == 1

        uac = run_sipp(UAC, kamailio.address, service="portal", timeout=10)
        assert uac.ok, uac.describe() + "\n--- kamailio ---\n" + kamailio.log()[-3000:]
        assert uac.successful == 1

        answered = uas.wait(timeout=10)
        assert answered.ok, answered.describe()
        assert answered.successful == 1


def test_call_to_unregistered_user_gets_404(kamailio: Kamailio) -> None:
    uac = run_sipp(UAC, kamailio.address, service="nobody", timeout=5)
    assert uac.returncode != 0
    assert uac.failed == 1
    assert "SIP/2.0 404" in uac.errors, uac.describe()


def test_register_with_digest_auth() -> None:
    with Kamailio(password="s3cret") as proxy:
        keys = {"user": "portal", "contact_port": str(free_udp_port())}
        good = run_sipp(
            REGISTER, proxy.address, keys=keys, timeout=5, extra=["-au", "portal", "-ap", "s3cret"]
        )
        assert good.ok, good.describe() + "\n--- kamailio ---\n" + proxy.log()[-3000:]
        bad = run_sipp(
            REGISTER, proxy.address, keys=keys, timeout=5, extra=["-au", "portal", "-ap", "wrong"]
        )
        assert not bad.ok
        assert bad.failed == 1


def test_rpc_answers_and_lists_no_dialogs(kamailio: Kamailio) -> None:
    assert str(kamailio.rpc("core.version")).startswith("kamailio 5.")
    assert kamailio.dialogs() == []
    with pytest.raises(RpcError, match="Not found") as error:
        kamailio.rpc("dlg.list_match", "furi", "sw", "sip:1001@")
    assert error.value.code == 404
    with pytest.raises(RpcError):
        kamailio.rpc("no.such_method")


@pytest.mark.parametrize("addressed", ["registered", "direct"])
def test_dialogs_show_a_confirmed_desk_call(
    kamailio: Kamailio, tmp_path: Path, addressed: str
) -> None:
    """Desk phone 1001 calls a remote party (registered, or its Contact directly):
    one confirmed dialog with both tags while up, none after the BYE."""
    uas_port = free_udp_port()
    with sipp_popen(UAS, port=uas_port, timeout=20) as uas:
        assert listening(uas), uas.wait(timeout=1).describe()
        if addressed == "registered":
            keys = {"user": "remote", "contact_port": str(uas_port)}
            reg = run_sipp(REGISTER, kamailio.address, keys=keys, timeout=5)
            assert reg.ok, reg.describe()
            ruri = f"sip:remote@{kamailio.address}"
        else:
            ruri = f"sip:remote@{HOST}:{uas_port}"
        with desk_call(tmp_path, kamailio, ruri, hold_ms=2500) as desk:

            def confirmed() -> list[dict[str, Any]]:
                found = kamailio.dialogs()
                return found if any(d["state"] == 4 for d in found) else []

            dialogs = eventually(confirmed, timeout=5)
            assert dialogs is not None, kamailio.log()[-3000:]
            assert len(dialogs) == 1, dialogs
            dialog = dialogs[0]
            assert dialog["state"] == 4
            assert dialog["call-id"] == f"1-{desk.popen.pid}@{HOST}"  # sipp's [call_id]
            assert dialog["from_uri"] == f"sip:1001@{HOST}"
            assert dialog["to_uri"] == ruri
            assert dialog["caller"]["tag"] == f"{desk.popen.pid}SIPpTag001"
            assert dialog["caller"]["contact"] == f"sip:1001@{HOST}:{desk.port}"
            assert dialog["callee"]["tag"] == f"{uas.popen.pid}SIPpTag011"
            assert dialog["callee"]["contact"] == f"sip:{HOST}:{uas_port};transport=UDP"
            # the way a portal finds the desk's call
            assert kamailio.rpc("dlg.list_match", "furi", "sw", "sip:1001@") == dialogs

            called = desk.wait()
            assert called.ok, called.describe() + "\n--- kamailio ---\n" + kamailio.log()[-3000:]
        answered = uas.wait(timeout=10)
        assert answered.ok, answered.describe()
    # the dialog ends with the BYE and is dropped with the BYE transaction (~5 s)
    assert all(d["state"] == 5 for d in kamailio.dialogs())
    assert eventually(lambda: kamailio.dialogs() == [], timeout=10), kamailio.dialogs()


@pytest.mark.parametrize(
    ("trusted", "kept"),
    [
        ("nobody", False),  # no TRUSTED_SOURCE: stripped from everybody
        ("other port", False),  # another port of the same IP is trusted
        ("caller", True),
        ("caller in a list", True),
    ],
)
def test_asserted_identity_only_from_trusted_source(
    tmp_path: Path, trusted: str, kept: bool
) -> None:
    """The remote party sees the desk's P-Asserted-Identity only if the proxy trusts
    the desk's source IP:port (on loopback the port is what tells peers apart)."""
    caller_port, other_port, uas_port = free_udp_port(), free_udp_port(), free_udp_port()
    sources = {
        "nobody": None,
        "other port": f"{HOST}:{other_port}",
        "caller": f"{HOST}:{caller_port}",
        "caller in a list": [f"{HOST}:{other_port}", f"{HOST}:{caller_port}"],
    }[trusted]
    messages = tmp_path / "uas_messages.log"
    with Kamailio(trusted=sources) as proxy, remote_party(uas_port, messages) as uas:
        extra = f"{PAI}\r\nPrivacy: none"
        ruri = f"sip:remote@{HOST}:{uas_port}"
        call_answered(tmp_path, proxy, uas, ruri, extra=extra, port=caller_port)
    invite = received_invite(messages)
    assert "Privacy: none" in invite
    assert (PAI in invite) is kept, invite


def asserted_identities(invite: str) -> list[str]:
    """The P-Asserted-Identity header lines of a message head."""
    return [
        line for line in invite.split("\r\n") if line.lower().startswith("p-asserted-identity:")
    ]


@pytest.mark.parametrize(
    ("credentials", "status"),
    [
        (None, "407"),  # no credentials: challenged
        (("1001", "wrong"), "407"),  # wrong password: challenged again
        (("1002", "s3cret"), "403"),  # right password, but not the From user
    ],
    ids=["no credentials", "wrong password", "another user"],
)
def test_untrusted_caller_must_authenticate(
    tmp_path: Path, credentials: tuple[str, str] | None, status: str
) -> None:
    """WITH_AUTH: an INVITE from a source not in TRUSTED_SOURCE without valid credentials
    for its From user is refused by the proxy; the callee never hears of it."""
    uas_port, other_port = free_udp_port(), free_udp_port()
    messages = tmp_path / "uas_messages.log"
    with (
        Kamailio(password="s3cret", trusted=f"{HOST}:{other_port}") as proxy,
        remote_party(uas_port, messages) as uas,
    ):
        ruri = f"sip:remote@{HOST}:{uas_port}"
        with desk_call(tmp_path, proxy, ruri, extra=PAI, auth=credentials) as desk:
            called = desk.wait()
        why = called.describe() + "\n--- kamailio ---\n" + proxy.log()[-3000:]
        assert not called.ok and called.failed == 1, why
        assert f"SIP/2.0 {status} " in called.errors, why
        if status == "407":
            assert 'Proxy-Authenticate: Digest realm="127.0.0.1"' in called.errors, why
        assert proxy.dialogs() == []  # a refused INVITE creates no dialog
        time.sleep(0.3)  # anything relayed would have arrived by now
        assert uas.popen.poll() is None  # still waiting for its first INVITE
    assert not messages.exists() or messages.read_text() == "", messages.read_text()


@pytest.mark.parametrize("sent", ["forged", "none"])
def test_authenticated_caller_gets_asserted_identity(tmp_path: Path, sent: str) -> None:
    """WITH_AUTH: the caller that answers the 407 for its From user reaches the callee
    with exactly one P-Asserted-Identity, its own, whatever it asserted itself; its
    credentials are not passed on and its in-dialog requests (ACK, BYE) pass."""
    uas_port, other_port = free_udp_port(), free_udp_port()
    messages = tmp_path / "uas_messages.log"
    with (
        Kamailio(password="s3cret", trusted=f"{HOST}:{other_port}") as proxy,
        remote_party(uas_port, messages) as uas,
    ):
        extra = f"{PAI}\r\nPrivacy: none" if sent == "forged" else "Privacy: none"
        ruri = f"sip:remote@{HOST}:{uas_port}"
        auth = ("1001", "s3cret")
        call_answered(tmp_path, proxy, uas, ruri, extra=extra, auth=auth)
    log = messages.read_text(errors="replace")
    assert log.count("INVITE sip:") == 1, log  # only the authenticated INVITE
    invite = received_invite(messages)
    assert asserted_identities(invite) == [f"P-Asserted-Identity: <sip:1001@{HOST}>"], invite
    assert "Privacy: none" in invite
    assert "Proxy-Authorization" not in invite  # consumed by the proxy


@pytest.mark.parametrize("sent", ["own", "none"])
def test_trusted_source_is_not_challenged(tmp_path: Path, sent: str) -> None:
    """WITH_AUTH: an INVITE from TRUSTED_SOURCE (the portal's pulls and call-backs) is
    relayed without a challenge, with its own P-Asserted-Identity or none."""
    caller_port, uas_port = free_udp_port(), free_udp_port()
    messages = tmp_path / "uas_messages.log"
    with (
        Kamailio(password="s3cret", trusted=f"{HOST}:{caller_port}") as proxy,
        remote_party(uas_port, messages) as uas,
    ):
        extra = f"{PAI}\r\nPrivacy: none" if sent == "own" else "Privacy: none"
        ruri = f"sip:remote@{HOST}:{uas_port}"
        # DESK_UAC: a 407 would fail it
        call_answered(tmp_path, proxy, uas, ruri, extra=extra, port=caller_port)
    invite = received_invite(messages)
    assert asserted_identities(invite) == ([PAI] if sent == "own" else []), invite
    assert "Privacy: none" in invite
