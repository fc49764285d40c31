"""Call control on Kamailio: an employee's running calls from Kamailio's dialog module,
asked over its JSON-RPC datagram socket (``dlg.list_match``), and pulled by RFC 3891.

Kamailio tracks every call through it (``dlg_manage()`` on initial INVITEs,
record-routed); for each dialog it knows the Call-ID, the state (4 = confirmed, i.e.
answered) and, per side, the URI, tag and contact. An employee's devices are named by
their SIP address in the directory (``devices: [{id, name, uri}]``); a confirmed dialog
with one of them on either side is a running call, and the other side is the remote
party. Pulling it is the SIP runtime's work: an INVITE to the remote party's contact
with ``Replaces: <call-id>;to-tag=<remote party's tag>;from-tag=<desk's tag>`` — what
:meth:`KamailioCallControl.pull` hands back as a :class:`~ivr.callcontrol.Replaces`.

(RFC 4235 dialog-event NOTIFYs from Kamailio 5.6 carry no tags for answered calls, so
they cannot build a Replaces header; this module does not use them.)
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from ivr.callcontrol import Connect, Replaces
from ivr.portal.callcontrol import ActiveCall, CallControlUnavailable
from ivr.portal.directory import Device, Directory, sip_user_host
from ivr.sip.jsonrpc import JsonRpcClient, RpcError, RpcUnavailable
from ivr.sip.loop import EventLoop
from ivr.sip.message import uri_of

log = logging.getLogger(__name__)

CONFIRMED = 4  # the dialog module's state of an answered call
#: listed calls remembered for a pull (by Call-ID)
REMEMBERED = 1024


class KamailioCallControl:
    """The :class:`~ivr.portal.callcontrol.CallControl` of a portal behind Kamailio."""

    def __init__(self, rpc: JsonRpcClient, directory: Directory) -> None:
        self.rpc = rpc
        self.directory = directory
        self._listed: OrderedDict[str, ActiveCall] = OrderedDict()

    # --- on a runtime's loop (ivr serve) --------------------------------------------------
    def attach(self, loop: EventLoop) -> None:
        """Ask Kamailio on ``loop`` (the SIP runtime's I/O loop)."""
        self.rpc.attach(loop)

    def detach(self) -> None:
        self.rpc.detach()

    # --- CallControl ------------------------------------------------------------------------
    def active_calls(self, employee_id: str) -> list[ActiveCall]:
        employee = self.directory.get(employee_id)
        devices = [d for d in (employee.devices if employee else ()) if d.uri]
        if not devices:
            return []
        queries = []
        for device in devices:
            user_host = sip_user_host(device.uri or "")
            assert user_host is not None  # validated by the directory
            for key in ("furi", "turi"):
                queries.append(("dlg.list_match", [key, "sw", f"sip:{user_host[0]}@"]))
        try:
            answers = self.rpc.call_many(queries)
        except RpcUnavailable as exc:
            raise CallControlUnavailable(str(exc)) from None
        calls: dict[str, ActiveCall] = {}
        for answer in answers:
            for dialog in _dialogs(answer):
                call = _running_call(dialog, employee_id, devices)
                if call is not None:
                    calls.setdefault(call.id, call)
        found = sorted(calls.values(), key=lambda c: (c.started is not None, c.started or 0))
        for call in found:
            self._remember(call)
        return found

    def pull(self, call_id: str, to: str) -> Connect:
        """The dialog to replace, as listed last (``failed`` when it never was)."""
        call = self._listed.get(call_id)
        if call is None or call.replaces is None:
            log.warning("pull of a call that was not listed (%s)", call_id)
            return "failed"
        return call.replaces

    def dial(self, number: str, *, for_caller: str, caller_id: str, display_name: str) -> Connect:
        """The SIP runtime places call-backs itself."""
        return None

    def _remember(self, call: ActiveCall) -> None:
        self._listed[call.id] = call
        self._listed.move_to_end(call.id)
        while len(self._listed) > REMEMBERED:
            self._listed.popitem(last=False)


def _dialogs(answer: Any) -> list[dict[str, Any]]:
    """The dialogs of one ``dlg.list_match`` answer (an error for no match is none)."""
    if isinstance(answer, RpcError):
        if "not found" in answer.message.lower() or answer.code == 404:
            return []
        raise CallControlUnavailable(str(answer))
    if isinstance(answer, dict):
        answer = [answer]
    if not isinstance(answer, list):
        raise CallControlUnavailable(f"dlg.list_match: unexpected answer {type(answer).__name__}")
    return [d for d in answer if isinstance(d, dict)]


def _running_call(
    dialog: dict[str, Any], employee_id: str, devices: list[Device]
) -> ActiveCall | None:
    """An answered dialog with one of ``devices`` on one side, as an ActiveCall."""
    if dialog.get("state") != CONFIRMED:
        return None
    sides = {"caller": dialog.get("from_uri"), "callee": dialog.get("to_uri")}
    for desk_side, remote_side in (("caller", "callee"), ("callee", "caller")):
        desk_uri = sides[desk_side]
        device = _device_of(str(desk_uri or ""), devices)
        if device is None:
            continue
        desk, remote = dialog.get(desk_side), dialog.get(remote_side)
        if not isinstance(desk, dict) or not isinstance(remote, dict):
            return None
        call_id, contact = dialog.get("call-id"), remote.get("contact")
        if not (call_id and contact and desk.get("tag") and remote.get("tag")):
            return None
        remote_uri = str(sides[remote_side] or "")
        started = dialog.get("start_ts")
        return ActiveCall(
            id=str(call_id),
            employee=employee_id,
            device=device.id,
            remote=(sip_user_host(remote_uri) or (remote_uri, ""))[0],
            started=datetime.fromtimestamp(started, UTC) if isinstance(started, int) else None,
            replaces=Replaces(
                target=_bare_uri(str(contact)),
                call_id=str(call_id),
                to_tag=str(remote["tag"]),
                from_tag=str(desk["tag"]),
                remote=_bare_uri(remote_uri),
            ),
        )
    return None


def _bare_uri(value: str) -> str:
    """A URI as Kamailio stores it (bare, parameters included), or inside <...>."""
    return uri_of(value) if "<" in value else value.strip()


def _device_of(uri: str, devices: list[Device]) -> Device | None:
    user_host = sip_user_host(uri)
    if user_host is None:
        return None
    return next((d for d in devices if sip_user_host(d.uri or "") == user_host), None)
