"""The SIP user agent, sans-I/O: datagrams in, datagrams and leg events out.

The shape of h11 / aioquic: the runtime feeds :meth:`UserAgent.receive_datagram`
``(data, address, now)`` and fires :meth:`handle_timer` at :meth:`next_timer`; it sends
what :meth:`datagrams_to_send` returns and acts on :meth:`next_event` (see
:mod:`ivr.sip.legs`), answering through :meth:`answer`, :meth:`reject`,
:meth:`invite`, :meth:`hang_up` and :meth:`refer`. No socket, thread or clock here, so
every protocol rule is tested by feeding datagrams and times.

Underneath, ONE transaction layer (:mod:`ivr.sip.transaction`) serves incoming calls,
the legs the agent places, registration and keep-alives; dialogs (:mod:`ivr.sip.dialog`)
check both tags of every in-dialog request.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ivr.sip.dialog import Dialog
from ivr.sip.legs import (
    IncomingCall,
    InfoReceived,
    Leg,
    LegAcked,
    LegAnswered,
    LegEnded,
    LegEvent,
    LegFailed,
    LegProgress,
    NotifyReceived,
    OfferReceived,
    ReferAnswered,
)
from ivr.sip.limits import LogThrottle, SourceLimiter
from ivr.sip.message import (
    ALLOW,
    Message,
    Request,
    SipParseError,
    new_branch,
    new_tag,
    parse,
    response,
    uri_of,
    via,
)
from ivr.sip.timers import TimerQueue
from ivr.sip.transaction import T1, ClientTransaction, ServerTransaction, TransactionLayer
from ivr.sip.trust import Trust

log = logging.getLogger(__name__)

Address = tuple[str, int]
#: an incoming INVITE the runtime has not answered by then gets 500 and is forgotten
ANSWER_TIMEOUT = 32.0
KEEPALIVES = (b"\r\n\r\n", b"\r\n", b"\0\0\0\0")
#: methods we know but do not take (405); any other gets 501
KNOWN_METHODS = frozenset(
    ("REFER", "UPDATE", "PRACK", "SUBSCRIBE", "MESSAGE", "PUBLISH", "REGISTER")
)
#: Retry-After (s) of the 503s while draining: by then another node takes the calls
DRAIN_RETRY_AFTER = "30"


@dataclass(slots=True)
class AgentStats:
    """Counters of the datagrams the agent read, the ones it did not take, and why."""

    datagrams: int = 0
    bad_datagrams: int = 0
    stray_responses: int = 0
    untrusted: int = 0
    rate_limited: int = 0
    over_capacity: int = 0
    #: new calls and OPTIONS answered 503 while draining
    draining: int = 0
    errors: int = 0


class UserAgent:
    """Every SIP dialog and transaction of one listening address."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str = "portal",
        *,
        trust: Trust | None = None,
        call_rate: SourceLimiter | None = None,
        max_calls: int = 0,
        t1: float = T1,
    ) -> None:
        """``trust``: the only sources taken (None: everyone — tests, not a service);
        ``call_rate``: new INVITEs per source; ``max_calls``: incoming calls at once
        (0: no cap). Both limits answer 503 with Retry-After. ``t1``: RFC 3261's
        round-trip estimate, which scales every transaction timer."""
        self.host, self.port, self.user = host, port, user
        self.contact = f"<sip:{user}@{host}:{port}>"
        self.trust = trust
        self.call_rate = call_rate
        self.max_calls = max_calls
        #: no new calls: INVITE and OPTIONS get 503 (a dispatcher stops sending here)
        self.draining = False
        self.now = 0.0
        self.timers = TimerQueue()
        self.transactions = TransactionLayer(self.timers, self._send, lambda: self.now, t1=t1)
        self.legs: dict[str, Leg] = {}
        self.stats = AgentStats()
        self.throttle = LogThrottle(log)
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: deque[LegEvent] = deque()

    # --- the I/O side --------------------------------------------------------------------
    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        """Take one datagram from ``source``."""
        self.now = now
        self.stats.datagrams += 1
        if self.trust is not None and not self.trust.allows(source):
            self.stats.untrusted += 1  # no answer: nothing to learn, nothing to reflect
            self.throttle.warning(
                "untrusted", now, "dropped datagrams from untrusted %s:%d", *source[:2]
            )
            return
        if data in KEEPALIVES:
            return
        try:
            message = parse(data)
        except Exception as exc:  # SipParseError, or anything the parser did not foresee
            self.stats.bad_datagrams += 1
            self.throttle.warning("bad", now, "ignored a datagram from %s:%d: %s", *source[:2], exc)
            return
        try:
            if not message.is_request:
                if not self.transactions.receive_response(message, source):
                    self.stats.stray_responses += 1
                return
            message.stamp_via(source)
            handler = _REQUESTS.get(message.method, UserAgent._unsupported)
            handler(self, message, source)
        except Exception as exc:  # a message we parsed but cannot act on: drop it, go on
            self.stats.errors += 1
            self.throttle.warning(
                "error",
                now,
                "could not handle a %s from %s:%d: %s: %s",
                message.method,
                *source[:2],
                type(exc).__name__,
                exc,
            )
            log.debug("the message that failed", exc_info=True)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """What to send now (each datagram once)."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> LegEvent | None:
        """The next thing that happened to a leg, or None."""
        return self._events.popleft() if self._events else None

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next (None: no timer runs)."""
        return self.timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        """Run every timer due by ``now`` (retransmissions, timeouts)."""
        self.now = now
        for handle in self.timers.pop_due(now):
            if not handle.cancelled:
                handle.callback()

    # --- requests of any kind (registration, keep-alive) ------------------------------------
    def send_request(
        self,
        request: Request,
        destination: Address,
        now: float,
        *,
        on_response: Callable[[Message], None],
        on_timeout: Callable[[], None],
    ) -> ClientTransaction:
        """Send a request outside any dialog in its own client transaction."""
        self.now = now
        return self.transactions.request(
            request, destination, on_response=on_response, on_timeout=on_timeout
        )

    def new_request(self, method: str, uri: str, *, from_: str, to: str) -> Request:
        """A request outside any dialog: new branch, Call-ID and From tag."""
        return Request(
            method,
            uri,
            [
                ("Via", via(self.host, self.port, new_branch())),
                ("Max-Forwards", "70"),
                ("From", f"{from_};tag={new_tag()}"),
                ("To", to),
                ("Call-ID", f"{secrets.token_hex(12)}@{self.host}"),
                ("CSeq", f"{secrets.randbelow(10_000) + 1} {method}"),
            ],
        )

    # --- the runtime's answers to incoming calls -------------------------------------------
    def answer(self, leg: Leg, sdp: bytes, now: float) -> None:
        """Answer an incoming call with 200 and ``sdp`` (retransmitted until ACK)."""
        self.now = now
        assert leg.invite is not None and leg.server is not None
        if leg.state != "early" or leg.server.final:
            return  # cancelled (or answered) meanwhile
        self._unguard(leg)
        leg.local_sdp = sdp
        leg.dialog = Dialog.from_invite(leg.invite, leg.local_tag, self.contact)
        leg.state = "confirmed"
        self._respond_invite(
            leg, 200, headers=[("Contact", self.contact), ("Allow", ALLOW)], body=sdp
        )

    def reject(
        self, leg: Leg, status: int, now: float, headers: list[tuple[str, str]] | None = None
    ) -> None:
        """Refuse an incoming call that was not answered (e.g. 403, 488, 503)."""
        self.now = now
        if leg.server is None or leg.server.final:
            return
        self._respond_invite(leg, status, headers=headers)
        self._forget(leg)

    # --- legs the agent places -------------------------------------------------------------
    def invite(
        self,
        uri: str,
        destination: Address,
        now: float,
        *,
        from_: str,
        to: str,
        sdp: bytes,
        headers: Iterable[tuple[str, str]] = (),
        owner: object = None,
    ) -> Leg:
        """Place a call to ``uri`` (sent to ``destination``, e.g. the proxy): an
        INVITE with our offer ``sdp``; what happens comes as events for the leg."""
        self.now = now
        request = self.new_request("INVITE", uri, from_=from_, to=to)
        request.headers += [("Contact", self.contact), ("Allow", ALLOW), *headers]
        request.body, request.content_type = sdp, "application/sdp"
        leg = Leg(
            call_id=request.header("Call-ID"),
            incoming=False,
            local_tag=_tag_of_from(request),
            request=request,
            local_sdp=sdp,
            owner=owner,
        )
        self.legs[leg.call_id] = leg
        leg.client = self.transactions.request(
            request,
            destination,
            on_response=lambda message: self._invite_response(leg, message),
            on_timeout=lambda: self._failed(leg, 408),
        )
        return leg

    def hang_up(self, leg: Leg, now: float) -> None:
        """End ``leg`` whatever its state: BYE when it is up, CANCEL while our INVITE
        is pending, 480 for an incoming call not answered yet."""
        self.now = now
        if leg.state in ("ending", "ended"):
            return
        if leg.dialog is not None and leg.state == "confirmed":
            if leg.incoming and not leg.acked:
                leg.state = "ending"  # no BYE before the ACK of our 2xx (§15)
                return
            self._in_dialog(leg, "BYE", on_final=lambda _status: None)
            self._forget(leg)  # the BYE's own transaction sees it through
        elif leg.incoming:
            self.reject(leg, 480, now)
        elif leg.client is not None:
            leg.state = "ending"  # a 2xx racing the CANCEL is ACKed, then BYE
            self.transactions.cancel(leg.client)

    def refer(self, leg: Leg, target: str, now: float) -> None:
        """Ask the other side to call ``target`` (REFER); :class:`ReferAnswered` follows."""
        self.now = now
        self._in_dialog(
            leg,
            "REFER",
            headers=[("Refer-To", f"<{target}>"), ("Referred-By", self.contact)],
            on_final=lambda status: self._events.append(ReferAnswered(leg, status)),
        )

    # --- incoming requests -------------------------------------------------------------------
    def _invite(self, request: Message, source: Address) -> None:
        txn = self.transactions.receive_request(request, source)
        if txn is None:
            return  # a retransmission: answered again by its transaction
        if request.to_tag:
            self._reinvite(request, txn)
            return
        if request.call_id in self.legs:
            self._reply(txn, 482)  # the same call again on another branch: a loop
            return
        refusal = self._admission(request, source)
        if refusal is not None:
            status, headers = refusal
            self._reply(txn, status, headers=headers)
            return
        leg = Leg(
            call_id=request.call_id, incoming=True, local_tag=new_tag(), invite=request, server=txn
        )
        self.legs[leg.call_id] = leg
        txn.on_ack_timeout = lambda: self._no_ack(leg)
        self._reply(txn, 100)
        leg.guard = self.timers.at(self.now + ANSWER_TIMEOUT, lambda: self._unanswered(leg))
        self._events.append(IncomingCall(leg))

    def _admission(
        self, request: Message, source: Address
    ) -> tuple[int, list[tuple[str, str]]] | None:
        """Why a new call cannot be taken (status, headers), or None: a Contact or
        Record-Route we could never send to (416/400: the call could not be ended),
        draining (503), too many calls from this source (503), too many calls at once
        (503)."""
        try:
            Dialog.from_invite(request, "", self.contact).first_hop()
        except SipParseError as exc:
            scheme = uri_of(request.header("Contact")).partition(":")[0].lower()
            status = 416 if scheme not in ("sip", "sips", "") else 400
            self.throttle.warning("contact", self.now, "refused a call (%d): %s", status, exc)
            return status, []
        if self.draining:
            self.stats.draining += 1
            return 503, [("Retry-After", DRAIN_RETRY_AFTER)]
        if self.call_rate is not None and not self.call_rate.allow(source[0], self.now):
            self.stats.rate_limited += 1
            self.throttle.warning(
                "rate", self.now, "too many new calls from %s; answering 503", source[0]
            )
            return 503, [("Retry-After", "5")]
        if self.max_calls and self._incoming_calls() >= self.max_calls:
            self.stats.over_capacity += 1
            self.throttle.warning(
                "full", self.now, "%d calls at once (the cap); answering 503", self.max_calls
            )
            return 503, [("Retry-After", "10")]
        return None

    def _incoming_calls(self) -> int:
        return sum(1 for leg in self.legs.values() if leg.incoming)

    def _reinvite(self, request: Message, txn: ServerTransaction) -> None:
        leg = self._dialog_leg(request)
        if leg is None or leg.state != "confirmed":
            self._reply(txn, 481)
            return
        assert leg.dialog is not None
        leg.update = txn
        self._reply(
            txn,
            200,
            to_tag=leg.dialog.local_tag,
            headers=[("Contact", self.contact), ("Allow", ALLOW)],
            body=leg.local_sdp,
        )
        if request.body:
            self._events.append(OfferReceived(leg, request))

    def _ack(self, request: Message, source: Address) -> None:
        if self.transactions.receive_ack(request):
            return  # the ACK of a non-2xx final: absorbed by its transaction
        leg = self._dialog_leg(request)
        if leg is None:
            return
        if leg.update is not None and request.cseq == leg.update.cseq:
            self.transactions.acked(leg.update)  # the ACK of a re-INVITE's 200
            return
        if not leg.incoming or leg.server is None or request.cseq != leg.server.cseq:
            return
        self.transactions.acked(leg.server)
        if not leg.acked:
            leg.acked = True
            if leg.state == "ending":  # we hung up before the ACK: BYE now
                leg.state = "confirmed"
                self.hang_up(leg, self.now)
                return
            self._events.append(LegAcked(leg))

    def _bye(self, request: Message, source: Address) -> None:
        txn = self.transactions.receive_request(request, source)
        if txn is None:
            return
        leg = self._dialog_leg(request)
        if leg is None:
            self._reply(txn, 481)
            return
        self._reply(txn, 200)
        self._forget(leg)
        self._events.append(LegEnded(leg, "bye"))

    def _cancel(self, request: Message, source: Address) -> None:
        txn = self.transactions.receive_request(request, source)
        if txn is None:
            return
        invite = self.transactions.invite_of(request)
        if invite is None:
            self._reply(txn, 481)
            return
        leg = self.legs.get(request.call_id)
        self._reply(txn, 200, to_tag=leg.local_tag if leg is not None else "")
        if invite.final or leg is None or leg.server is not invite:
            return  # too late: the call was answered (or refused) already
        self._respond_invite(leg, 487)
        self._forget(leg)
        self._events.append(LegEnded(leg, "cancel"))

    def _info(self, request: Message, source: Address) -> None:
        txn = self.transactions.receive_request(request, source)
        if txn is None:
            return
        leg = self._dialog_leg(request)
        if leg is None:
            self._reply(txn, 481)
            return
        self._reply(txn, 200)
        self._events.append(InfoReceived(leg, request.header("Content-Type"), request.body))

    def _notify(self, request: Message, source: Address) -> None:
        txn = self.transactions.receive_request(request, source)
        if txn is None:
            return
        leg = self._dialog_leg(request)
        self._reply(txn, 200 if leg is not None else 481)
        if leg is not None:
            self._events.append(NotifyReceived(leg, request))

    def _options(self, request: Message, source: Address) -> None:
        """200, or 503 while draining (so a dispatcher's probe marks us inactive); an
        OPTIONS in a call's dialog (a keep-alive of the call) gets 200 while draining
        too: the call goes on."""
        txn = self.transactions.receive_request(request, source)
        if txn is None:
            return
        headers = [("Allow", ALLOW), ("Accept", "application/sdp")]
        in_call = bool(request.to_tag) and request.call_id in self.legs
        if self.draining and not in_call:
            self.stats.draining += 1
            self._reply(txn, 503, headers=[*headers, ("Retry-After", DRAIN_RETRY_AFTER)])
            return
        self._reply(txn, 200, headers=headers)

    def _unsupported(self, request: Message, source: Address) -> None:
        txn = self.transactions.receive_request(request, source)
        if txn is not None:
            status = 405 if request.method in KNOWN_METHODS else 501
            self._reply(txn, status, headers=[("Allow", ALLOW)])

    # --- responses to our INVITEs ----------------------------------------------------------
    def _invite_response(self, leg: Leg, message: Message) -> None:
        status = message.status
        if status < 200:
            if status > 100 and leg.state == "early":
                self._events.append(LegProgress(leg, message))
            return
        if status >= 300:
            self._failed(leg, status)
            return
        if leg.dialog is not None and message.to_tag != leg.dialog.remote_tag:
            self._end_fork(leg, message)  # a second fork answered too (§13.2.2.4)
            return
        if leg.ack is not None:  # a retransmitted 2xx: the same ACK again
            self._send(*leg.ack)
            return
        assert leg.request is not None
        leg.dialog = dialog = Dialog.from_response(leg.request, message)
        ack = dialog.request("ACK", self.host, self.port, cseq=leg.request.cseq)
        try:
            leg.ack = (ack.encode(), dialog.first_hop())
        except SipParseError as exc:
            log.warning("call %s: unusable 2xx (%s); giving up the leg", leg.call_id, exc)
            self._failed(leg, 502)
            return
        self._send(*leg.ack)
        if leg.state == "ending":  # we had cancelled: the 2xx won the race
            leg.state = "confirmed"
            self.hang_up(leg, self.now)
            return
        leg.state = "confirmed"
        self._events.append(LegAnswered(leg, message))

    def _end_fork(self, leg: Leg, message: Message) -> None:
        """ACK, then BYE, the dialog of a 2xx from another fork than the one we took."""
        assert leg.request is not None
        fork = Dialog.from_response(leg.request, message)
        try:
            hop = fork.first_hop()
        except SipParseError:
            return
        self._send(fork.request("ACK", self.host, self.port, cseq=leg.request.cseq).encode(), hop)
        self.transactions.request(fork.request("BYE", self.host, self.port), hop)

    def _failed(self, leg: Leg, status: int) -> None:
        if leg.state == "ended":
            return
        self._forget(leg)
        self._events.append(LegFailed(leg, status))

    # --- helpers ---------------------------------------------------------------------------
    def _dialog_leg(self, request: Message) -> Leg | None:
        leg = self.legs.get(request.call_id)
        if leg is None or leg.dialog is None or not leg.dialog.matches(request):
            return None
        return leg

    def _in_dialog(
        self,
        leg: Leg,
        method: str,
        *,
        on_final: Callable[[int], None],
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        assert leg.dialog is not None
        request = leg.dialog.request(method, self.host, self.port, headers=headers)
        try:
            destination = leg.dialog.first_hop()
        except SipParseError as exc:
            log.warning("call %s: cannot send %s: %s", leg.call_id, method, exc)
            on_final(503)
            return

        def answered(message: Message) -> None:
            if message.status >= 200:
                on_final(message.status)

        self.transactions.request(
            request, destination, on_response=answered, on_timeout=lambda: on_final(408)
        )

    def _respond_invite(
        self,
        leg: Leg,
        status: int,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        assert leg.server is not None
        self._reply(leg.server, status, to_tag=leg.local_tag, headers=headers, body=body)

    def _reply(
        self,
        txn: ServerTransaction,
        status: int,
        *,
        to_tag: str = "",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        if txn.request is None:
            return  # answered finally already (the layer would not send it either)
        if status > 100 and not to_tag:
            to_tag = new_tag()
        data = response(
            txn.request,
            status,
            to_tag=to_tag,
            headers=headers,
            body=body,
            content_type="application/sdp" if body else "",
        )
        self.transactions.respond(txn, status, data)

    def _no_ack(self, leg: Leg) -> None:
        if leg.acked or leg.state not in ("confirmed", "ending"):
            return
        self.throttle.warning(
            "no-ack", self.now, "call %s: no ACK for our 200 OK; ending it", leg.call_id
        )
        leg.acked = True  # no more waiting for it: a BYE may go now (§15)
        leg.state = "confirmed"
        self.hang_up(leg, self.now)
        self._events.append(LegFailed(leg, 408))

    def _unanswered(self, leg: Leg) -> None:
        leg.guard = None
        if leg.server is not None and not leg.server.final:
            log.error("call %s: not answered in %.0f s; refusing it", leg.call_id, ANSWER_TIMEOUT)
            self.reject(leg, 500, self.now)
            self._events.append(LegEnded(leg, "unanswered"))

    def _unguard(self, leg: Leg) -> None:
        if leg.guard is not None:
            leg.guard.cancel()
            leg.guard = None

    def _forget(self, leg: Leg) -> None:
        self._unguard(leg)
        leg.state = "ended"
        if self.legs.get(leg.call_id) is leg:
            del self.legs[leg.call_id]

    def _send(self, data: bytes, address: Address) -> None:
        self._outbox.append((data, address))


def _tag_of_from(request: Request) -> str:
    return request.header("From").rsplit(";tag=", 1)[1]


_REQUESTS: dict[str, Callable[[UserAgent, Message, Address], None]] = {
    "INVITE": UserAgent._invite,
    "ACK": UserAgent._ack,
    "BYE": UserAgent._bye,
    "CANCEL": UserAgent._cancel,
    "INFO": UserAgent._info,
    "OPTIONS": UserAgent._options,
    "NOTIFY": UserAgent._notify,
}
