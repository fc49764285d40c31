"""Call control on Kamailio, against a JSON-RPC server of the test that answers
``dlg.list_match`` the way Kamailio 5.6.3 does (its replies recorded on this machine):
which dialogs are an employee's running calls, which side is the desk, the Replaces
coordinates, and what happens when the PBX does not answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ivr.callcontrol import Replaces
from ivr.portal.callcontrol import CallControlUnavailable
from ivr.portal.directory import Device, Employee
from ivr.portal.kamailio import KamailioCallControl
from ivr.sip.jsonrpc import JsonRpcClient
from tests.sip.test_jsonrpc import Server


def dialog(
    call_id: str,
    from_uri: str,
    to_uri: str,
    *,
    state: int = 4,
    start: int = 1796207403,
    caller_tag: str = "deskTag",
    callee_tag: str = "remoteTag",
    caller_contact: str = "sip:1001@127.0.0.1:41317",
    callee_contact: str = "sip:127.0.0.1:54118;transport=UDP",
) -> dict[str, Any]:
    """One entry of ``dlg.list`` as Kamailio 5.6.3 returns it."""
    return {
        "h_entry": 964,
        "h_id": 11799,
        "ref": 2,
        "call-id": call_id,
        "from_uri": from_uri,
        "to_uri": to_uri,
        "state": state,
        "start_ts": start,
        "init_ts": start,
        "end_ts": 0,
        "duration": 2,
        "caller": {
            "tag": caller_tag,
            "contact": caller_contact,
            "cseq": "1",
            "route_set": "",
            "socket": "udp:127.0.0.1:5060",
        },
        "callee": {
            "tag": callee_tag,
            "contact": callee_contact,
            "cseq": "0",
            "route_set": "",
            "socket": "udp:127.0.0.1:5060",
        },
        "profiles": [],
        "variables": [],
    }


class FakeKamailio(Server):
    """Answers ``dlg.list_match [furi|turi, sw, prefix]`` from its dialogs (404 "Not
    found" for no match, as Kamailio does)."""

    def __init__(self) -> None:
        self.dialogs: list[dict[str, Any]] = []
        self.silent = False
        super().__init__(self.answer)

    def answer(self, request: dict[str, Any]) -> list[bytes]:
        if self.silent:
            return []
        key, _op, prefix = request["params"][:3]
        field = {"furi": "from_uri", "turi": "to_uri"}[key]
        found = [d for d in self.dialogs if str(d[field]).startswith(prefix)]
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        if found:
            reply["result"] = found
        else:
            reply["error"] = {"code": 404, "message": "Not found"}
        return [json.dumps(reply).encode()]


class Directory:
    def __init__(self, *employees: Employee) -> None:
        self.employees = {e.id: e for e in employees}

    def get(self, employee_id: str) -> Employee | None:
        return self.employees.get(employee_id)

    def find_by_number(self, e164: str) -> Employee | None:
        return None


ERIKA = Employee(
    id="erika",
    name="Erika Mustermann",
    group="Zentrale",
    numbers=("+49 171 1234567",),
    devices=(
        Device(id="erika-desk", uri="sip:1001@127.0.0.1"),
        Device(id="erika-soft", uri="sip:1002@127.0.0.1"),
        Device(id="erika-old"),  # no SIP address: never asked for
    ),
)


@pytest.fixture
def pbx() -> Iterator[FakeKamailio]:
    server = FakeKamailio()
    yield server
    server.close()


@pytest.fixture
def control(pbx: FakeKamailio) -> KamailioCallControl:
    return KamailioCallControl(JsonRpcClient(pbx.address, timeout=0.3), Directory(ERIKA))


def test_a_desk_call_out_is_found_with_the_remote_party_as_callee(
    pbx: FakeKamailio, control: KamailioCallControl
) -> None:
    pbx.dialogs = [dialog("c1", "sip:1001@127.0.0.1", "sip:+49405550199@127.0.0.1:5060")]
    [call] = control.active_calls("erika")
    assert (call.id, call.employee, call.device, call.remote) == (
        "c1",
        "erika",
        "erika-desk",
        "+49405550199",
    )
    assert call.replaces == Replaces(
        target="sip:127.0.0.1:54118;transport=UDP",
        call_id="c1",
        to_tag="remoteTag",  # the remote party's own tag
        from_tag="deskTag",
        remote="sip:+49405550199@127.0.0.1:5060",
    )
    assert control.pull("c1", to="+491711234567") == call.replaces


def test_a_call_to_the_desk_is_found_with_the_caller_as_remote_party(
    pbx: FakeKamailio, control: KamailioCallControl
) -> None:
    pbx.dialogs = [
        dialog(
            "c2",
            "sip:+4930777@127.0.0.1",
            "sip:1002@127.0.0.1",
            caller_tag="theirTag",
            callee_tag="softTag",
            caller_contact="<sip:+4930777@127.0.0.1:40000>",
        )
    ]
    [call] = control.active_calls("erika")
    assert call.device == "erika-soft" and call.remote == "+4930777"
    assert call.replaces is not None
    assert (call.replaces.target, call.replaces.to_tag, call.replaces.from_tag) == (
        "sip:+4930777@127.0.0.1:40000",
        "theirTag",
        "softTag",
    )
    assert call.replaces.header() == "c2;to-tag=theirTag;from-tag=softTag"


def test_only_answered_calls_of_her_devices_count_oldest_first(
    pbx: FakeKamailio, control: KamailioCallControl
) -> None:
    pbx.dialogs = [
        dialog("new", "sip:1001@127.0.0.1", "sip:a@127.0.0.1", start=200),
        dialog("old", "sip:1002@127.0.0.1", "sip:b@127.0.0.1", start=100),
        dialog("ringing", "sip:1001@127.0.0.1", "sip:c@127.0.0.1", state=2),
        dialog("ended", "sip:1001@127.0.0.1", "sip:d@127.0.0.1", state=5),
        dialog("other host", "sip:1001@pbx.example", "sip:e@127.0.0.1"),
        dialog("longer user", "sip:10011@127.0.0.1", "sip:f@127.0.0.1"),
    ]
    assert [c.id for c in control.active_calls("erika")] == ["old", "new"]


def test_no_call_and_no_devices(pbx: FakeKamailio, control: KamailioCallControl) -> None:
    assert control.active_calls("erika") == []  # Kamailio answers 404 Not found
    assert control.active_calls("nobody") == []
    assert control.pull("never-listed", to="+49171") == "failed"


def test_a_pbx_that_does_not_answer_is_unavailable(
    pbx: FakeKamailio, control: KamailioCallControl
) -> None:
    pbx.silent = True
    with pytest.raises(CallControlUnavailable, match="no answer"):
        control.active_calls("erika")


def test_a_dialog_without_tags_cannot_be_pulled_and_is_not_listed(
    pbx: FakeKamailio, control: KamailioCallControl
) -> None:
    broken = dialog("c3", "sip:1001@127.0.0.1", "sip:x@127.0.0.1", callee_tag="")
    pbx.dialogs = [broken]
    assert control.active_calls("erika") == []
