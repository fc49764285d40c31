"""The hooks of the Anywhere Portal dialplan. Each reads the call's session and the
:class:`~ivr.portal.services.PortalServices` in ``session.context``, and returns a
result the dialplan branches on. PINs are never logged."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from ivr.hooks import Hooks
from ivr.portal.callcontrol import CallControlUnavailable
from ivr.portal.numbers import to_e164, valid_e164
from ivr.portal.pin import verify_pin as pin_matches
from ivr.portal.services import LockEvent, PortalServices
from ivr.secret import Secret
from ivr.session import Session

log = logging.getLogger("ivr.portal")

hooks = Hooks(context=PortalServices)


def _services(session: Session) -> PortalServices:
    services = session.context
    if not isinstance(services, PortalServices):
        raise TypeError("the portal hooks need PortalServices as the engine context")
    return services


def period_of_day(hour: int) -> str:
    """``morning`` (4-10 h), ``day`` (11-17 h) or ``evening`` (18-3 h)."""
    if 4 <= hour < 11:
        return "morning"
    if 11 <= hour < 18:
        return "day"
    return "evening"


@hooks.register("portal.identify")
def identify(session: Session) -> str:
    """Who calls, and may they? ``admitted``, ``locked`` or ``refused``.

    Sets ``mute`` (silent mode), ``employee``, ``employee_name``, ``pin_required``,
    ``period`` (greeting), ``portal_number`` and ``portal_name``.
    """
    services = _services(session)
    config = services.config
    session.vars.update(
        mute=config.silent_mode,
        portal_number=config.presented_number,
        portal_name=config.name,
        pin_required=config.pin_authentication,
    )
    local = datetime.fromtimestamp(session.now(), ZoneInfo(config.time_zone))
    session.vars["period"] = period_of_day(local.hour)
    e164 = to_e164(session.caller, config.region)
    employee = services.directory.find_by_number(e164) if e164 else None
    reason = None
    if e164 is None:
        reason = "caller number missing or not a phone number"
    elif services.blocking.blocks("incoming", e164, config.region):
        reason = "caller number blocked (incoming)"
    elif employee is None:
        reason = "caller number is no employee's parallel-ringing number"
    elif (outside := config.excludes(employee)) is not None:
        reason = outside
    elif config.pin_authentication and not employee.pin_hash:
        reason = "PIN authentication is on but the employee has no PIN"
    if reason is not None or employee is None:
        log.info("call %s: refused: %s", session.call_id, reason)
        return "refused"
    session.vars.update(employee=employee.id, employee_name=employee.name)
    if config.pin_authentication and services.lockouts.locked_until(employee.id) > session.now():
        log.warning("call %s: employee %s is locked out", session.call_id, employee.id)
        return "locked"
    log.info("call %s: admitted employee %s", session.call_id, employee.id)
    return "admitted"


@hooks.register("portal.verify_pin")
def verify_pin(session: Session) -> str:
    """Check the PIN in ``pin``: ``ok``, ``wrong``, ``too_many`` (per call) or ``locked``."""
    services = _services(session)
    policy = services.config.pin_policy
    employee_id = str(session.vars["employee"])
    employee = services.directory.get(employee_id)
    pin = session.vars.pop("pin", None)
    now = session.now()
    if services.lockouts.locked_until(employee_id) > now:
        return "locked"
    if (
        employee is not None
        and employee.pin_hash
        and isinstance(pin, Secret)
        and pin_matches(employee.pin_hash, pin.reveal(), services.hasher)
    ):
        services.lockouts.reset(employee_id)
        log.info("call %s: PIN accepted", session.call_id)
        return "ok"
    attempts = session.vars["pin_attempts"] = int(session.vars.get("pin_attempts") or 0) + 1
    source = f"{session.caller or 'anonymous'} (call {session.call_id})"
    count = services.lockouts.record_failure(employee_id, now, policy.lockout(), source)
    log.warning("call %s: wrong PIN for %s (attempt %d)", session.call_id, employee_id, attempts)
    until = services.lockouts.locked_until(employee_id)
    if until > now:
        if count == 0:  # this failure locked: an event for the operators
            lockout = services.lockouts.lockouts(employee_id)
            event = LockEvent(employee_id, until, policy.lockout_failures, source, lockout)
            services.report_lockout(event)
        return "locked"
    return "too_many" if attempts >= policy.attempts_per_call else "wrong"


@hooks.register("portal.find_calls")
def find_calls(session: Session) -> str:
    """The employee's running calls: ``none``, ``one``, ``several``, or ``unavailable``
    when the PBX does not answer.

    Sets ``calls`` (how many) and ``pull_call`` (the most recent one's id)."""
    services = _services(session)
    try:
        calls = services.call_control.active_calls(str(session.vars["employee"]))
    except CallControlUnavailable as exc:
        log.error("call %s: running calls unknown: %s", session.call_id, exc)
        return "unavailable"
    session.vars["calls"] = len(calls)
    if not calls:
        return "none"
    session.vars["pull_call"] = calls[-1].id
    return "one" if len(calls) == 1 else "several"


@hooks.register("portal.check_outgoing")
def check_outgoing(session: Session) -> str:
    """May the number in ``number`` be dialled? ``allowed``, ``blocked`` or ``invalid``.

    A number beginning 0 is an external number: it must be a valid number of the
    numbering plan (``000``, ``0900123456``: ``invalid``), then it is checked against the
    blocking profile. Any other number must be an internal extension of the PBX
    (``internal_numbers``, by default 2-6 digits not beginning 0), dialled as keyed.
    Sets ``dial_number`` and ``dial_caller_id``: what the callee sees — the portal's
    public number outside, its extension (when it has one) inside.
    """
    services = _services(session)
    config = services.config
    region = config.region
    number = str(session.vars.get("number") or "")
    if not number.startswith("0"):
        if not config.is_extension(number):
            return "invalid"
        session.vars["dial_number"] = number
        session.vars["dial_caller_id"] = config.extension
        return "allowed"
    e164 = valid_e164(number, region)
    if e164 is None:
        return "invalid"
    if services.blocking.blocks("outgoing", e164, region):
        log.info("call %s: outgoing number blocked", session.call_id)
        return "blocked"
    session.vars["dial_number"] = e164
    session.vars["dial_caller_id"] = config.presented_number
    return "allowed"


@hooks.register("portal.check_forward")
def check_forward(session: Session) -> str:
    """May the call be forwarded (transferred) to ``transfer_target``? ``allowed``,
    ``blocked`` (by the profile's ``forwarded`` rules) or ``invalid``. For dialplans that
    put a ``transfer`` state behind the portal; internal extensions are allowed."""
    services = _services(session)
    region = services.config.region
    target = str(session.vars.get("transfer_target") or "")
    if not target:
        return "invalid"
    if not target.startswith("0") and not target.startswith("+"):
        return "allowed"
    e164 = to_e164(target, region)
    if e164 is None:
        return "invalid"
    return "blocked" if services.blocking.blocks("forwarded", e164, region) else "allowed"
