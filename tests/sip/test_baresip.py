"""End to end with a real softphone: baresip calls the portal through Kamailio.

baresip (``tests/sip/baresip.py``) plays Erika: it dials ``portal`` at the Kamailio the
portal registered with, types her PIN and ``*11`` as RFC 4733 telephone-events, and the
portal — on the simulated PBX, which knows no SIP dialogs — asks for the pull with a
REFER to ``*11``. baresip follows it, Kamailio has nobody of that name (404), and
baresip's NOTIFY says so: the portal keeps Erika on the line and in the menu instead of
dropping her (a failed transfer is not a hang-up).
"""

from __future__ import annotations

import shutil
import time

import pytest

from ivr.sip.server import SipServer
from tests.sip.baresip import Baresip, module_path
from tests.sip.conftest import ERIKA
from tests.sip.peers import Kamailio, eventually
from tests.sip.test_e2e import ended_cleanly, kamailio, portal, registered  # noqa: F401

pytestmark = pytest.mark.skipif(
    not (shutil.which("baresip") and module_path() and shutil.which("kamailio")),
    reason="needs baresip (with its ctrl_tcp module) and kamailio",
)


def test_baresip_erika_pulls_her_call(kamailio: Kamailio, portal: SipServer) -> None:  # noqa: F811
    assert registered(portal)
    with Baresip(ERIKA) as phone:
        phone.dial(f"sip:portal@{kamailio.address}")
        started = time.monotonic()
        assert phone.wait_event("CALL_ESTABLISHED", timeout=5), phone.output()
        time.sleep(max(0.0, 3.5 - (time.monotonic() - started)))  # greeting, PIN prompt
        phone.send_dtmf("4711#")
        time.sleep(1.0)
        phone.send_dtmf("*11")
        why = f"{portal.stats}\n--- baresip ---\n{phone.output()[-4000:]}"
        assert eventually(lambda: portal.stats.refers == 1, timeout=15), why
        assert eventually(lambda: portal.stats.keys == 8, timeout=2), why
        call = next(iter(portal.calls.values()))
        assert eventually(lambda: call.state == "answered", timeout=10), why  # back in the menu
        time.sleep(1.0)
        assert portal.calls and portal.stats.ended == {}, why  # not dropped
        phone.hangup()
        assert ended_cleanly(portal), why
        assert portal.stats.ended == {"caller": 1}, why
