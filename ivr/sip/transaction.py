"""RFC 3261 §17 transactions over UDP, sans-I/O: one layer for every request the user
agent sends or answers (calls, outgoing legs, registration, keep-alives).

The layer never touches a socket or a clock: datagrams leave through ``send``, time
comes from ``clock`` (the owner's "now"), timers go into the owner's
:class:`~ivr.sip.timers.TimerQueue`. Timers (T1 = 0.5 s, T2 = 4 s, T4 = 5 s):

- client INVITE: Timer A retransmits (T1 doubling); B gives up after 64·T1 without
  any response; after a non-2xx final the ACK is sent and D (32 s) re-ACKs
  retransmissions; after a 2xx, M (64·T1, RFC 6026) hands every 2xx to the owner,
  who ACKs it.
- client non-INVITE: E retransmits (T1 doubling to T2); F gives up after 64·T1;
  K (T4) absorbs retransmitted finals.
- server INVITE: G retransmits the final response (T1 doubling to T2) until the ACK,
  a 2xx too (RFC 3261 §13.3.1.4); H gives up after 64·T1 (``on_ack_timeout``); I (T4)
  absorbs after the ACK of a non-2xx, L (64·T1, RFC 6026) after a 2xx.
- server non-INVITE: retransmitted requests get the last response again; J (64·T1).

Retransmitted requests are answered from their transaction (never reach the user
agent twice); a CANCEL is only sent once the INVITE had a provisional response
(§9.1), and the 487 that follows is ACKed by the transaction.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ivr.sip.message import Message, Request, via_sent_by
from ivr.sip.timers import TimerHandle, TimerQueue

log = logging.getLogger(__name__)

T1, T2, T4 = 0.5, 4.0, 5.0
TIMER_D = 32.0
MAGIC = "z9hG4bK"

Address = tuple[str, int]
Send = Callable[[bytes, Address], None]
Clock = Callable[[], float]


def _nothing(*_args: object) -> None:
    return None


@dataclass(eq=False)
class ClientTransaction:
    """A request we sent, until its final response was absorbed or it timed out."""

    request: Request
    destination: Address
    on_response: Callable[[Message], None] = _nothing
    on_timeout: Callable[[], None] = _nothing
    state: str = "calling"  # calling/trying -> proceeding -> completed/accepted -> terminated
    data: bytes = b""
    cancel_wanted: bool = False
    cancelled: ClientTransaction | None = None
    _retransmit: TimerHandle | None = field(default=None, repr=False)
    _deadline: TimerHandle | None = field(default=None, repr=False)

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def key(self) -> tuple[str, str]:
        return (self.request.branch, self.method)

    @property
    def terminated(self) -> bool:
        return self.state == "terminated"


@dataclass(eq=False)
class ServerTransaction:
    """A request we received, until its response's retransmissions are done. Once a
    non-INVITE request is answered finally, only its key and last response are kept
    (``request`` becomes None): a transaction lives 32 s, and a parsed request is a few
    hundred objects for the garbage collector to walk."""

    request: Message | None
    source: Address
    reply_to: Address
    key: tuple[str, ...]
    method: str = ""
    cseq: int = 0
    on_ack_timeout: Callable[[], None] = _nothing
    state: str = "trying"  # trying -> proceeding -> accepted/completed -> confirmed -> terminated
    last: bytes = b""
    status: int = 0
    _retransmit: TimerHandle | None = field(default=None, repr=False)
    _deadline: TimerHandle | None = field(default=None, repr=False)

    @property
    def final(self) -> bool:
        """Whether a final response was sent."""
        return self.status >= 200

    @property
    def terminated(self) -> bool:
        return self.state == "terminated"


def server_key(message: Message, method: str) -> tuple[str, ...]:
    """What names a server transaction (§17.2.3): branch, sent-by and method — and the
    Call-ID, so that a peer reusing a branch for another call is not answered from the
    old call; for a branch without the RFC 3261 cookie, the From tag and CSeq too."""
    branch = message.branch
    host, port = message.sent_by
    key = (branch, host, str(port), method, message.call_id)
    if branch.startswith(MAGIC):
        return key
    return (*key, message.from_tag, str(message.cseq))


class TransactionLayer:
    """Every open transaction of one user agent."""

    def __init__(
        self, timers: TimerQueue, send: Send, clock: Clock, *, t1: float = T1, t2: float = T2
    ) -> None:
        self.timers = timers
        self.send = send
        self.clock = clock
        self.t1, self.t2 = t1, t2
        self.t4 = T4
        self.clients: dict[tuple[str, str], ClientTransaction] = {}
        self.servers: dict[tuple[str, ...], ServerTransaction] = {}

    # --- client side ------------------------------------------------------------------
    def request(
        self,
        request: Request,
        destination: Address,
        *,
        on_response: Callable[[Message], None] = _nothing,
        on_timeout: Callable[[], None] = _nothing,
    ) -> ClientTransaction:
        """Send ``request`` (a new branch each) and keep it until answered."""
        txn = ClientTransaction(
            request, destination, on_response, on_timeout, data=request.encode()
        )
        txn.state = "calling" if request.method == "INVITE" else "trying"
        self.clients[txn.key] = txn
        self.send(txn.data, destination)
        self._client_retransmit(txn, self.t1)
        txn._deadline = self._at(64 * self.t1, lambda: self._client_timeout(txn))
        return txn

    def cancel(self, invite: ClientTransaction) -> None:
        """Cancel a pending INVITE: now if it had a provisional response, else as soon
        as one arrives (§9.1). Nothing once it has a final response."""
        if invite.method != "INVITE" or invite.state not in ("calling", "proceeding"):
            return
        invite.cancel_wanted = True
        if invite.state == "proceeding":
            self._send_cancel(invite)

    def _send_cancel(self, invite: ClientTransaction) -> None:
        """CANCEL once; if no final response follows within 64·T1, give up (timeout)."""
        if invite.cancelled is not None:
            return
        invite.cancelled = self.request(invite.request.cancel(), invite.destination)
        invite._deadline = self._at(64 * self.t1, lambda: self._cancel_timeout(invite))

    def _cancel_timeout(self, invite: ClientTransaction) -> None:
        if invite.state == "proceeding":
            self._terminate_client(invite)
            invite.on_timeout()

    def abandon(self, txn: ClientTransaction) -> None:
        """Forget ``txn`` without waiting for anything (its owner gave up on it)."""
        self._terminate_client(txn)

    def receive_response(self, response: Message, source: Address | None = None) -> bool:
        """Hand a response to its client transaction; False when none matches — or
        when it comes from another host than the one the request went to (a forged
        reply: over UDP the answer comes back from where we sent)."""
        txn = self.clients.get((response.branch, response.method))
        if txn is None:
            return False
        if source is not None and not _same_host(source[0], txn.destination[0]):
            return False
        status = response.status
        if txn.method == "INVITE":
            self._invite_response(txn, response, status)
        else:
            self._non_invite_response(txn, response, status)
        return True

    def _invite_response(self, txn: ClientTransaction, response: Message, status: int) -> None:
        if status < 200:
            if txn.state == "calling":
                txn.state = "proceeding"
                self._cancel_timers(txn)  # no Timer A or B once something answered
                if txn.cancel_wanted:
                    self._send_cancel(txn)
            if txn.state == "proceeding":
                txn.on_response(response)
            return
        if status < 300:
            if txn.state in ("calling", "proceeding"):
                txn.state = "accepted"  # RFC 6026 Timer M
                self._cancel_timers(txn)
                txn._deadline = self._at(64 * self.t1, lambda: self._terminate_client(txn))
            if txn.state == "accepted":
                txn.on_response(response)  # every 2xx: the TU (re-)ACKs it
            return
        ack = txn.request.ack(response).encode()
        self.send(ack, txn.destination)
        if txn.state in ("calling", "proceeding"):
            txn.state = "completed"
            self._cancel_timers(txn)
            txn._deadline = self._at(TIMER_D, lambda: self._terminate_client(txn))
            txn.on_response(response)

    def _non_invite_response(self, txn: ClientTransaction, response: Message, status: int) -> None:
        if txn.state not in ("trying", "proceeding"):
            return  # a retransmitted final: absorbed (Timer K)
        if status < 200:
            txn.state = "proceeding"
            txn.on_response(response)
            return
        txn.state = "completed"
        self._cancel_timers(txn)
        txn._deadline = self._at(self.t4, lambda: self._terminate_client(txn))
        txn.on_response(response)

    def _client_retransmit(self, txn: ClientTransaction, interval: float) -> None:
        def again() -> None:
            if txn.state not in ("calling", "trying", "proceeding"):
                return
            if txn.method == "INVITE" and txn.state == "proceeding":
                return  # a provisional response stopped Timer A
            self.send(txn.data, txn.destination)
            if txn.method == "INVITE":
                following = interval * 2  # Timer A doubles without a cap
            elif txn.state == "proceeding":
                following = self.t2
            else:
                following = min(interval * 2, self.t2)
            self._client_retransmit(txn, following)

        txn._retransmit = self._at(interval, again)

    def _client_timeout(self, txn: ClientTransaction) -> None:
        if txn.state in ("calling", "trying", "proceeding"):
            if txn.method == "INVITE" and txn.state == "proceeding":
                return  # an INVITE with a provisional response waits for its owner
            self._terminate_client(txn)
            txn.on_timeout()

    def _terminate_client(self, txn: ClientTransaction) -> None:
        self._cancel_timers(txn)
        txn.state = "terminated"
        if self.clients.get(txn.key) is txn:
            del self.clients[txn.key]

    # --- server side --------------------------------------------------------------------
    def receive_request(self, request: Message, source: Address) -> ServerTransaction | None:
        """A new server transaction for ``request``, or None when it was a
        retransmission (answered again from its transaction) or an ACK of a non-2xx
        final response (absorbed). ACKs of 2xx are never matched here: see
        :meth:`receive_ack`."""
        key = server_key(request, request.method)
        txn = self.servers.get(key)
        if txn is not None:
            if txn.last and txn.state != "confirmed":
                self.send(txn.last, txn.reply_to)
            return None
        txn = ServerTransaction(
            request, source, via_sent_by(request), key, request.method, request.cseq
        )
        self.servers[key] = txn
        return txn

    def receive_ack(self, ack: Message) -> bool:
        """An ACK for a non-2xx final we sent: the transaction is confirmed (True).
        False when it matches none (the ACK of a 2xx, for the dialog)."""
        txn = self.servers.get(server_key(ack, "INVITE"))
        if txn is None or txn.status < 300:
            return False
        if txn.state == "completed":
            txn.state = "confirmed"
            self._cancel_timers(txn)
            txn._deadline = self._at(self.t4, lambda: self._terminate_server(txn))
        return True

    def invite_of(self, cancel: Message) -> ServerTransaction | None:
        """The INVITE transaction a CANCEL names (same branch and sent-by)."""
        return self.servers.get(server_key(cancel, "INVITE"))

    def respond(self, txn: ServerTransaction, status: int, data: bytes) -> None:
        """Send a response in ``txn``; finals are retransmitted as the table says."""
        if txn.final or txn.terminated:
            log.debug("response %d after a final in %s ignored", status, txn.method)
            return
        txn.last, txn.status = data, status
        self.send(data, txn.reply_to)
        if status < 200:
            txn.state = "proceeding"
            return
        if txn.method != "INVITE":
            txn.state = "completed"
            txn.request = None  # answered: what remains is the key and the response
            txn._deadline = self._at(64 * self.t1, lambda: self._terminate_server(txn))
            return
        txn.state = "accepted" if status < 300 else "completed"
        self._server_retransmit(txn, self.t1)
        txn._deadline = self._at(64 * self.t1, lambda: self._ack_timeout(txn))

    def acked(self, txn: ServerTransaction) -> None:
        """The dialog saw the ACK of our 2xx: stop retransmitting it (Timer L goes on
        absorbing retransmitted INVITEs)."""
        if txn.state == "accepted" and txn._retransmit is not None:
            txn._retransmit.cancel()
            txn._retransmit = None
            txn.state = "confirmed"
            if txn._deadline is not None:
                txn._deadline.cancel()
            txn._deadline = self._at(64 * self.t1, lambda: self._terminate_server(txn))

    def _server_retransmit(self, txn: ServerTransaction, interval: float) -> None:
        def again() -> None:
            if txn.state not in ("accepted", "completed"):
                return
            self.send(txn.last, txn.reply_to)
            self._server_retransmit(txn, min(interval * 2, self.t2))

        txn._retransmit = self._at(interval, again)

    def _ack_timeout(self, txn: ServerTransaction) -> None:
        if txn.state in ("accepted", "completed"):
            self._terminate_server(txn)
            txn.on_ack_timeout()

    def _terminate_server(self, txn: ServerTransaction) -> None:
        self._cancel_timers(txn)
        txn.state = "terminated"
        if self.servers.get(txn.key) is txn:
            del self.servers[txn.key]

    # --- timers --------------------------------------------------------------------------
    def _at(self, seconds: float, callback: Callable[[], None]) -> TimerHandle:
        return self.timers.at(self.clock() + seconds, callback)

    @staticmethod
    def _cancel_timers(txn: ClientTransaction | ServerTransaction) -> None:
        for handle in (txn._retransmit, txn._deadline):
            if handle is not None:
                handle.cancel()
        txn._retransmit = txn._deadline = None


def _same_host(source: str, destination: str) -> bool:
    """Whether a datagram from ``source`` may answer one sent to ``destination`` (a
    name we did not resolve cannot be checked, so it passes)."""
    try:
        return ipaddress.ip_address(source) == ipaddress.ip_address(destination)
    except ValueError:
        return True
