"""The SIP test peers work: Kamailio registers and proxies, SIPp calls through it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sip.peers import (
    KAMAILIO,
    SCENARIOS,
    SIPP,
    Kamailio,
    free_udp_port,
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
