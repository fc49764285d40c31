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
from collections.abc import Mapping
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
from ivr.sip.driver import Chunks, DialogueDriver, Outcome
from ivr.sip.dtmf import info_key
from ivr.sip.loop import EventLoop, TimerHandle
from ivr.sip.media import PortPool, PortsExhausted, RtpSession
from ivr.sip.message import ALLOW, Dialog, Message, SipParseError, new_tag, parse, response
from ivr.sip.message import via_sent_by as response_address
from ivr.sip.pacer import Pacer
from ivr.sip.registration import Registration
from ivr.sip.sdp import SdpError, answer, read_offer

log = logging.getLogger("ivr.sip")

T1, T2 = 0.5, 4.0  # RFC 3261 timers
TIMER_B = 32.0  # give up on a transaction after 64*T1
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
    invite: Message
    source: tuple[str, int]
    local_tag: str
    rtp: RtpSession
    state: str = "starting"  # starting -> answered -> ending -> gone
    dialog: Dialog | None = None
    final: bytes = b""  # our final response to the INVITE, for retransmissions
    ack_timer: TimerHandle | None = None
    timers: dict[str, TimerHandle] = field(default_factory=dict)
    playing: int | None = None
    #: our requests awaiting an answer: branch -> (method, retransmission timer)
    pending: dict[str, tuple[str, TimerHandle]] = field(default_factory=dict)


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
        self.address = self.sock.getsockname()
        self.contact = f"<sip:{config.user}@{self.address[0]}:{self.address[1]}>"
        self.registration = Registration(
            self.loop,
            self._send,
            registrar=config.registrar,
            user=config.user,
            password=config.password,
            host=self.address[0],
            port=self.address[1],
            keepalive=config.keepalive,
        )
        self.loop.add_reader(self.sock, self._readable)
        self.loop.before_wait = self._pace
        self._thread: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        """Start the dialogue thread and the loop thread; register."""
        self.driver.start()
        if self.config.register:
            self.loop.post(self.registration.start)
        self.loop.call_later(SWEEP_SECONDS, self._sweep)
        self._thread = threading.Thread(target=self.loop.run, name="ivr-sip", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Hang up every call, de-register, stop both threads, close every socket."""

        def shutdown() -> None:
            for call in list(self.calls.values()):
                self._hang_up(call, "shutdown")
                self._forget(call)
            self.registration.stop()
            self.loop.stop()

        self.loop.post(shutdown)
        if self._thread is not None:
            self._thread.join(timeout)
        self.driver.stop(timeout)
        self.loop.close()
        self.sock.close()

    # --- datagrams in ---------------------------------------------------------------
    def _readable(self, sock: socket.socket) -> None:
        for _ in range(256):
            try:
                data, source = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._datagram(data, source)

    def _datagram(self, data: bytes, source: tuple[str, int]) -> None:
        if data in (b"\r\n\r\n", b"\r\n", b"\0\0\0\0"):
            return  # keep-alives
        try:
            message = parse(data)
        except SipParseError as exc:
            self.stats.bad_datagrams += 1
            log.warning("ignored a datagram from %s:%d: %s", *source, exc)
            return
        if message.is_request:
            handler = _REQUESTS.get(message.method, SipServer._unsupported)
            handler(self, message, source)
        elif self.registration.owns(message):
            self.registration.response(message)
        else:
            self._response(message)

    def _send(self, data: bytes, address: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, address)
        except OSError as exc:
            log.warning("could not send to %s:%d: %s", *address, exc)

    def _reply(self, request: Message, code: int, **kwargs: Any) -> bytes:
        data = response(request, code, **kwargs)
        self._send(data, response_address(request))
        return data

    # --- requests ---------------------------------------------------------------------
    def _invite(self, request: Message, source: tuple[str, int]) -> None:
        call = self.calls.get(request.call_id)
        if call is not None:
            if request.to_tag and request.to_tag == call.local_tag:
                self._reinvite(call, request)
            elif call.final:  # a retransmission: repeat, never restart anything (bug 2)
                self._send(call.final, response_address(request))
            else:
                self._reply(request, 100)
            return
        if request.to_tag:
            self._reply(request, 481)
            return
        self._reply(request, 100)
        try:
            offer = read_offer(request.sdp)
        except (SdpError, KeyError, ValueError, TypeError) as exc:
            log.warning("call %s: refused offer: %s", request.call_id, exc)
            self._reply(request, 488, to_tag=new_tag())
            return
        try:
            sock = self.ports.open(self.config.bind)
        except PortsExhausted:
            log.error("call %s: no free RTP port; answering 503", request.call_id)
            self._reply(request, 503, to_tag=new_tag())
            return
        key = request.call_id
        rtp = RtpSession(
            sock, offer, lambda k, how: self._key(key, k, how), inband=self.config.inband
        )
        call = Call(key=key, invite=request, source=source, local_tag=new_tag(), rtp=rtp)
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

    def _reinvite(self, call: Call, request: Message) -> None:
        try:
            offer = read_offer(request.sdp) if request.body else call.rtp.offer
        except (SdpError, KeyError, ValueError, TypeError):
            self._reply(request, 488)
            return
        call.rtp.remote = (offer.address, offer.port)
        body = answer(offer, self.config.bind, call.rtp.port)
        self._reply(
            request,
            200,
            headers=[("Contact", self.contact)],
            body=body,
            content_type="application/sdp",
        )

    def _ack(self, request: Message, source: tuple[str, int]) -> None:
        call = self.calls.get(request.call_id)
        if call is not None and call.ack_timer is not None:
            call.ack_timer.cancel()
            call.ack_timer = None

    def _bye(self, request: Message, source: tuple[str, int]) -> None:
        call = self.calls.get(request.call_id)
        if call is None:
            self._reply(request, 481)  # bug 11: pyVoIP said 200
            return
        self._reply(request, 200)
        if call.state != "ending":
            self._caller_left(call, "caller")
        else:
            self._forget(call)

    def _cancel(self, request: Message, source: tuple[str, int]) -> None:
        call = self.calls.get(request.call_id)
        if call is None:
            self._reply(request, 481)
            return
        self._reply(request, 200)
        if call.state == "starting":  # bug 4: pyVoIP sent no 487 and answered anyway
            call.final = self._reply(call.invite, 487, to_tag=call.local_tag)
            self._caller_left(call, "cancel")

    def _info(self, request: Message, source: tuple[str, int]) -> None:
        call = self.calls.get(request.call_id)
        if call is None:
            self._reply(request, 481)
            return
        key = info_key(request.header("Content-Type"), request.body)
        self._reply(request, 200)
        if key is not None:
            self._key(call.key, key, "info")

    def _options(self, request: Message, source: tuple[str, int]) -> None:
        self._reply(request, 200, headers=[("Allow", ALLOW), ("Accept", "application/sdp")])

    def _notify(self, request: Message, source: tuple[str, int]) -> None:
        self._reply(request, 200 if request.call_id in self.calls else 481)

    def _unsupported(self, request: Message, source: tuple[str, int]) -> None:
        self._reply(request, 405, headers=[("Allow", ALLOW)])

    # --- responses to our requests ----------------------------------------------------
    def _response(self, message: Message) -> None:
        call = self.calls.get(message.call_id)
        if call is None or message.status < 200:
            return
        pending = call.pending.pop(message.branch, None)
        if pending is None:
            return
        method, timer = pending
        timer.cancel()
        if method == "REFER":
            if message.status >= 300:
                log.warning("call %s: REFER refused (%d)", call.key, message.status)
            self._send_bye(call)
        elif method == "BYE":
            self._forget(call)

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

    def _answer(self, call: Call) -> None:
        call.state = "answered"
        call.dialog = Dialog.from_invite(call.invite, call.local_tag, self.contact)
        body = answer(call.rtp.offer, self.config.bind, call.rtp.port)
        call.final = self._reply(
            call.invite,
            200,
            to_tag=call.local_tag,
            headers=[("Contact", self.contact), ("Allow", ALLOW)],
            body=body,
            content_type="application/sdp",
        )
        call.rtp.last_received = time.monotonic()
        self.stats.answered += 1
        self._retransmit_ok(call, T1, 0.0)

    def _retransmit_ok(self, call: Call, interval: float, waited: float) -> None:
        def again() -> None:
            if call.state == "gone" or call.ack_timer is None:
                return
            if waited + interval >= TIMER_B:
                log.warning("call %s: no ACK for our 200 OK; ending the call", call.key)
                self._caller_left(call, "no-ack")
                return
            self._send(call.final, response_address(call.invite))
            self._retransmit_ok(call, min(interval * 2, T2), waited + interval)

        call.ack_timer = self.loop.call_later(interval, again)

    def _refuse(self, call: Call, outcome: Outcome) -> None:
        self.stats.refused += 1
        call.final = self._reply(call.invite, 403, to_tag=call.local_tag)
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
            self._send_bye(call)
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
            self._send_bye(call)

    def _send_bye(self, call: Call) -> None:
        if call.dialog is None:
            self._forget(call)
            return
        self._request(call, "BYE")

    def _refer(self, call: Call, target: str) -> None:
        self.stats.refers += 1
        log.info("call %s: REFER", call.key)
        self._request(
            call,
            "REFER",
            headers=[("Refer-To", f"<{target}>"), ("Referred-By", self.contact)],
        )

    def _request(
        self, call: Call, method: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        assert call.dialog is not None
        data, address, branch = call.dialog.request(
            method, self.address[0], self.address[1], headers=headers
        )

        def retransmit(interval: float, waited: float) -> TimerHandle:
            def again() -> None:
                if branch not in call.pending:
                    return
                if waited + interval >= TIMER_B:
                    call.pending.pop(branch, None)
                    log.warning("call %s: no answer to %s", call.key, method)
                    if method == "REFER":
                        self._send_bye(call)
                    else:
                        self._forget(call)
                    return
                self._send(data, address)
                call.pending[branch] = (
                    method,
                    retransmit(min(interval * 2, T2), waited + interval),
                )

            return self.loop.call_later(interval, again)

        self._send(data, address)
        call.pending[branch] = (method, retransmit(T1, 0.0))

    def _stop_media(self, call: Call) -> None:
        self.pacer.remove(call.key)
        call.playing = None
        for timer in call.timers.values():
            timer.cancel()
        call.timers.clear()
        if call.ack_timer is not None:
            call.ack_timer.cancel()
            call.ack_timer = None
        if call.rtp.sock.fileno() >= 0:
            self.stats.packets_sent += call.rtp.sent
            self.loop.remove_reader(call.rtp.sock)
            self.ports.close(call.rtp.sock)

    def _forget(self, call: Call, why: str = "") -> None:
        if why:
            self.stats.end(why)
        self._stop_media(call)
        for _method, timer in call.pending.values():
            timer.cancel()
        call.pending.clear()
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
        self.loop.call_later(SWEEP_SECONDS, self._sweep)


_REQUESTS = {
    "INVITE": SipServer._invite,
    "ACK": SipServer._ack,
    "BYE": SipServer._bye,
    "CANCEL": SipServer._cancel,
    "INFO": SipServer._info,
    "OPTIONS": SipServer._options,
    "NOTIFY": SipServer._notify,
}
