"""The SIP runtime: answers calls, runs their dialogues, turns commands into SIP and RTP.

Threads: one I/O loop (:mod:`ivr.sip.loop`: SIP socket, every call's RTP socket, timers,
the media pacer) and one dialogue thread (:mod:`ivr.sip.driver`). pyVoIP parses the
messages and builds the REGISTERs; the transaction and dialog layer is this module
(pyVoIP's ``VoIPPhone``/``VoIPCall`` answered after a fixed 1 s, restarted RTP on
retransmitted INVITEs, sent no 487, answered BYE for unknown calls with 200, never
retransmitted its 200 or BYE, and dropped REFER/INFO/OPTIONS: bugs 2, 4, 8, 11, 12).

Per call: INVITE -> 100 Trying -> the dialogue's first commands decide: a hang-up
without a prompt is answered 403 (refused before answering), anything else 200 OK
(retransmitted until ACK). Hang-up -> BYE; transfer and pull -> REFER to the
configured target, then BYE; dial -> the context's call control, then REFER to the
dial target. BYE/CANCEL from the caller, no RTP for ``rtp_timeout`` seconds, or a
missing ACK end the call and its dialogue; its RTP port is released at once.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr.audio.library import PromptAudio
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
from ivr.events import CallHungUp, CallStarted, DigitReceived, PromptFinished, TimerFired
from ivr.sip.agent import UserAgent
from ivr.sip.driver import Chunks, DialogueDriver, Outcome
from ivr.sip.dtmf import info_key
from ivr.sip.legs import (
    IncomingCall,
    InfoReceived,
    Leg,
    LegEnded,
    LegEvent,
    LegFailed,
    OfferReceived,
    ReferAnswered,
)
from ivr.sip.loop import EventLoop
from ivr.sip.media import PortPool, PortsExhausted, RtpSession
from ivr.sip.pacer import Pacer
from ivr.sip.registration import Registration
from ivr.sip.sdp import SdpError, answer, read_offer
from ivr.sip.timers import TimerHandle

log = logging.getLogger("ivr.sip")

SWEEP_SECONDS = 1.0


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
    dial_target: str = "sip:{number}@{registrar}"
    #: end a call after this many seconds without any RTP from the caller (0: never)
    rtp_timeout: float = 60.0
    keepalive: float = 30.0
    register: bool = True
    #: in-band DTMF detection: None = only when no telephone-event was negotiated
    inband: bool | None = None


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

    def end(self, why: str) -> None:
        self.ended[why] = self.ended.get(why, 0) + 1


@dataclass(slots=True, eq=False)
class Call:
    """One incoming call (the loop thread's view)."""

    key: str
    leg: Leg
    rtp: RtpSession
    state: str = "starting"  # starting -> answered -> ending -> gone
    timers: dict[str, TimerHandle] = field(default_factory=dict)
    playing: int | None = None


class SipServer:
    """Serves one engine's dialplan over SIP. :meth:`start` runs it in a thread."""

    def __init__(
        self, engine: Engine, config: ServeConfig, audio: PromptAudio | None = None
    ) -> None:
        self.config = config
        self.loop = EventLoop()
        self.driver = DialogueDriver(engine, audio, self._deliver)
        self.pacer = Pacer()
        self.ports = PortPool(*config.rtp_ports)
        self.calls: dict[str, Call] = {}
        self.stats = Stats()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((config.bind, config.port))
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.agent = UserAgent(self.address[0], self.address[1], config.user)
        self.registration = Registration(
            self.agent,
            registrar=config.registrar,
            user=config.user,
            password=config.password,
            keepalive=config.keepalive,
        )
        self.loop.add_reader(self.sock, self._readable)
        self.loop.before_wait = self._before_wait
        self._thread: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        """Start the dialogue thread and the loop thread; register."""
        self.driver.start()
        if self.config.register:
            self.loop.post(lambda: self._agent_call(self.registration.start))
        self.loop.call_later(SWEEP_SECONDS, self._sweep)
        self._thread = threading.Thread(target=self.loop.run, name="ivr-sip", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Hang up every call, de-register, stop both threads, close every socket."""

        def shutdown() -> None:
            for call in list(self.calls.values()):
                self._hang_up(call, "shutdown")
                self._forget(call)
            self._agent_call(self.registration.stop)
            self.loop.stop()

        self.loop.post(shutdown)
        if self._thread is not None:
            self._thread.join(timeout)
        self.driver.stop(timeout)
        self.loop.close()
        self.sock.close()

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
            if handler is not None:
                handler(self, event)

    def _send(self, data: bytes, address: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, address)
        except OSError as exc:
            log.warning("could not send to %s:%d: %s", *address, exc)

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
        except (SdpError, KeyError, ValueError, TypeError) as exc:
            log.warning("call %s: refused offer: %s", leg.call_id, exc)
            self.agent.reject(leg, 488, now)
            return
        try:
            sock = self.ports.open(self.config.bind)
        except PortsExhausted:
            log.error("call %s: no free RTP port; answering 503", leg.call_id)
            self.agent.reject(leg, 503, now)
            return
        key = leg.call_id
        rtp = RtpSession(
            sock, offer, lambda k, how: self._key(key, k, how), inband=self.config.inband
        )
        call = leg.owner = Call(key=key, leg=leg, rtp=rtp)
        self.calls[key] = call
        self.loop.add_reader(sock, rtp.readable)
        self.stats.calls += 1
        log.info(
            "call %s: incoming (%s, %s)",
            key,
            offer.codec,
            "rfc4733" if offer.dtmf_pt else "in-band",
        )
        self.driver.submit(
            key, CallStarted(caller=request.caller, called=request.called, call_id=key)
        )

    def _leg_ended(self, event: LegEnded) -> None:
        call = self._call_of(event.leg)
        if call is not None:
            self._caller_left(call, "caller" if event.reason == "bye" else event.reason)

    def _leg_failed(self, event: LegFailed) -> None:
        call = self._call_of(event.leg)
        if call is not None:
            self._caller_left(call, "no-ack")

    def _info(self, event: InfoReceived) -> None:
        call = self._call_of(event.leg)
        key = info_key(event.content_type, event.body)
        if call is not None and key is not None:
            self._key(call.key, key, "info")

    def _offer(self, event: OfferReceived) -> None:
        call = self._call_of(event.leg)
        if call is None:
            return
        try:
            offer = read_offer(event.request.sdp)
        except (SdpError, KeyError, ValueError, TypeError) as exc:
            log.warning("call %s: re-INVITE offer ignored: %s", call.key, exc)
            return
        call.rtp.remote = (offer.address, offer.port)

    def _refer_answered(self, event: ReferAnswered) -> None:
        call = self._call_of(event.leg)
        if event.status >= 300:
            log.warning("call %s: REFER refused (%d)", event.leg.call_id, event.status)
        self.agent.hang_up(event.leg, time.monotonic())
        if call is not None:
            self._forget(call)

    def _call_of(self, leg: Leg) -> Call | None:
        call = leg.owner
        return call if isinstance(call, Call) and call.state != "gone" else None

    # --- the dialogue's commands -----------------------------------------------------
    def _deliver(self, key: str, outcome: Outcome) -> None:
        """From the dialogue thread: carry out ``outcome`` on the loop."""
        self.loop.post(lambda: self._execute(key, outcome))

    def _execute(self, key: str, outcome: Outcome) -> None:
        call = self.calls.get(key)
        if call is None or call.state in ("ending", "gone"):
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
                self.pacer.stop(call.key)
                call.playing = None
        elif isinstance(command, StartTimer):
            name = command.timer
            call.timers[name] = self.loop.call_later(
                command.seconds, lambda: self._timer(call, name)
            )
        elif isinstance(command, CancelTimer):
            timer = call.timers.pop(command.timer, None)
            if timer is not None:
                timer.cancel()
        elif isinstance(command, Hangup):
            self._end(call, command.reason)
            self.agent.hang_up(call.leg, time.monotonic())
            self._forget(call)
        elif isinstance(command, Transfer | PullCall | Dial):
            self._end(call, type(command).__name__.lower())
            self._refer(call, self._target(command, outcome.variables))

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
        call.playing = playback
        last = len(chunks) - 1
        call.rtp.talkspurt()
        self.pacer.play(
            call.key,
            [(call, playback, chunk, i == last) for i, chunk in enumerate(chunks)],
            time.monotonic(),
        )

    def _pace(self, now: float) -> float | None:
        for _key, item in self.pacer.due(now):
            call: Call
            playback: int
            chunk: bytes
            last: bool
            call, playback, chunk, last = item  # type: ignore[misc]
            call.rtp.send(chunk)
            if last and call.playing == playback:
                call.playing = None
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
        self.driver.submit(call.key, CallHungUp(reason=why))
        self.stats.end(why)
        self._forget(call)

    def _hang_up(self, call: Call, why: str) -> None:
        if call.state == "answered":
            self.driver.submit(call.key, CallHungUp(reason=why))
            self._end(call, why)
            self._agent_call(lambda now: self.agent.hang_up(call.leg, now))

    def _refer(self, call: Call, target: str) -> None:
        self.stats.refers += 1
        log.info("call %s: REFER", call.key)
        self.agent.refer(call.leg, target, time.monotonic())

    def _stop_media(self, call: Call) -> None:
        self.pacer.remove(call.key)
        call.playing = None
        for timer in call.timers.values():
            timer.cancel()
        call.timers.clear()
        if call.rtp.sock.fileno() >= 0:
            self.stats.packets_sent += call.rtp.sent
            self.loop.remove_reader(call.rtp.sock)
            self.ports.close(call.rtp.sock)

    def _forget(self, call: Call, why: str = "") -> None:
        if why:
            self.stats.end(why)
        self._stop_media(call)
        call.state = "gone"
        self.calls.pop(call.key, None)

    def _sweep(self) -> None:
        """Once a second: end calls whose caller vanished (no RTP, no BYE)."""
        timeout = self.config.rtp_timeout
        if timeout > 0:
            now = time.monotonic()
            for call in list(self.calls.values()):
                if call.state == "answered" and now - call.rtp.last_received > timeout:
                    log.warning("call %s: no RTP for %.0f s; ending it", call.key, timeout)
                    self._hang_up(call, "no-rtp")
                    self._forget(call)
        self.loop.call_later(SWEEP_SECONDS, self._sweep)


_EVENTS: dict[type[LegEvent], Callable[[SipServer, Any], None]] = {
    IncomingCall: SipServer._incoming,
    LegEnded: SipServer._leg_ended,
    LegFailed: SipServer._leg_failed,
    InfoReceived: SipServer._info,
    OfferReceived: SipServer._offer,
    ReferAnswered: SipServer._refer_answered,
}
