"""Everything the portal's hooks need, wired from a portal configuration."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from argon2 import PasswordHasher

from ivr.callcontrol import Connect
from ivr.commands import Command, Dial, PullCall, Transfer
from ivr.dialogue import Engine
from ivr.dialplan.loader import load_dialplan
from ivr.errors import DialplanError, Problem
from ivr.portal.blocking import BlockingProfile
from ivr.portal.callcontrol import CallControl, SimulatedPbx
from ivr.portal.config import LoadedPortal, PortalConfig, is_postgres_url, load_portal
from ivr.portal.directory import Directory, YamlDirectory
from ivr.portal.lockout import PERMANENT, LockoutStore, MemoryLockoutStore, SqliteLockoutStore
from ivr.portal.numbers import to_e164
from ivr.portal.pin import PRODUCTION_HASHER
from ivr.session import Session
from ivr.sip.jsonrpc import JsonRpcClient, parse_address
from ivr.sip.loop import EventLoop

log = logging.getLogger(__name__)
#: one WARNING line per lockout, for alerting (never the digits)
lockout_log = logging.getLogger("ivr.portal.lockout")

#: the lockout file used when neither the configuration nor the command names one
DEFAULT_STORE_NAME = ".ivr-lockouts.sqlite"
#: the environment variable that names the lockout store (before the configuration)
LOCKOUT_STORE_ENV = "IVR_LOCKOUT_STORE"


@dataclass(frozen=True, slots=True)
class LockEvent:
    """An employee was locked out: until when (PERMANENT: until an unlock), after how
    many failures, the how-many-th lockout since the last correct PIN or unlock, and
    the source of the failure that locked (caller number as presented, and the call)."""

    employee: str
    locked_until: float
    failures: int
    source: str
    lockout: int = 1

    @property
    def permanent(self) -> bool:
        """Locked until an administrator unlocks."""
        return self.locked_until == PERMANENT


@dataclass(slots=True)
class PortalServices:
    """The portal's configuration and the services behind it (the engine's context)."""

    config: PortalConfig
    directory: Directory
    call_control: CallControl
    lockouts: LockoutStore
    blocking: BlockingProfile = field(default_factory=BlockingProfile)
    hasher: PasswordHasher = PRODUCTION_HASHER
    #: called with each LockEvent (an application's alerting); errors are logged only
    lockout_listeners: list[Callable[[LockEvent], None]] = field(default_factory=list)

    def report_lockout(self, event: LockEvent) -> None:
        """Log the lockout for alerting and tell the listeners."""
        until = (
            "unlock"
            if event.permanent
            else datetime.fromtimestamp(event.locked_until, UTC).isoformat(timespec="seconds")
        )
        lockout_log.warning(
            "LOCKOUT employee=%s until=%s lockout=%d%s after=%d failures last_source=%s",
            event.employee,
            until,
            event.lockout,
            " (permanent)" if event.permanent else "",
            event.failures,
            event.source,
        )
        for listener in self.lockout_listeners:
            try:
                listener(event)
            except Exception as exc:
                log.error("lockout listener failed: %s: %s", type(exc).__name__, exc)

    def apply(self, command: Command, session: Session) -> Connect:
        """Carry out a pull or dial through call control (runtimes call this; see
        :mod:`ivr.callcontrol` for what the answer means).

        Both forward a call — a pull the remote party's call to the caller's number, a
        call-back the caller's call to the dialled number — so the blocking profile's
        ``forwarded`` rules apply to that number first (``blocked``)."""
        if isinstance(command, PullCall):
            if self.forwarding_blocked(session.caller):
                log.info("call %s: pull to the caller's number blocked", session.call_id)
                return "blocked"
            return self.call_control.pull(command.call, to=session.caller)
        if isinstance(command, Transfer) and self.forwarding_blocked(command.target):
            log.info("call %s: transfer blocked (forwarded)", session.call_id)
            return "blocked"
        if isinstance(command, Dial):
            if self.forwarding_blocked(command.number):
                log.info("call %s: call-back blocked (forwarded)", session.call_id)
                return "blocked"
            return self.call_control.dial(
                command.number,
                for_caller=session.caller,
                caller_id=command.caller_id,
                display_name=command.display_name,
            )
        return None

    def attach(self, loop: EventLoop) -> None:
        """The SIP runtime starts: call control talks to the PBX on its loop."""
        attach = getattr(self.call_control, "attach", None)
        if attach is not None:
            attach(loop)

    def detach(self) -> None:
        """The SIP runtime stops (or a reload retired these services): call control
        lets go of the loop, the lockout store closes its connections."""
        detach = getattr(self.call_control, "detach", None)
        if detach is not None:
            detach()
        close = getattr(self.lockouts, "close", None)
        if close is not None:
            close()

    def forwarding_blocked(self, number: str) -> bool:
        """Whether the ``forwarded`` rules block a call forwarded to ``number`` (an
        external number; internal extensions are never blocked)."""
        if not number.startswith(("0", "+")):
            return False
        e164 = to_e164(number, self.config.region)
        return e164 is not None and self.blocking.blocks("forwarded", e164, self.config.region)


def lockout_store_spec(loaded: LoadedPortal) -> str | Path:
    """Where the portal's lockouts live: the ``IVR_LOCKOUT_STORE`` environment variable
    (a deployment's secret-bearing PostgreSQL URL stays out of the file), else
    ``lockout_store`` — a ``postgresql://`` URL, or an SQLite file relative to the
    configuration — else ``.ivr-lockouts.sqlite`` beside the directory file."""
    spec = os.environ.get(LOCKOUT_STORE_ENV) or loaded.config.lockout_store
    if spec and is_postgres_url(spec):
        return spec
    if spec:
        return loaded.relative(spec)
    return loaded.relative(loaded.config.directory).with_name(DEFAULT_STORE_NAME)


def describe_store(spec: str | Path) -> str:
    """A lockout store for messages: the file, or the URL without its password."""
    if isinstance(spec, Path):
        return str(spec)
    parts = urlsplit(spec)
    if parts.password is None:
        return spec
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def open_lockout_store(loaded: LoadedPortal) -> LockoutStore:
    """The lockout store a real runtime and the admin commands use (see
    :func:`lockout_store_spec`). Opening never connects: a database that is down shows
    as :class:`~ivr.portal.lockout.LockoutStoreUnavailable` when it is used."""
    spec = lockout_store_spec(loaded)
    if isinstance(spec, Path):
        return SqliteLockoutStore(spec)
    from ivr.portal.lockout_pg import PostgresLockoutStore  # psycopg only when used

    return PostgresLockoutStore(spec)


def portal_services(
    loaded: LoadedPortal,
    *,
    lockouts: LockoutStore,
    hasher: PasswordHasher = PRODUCTION_HASHER,
) -> PortalServices:
    """Wire the services of ``loaded``: directory, simulated PBX, the given lockout store
    (:func:`open_lockout_store`'s for a real runtime), blocking profile."""
    config = loaded.config
    directory = YamlDirectory.load(loaded.relative(config.directory), config.region)
    call_control: CallControl
    if config.call_control is not None:
        from ivr.portal.kamailio import KamailioCallControl

        rpc = JsonRpcClient(
            parse_address(config.call_control.kamailio_rpc), config.call_control.timeout
        )
        call_control = KamailioCallControl(rpc, directory)
    elif config.pbx:
        pbx = SimulatedPbx.load(loaded.relative(config.pbx), directory.employees)
        for warning in pbx.warnings:
            log.warning("%s", warning)
        call_control = pbx
    else:
        call_control = SimulatedPbx()
    for warning in loaded.warnings:
        log.warning("%s", warning)
    return PortalServices(
        config=config,
        directory=directory,
        call_control=call_control,
        lockouts=lockouts,
        blocking=config.blocking_profile.profile(config.region)
        if config.blocking_profile
        else BlockingProfile(),
        hasher=hasher,
    )


def check_portal(path: str | Path) -> list[Problem]:
    """Every problem of a portal configuration and the files it names (errors and
    warnings), for ``ivr check --portal``."""
    try:
        loaded = load_portal(path)
    except DialplanError as exc:
        return exc.problems
    problems = list(loaded.warnings)
    config = loaded.config
    try:
        directory = YamlDirectory.load(loaded.relative(config.directory), config.region)
    except DialplanError as exc:
        return problems + exc.problems
    if config.pbx:
        try:
            problems += SimulatedPbx.load(loaded.relative(config.pbx), directory.employees).warnings
        except DialplanError as exc:
            problems += exc.problems
    members = [e for e in directory if config.excludes(e) is None]
    if not members:
        problems.append(
            loaded.source.problem(
                ("level",), "no employee of the directory may use this portal", severity="warning"
            )
        )
    if config.call_control is not None:
        for employee in members:
            if not any(device.uri for device in employee.devices):
                problems.append(
                    loaded.source.problem(
                        ("call_control",),
                        f"employee {employee.id!r} has no device with a SIP uri: none of "
                        "their calls can be found or pulled",
                        severity="warning",
                    )
                )
    if config.pin_authentication:
        for employee in members:
            if not employee.pin_hash:
                problems.append(
                    loaded.source.problem(
                        ("pin_authentication",),
                        f"employee {employee.id!r} has no PIN and cannot log in "
                        "(set one with `ivr portal set-pin`)",
                        severity="warning",
                    )
                )
    return problems


def portal_engine(
    dialplan: str | Path,
    portal: str | Path,
    *,
    lockouts: LockoutStore | None = None,
    hasher: PasswordHasher = PRODUCTION_HASHER,
) -> Engine:
    """An engine for ``dialplan`` with the portal hooks and services of ``portal``.

    Without ``lockouts`` the engine keeps lockouts in memory: right for the simulator,
    whose clock is virtual. A real runtime passes :func:`open_lockout_store`'s.
    """
    from ivr.portal.hooks import hooks

    services = portal_services(
        load_portal(portal),
        lockouts=lockouts if lockouts is not None else MemoryLockoutStore(),
        hasher=hasher,
    )
    return Engine(load_dialplan(dialplan, hooks=hooks), context=services)
