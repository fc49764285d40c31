"""The sans-I/O core: ``Dialogue.handle(event) -> list[Command]``.

An :class:`Engine` builds ONE ``transitions`` machine per dialplan; each call is a
:class:`Dialogue` added to it as a model. Dialogue logic never touches sockets,
threads, clocks or files: time arrives as ``TimerFired``, everything else leaves as
commands. An engine (its shared machine) must be driven by one thread at a time.
"""

from __future__ import annotations

import logging
import string
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from transitions import Machine

from ivr.commands import (
    NO_PARAMS,
    CancelTimer,
    Command,
    Hangup,
    PlayPrompt,
    StartTimer,
    StopPrompt,
)
from ivr.dialplan.model import Dialplan
from ivr.errors import DialplanError, HookError, IvrError, UnexpectedEventError
from ivr.events import (
    CallControlResult,
    CallHungUp,
    CallStarted,
    DigitReceived,
    Event,
    PromptFinished,
    TimerFired,
)
from ivr.expressions import Expression
from ivr.hooks import Hooks
from ivr.secret import Secret
from ivr.session import Session
from ivr.states.base import PromptRef, State

log = logging.getLogger(__name__)

START = "_start"
#: transitions one event may cause before the dialplan is deemed to loop
MAX_HOPS = 100
#: keys kept in the type-ahead buffer; older keys are dropped
MAX_TYPEAHEAD = 64

Listener = Callable[["Dialogue", str, str, str], None]


class _SharedMachine(Machine):
    """A Machine that binds nothing onto its models: triggers are fired by name.

    Binding one attribute per trigger and state costs ~0.9 ms per call for a
    90-transition dialplan; without it adding a call costs a few microseconds.
    """

    def _add_trigger_to_model(self, trigger: str, model: Any) -> None:
        pass

    def _add_model_to_state(self, state: Any, model: Any) -> None:
        pass


class _Failure(Exception):
    """Internal: the call cannot go on (hook raised, bad template, loop)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


class Engine:
    """Runs one dialplan: owns its shared state machine and makes dialogues.

    ``hooks`` overrides the dialplan's own registry; ``context`` is handed to hooks as
    ``session.context``; listeners are called as ``(dialogue, trigger, source, dest)``
    on every transition (coverage, transcripts).
    """

    def __init__(
        self,
        dialplan: Dialplan,
        *,
        hooks: Hooks | None = None,
        context: Any = None,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.dialplan = dialplan
        self.hooks = hooks if hooks is not None else dialplan.hooks
        missing = [
            hook
            for state in dialplan.states.values()
            for _, hook in state.hook_names()
            if hook not in self.hooks
        ]
        if missing:
            raise DialplanError(
                f"{dialplan.file}: hooks not registered: {', '.join(sorted(set(missing)))}"
            )
        self.context = context
        self.listeners: list[Listener] = list(listeners or [])
        #: what ``session.now()`` reads: set by the runtime (the simulator's virtual
        #: clock, or the SIP runtime's wall clock); the core never reads a clock itself
        self.clock: Callable[[], float] | None = None
        transitions = [{"trigger": "start", "source": START, "dest": dialplan.initial}]
        transitions += [
            {"trigger": f"{name}>{edge.label}", "source": name, "dest": edge.target}
            for name, edge in dialplan.edges()
        ]
        self.machine = _SharedMachine(
            model=None,
            states=[START, *dialplan.states],
            transitions=transitions,
            initial=START,
            auto_transitions=False,
            queued=True,
            send_event=True,
            after_state_change=[self._entered],
        )
        self._events = self.machine.events

    def triggers(self) -> list[tuple[str, str, str]]:
        """Every ``(trigger, source, dest)`` of the machine (for coverage reports)."""
        return [
            (name, t.source, str(t.dest))
            for name, event in self.machine.events.items()
            for ts in event.transitions.values()
            for t in ts
        ]

    def new_call(self, call_id: str = "") -> Dialogue:
        """A new dialogue, waiting for ``CallStarted``."""
        dialogue = Dialogue(self, call_id)
        self.machine.add_model(dialogue)
        return dialogue

    def _entered(self, event: Any) -> None:
        dialogue: Dialogue = event.model
        trigger = event.event.name
        for listener in self.listeners:
            listener(dialogue, trigger, event.transition.source, event.transition.dest)
        dialogue._entered(event.transition.dest)

    def _fire(self, dialogue: Dialogue, trigger: str) -> None:
        event = self._events.get(trigger)
        if event is None:
            raise _Failure(DialplanError(f"state {dialogue.state!r} has no transition {trigger!r}"))
        event.trigger(dialogue)


class Dialogue:
    """One call's dialogue. Feed events to :meth:`handle`; execute what it returns."""

    state: str

    def __init__(self, engine: Engine, call_id: str = "") -> None:
        self.engine = engine
        self.session = Session(call_id=call_id, context=engine.context, clock=self._now)
        self.vars = self.session.vars
        self.scratch: dict[str, Any] = {}
        self.typeahead: list[str] = []
        self.started = False
        self.ended = False
        self.outcome: str | None = None
        self.current: State | None = None
        self._out: list[Command] = []
        self._queue: deque[PromptRef] = deque()
        self._playing: int | None = None
        self._bargein = False
        self._playbacks = 0
        self._timer: str | None = None
        self._timers = 0
        self._hops = 0
        self._failing = False

    # --- the one entry point --------------------------------------------------------

    def _now(self) -> float:
        """The engine's clock, read when asked (a runtime may set it after the
        dialogue was made)."""
        clock = self.engine.clock
        if clock is None:
            raise IvrError("no clock: the runtime sets Engine.clock")
        return clock()

    def handle(self, event: Event) -> list[Command]:
        """Process one event; return the commands for the runtime, in order.

        Raises :class:`UnexpectedEventError` for an event that cannot happen now (any
        event after the call ended, anything before ``CallStarted``). A hook that
        raises, or any other failure inside the dialogue, ends the call with the
        apology prompt and a hang-up (``reason="error"``) and is logged.
        """
        if self.ended:
            raise UnexpectedEventError(
                f"call {self.session.call_id!r} has ended; got {type(event).__name__}"
            )
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise UnexpectedEventError(f"not an ivr event: {type(event).__name__}")
        if not self.started and not isinstance(event, CallStarted):
            raise UnexpectedEventError(f"call not started; got {type(event).__name__}")
        if self.started and isinstance(event, CallStarted):
            raise UnexpectedEventError(f"call {self.session.call_id!r} started twice")
        out = self._out = []
        self._hops = 0
        try:
            handler(self, event)
        except _Failure as failure:
            self._apologise(failure.error)
        except Exception as exc:  # a bug must end this call, never the process
            log.exception("call %s: internal error in state %s", self.session.call_id, self.state)
            self._apologise(exc)
        if self.ended:
            self.engine.machine.remove_model(self)
        return out

    @property
    def emitted(self) -> int:
        """How many commands the event being handled has produced so far."""
        return len(self._out)

    @property
    def input_is_secret(self) -> bool:
        """True while keys must be masked (the current state collects a secret)."""
        return self.current is not None and self.current.is_secret()

    # --- event handlers ---------------------------------------------------------------
    def _on_started(self, event: CallStarted) -> None:
        self.started = True
        self.session.caller = event.caller
        self.session.called = event.called
        if event.call_id:
            self.session.call_id = event.call_id
        self.vars.update(caller=event.caller, called=event.called)
        self._fire("start")

    def _on_digit(self, event: DigitReceived) -> None:
        if self._playing is not None:
            if not self._bargein:
                self._buffer(event.digit)
                return
            self._stop_playback()
        if self._failing or self.current is None:
            return
        self.current.digit(self, event.digit)

    def _on_prompt_finished(self, event: PromptFinished) -> None:
        if event.playback != self._playing:
            return  # raced a StopPrompt: stale
        self._playing = None
        self._play_next()

    def _on_timer(self, event: TimerFired) -> None:
        if event.timer != self._timer or self.current is None:
            return  # raced a CancelTimer: stale
        self._timer = None
        self.current.timer(self)

    def _on_hung_up(self, event: CallHungUp) -> None:
        self.ended = True
        self.outcome = "caller_hangup"

    def _on_call_control(self, event: CallControlResult) -> None:
        if self._failing or self.current is None:
            return
        self.current.call_control(self, event.result)

    # --- what states call (the ivr.states.base.Call protocol) ------------------------
    def play(self, prompts: tuple[PromptRef, ...], *, bargein: bool) -> None:
        """Play ``prompts`` in order; the state's ``prompts_done`` follows."""
        self._queue.extend(prompts)
        self._bargein = bargein
        self._play_next()

    def goto(self, label: str) -> None:
        """Leave the current state along edge ``label``."""
        self._leave()
        self._fire(f"{self.state}>{label}")

    def start_timer(self, seconds: float) -> str:
        """Start the state's one timer (replacing a running one)."""
        if self._timer is not None:
            self._out.append(CancelTimer(timer=self._timer))
        self._timers += 1
        self._timer = name = f"t{self._timers}"
        self._out.append(StartTimer(timer=name, seconds=seconds))
        return name

    def cancel_timer(self) -> None:
        """Cancel the running timer, if any."""
        if self._timer is not None:
            self._out.append(CancelTimer(timer=self._timer))
            self._timer = None

    def emit(self, command: Command) -> None:
        """Queue ``command`` for the runtime."""
        self._out.append(command)

    def end(self, command: Command) -> None:
        """Emit a dialogue-ending command and end the dialogue."""
        self._leave()
        self._out.append(command)
        self.ended = True
        self.outcome = _outcome(command)

    def conclude(self, outcome: str) -> None:
        """End the dialogue without a command: the runtime connected the caller."""
        self._leave()
        self.ended = True
        self.outcome = outcome

    def fail(self, error: Exception) -> None:
        """Give up on this call: apology prompt, then hang-up."""
        raise _Failure(error) from error

    def call_hook(self, name: str) -> Any:
        """Call hook ``name`` with this call's session."""
        try:
            return self.engine.hooks[name](self.session)
        except Exception as exc:
            error = HookError(f"hook {name!r} raised {type(exc).__name__}")
            error.__cause__ = exc  # logged with its traceback by _apologise
            raise _Failure(error) from exc

    def evaluate(self, expression: Expression) -> Any:
        """Evaluate ``expression`` over the session variables."""
        try:
            return expression.evaluate(self.vars)
        except Exception as exc:
            raise _Failure(
                DialplanError(f"expression {expression.source!r} failed: {type(exc).__name__}")
            ) from exc

    def template(self, text: str) -> str:
        """``text`` with ``{name}`` replaced by session variable ``name``."""
        parts: list[str] = []
        for literal, name, _spec, _conv in string.Formatter().parse(text):
            parts.append(literal)
            if name is None:
                continue
            value = self.vars.get(name)
            if value is None or value == "":
                raise _Failure(DialplanError(f"variable {name!r} is not set (in {text!r})"))
            parts.append(value.reveal() if isinstance(value, Secret) else str(value))
        return "".join(parts)

    # --- internals ----------------------------------------------------------------------
    def _entered(self, dest: str) -> None:
        self._hops += 1
        if self._hops > MAX_HOPS:
            raise _Failure(DialplanError(f"more than {MAX_HOPS} transitions without input: a loop"))
        self.scratch = {}
        current = self.current = self.engine.dialplan.states[dest]
        current.enter(self)

    def _leave(self) -> None:
        # a fresh scratch at once: the transition may be queued (we may be inside
        # another one), and the old state must see that it has been left
        self.scratch = {}
        self.cancel_timer()
        self._queue.clear()
        if self._playing is not None:
            self._stop_playback()

    def _stop_playback(self) -> None:
        self._out.append(StopPrompt(playback=self._playing or 0))
        self._playing = None
        self._queue.clear()

    def _buffer(self, key: str) -> None:
        self.typeahead.append(key)
        del self.typeahead[:-MAX_TYPEAHEAD]

    def _play_next(self) -> None:
        muted = self.session.muted
        while self._queue:
            ref = self._queue.popleft()
            if muted or (ref.when is not None and not self.evaluate(ref.when)):
                continue
            self._playbacks += 1
            self._playing = self._playbacks
            params = (
                {name: self._param(expr) for name, expr in ref.params.items()}
                if ref.params
                else NO_PARAMS
            )
            self._out.append(
                PlayPrompt(
                    prompt=ref.id, params=params, playback=self._playing, bargein=self._bargein
                )
            )
            return
        if self._failing:
            self.end(Hangup(reason="error"))
        elif self.current is not None:
            self.current.prompts_done(self)

    def _param(self, expression: Expression) -> Any:
        value = self.evaluate(expression)
        return str(value) if isinstance(value, Secret) else value

    def _fire(self, trigger: str) -> None:
        self.engine._fire(self, trigger)

    def _apologise(self, error: BaseException) -> None:
        if self._failing:  # failing while apologising: just hang up
            if not self.ended:
                self.end(Hangup(reason="error"))
            return
        log.error(
            "call %s: %s (state %s); ending the call",
            self.session.call_id,
            error if isinstance(error, IvrError) else type(error).__name__,
            self.state,
            exc_info=error.__cause__ if isinstance(error, HookError) else None,
        )
        self._failing = True
        self._leave()
        self.typeahead.clear()
        apology = self.engine.dialplan.apology
        if apology is not None:
            self._bargein = False
            self._queue.append(PromptRef(id=apology))
        self._play_next()


_HANDLERS: dict[type[Event], Callable[[Dialogue, Any], None]] = {
    CallStarted: Dialogue._on_started,
    DigitReceived: Dialogue._on_digit,
    PromptFinished: Dialogue._on_prompt_finished,
    TimerFired: Dialogue._on_timer,
    CallHungUp: Dialogue._on_hung_up,
    CallControlResult: Dialogue._on_call_control,
}


def _outcome(command: Command) -> str:
    if isinstance(command, Hangup) and command.reason == "refused":
        return "refused"
    return "hangup"


def coverage_listener(counter: Counter[str]) -> Listener:
    """A listener that counts how often each trigger fired."""

    def count(dialogue: Dialogue, trigger: str, source: str, dest: str) -> None:
        counter[trigger] += 1

    return count
