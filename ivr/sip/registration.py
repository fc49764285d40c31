"""Registration at the registrar, without blocking the loop.

pyVoIP's ``SIPClient`` builds the REGISTER requests and the digest answer
(``gen_first_response``, ``gen_register``); its registration procedure is replaced
because it reads the shared socket synchronously for up to 30 s, counts every other
message as a failure and stops the phone after three (bug 13), and blocks ~30 s on
stop (bug 14). Here registration is a small state machine on the loop: requests are
retransmitted, failures retried with exponential backoff (1 s doubling to 60 s), the
binding refreshed before it expires, and an OPTIONS keep-alive notices a registrar
that went away (restart) so the binding is renewed when it is back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pyVoIP.VoIP  # noqa: F401  (import order: bug 18)
from pyVoIP.SIP import SIPClient

from ivr.sip.loop import EventLoop, TimerHandle
from ivr.sip.message import Message, new_branch, new_tag

log = logging.getLogger("ivr.sip.register")

RETRANSMIT = (0.5, 1.0, 2.0, 4.0, 4.0)  # then the attempt has failed (11.5 s)
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0
_EXPIRES = re.compile(r"expires=(\d+)", re.IGNORECASE)

Send = Callable[[bytes, tuple[str, int]], None]


class Registration:
    """Keeps one binding ``user@registrar -> host:port`` alive."""

    def __init__(
        self,
        loop: EventLoop,
        send: Send,
        *,
        registrar: tuple[str, int],
        user: str,
        password: str,
        host: str,
        port: int,
        expires: int = 120,
        keepalive: float = 30.0,
    ) -> None:
        self.loop = loop
        self.send = send
        self.registrar = registrar
        self.expires = expires
        self.keepalive = keepalive
        self.client = SIPClient(
            registrar[0],
            registrar[1],
            user,
            password,
            phone=None,  # type: ignore[arg-type]  # only its request builders are used
            myIP=host,
            myPort=port,
        )
        self.client.default_expires = expires
        self.state = "idle"
        self.registrations = 0
        self.failures = 0
        self._call_id = ""
        self._authenticated = False
        self._timer: TimerHandle | None = None
        self._tries = 0
        self._request = b""
        self._backoff = BACKOFF_FIRST
        self._ping_branch = ""
        self._ping_timer: TimerHandle | None = None

    # --- control ------------------------------------------------------------------
    def start(self) -> None:
        """Send a REGISTER now."""
        self._attempt()

    def stop(self) -> None:
        """Remove the binding (one datagram, no waiting: bug 14) and stop all timers."""
        self._cancel()
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if self.state == "registered":
            self.send(self.client.gen_first_response(deregister=True).encode(), self.registrar)
        self.state = "stopped"

    def owns(self, message: Message) -> bool:
        """Whether ``message`` is a response to our REGISTER or keep-alive."""
        if message.is_request:
            return False
        if message.method == "REGISTER":
            return message.call_id == self._call_id
        return message.method == "OPTIONS" and message.branch == self._ping_branch

    def response(self, message: Message) -> None:
        """Handle a response that :meth:`owns`."""
        if message.method == "OPTIONS":
            self._pinged()
            return
        status = message.status
        if status < 200:
            return
        self._cancel()
        if status in (401, 407) and not self._authenticated:
            self._authenticated = True
            self._send(self.client.gen_register(message.parsed).encode())
        elif 200 <= status < 300:
            self._registered(message)
        else:
            self._failed(f"registrar answered {status}")

    # --- states -------------------------------------------------------------------
    def _attempt(self) -> None:
        if self.state == "stopped":
            return
        self.state = "registering"
        self._authenticated = False
        request = self.client.gen_first_response()
        self._call_id = _header(request, "Call-ID")
        self._send(request.encode())

    def _send(self, request: bytes) -> None:
        self._request, self._tries = request, 0
        self.send(request, self.registrar)
        self._timer = self.loop.call_later(RETRANSMIT[0], self._retransmit)

    def _retransmit(self) -> None:
        self._tries += 1
        if self._tries >= len(RETRANSMIT):
            self._failed("no answer from the registrar")
            return
        self.send(self._request, self.registrar)
        self._timer = self.loop.call_later(RETRANSMIT[self._tries], self._retransmit)

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
        first = self.state != "registered"
        self.state, self.failures, self._backoff = "registered", 0, BACKOFF_FIRST
        self.registrations += 1
        if first:
            log.info("registered at %s:%d (expires %d s)", *self.registrar, expires)
        refresh = max(1.0, min(expires * 0.8, expires - 5.0))
        self._timer = self.loop.call_later(refresh, self._attempt)
        self._schedule_ping()

    def _failed(self, why: str) -> None:
        self._cancel()
        self.failures += 1
        self.state = "unregistered"
        log.warning(
            "registration at %s:%d failed (%s); retrying in %.0f s",
            *self.registrar,
            why,
            self._backoff,
        )
        self._timer = self.loop.call_later(self._backoff, self._attempt)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    # --- keep-alive ---------------------------------------------------------------
    def _schedule_ping(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if self.keepalive > 0:
            self._ping_timer = self.loop.call_later(self.keepalive, self._ping)

    def _ping(self) -> None:
        if self.state != "registered":
            return
        self._ping_branch = new_branch()
        host, port = self.registrar
        client = self.client
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {client.myIP}:{client.myPort};branch={self._ping_branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{client.username}@{host}>;tag={new_tag()}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {new_tag()}{new_tag()}@{client.myIP}\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        self.send(request, self.registrar)
        self._ping_timer = self.loop.call_later(min(2.0, self.keepalive), self._ping_lost)

    def _pinged(self) -> None:
        self._ping_branch = ""
        self._schedule_ping()

    def _ping_lost(self) -> None:
        if self._ping_branch and self.state == "registered":
            log.warning("registrar %s:%d does not answer; registering again", *self.registrar)
            self._cancel()
            self._failed("keep-alive lost")

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _header(request: str, name: str) -> str:
    for line in request.split("\r\n"):
        if line.startswith(name + ": "):
            return line[len(name) + 2 :]
    return ""
