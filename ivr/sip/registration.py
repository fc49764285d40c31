"""Registration at the registrar, as a client of the user agent's transaction layer.

pyVoIP's ``SIPClient`` builds the REGISTER requests and the digest answer
(``gen_first_response``, ``gen_register``); its registration procedure is replaced
because it reads the shared socket synchronously for up to 30 s, counts every other
message as a failure and stops the phone after three (bug 13), and blocks ~30 s on
stop (bug 14). Here each REGISTER is one client transaction of the
:class:`~ivr.sip.agent.UserAgent` (retransmitted by Timer E, given up by Timer F);
failures are retried with exponential backoff (1 s doubling to 60 s), the binding is
refreshed before it expires, and an OPTIONS keep-alive notices a registrar that went
away (restart) so the binding is renewed when it is back. Every REGISTER carries a
random Call-ID (pyVoIP's are ``sha256`` of a counter: predictable).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable

import pyVoIP.VoIP  # noqa: F401  (import order: bug 18)
from pyVoIP.SIP import SIPClient

from ivr.sip.agent import UserAgent
from ivr.sip.message import ALLOW, Message, Request
from ivr.sip.timers import TimerHandle

log = logging.getLogger(__name__)

BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0
#: how long an OPTIONS keep-alive may go unanswered before we register again
KEEPALIVE_ANSWER = 2.0
_EXPIRES = re.compile(r"expires=(\d+)", re.IGNORECASE)
_CALL_ID = re.compile(r"^Call-ID: [^\r\n]*", re.MULTILINE)


class Registration:
    """Keeps one binding ``user@registrar -> host:port`` alive."""

    def __init__(
        self,
        agent: UserAgent,
        *,
        registrar: tuple[str, int],
        user: str,
        password: str,
        expires: int = 120,
        keepalive: float = 30.0,
    ) -> None:
        self.agent = agent
        self.registrar = registrar
        self.expires = expires
        self.keepalive = keepalive
        self.client = SIPClient(
            registrar[0],
            registrar[1],
            user,
            password,
            phone=None,  # type: ignore[arg-type]  # only its request builders are used
            myIP=agent.host,
            myPort=agent.port,
        )
        self.client.default_expires = expires
        self.state = "idle"
        self.registrations = 0
        self.failures = 0
        self._call_id = ""
        self._authenticated = False
        self._timer: TimerHandle | None = None
        self._backoff = BACKOFF_FIRST
        self._ping_timer: TimerHandle | None = None
        self._pinging = False
        self._expiry: TimerHandle | None = None

    # --- control ------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Send a REGISTER now."""
        self.agent.now = now
        self._attempt()

    def stop(self, now: float) -> None:
        """Remove the binding (one datagram, no waiting: bug 14) and stop all timers."""
        self.agent.now = now
        self._cancel()
        for timer in (self._ping_timer, self._expiry):
            if timer is not None:
                timer.cancel()
        if self.state == "registered":
            request = self._own_call_id(self.client.gen_first_response(deregister=True))
            self.agent.send_request(
                request, self.registrar, now, on_response=_ignore, on_timeout=_ignore
            )
        self.state = "stopped"

    # --- states -------------------------------------------------------------------
    def _attempt(self) -> None:
        if self.state == "stopped":
            return
        self.state = "registering"
        self._authenticated = False
        self._call_id = f"{secrets.token_hex(16)}@{self.agent.host}"
        self._send(self._own_call_id(self.client.gen_first_response()))

    def _own_call_id(self, text: str) -> Request:
        return _with_our_allow(_CALL_ID.sub(f"Call-ID: {self._call_id}", text, count=1))

    def _send(self, request: Request) -> None:
        self.agent.send_request(
            request,
            self.registrar,
            self.agent.now,
            on_response=self._response,
            on_timeout=lambda: self._failed("no answer from the registrar"),
        )

    def _response(self, message: Message) -> None:
        status = message.status
        if status < 200 or self.state != "registering":
            return
        if status in (401, 407) and not self._authenticated:
            self._authenticated = True
            self._send(_with_our_allow(self.client.gen_register(message.parsed)))
        elif 200 <= status < 300:
            self._registered(message)
        else:
            self._failed(f"registrar answered {status}")

    def _registered(self, message: Message) -> None:
        expires = self.expires
        for value in (message.header("Contact"), message.header("Expires")):
            match = _EXPIRES.search(value) if "=" in value else None
            if match:
                expires = int(match.group(1))
                break
            if value.isdigit():
                expires = int(value)
                break
        expires = max(0, min(expires, self.expires))  # never longer than we asked for
        first = self.state != "registered"
        self.state, self.failures, self._backoff = "registered", 0, BACKOFF_FIRST
        self.registrations += 1
        if first:
            log.info("registered at %s:%d (expires %d s)", *self.registrar, expires)
        refresh = max(1.0, min(expires * 0.8, expires - 5.0))
        self._timer = self._later(refresh, self._attempt)
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = self._later(expires, self._expired)
        self._schedule_ping()

    def _expired(self) -> None:
        """The binding's time is up and no refresh succeeded: callers get 404 now."""
        self._expiry = None
        if self.state != "stopped":
            log.warning(
                "the binding sip:%s@%s:%d expired without a refresh: calls to the portal "
                "fail until registration succeeds",
                self.client.username,
                *self.registrar,
            )

    def _failed(self, why: str) -> None:
        if self.state == "stopped":
            return
        self._cancel()
        self.failures += 1
        self.state = "unregistered"
        log.warning(
            "registration at %s:%d failed (%s); retrying in %.0f s",
            *self.registrar,
            why,
            self._backoff,
        )
        self._timer = self._later(self._backoff, self._attempt)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    # --- keep-alive ---------------------------------------------------------------
    def _schedule_ping(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if self.keepalive > 0:
            self._ping_timer = self._later(self.keepalive, self._ping)

    def _ping(self) -> None:
        if self.state != "registered":
            return
        host, port = self.registrar
        request = self.agent.new_request(
            "OPTIONS",
            f"sip:{host}:{port}",
            from_=f"<sip:{self.client.username}@{host}>",
            to=f"<sip:{host}:{port}>",
        )
        self._pinging = True
        self.agent.send_request(
            request, self.registrar, self.agent.now, on_response=self._pinged, on_timeout=_ignore
        )
        self._ping_timer = self._later(min(KEEPALIVE_ANSWER, self.keepalive), self._ping_lost)

    def _pinged(self, message: Message) -> None:
        if message.status >= 200 and self._pinging:
            self._pinging = False
            self._schedule_ping()

    def _ping_lost(self) -> None:
        if self._pinging and self.state == "registered":
            self._pinging = False
            log.warning("registrar %s:%d does not answer; registering again", *self.registrar)
            self._failed("keep-alive lost")

    # --- timers -------------------------------------------------------------------
    def _later(self, seconds: float, callback: Callable[[], None]) -> TimerHandle:
        return self.agent.timers.at(self.agent.now + seconds, callback)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _ignore(*_args: object) -> None:
    return None


def _with_our_allow(text: str) -> Request:
    """pyVoIP's REGISTER with the methods we really take in ``Allow``."""
    request = Request.from_text(text)
    request.headers = [(k, ALLOW if k == "Allow" else v) for k, v in request.headers]
    return request
