"""The SIP runtime: answers calls, runs their dialogues, turns commands into SIP and RTP,
and connects callers to other parties as a back-to-back user agent (B2BUA).

Threads: one I/O loop (:mod:`ivr.sip.loop`: the SIP socket, every RTP socket, timers,
the media pacer, the bridges) and one dialogue thread (:mod:`ivr.sip.driver`). The SIP
protocol is the sans-I/O :class:`~ivr.sip.agent.UserAgent`; this module is the glue:
it moves datagrams, fires the agent's timers, and acts on what happens to legs.

Per call: INVITE -> 100 Trying -> the dialogue's first commands decide: a hang-up
without a prompt is answered 403 (refused before answering), anything else 200 OK.
``Hangup`` -> BYE; ``Transfer`` -> REFER, then BYE. ``PullCall`` with the running
call's dialog (call control gave a :class:`~ivr.callcontrol.Replaces`) -> an INVITE
with ``Replaces`` to the remote party through the proxy; ``Dial`` -> an INVITE to the
number with the portal's identity (From and P-Asserted-Identity), the caller hearing
ringback or the callee's early media. When the new leg answers, the two legs are
bridged (:mod:`ivr.sip.bridge`) and the dialogue ends (``connected``); when it fails,
the dialogue hears why (``CallControlResult``) and goes on. A ``PullCall`` without
dialog data (the simulated PBX) falls back to a REFER to ``pull_target``. A BYE on
either bridged leg ends the other; BYE/CANCEL from the caller, no RTP for
``rtp_timeout`` seconds, or a missing ACK end the call and its dialogue.

Life cycle beyond start and stop: :meth:`SipServer.drain` takes no new calls (INVITE
and OPTIONS answered 503) while running calls go on; :meth:`SipServer.reload` gives
new calls a new engine while running calls finish on theirs.
"""

from __future__ import annotations

import logging
import resource
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr.audio.library import PromptAudio
from ivr.audio.tones import ringback
from ivr.callcontrol import Replaces
from ivr.commands import (
    CancelTimer,
    Command,
    Dial,
    Hangup,
    PlayPrompt,
    PullCall,
    StartTimer,
    StopPrompt,
    Transfer,
)
from ivr.dialogue import Engine
from ivr.errors import IvrError
from ivr.events import (
    CallControlResult,
    CallHungUp,
    CallStarted,
    DigitReceived,
    PromptFinished,
    TimerFired,
)
from ivr.sip.agent import UserAgent
from ivr.sip.bridge import Relay, bridge
from ivr.sip.driver import Chunks, DialogueDriver, Generation, Outcome, cut_packets
from ivr.sip.dtmf import info_key
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
from ivr.sip.limits import SourceLimiter
from ivr.sip.loop import EventLoop
from ivr.sip.media import PortPool, PortsExhausted, RtpSession
from ivr.sip.message import Message
from ivr.sip.pacer import Pacer
from ivr.sip.registration import Registration
from ivr.sip.sdp import CODEC_PT, SdpError, answer, make_offer, read_offer
from ivr.sip.timers import TimerHandle
from ivr.sip.trust import Trust, caller_number

log = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0
#: the SIP socket's receive buffer: a burst of 400 datagrams lost 234 with the default
RECEIVE_BUFFER = 4 << 20
#: file descriptors kept for everything but RTP sockets (SIP, loop, logs, database)
RESERVED_FDS = 64
#: seconds to wait for the final NOTIFY of a REFER we sent
REFER_WAIT = 30.0
#: what we send the registrar (REGISTER, the keep-alive OPTIONS), not any call
_REGISTRAR = frozenset(("REGISTER", "OPTIONS"))
#: the playback number of the ringback tone (dialogue playbacks count from 1)
RINGBACK = -1
#: final responses to a call-back, by what the caller is told
DIAL_RESULTS = {
    486: "busy",
    600: "busy",
    404: "not_found",
    484: "not_found",
    604: "not_found",
    408: "unavailable",
    410: "not_found",
    480: "unavailable",
    503: "unavailable",
}


@dataclass(slots=True)
class ServeConfig:
    """How ``ivr serve`` talks to the world."""

    registrar: tuple[str, int]
    user: str = "portal"
    password: str = ""
    bind: str = "127.0.0.1"
    port: int = 5080
    rtp_ports: tuple[int, int] = (20000, 29999)
    #: REFER targets (``{...}`` filled from the command, session variables, ``registrar``)
    pull_target: str = "sip:*11@{registrar}"
    transfer_target: str = "sip:{target}@{registrar}"
    #: where call-backs go (through the proxy)
    dial_target: str = "sip:{number}@{registrar}"
    #: the domain of the portal's own URIs on legs it places (default: the registrar's host)
    domain: str = ""
    #: seconds the remote party has to answer a pull (INVITE with Replaces)
    connect_timeout: float = 10.0
    #: end a call after this many seconds without any RTP from the caller (0: never)
    rtp_timeout: float = 60.0
    keepalive: float = 30.0
    register: bool = True
    #: in-band DTMF detection: None = only when no telephone-event was negotiated
    inband: bool | None = None
    #: besides the registrar (exactly its IP and port): networks whose requests we take
    trust: tuple[str, ...] = ()
    #: whose word on the caller counts: pai (P-Asserted-Identity, else From), pai-only, from
    identity: str = "pai"
    #: new calls per second from one source, and the burst allowed (503 beyond); behind
    #: one proxy every call comes from it: size for the whole PBX's peak
    call_rate: float = 50.0
    call_burst: int = 100
    #: calls at once (0: as many as the open-file limit and the RTP ports allow)
    max_calls: int = 0
    #: RTP: latch on the first packet from anywhere (callers behind NAT), not only from
    #: the SDP's address
    rtp_latch_any: bool = False
    #: RFC 3261 T1 (s): every retransmission and transaction timeout scales with it
    sip_t1: float = 0.5


@dataclass(slots=True)
class Stats:
    """Counters for tests and the load benchmark."""

    calls: int = 0
    answered: int = 0
    refused: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    keys: int = 0
    packets_sent: int = 0
    bad_datagrams: int = 0
    refers: int = 0
    #: legs placed for pulls and call-backs, and how many were bridged
    pulls: int = 0
    dials: int = 0
    bridged: int = 0
    relayed: int = 0

    def end(self, why: str) -> None:
        self.ended[why] = self.ended.get(why, 0) + 1


@dataclass(slots=True, eq=False)
class Call:
    """One incoming call and, while it is connected to someone, the leg placed for it
    (the loop thread's view)."""

    key: str
    leg: Leg
    rtp: RtpSession
    #: starting -> answered (dialogue) -> connecting -> bridged; referring; ending -> gone
    state: str = "starting"
    timers: dict[str, TimerHandle] = field(default_factory=dict)
    playing: int | None = None
    #: a pull or call-back: its kind, the leg we placed, that leg's media
    connecting: str = ""
    peer: Leg | None = None
    peer_sock: socket.socket | None = None
    peer_rtp: RtpSession | None = None
    give_up: TimerHandle | None = None
    relays: tuple[Relay, ...] = ()
    #: media starts once the caller ACKed our 200 or sent RTP (never towards an address
    #: that did not answer): the prompt waiting until then
    media_ready: bool = False
    waiting: tuple[int, Chunks] | None = None


class SipServer:
    """Serves one engine's dialplan over SIP. :meth:`start` runs it in a thread."""

    def __init__(
        self, engine: Engine, config: ServeConfig, audio: PromptAudio | None = None
    ) -> None:
        self.config = config
        self.loop = EventLoop()
        self.driver = DialogueDriver(engine, audio, self._deliver, self._retired)
        #: engine contexts attached to the loop (call control), detached on retirement
        self._attached: list[Any] = []
        self.pacer = Pacer()
        self.ports = PortPool(*config.rtp_ports)
        self.calls: dict[str, Call] = {}
        self.stats = Stats()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((config.bind, config.port))
        except OSError as exc:
            self.sock.close()
            raise IvrError(
                f"cannot listen on {config.bind}:{config.port}: {exc.strerror} "
                "(another portal? choose --port)"
            ) from None
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.domain = config.domain or config.registrar[0]
        self.max_calls = config.max_calls or capacity(self.ports.size)
        self.agent = UserAgent(
            self.address[0],
            self.address[1],
            config.user,
            trust=Trust.of([resolve(config.registrar)], config.trust),
            call_rate=SourceLimiter(config.call_rate, config.call_burst),
            max_calls=self.max_calls,
            t1=config.sip_t1,
        )
        self.registration = Registration(
            self.agent,
            registrar=config.registrar,
            user=config.user,
            password=config.password,
            keepalive=config.keepalive,
        )
        self.ringback = cut_packets(ringback())
        self.loop.add_reader(self.sock, self._readable)
        self.loop.before_wait = self._before_wait
        self._thread: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        """Start the dialogue thread and the loop thread; register. An engine context
        with ``attach(loop)`` (call control talking to the PBX) is attached first."""
        self._attach(self.driver.engine.context)
        self.driver.start()
        if self.config.register:
            self.loop.post(lambda: self._agent_call(self.registration.start))
        self.loop.call_later(SWEEP_SECONDS, self._sweep)
        self._thread = threading.Thread(target=self.loop.run, name="ivr-sip", daemon=True)
        self._thread.start()

    def dead_thread(self) -> str | None:
        """The name of a thread of ours that died (it never should), else None."""
        for thread in (self._thread, self.driver.thread):
            if thread is not None and thread.ident is not None and not thread.is_alive():
                return thread.name
        return None

    def stop(self, timeout: float = 5.0) -> None:
        """Hang up every call, de-register, stop both threads, close every socket."""

        def shutdown() -> None:
            for call in list(self.calls.values()):
                self._hang_up(call, "shutdown")
            self._agent_call(self.registration.stop)
            self.loop.stop()

        self.loop.post(shutdown)
        if self._thread is not None:
            self._thread.join(timeout)
        self.driver.stop(timeout)
        while self._attached:
            self._detach(self._attached[-1])
        self.loop.close()
        self.sock.close()

    # --- draining and reloading ----------------------------------------------------------
    def drain(self) -> None:
        """Take no new calls: INVITE and OPTIONS are answered 503 (a dispatcher's probe
        marks us inactive); running calls go on (thread-safe)."""
        self.agent.draining = True

    def hang_up_all(self, why: str = "shutdown") -> None:
        """End every running call from our side: BYE, or 480 if not answered yet
        (thread-safe; the BYEs are retransmitted until answered while the loop runs)."""

        def hang_up() -> None:
            for call in list(self.calls.values()):
                self._hang_up(call, why)
            self._flush()

        self.loop.post(hang_up)

    def settled(self) -> bool:
        """No call, and no request of a call waiting for its final answer (e.g. our
        BYE; the registrar's REGISTER and OPTIONS do not count: a registrar that is
        down must not hold up a stop); read from another thread (a snapshot)."""
        if self.calls:
            return False
        pending = list(self.agent.transactions.clients.values())
        return not any(
            t.state in ("calling", "trying", "proceeding") and t.method not in _REGISTRAR
            for t in pending
        )

    def reload(self, engine: Engine, audio: PromptAudio | None) -> None:
        """Calls from now on run on ``engine`` with ``audio``; running calls finish on
        theirs (thread-safe). Its context is attached to the loop first."""

        def swap() -> None:
            self._attach(engine.context)
            self.driver.swap(engine, audio)

        self.loop.post(swap)

    def _retired(self, generation: Generation) -> None:
        """From the dialogue thread: a replaced engine's last call ended."""
        context = generation.engine.context
        self.loop.post(lambda: self._detach(context))

    def _attach(self, context: Any) -> None:
        attach = getattr(context, "attach", None)
        if attach is not None:
            attach(self.loop)
        self._attached.append(context)

    def _detach(self, context: Any) -> None:
        if not any(c is context for c in self._attached):
            return
        self._attached = [c for c in self._attached if c is not context]
        detach = getattr(context, "detach", None)
        if detach is not None:
            try:
                detach()
            except Exception as exc:  # a context's own failure must not stop the loop
                log.error("detaching an engine's context failed: %s: %s", type(exc).__name__, exc)

    # --- datagrams in and out ---------------------------------------------------------
    def _readable(self, sock: socket.socket) -> None:
        agent = self.agent
        for _ in range(256):
            try:
                data, source = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            agent.receive_datagram(data, source, time.monotonic())
            self._flush()
        self.stats.bad_datagrams = agent.stats.bad_datagrams

    def _agent_call(self, action: Callable[[float], None]) -> None:
        """Run ``action(now)`` on the agent, then send and handle what it produced."""
        action(time.monotonic())
        self._flush()

    def _flush(self) -> None:
        """Send the agent's datagrams and act on its events until both are drained."""
        agent = self.agent
        while True:
            for data, address in agent.datagrams_to_send():
                self._send(data, address)
            event = agent.next_event()
            if event is None:
                return
            handler = _EVENTS.get(type(event))
            if handler is None:
                continue
            try:
                handler(self, event)
            except Exception as exc:  # a bug or a peer we did not foresee: this call only
                call = self._call_of(event.leg)
                if call is None:
                    log.error("%s failed: %s: %s", type(event).__name__, type(exc).__name__, exc)
                    log.debug("traceback", exc_info=True)
                else:
                    self._fail(call, exc)

    def _send(self, data: bytes, address: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, address)
        except OSError as exc:
            self.agent.throttle.warning(
                "send", time.monotonic(), "could not send to %s:%d: %s", *address, exc
            )

    def _before_wait(self, now: float) -> float | None:
        """Before the loop waits: the agent's due timers, the media due; returns the
        earlier of their next deadlines."""
        agent = self.agent
        deadline = agent.next_timer()
        if deadline is not None and deadline <= now:
            agent.handle_timer(now)
            self._flush()
            deadline = agent.next_timer()
        paced = self._pace(now)
        if deadline is None or (paced is not None and paced < deadline):
            return paced
        return deadline

    # --- what happened to a leg ----------------------------------------------------------
    def _incoming(self, event: IncomingCall) -> None:
        leg = event.leg
        request = leg.invite
        assert request is not None
        now = time.monotonic()
        try:
            offer = read_offer(request.sdp)
        except SdpError as exc:
            self.agent.throttle.warning(
                "offer", now, "call %s: refused offer: %s", leg.call_id, exc
            )
            self.agent.reject(leg, 488, now)
            return
        try:
            sock = self.ports.open(self.config.bind)
        except PortsExhausted:
            self.agent.throttle.warning(
                "ports", now, "call %s: no free RTP port; answering 503", leg.call_id
            )
            self.agent.reject(leg, 503, now)
            return
        key = leg.call_id
        rtp = RtpSession(
            sock,
            offer,
            lambda k, how: self._key(key, k, how),
            inband=self.config.inband,
            latch_any=self.config.rtp_latch_any,
        )
        call = leg.owner = Call(key=key, leg=leg, rtp=rtp)
        rtp.on_first = lambda: self._media_ready(call)
        self.calls[key] = call
        self.loop.add_reader(sock, self._guarded(call, rtp.readable))
        self.stats.calls += 1
        log.info(
            "call %s: incoming (%s, %s)",
            key,
            offer.codec,
            "rfc4733" if offer.dtmf_pt else "in-band",
        )
        caller = caller_number(request, self.config.identity)
        self.driver.submit(key, CallStarted(caller=caller, called=request.called, call_id=key))

    def _leg_ended(self, event: LegEnded) -> None:
        call = self._call_of(event.leg)
        if call is None:
            return
        if event.leg is call.peer:
            log.info("call %s: the other party hung up", call.key)
            self._hang_up(call, "remote")
        else:
            self._caller_left(call, "caller" if event.reason == "bye" else event.reason)

    def _acked(self, event: LegAcked) -> None:
        call = self._call_of(event.leg)
        if call is not None and event.leg is call.leg:
            self._media_ready(call)

    def _media_ready(self, call: Call) -> None:
        """The caller is there (ACK, or its first RTP): the waiting prompt may play."""
        if call.media_ready:
            return
        call.media_ready = True
        if call.waiting is not None and call.state == "answered":
            playback, chunks = call.waiting
            call.waiting = None
            self._play(call, playback, chunks)

    def _leg_failed(self, event: LegFailed) -> None:
        call = self._call_of(event.leg)
        if call is None:
            return
        if event.leg is call.peer:
            self._connect_failed(call, event.status)
        else:
            self._caller_left(call, "no-ack")

    def _progress(self, event: LegProgress) -> None:
        call = self._call_of(event.leg)
        if call is None or event.leg is not call.peer or call.connecting != "dial":
            return
        if event.response.body and call.peer_rtp is None and self._peer_media(call, event.response):
            assert call.peer_rtp is not None
            log.info("call %s: early media from the called party", call.key)
            self._stop_playing(call)  # their ringback or announcement instead of ours
            call.peer_rtp.relay = Relay(call.peer_rtp, call.rtp)

    def _answered(self, event: LegAnswered) -> None:
        call = self._call_of(event.leg)
        if call is None or event.leg is not call.peer:
            return
        now = time.monotonic()
        if call.peer_rtp is None and not self._peer_media(call, event.response):
            self.agent.hang_up(event.leg, now)
            self._connect_failed(call, 488)
            return
        assert call.peer_rtp is not None
        self._cancel_give_up(call)
        self._stop_playing(call)
        self.pacer.remove(call.key)
        call.relays = bridge(call.rtp, call.peer_rtp)
        call.state = "bridged"
        call.peer_rtp.last_received = call.rtp.last_received = now
        self.stats.bridged += 1
        self.stats.end("pulled" if call.connecting == "pull" else "dialed")
        log.info(
            "call %s: %s connected (%s <-> %s)",
            call.key,
            call.connecting,
            call.rtp.codec,
            call.peer_rtp.codec,
        )
        self.driver.submit(call.key, CallControlResult(result="connected"))

    def _info(self, event: InfoReceived) -> None:
        call = self._call_of(event.leg)
        key = info_key(event.content_type, event.body)
        if call is not None and key is not None and event.leg is call.leg:
            self._key(call.key, key, "info")

    def _offer(self, event: OfferReceived) -> None:
        call = self._call_of(event.leg)
        if call is None:
            return
        try:
            offer = read_offer(event.request.sdp)
        except SdpError as exc:
            self.agent.throttle.warning(
                "reoffer", time.monotonic(), "call %s: re-INVITE offer ignored: %s", call.key, exc
            )
            return
        rtp = call.rtp if event.leg is call.leg else call.peer_rtp
        if rtp is not None:
            rtp.retarget(offer)

    def _refer_answered(self, event: ReferAnswered) -> None:
        """202: the other side took the REFER; its NOTIFYs tell how the call went.
        A refusal (or no answer) is a failed transfer: back to the dialogue."""
        call = self._call_of(event.leg)
        if call is None or call.state != "referring":
            return
        if 200 <= event.status < 300:
            log.info("call %s: REFER accepted; waiting for its outcome", call.key)
            return
        log.warning("call %s: REFER refused (%d)", call.key, event.status)
        self._referred(call, ok=False)

    def _notify(self, event: NotifyReceived) -> None:
        """A NOTIFY of our REFER (RFC 3515): its sipfrag's status is the outcome."""
        call = self._call_of(event.leg)
        if call is None or call.state != "referring":
            return
        status = sipfrag_status(event.request)
        if status is None or status < 200:
            return  # progress (100, 180) or not about the REFER
        log.info("call %s: the referred call ended %d", call.key, status)
        self._referred(call, ok=status < 300)

    def _refer_timeout(self, call: Call) -> None:
        """No final NOTIFY in time: the other side took the REFER, so the call was
        most likely placed — leave it to them (a warning, then BYE)."""
        if call.state == "referring":
            log.warning("call %s: no outcome of the REFER in %.0f s", call.key, REFER_WAIT)
            self._referred(call, ok=True)
            self._flush()

    def _referred(self, call: Call, *, ok: bool) -> None:
        self._cancel_give_up(call)
        if ok:  # the caller talks to the target now: our leg ends
            self.driver.submit(call.key, CallControlResult(result="connected"))
            self._end(call, "transfer" if call.connecting == "transfer" else "pullcall")
            self._forget(call)
        else:
            call.state = "answered"
            self.driver.submit(call.key, CallControlResult(result="failed"))

    def _call_of(self, leg: Leg) -> Call | None:
        call = leg.owner
        return call if isinstance(call, Call) and call.state != "gone" else None

    # --- the dialogue's commands -----------------------------------------------------
    def _deliver(self, key: str, outcome: Outcome) -> None:
        """From the dialogue thread: carry out ``outcome`` on the loop."""
        self.loop.post(lambda: self._execute_guarded(key, outcome))

    def _execute_guarded(self, key: str, outcome: Outcome) -> None:
        call = self.calls.get(key)
        if call is not None:
            self._guarded(call, lambda: self._execute(key, outcome))()

    def _execute(self, key: str, outcome: Outcome) -> None:
        call = self.calls.get(key)
        if call is None or call.state not in ("starting", "answered"):
            return
        if call.state == "starting":
            if outcome.ended and not any(isinstance(c, PlayPrompt) for c in outcome.commands):
                self._refuse(call, outcome)
                return
            self._answer(call)
        for command in outcome.commands:
            self._command(call, command, outcome)
        self._flush()

    def _answer(self, call: Call) -> None:
        call.state = "answered"
        body = answer(call.rtp.offer, self.config.bind, call.rtp.port)
        self.agent.answer(call.leg, body, time.monotonic())
        call.rtp.last_received = time.monotonic()
        self.stats.answered += 1

    def _refuse(self, call: Call, outcome: Outcome) -> None:
        self.stats.refused += 1
        self._agent_call(lambda now: self.agent.reject(call.leg, 403, now))
        log.info("call %s: refused before answering (%s)", call.key, outcome.outcome)
        self._forget(call, why="refused")

    def _command(self, call: Call, command: Command, outcome: Outcome) -> None:
        if isinstance(command, PlayPrompt):
            self._play(call, command.playback, outcome.audio.get(command.playback, ()))
        elif isinstance(command, StopPrompt):
            if call.playing == command.playback:
                self._stop_playing(call)
        elif isinstance(command, StartTimer):
            name = command.timer
            call.timers[name] = self.loop.call_later(
                command.seconds, self._guarded(call, lambda: self._timer(call, name))
            )
        elif isinstance(command, CancelTimer):
            timer = call.timers.pop(command.timer, None)
            if timer is not None:
                timer.cancel()
        elif isinstance(command, Hangup):
            self._end(call, command.reason)
            self._forget(call)
        elif isinstance(command, Transfer | PullCall | Dial):
            self._connect(call, command, outcome)

    # --- pull and call-back ----------------------------------------------------------
    def _connect(self, call: Call, command: Transfer | PullCall | Dial, outcome: Outcome) -> None:
        decided = outcome.connect
        if isinstance(decided, str) and decided != "connected":
            self.driver.submit(call.key, CallControlResult(result=decided))
        elif isinstance(command, Dial):
            self._call_back(call, command, outcome.variables)
        elif isinstance(command, PullCall) and isinstance(decided, Replaces):
            self._pull(call, decided)
        else:  # a transfer, or a pull without a dialog to replace (simulated PBX): REFER
            call.state = "referring"
            call.connecting = "transfer" if isinstance(command, Transfer) else "pull"
            self._refer(call, self._target(command, outcome.variables))
            wait = self._guarded(call, lambda: self._refer_timeout(call))
            call.give_up = self.loop.call_later(REFER_WAIT, wait)

    def _pull(self, call: Call, replaces: Replaces) -> None:
        """INVITE the desk call's remote party with Replaces: it leaves the desk phone
        (BYE) and talks to us; we bridge it to the caller."""
        self.stats.pulls += 1
        log.info("call %s: pulling a running call (INVITE with Replaces)", call.key)
        self._place(
            call,
            "pull",
            replaces.target,
            to=f"<{replaces.remote or replaces.target}>",
            from_=f"<sip:{self.config.user}@{self.domain}>",
            headers=[("Replaces", replaces.header()), ("Require", "replaces")],
            timeout=self.config.connect_timeout,
        )

    def _call_back(self, call: Call, command: Dial, variables: Mapping[str, Any]) -> None:
        """INVITE the number with the portal's identity; ringback until it answers."""
        self.stats.dials += 1
        uri = self._target(command, variables)
        number = command.caller_id or self.config.user
        name = command.display_name.replace("\\", "").replace('"', "")
        identity = f"<sip:{number}@{self.domain}>"
        if name:
            identity = f'"{name}" {identity}'

        log.info("call %s: calling back (INVITE with the portal's identity)", call.key)
        self._place(
            call,
            "dial",
            uri,
            to=f"<{uri}>",
            from_=identity,
            headers=[("P-Asserted-Identity", identity), ("Privacy", "none")],
            timeout=command.timeout,
        )
        if call.state == "connecting":
            self._play(call, RINGBACK, self.ringback)

    def _place(
        self,
        call: Call,
        kind: str,
        uri: str,
        *,
        to: str,
        from_: str,
        headers: list[tuple[str, str]],
        timeout: float,
    ) -> None:
        try:
            sock = self.ports.open(self.config.bind)
        except PortsExhausted:
            log.error("call %s: no free RTP port for the %s", call.key, kind)
            self.driver.submit(call.key, CallControlResult(result="failed"))
            return
        other = "pcmu" if call.rtp.codec == "pcma" else "pcma"
        sdp = make_offer(self.config.bind, sock.getsockname()[1], (call.rtp.codec, other))
        call.connecting, call.peer_sock, call.state = kind, sock, "connecting"
        call.peer = self.agent.invite(
            uri,
            self.config.registrar,
            time.monotonic(),
            from_=from_,
            to=to,
            sdp=sdp,
            headers=headers,
            owner=call,
        )
        call.give_up = self.loop.call_later(
            timeout, self._guarded(call, lambda: self._give_up(call))
        )

    def _peer_media(self, call: Call, response: Message) -> bool:
        """The placed leg's SDP answer: its RTP session, read by the loop."""
        assert call.peer_sock is not None
        try:
            offer = read_offer(response.sdp)
        except SdpError as exc:
            log.warning("call %s: unusable answer from the other party: %s", call.key, exc)
            return False
        if offer.codec not in CODEC_PT:
            return False
        call.peer_rtp = RtpSession(call.peer_sock, offer, latch_any=self.config.rtp_latch_any)
        self.loop.add_reader(call.peer_sock, self._guarded(call, call.peer_rtp.readable))
        return True

    def _give_up(self, call: Call) -> None:
        """The placed leg did not answer in time: cancel it, tell the dialogue."""
        call.give_up = None
        if call.state != "connecting" or call.peer is None:
            return
        log.info("call %s: no answer to the %s; giving up", call.key, call.connecting)
        peer, peer.owner = call.peer, None  # its late events no longer concern the call
        self.agent.hang_up(peer, time.monotonic())
        self._connect_failed(call, 0)
        self._flush()

    def _connect_failed(self, call: Call, status: int) -> None:
        """The placed leg will not come: back to the dialogue with the reason."""
        if call.state != "connecting":
            return
        kind = call.connecting
        if kind == "dial":
            result = DIAL_RESULTS.get(status, "no_answer" if status == 0 else "failed")
        else:
            result = "failed"
        log.info("call %s: %s failed (%s)", call.key, kind, status or "timeout")
        self._cancel_give_up(call)
        self._stop_playing(call)
        self._close_peer(call)
        call.state = "answered"
        self.driver.submit(call.key, CallControlResult(result=result))

    def _cancel_give_up(self, call: Call) -> None:
        if call.give_up is not None:
            call.give_up.cancel()
            call.give_up = None

    # --- media of the dialogue -------------------------------------------------------
    def _target(self, command: Command, variables: Mapping[str, Any]) -> str:
        config = self.config
        values = {**variables, "registrar": "{}:{}".format(*config.registrar)}
        if isinstance(command, PullCall):
            template, values["call"] = config.pull_target, command.call
        elif isinstance(command, Dial):
            template, values["number"] = config.dial_target, command.number
        else:
            assert isinstance(command, Transfer)
            if command.target.startswith(("sip:", "sips:", "tel:")):
                return command.target  # the dialplan named a full URI: taken as it is
            template, values["target"] = config.transfer_target, command.target
        try:
            return template.format_map(values)
        except (KeyError, ValueError, IndexError) as exc:
            log.error("call %s: bad target template %r: %s", command, template, exc)
            return template

    def _play(self, call: Call, playback: int, chunks: Chunks) -> None:
        if not chunks:
            self.driver.submit(call.key, PromptFinished(playback=playback))
            return
        if not call.media_ready:  # nothing towards an address that has not answered
            call.waiting = (playback, chunks)
            return
        call.playing = playback
        last = len(chunks) - 1
        call.rtp.talkspurt()
        self.pacer.play(
            call.key,
            [(call, playback, chunk, i == last) for i, chunk in enumerate(chunks)],
            time.monotonic(),
        )

    def _stop_playing(self, call: Call) -> None:
        self.pacer.stop(call.key)
        call.playing = None
        call.waiting = None

    def _pace(self, now: float) -> float | None:
        for _key, item in self.pacer.due(now):
            call: Call
            playback: int
            chunk: bytes
            last: bool
            call, playback, chunk, last = item  # type: ignore[misc]
            try:
                call.rtp.send(chunk)
            except Exception as exc:
                self._fail(call, exc)
                continue
            if last and call.playing == playback:
                call.playing = None
                if playback == RINGBACK:
                    self._play(call, RINGBACK, self.ringback)  # ring on until answered
                else:
                    self.driver.submit(call.key, PromptFinished(playback=playback))
        return self.pacer.next_wakeup()

    def _timer(self, call: Call, name: str) -> None:
        if call.timers.pop(name, None) is not None:
            self.driver.submit(call.key, TimerFired(timer=name))

    def _key(self, key: str, digit: str, how: str) -> None:
        call = self.calls.get(key)
        if call is None or call.state != "answered":
            return
        self.stats.keys += 1
        log.debug("call %s: DTMF key (%s)", key, how)  # never the key itself: PINs
        self.driver.submit(key, DigitReceived(digit=digit))

    # --- ending ------------------------------------------------------------------------
    def _end(self, call: Call, why: str) -> None:
        """The dialogue ended the call: no more media or timers."""
        call.state = "ending"
        self.stats.end(why)
        self._stop_media(call)

    def _caller_left(self, call: Call, why: str) -> None:
        """The caller (or the network) ended the call: tell the dialogue, forget it."""
        if call.state in ("starting", "answered", "connecting", "referring"):
            self.driver.submit(call.key, CallHungUp(reason=why))
        self.stats.end(why)
        self._forget(call)

    def _hang_up(self, call: Call, why: str) -> None:
        """End the call from our side (shutdown, silence, the other party left)."""
        if call.state in ("answered", "connecting", "referring"):
            self.driver.submit(call.key, CallHungUp(reason=why))
        if call.state != "starting":
            self.stats.end(why)
        self._forget(call)

    def _refer(self, call: Call, target: str) -> None:
        self.stats.refers += 1
        log.info("call %s: REFER", call.key)
        self.agent.refer(call.leg, target, time.monotonic())

    def _close_peer(self, call: Call) -> None:
        """Forget the placed leg's media (and the leg: hung up if still there)."""
        if call.peer is not None:
            call.peer.owner = None
            self.agent.hang_up(call.peer, time.monotonic())
            call.peer = None
        call.peer_rtp = None
        if call.peer_sock is not None:
            self.loop.remove_reader(call.peer_sock)
            self.ports.close(call.peer_sock)
            call.peer_sock = None

    def _stop_media(self, call: Call) -> None:
        self.pacer.remove(call.key)
        call.playing = None
        for timer in call.timers.values():
            timer.cancel()
        call.timers.clear()
        self._cancel_give_up(call)
        for relay in call.relays:
            self.stats.relayed += relay.relayed
        call.relays = ()
        if call.rtp.sock.fileno() >= 0:
            self.stats.packets_sent += call.rtp.sent
            self.loop.remove_reader(call.rtp.sock)
            self.ports.close(call.rtp.sock)

    def _forget(self, call: Call, why: str = "") -> None:
        """The one way a call ends: both legs hung up (if still up), every socket and
        timer released, the call dropped."""
        if why:
            self.stats.end(why)
        self._stop_media(call)
        self._close_peer(call)
        self.agent.hang_up(call.leg, time.monotonic())  # BYE, or 480 if never answered
        call.state = "gone"
        self.calls.pop(call.key, None)

    # --- failures -------------------------------------------------------------------
    def _guarded(self, call: Call, action: Callable[..., None]) -> Callable[..., None]:
        """``action`` for the loop: an exception ends ``call`` only (:meth:`_fail`)."""

        def run(*args: Any) -> None:
            try:
                action(*args)
            except Exception as exc:
                self._fail(call, exc)

        return run

    def _fail(self, call: Call, exc: Exception) -> None:
        """Something raised while serving ``call``: end it (BYE, or 500 if it was never
        answered), forget it, one log line — and go on with every other call."""
        log.error("call %s: ended after an error: %s: %s", call.key, type(exc).__name__, exc)
        log.debug("traceback", exc_info=exc)
        self.stats.end("error")
        try:
            if call.state in ("starting", "answered", "connecting", "referring"):
                self.driver.submit(call.key, CallHungUp(reason="error"))
            if call.state == "starting":
                self.agent.reject(call.leg, 500, time.monotonic())
            self._forget(call)
        except Exception as again:  # never let cleaning up stop the loop
            log.error("call %s: cleaning up failed too: %s", call.key, again)
        finally:
            call.state = "gone"
            self.calls.pop(call.key, None)
        self._flush()

    def _sweep(self) -> None:
        """Once a second: end calls whose caller (or bridged party) vanished: no RTP
        and no BYE."""
        timeout = self.config.rtp_timeout
        if timeout > 0:
            now = time.monotonic()
            for call in list(self.calls.values()):
                if call.state not in ("answered", "bridged"):
                    continue
                sessions = [call.rtp] + ([call.peer_rtp] if call.peer_rtp is not None else [])
                if any(now - rtp.last_received > timeout for rtp in sessions):
                    log.warning("call %s: no RTP for %.0f s; ending it", call.key, timeout)
                    self._hang_up(call, "no-rtp")
            self._flush()
        self.loop.call_later(SWEEP_SECONDS, self._sweep)


def sipfrag_status(notify: Message) -> int | None:
    """The status of a ``message/sipfrag`` NOTIFY body (``SIP/2.0 200 OK`` -> 200)."""
    if not notify.header("Content-Type").lower().startswith("message/sipfrag"):
        return None
    first = notify.body.split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if len(first) >= 2 and first[0] == "SIP/2.0" and first[1].isdigit():
        return int(first[1])
    return None


def resolve(address: tuple[str, int]) -> tuple[str, int]:
    """``(host, port)`` with the host as an IP address (the registrar is trusted by
    the address its datagrams come from)."""
    try:
        info = socket.getaddrinfo(address[0], address[1], socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return address
    return str(info[0][4][0]), address[1]


def capacity(rtp_ports: int) -> int:
    """How many calls one process can hold: each takes up to two RTP sockets (caller and
    placed leg), from the port range and from the open-file limit, whose soft value is
    raised to the hard one first (a flood once hit EMFILE at 1,024 fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(1, min(rtp_ports, soft - RESERVED_FDS) // 2)


_EVENTS: dict[type[LegEvent], Callable[[SipServer, Any], None]] = {
    IncomingCall: SipServer._incoming,
    LegAcked: SipServer._acked,
    LegEnded: SipServer._leg_ended,
    LegFailed: SipServer._leg_failed,
    LegProgress: SipServer._progress,
    LegAnswered: SipServer._answered,
    InfoReceived: SipServer._info,
    OfferReceived: SipServer._offer,
    NotifyReceived: SipServer._notify,
    ReferAnswered: SipServer._refer_answered,
}

__all__ = ["Call", "ServeConfig", "SipServer", "Stats"]
