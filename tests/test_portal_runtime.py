"""The portal in the simulator: call-control effects and the forwarding check."""

from __future__ import annotations

from pathlib import Path

from ivr.portal.callcontrol import SimulatedPbx
from ivr.portal.hooks import check_forward
from ivr.portal.services import PortalServices, portal_engine
from ivr.session import Session
from ivr.sim import Simulator
from tests.conftest import PORTAL_DIALPLAN

ERIKA = "+491711234567"


def test_a_pull_moves_the_call_to_the_caller_and_it_is_gone(fast_portal: Path) -> None:
    engine = portal_engine(PORTAL_DIALPLAN, fast_portal / "portal.yaml")
    pbx = engine.context.call_control
    assert isinstance(pbx, SimulatedPbx)
    assert [c.id for c in pbx.active_calls("erika")] == ["call-erika-1"]
    first = Simulator(engine).run("4711# *11", caller=ERIKA)
    assert first.outcome == "pulled"
    assert [(call.id, to) for call, to in pbx.pulled] == [("call-erika-1", ERIKA)]
    assert pbx.active_calls("erika") == []
    second = Simulator(engine).run("4711# *11 hangup", caller=ERIKA)
    assert "portal_no_calls" in second.prompts()


def test_a_dial_is_placed_presenting_the_portal(fast_portal: Path) -> None:
    engine = portal_engine(PORTAL_DIALPLAN, fast_portal / "portal.yaml")
    call = Simulator(engine).run("4711# 0301234567#", caller=ERIKA)
    assert call.outcome == "dialed"
    (placed,) = engine.context.call_control.placed
    assert (placed.number, placed.for_caller, placed.caller_id, placed.display_name) == (
        "+49301234567",
        ERIKA,
        "+4930123454100",  # outside, the public number: block + extension
        "Anywhere Portal Zentrale",
    )


def test_forwarding_obeys_the_forwarded_rules(fast_portal: Path) -> None:
    config = fast_portal / "forward.yaml"
    config.write_text(
        (fast_portal / "portal.yaml")
        .read_text()
        .replace('outgoing: ["0900", "0137"]', 'outgoing: ["0900"]\n  forwarded: ["0171"]')
    )
    services = portal_engine(PORTAL_DIALPLAN, config).context
    assert isinstance(services, PortalServices)

    def forward(target: str) -> str:
        session = Session(call_id="t", context=services, vars={"transfer_target": target})
        return check_forward(session)

    assert forward("0171 9999999") == "blocked"
    assert forward("+49 171 9999999") == "blocked"
    assert forward("030 1234567") == "allowed"
    assert forward("4200") == "allowed"
    assert forward("") == "invalid"
    assert forward("0999999999999999999") == "invalid"
