"""The hooks of the Anywhere Portal dialplan. Each reads the call's session and the
:class:`~ivr.portal.services.PortalServices` in ``session.context``, and returns a
result the dialplan branches on. PINs are never logged."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from ivr.hooks import Hooks
from ivr.portal.callcontrol import CallControlUnavailable
from ivr.portal.lockout import LockoutStoreUnavailable
from ivr.portal.numbers import to_e164, valid_e164
from ivr.portal.pin import verify_pin as pin_matches
from ivr.portal.services import LockEvent, PortalServices
from ivr.secret import Secret
from ivr.session import Session

log = logging.getLogger(__name__)

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
    """Who calls, and may they? ``admitted``, ``locked``, ``refused``, or
    ``unavailable`` (PIN authentication on, the lockout store out of reach).

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
    if config.pin_authentication:
        try:
            locked = services.lockouts.locked_until(employee.id) > session.now()
        except LockoutStoreUnavailable as exc:
            return _store_unavailable(session, exc)
        if locked:
            log.warning("call %s: employee %s is locked out", session.call_id, employee.id)
            return "locked"
    log.info("call %s: admitted employee %s", session.call_id, employee.id)
    return "admitted"


def _store_unavailable(session: Session, exc: LockoutStoreUnavailable) -> str:
    """The lockout store cannot count failures: no PIN entry (no uncounted guesses)."""
    log.error("call %s: PIN entry refused, lockout store unavailable: %s", session.call_id, exc)
    return "unavailable"


@hooks.register("portal.verify_pin")
def verify_pin(session: Session) -> str:
    """Check the PIN in ``pin``: ``ok``, ``wrong``, ``too_many`` (per call), ``locked``,
    or ``unavailable`` when the lockout store cannot be reached (a guess it cannot count
    is never checked)."""
    services = _services(session)
    store = services.lockouts
    employee_id = str(session.vars["employee"])
    employee = services.directory.get(employee_id)
    pin = session.vars.pop("pin", None)
    now = session.now()
    try:
        if store.locked_until(employee_id) > now:
            return "locked"
    except LockoutStoreUnavailable as exc:
        return _store_unavailable(session, exc)
    if (
        employee is not None
        and employee.pin_hash
        and isinstance(pin, Secret)
        and pin_matches(employee.pin_hash, pin.reveal(), services.hasher)
    ):
        log.info("call %s: PIN accepted", session.call_id)
        try:
            store.reset(employee_id)
        except LockoutStoreUnavailable as exc:  # the PIN was right: admitted all the same
            log.error("call %s: failure count not reset: %s", session.call_id, exc)
        return "ok"
    attempts = session.vars["pin_attempts"] = int(session.vars.get("pin_attempts") or 0) + 1
    log.warning("call %s: wrong PIN for %s (attempt %d)", session.call_id, employee_id, attempts)
    try:
        if _count_failure(services, session, employee_id, now):
            return "locked"
    except LockoutStoreUnavailable as exc:
        return _store_unavailable(session, exc)
    return "too_many" if attempts >= services.config.pin_policy.attempts_per_call else "wrong"


def _count_failure(
    services: PortalServices, session: Session, employee_id: str, now: float
) -> bool:
    """Record a wrong PIN; True when the employee is locked now (a new lockout is
    reported to the operators)."""
    policy = services.config.pin_policy
    store = services.lockouts
    source = f"{session.caller or 'anonymous'} (call {session.call_id})"
    count = store.record_failure(employee_id, now, policy.lockout(), source)
    until = store.locked_until(employee_id)
    if until <= now:
        return False
    if count == 0:  # this failure locked
        lockout = store.lockouts(employee_id)
        services.report_lockout(
            LockEvent(employee_id, until, policy.lockout_failures, source, lockout)
        )
    return True


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
