"""The virtual-time runtime: run a dialogue against a scripted caller, record a transcript.

The clock is virtual (in the style of trio's MockClock): it only moves when the
script waits or when nothing else can happen (autojump to the next timer), and never
goes backwards. A complete scripted call runs in microseconds.

Key script (the tester's interface), tokens separated by spaces:

- ``4711#`` — DTMF keys, pressed 100 ms apart once the dialogue waits for input
  (the current prompt has finished);
- ``now=*11`` — keys pressed at once, during the current prompt (barge-in);
- ``wait=7.5`` — let 7.5 virtual seconds pass (to reach timeouts);
- ``hangup`` — the caller hangs up.

After the last token the clock autojumps until the call ends.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ivr.callcontrol import Connect
from ivr.commands import (
    ENDING_COMMANDS,
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
from ivr.dialogue import Dialogue, Engine
from ivr.errors import IvrError
from ivr.events import (
    DTMF_KEYS,
    CallControlResult,
    CallHungUp,
    CallStarted,
    DigitReceived,
    Event,
    PromptFinished,
    TimerFired,
)
from ivr.prompts.durations import PromptDurations
from ivr.secret import MASK
from ivr.session import Session

log = logging.getLogger(__name__)

KEY_GAP = 0.1
#: when simulated calls start unless told otherwise: Monday 2026-01-05 09:00 in Berlin
#: (08:00 UTC), as a UNIX time — fixed, so transcripts are reproducible
REFERENCE_START = 1767600000.0
MAX_CALL_SECONDS = 3600.0
OUTCOMES = ("pulled", "dialed", "transferred", "refused", "hangup", "caller_hangup")


class SimulationError(IvrError):
    """A script is malformed, or a simulated call did not end in time."""


# --- the script --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Press:
    """Press ``keys`` once the dialogue waits for input (``now``: at once, barge-in)."""

    keys: str
    now: bool = False


@dataclass(frozen=True, slots=True)
class Wait:
    """Let ``seconds`` of virtual time pass."""

    seconds: float


@dataclass(frozen=True, slots=True)
class HangUp:
    """The caller hangs up."""


Step = Press | Wait | HangUp


def parse_script(script: str | Iterable[str]) -> list[Step]:
    """Parse key tokens (a string or a list of tokens) into steps."""
    tokens = script.split() if isinstance(script, str) else [str(t) for t in script]
    steps: list[Step] = []
    for token in tokens:
        if token == "hangup":
            steps.append(HangUp())
        elif token.startswith("wait="):
            try:
                seconds = float(token[5:])
            except ValueError:
                raise SimulationError(f"bad token {token!r}: wait=SECONDS") from None
            if not 0 <= seconds <= MAX_CALL_SECONDS:
                raise SimulationError(f"bad token {token!r}: 0 <= seconds <= {MAX_CALL_SECONDS:g}")
            steps.append(Wait(seconds))
        else:
            now = token.startswith("now=")
            keys = token[4:] if now else token
            bad = [k for k in keys if k not in DTMF_KEYS]
            if not keys or bad:
                raise SimulationError(
                    f"bad token {token!r}: use DTMF keys (0-9 * # A-D), now=KEYS, wait=N or hangup"
                )
            steps.append(Press(keys, now=now))
    return steps


# --- the clock -----------------------------------------------------------------------
class VirtualClock:
    """Virtual time with scheduled callbacks; ``jump`` moves forward, never back."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()

    def call_at(self, when: float, callback: Callable[[], None]) -> int:
        """Run ``callback`` when the clock reaches ``when``; returns a handle."""
        handle = next(self._seq)
        heapq.heappush(self._heap, (max(when, self.now), handle, callback))
        return handle

    def cancel(self, handle: int) -> None:
        """Forget a scheduled callback."""
        self._cancelled.add(handle)

    def next_deadline(self) -> float | None:
        """When the next live callback is due, or None."""
        while self._heap and self._heap[0][1] in self._cancelled:
            self._cancelled.discard(heapq.heappop(self._heap)[1])
        return self._heap[0][0] if self._heap else None

    def jump(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running what falls due, in order."""
        if seconds < 0:
            raise ValueError("time never goes backwards")
        self.run_until(self.now + seconds)

    def run_until(self, when: float) -> None:
        """Run every callback due up to ``when``; then the clock reads ``when``."""
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > when:
                break
            _, _handle, callback = heapq.heappop(self._heap)
            self.now = deadline
            callback()
        self.now = max(self.now, when)

    def autojump(self) -> bool:
        """Jump to the next due callback and run it; False when nothing is scheduled."""
        deadline = self.next_deadline()
        if deadline is None:
            return False
        self.run_until(deadline)
        return True


# --- the simulated call ---------------------------------------------------------------
@dataclass(slots=True)
class SimCall:
    """One simulated call: its transcript lines, outcome, and when it ended."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    outcome: str | None = None
    ended_at: float = 0.0

    def prompts(self) -> list[str]:
        """Ids of the prompts the caller heard (started), in order."""
        return [line["id"] for line in self.lines if line["type"] == "prompt"]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Transcript lines of one ``type``."""
        return [line for line in self.lines if line["type"] == kind]


class Simulator:
    """Runs one call of ``engine`` against a script, on a virtual clock."""

    def __init__(
        self,
        engine: Engine,
        *,
        durations: Callable[[str, Mapping[str, Any]], float] | None = None,
        key_gap: float = KEY_GAP,
        max_seconds: float = MAX_CALL_SECONDS,
        record_states: bool = True,
        effects: Callable[[Command, Session], Connect] | None = None,
    ) -> None:
        self.engine = engine
        #: what carrying out a dialogue-ending command does to the simulated world
        #: (default: the engine context's ``apply(command, session)``, if it has one)
        self.effects = effects if effects is not None else getattr(engine.context, "apply", None)
        self.catalog = engine.dialplan.catalog
        self.durations = durations or PromptDurations(self.catalog)
        self.key_gap = key_gap
        self.max_seconds = max_seconds
        self.record_states = record_states
        self._prompts: dict[tuple[str, tuple[tuple[str, Any], ...]], tuple[str, float]] = {}

    def prompt(self, prompt_id: str, params: Mapping[str, Any]) -> tuple[str, float]:
        """Text and duration of a prompt with its parameters (cached)."""
        key = (prompt_id, tuple(params.items()))
        try:
            return self._prompts[key]
        except KeyError:
            pass
        except TypeError:  # unhashable parameter values
            return self.catalog.text(prompt_id, params), self.durations(prompt_id, params)
        if len(self._prompts) > 10_000:
            self._prompts.clear()
        found = self._prompts[key] = (
            self.catalog.text(prompt_id, params),
            self.durations(prompt_id, params),
        )
        return found

    def run(
        self,
        script: str | Iterable[str] | Sequence[Step],
        *,
        caller: str,
        called: str = "",
        call_id: str = "sim",
        start: float = REFERENCE_START,
    ) -> SimCall:
        """Start a call from ``caller``, play ``script``, autojump to its end.

        ``start`` is the virtual UNIX time the call begins at (what ``session.now()``
        reads then); transcript times are relative to it.
        """
        steps = _steps(script)
        run = _Run(self, call_id, start)
        run.send(CallStarted(caller=caller, called=called, call_id=call_id))
        for step in steps:
            if run.dialogue.ended:
                break
            if isinstance(step, Press):
                run.press(step.keys, now=step.now)
            elif isinstance(step, Wait):
                run.clock.jump(step.seconds)
            else:
                run.hang_up()
        run.finish()
        return run.call


class _Run:
    """The mutable state of one simulated call."""

    def __init__(self, sim: Simulator, call_id: str, start: float) -> None:
        self.sim = sim
        self.clock = VirtualClock(start)
        self.start = start
        self.t = 0.0  # call-relative time of the lines being written
        self.call = SimCall()
        self.playing: tuple[int, int] | None = None  # (playback, clock handle)
        self.timers: dict[str, int] = {}
        self.states: list[tuple[int, str, str]] = []
        if sim.record_states:
            sim.engine.listeners.append(self._on_transition)
        self._engine_clock = sim.engine.clock
        sim.engine.clock = self.now
        self.dialogue: Dialogue = sim.engine.new_call(call_id)

    def now(self) -> float:
        return self.clock.now

    def line(self, kind: str, **data: Any) -> None:
        self.call.lines.append({"t": self.t, "type": kind, **data})

    def _tick(self) -> None:
        self.t = round(self.clock.now - self.start, 3)

    def _on_transition(self, dialogue: Dialogue, trigger: str, source: str, dest: str) -> None:
        if dialogue is self.dialogue:
            self.states.append((dialogue.emitted, dest, trigger))

    def send(self, event: Event) -> None:
        dialogue = self.dialogue
        if dialogue.ended:
            return
        self.t = round(self.clock.now - self.start, 3)
        states = self.states
        states.clear()
        commands = dialogue.handle(event)
        done = 0
        for index, state, trigger in states:  # state lines go where the transition happened
            for command in commands[done:index]:
                _EXECUTE[type(command)](self, command)
            self.line("state", state=state, trigger=trigger)
            done = index
        for command in commands[done:]:
            _EXECUTE[type(command)](self, command)
        if dialogue.ended:
            self.call.outcome = dialogue.outcome
            self.stop_all()
            if (
                self.sim.effects is not None
                and commands
                and isinstance(commands[-1], ENDING_COMMANDS)
            ):
                self.sim.effects(commands[-1], dialogue.session)

    def _play(self, command: PlayPrompt) -> None:
        text, seconds = self.sim.prompt(command.prompt, command.params)
        self.line(
            "prompt",
            id=command.prompt,
            text=text,
            params=dict(command.params),
            bargein=command.bargein,
            seconds=seconds,
        )
        playback = command.playback
        handle = self.clock.call_at(self.clock.now + seconds, lambda: self._finished(playback))
        self.playing = (playback, handle)

    def _stop(self, command: StopPrompt) -> None:
        if self.playing is not None and self.playing[0] == command.playback:
            self.clock.cancel(self.playing[1])
            self.playing = None
            self.line("stop", playback=command.playback)

    def _start_timer(self, command: StartTimer) -> None:
        name = command.timer  # timer names are unique per call: no restart to handle
        self.timers[name] = self.clock.call_at(
            self.clock.now + command.seconds, lambda: self._fired(name)
        )
        self.call.lines.append(
            {"t": self.t, "type": "timer", "timer": name, "seconds": command.seconds}
        )

    def _cancel(self, command: CancelTimer) -> None:
        self._cancel_timer(command.timer)

    def _pull(self, command: PullCall) -> None:
        self.line("pull", call=command.call)
        self._connect(command)

    def _dial(self, command: Dial) -> None:
        self.line(
            "dial",
            number=command.number,
            caller_id=command.caller_id,
            display_name=command.display_name,
        )
        self._connect(command)

    def _connect(self, command: Transfer | PullCall | Dial) -> None:
        """Ask the simulated world (the effects) how the pull or dial ends, and report
        it to the dialogue right after the current event."""
        result = "connected"
        if self.sim.effects is not None:
            try:
                answer = self.sim.effects(command, self.dialogue.session)
            except Exception as exc:  # a failing call control is a failed connect
                log.warning("call control failed: %s: %s", type(exc).__name__, exc)
                answer = "failed"
            if isinstance(answer, str):
                result = answer

        def report() -> None:
            self._tick()
            self.line("call_control", result=result)
            self.send(CallControlResult(result=result))

        self.clock.call_at(self.clock.now, report)

    def _transfer(self, command: Transfer) -> None:
        self.line("transfer", target=command.target)
        self._connect(command)

    def _hangup(self, command: Hangup) -> None:
        self.line("hangup", reason=command.reason)

    def _cancel_timer(self, name: str) -> None:
        handle = self.timers.pop(name, None)
        if handle is not None:
            self.clock.cancel(handle)

    def _finished(self, playback: int) -> None:
        self.playing = None
        self.send(PromptFinished(playback=playback))

    def _fired(self, name: str) -> None:
        self.timers.pop(name, None)
        self._tick()
        self.line("timeout", timer=name)
        self.send(TimerFired(timer=name))

    def stop_all(self) -> None:
        if self.playing is not None:
            self.clock.cancel(self.playing[1])
            self.playing = None
        for handle in self.timers.values():
            self.clock.cancel(handle)
        self.timers.clear()

    def hang_up(self) -> None:
        self._tick()
        self.line("caller_hangup")
        self.send(CallHungUp())

    def wait_for_input(self) -> None:
        while self.playing is not None and not self.dialogue.ended:
            self.clock.autojump()

    def press(self, keys: str, *, now: bool) -> None:
        if not now:
            self.wait_for_input()
        dialogue = self.dialogue
        lines = self.call.lines
        for i, key in enumerate(keys):
            if i:
                self.clock.jump(self.sim.key_gap)
            if dialogue.ended:
                return
            secret = dialogue.input_is_secret and key != _terminator(dialogue)
            key_shown = MASK if secret else key
            self._tick()
            line = {"t": self.t, "type": "key", "key": key_shown}
            if self.playing is not None:
                line["bargein"] = True
            lines.append(line)
            self.send(DigitReceived(digit=key))
            typed_into_secret = dialogue.scratch.get("digits") or dialogue.typeahead
            if not secret and dialogue.input_is_secret and typed_into_secret:
                line["key"] = MASK  # it barged in and became the first digit of a secret

    def finish(self) -> None:
        limit = self.start + self.sim.max_seconds
        while not self.dialogue.ended:
            if self.clock.now > limit or not self.clock.autojump():
                reason = (
                    "is stuck waiting"
                    if self.clock.now <= limit
                    else f"ran past {self.sim.max_seconds:g} s"
                )
                self.sim.engine.machine.remove_model(
                    self.dialogue
                ) if not self.dialogue.ended else None
                self._detach()
                raise SimulationError(
                    f"call did not end: it {reason} (state {self.dialogue.state!r})"
                )
        self._tick()
        self.line("end", outcome=self.call.outcome, state=self.dialogue.state)
        self.call.ended_at = self.clock.now
        self._detach()

    def _detach(self) -> None:
        self.sim.engine.clock = self._engine_clock
        if self.sim.record_states:
            self.sim.engine.listeners.remove(self._on_transition)


#: how the simulator carries out each command
_EXECUTE: dict[type[Command], Callable[[_Run, Any], None]] = {
    PlayPrompt: _Run._play,
    StopPrompt: _Run._stop,
    StartTimer: _Run._start_timer,
    CancelTimer: _Run._cancel,
    PullCall: _Run._pull,
    Dial: _Run._dial,
    Transfer: _Run._transfer,
    Hangup: _Run._hangup,
}


def _steps(script: str | Iterable[str] | Sequence[Step]) -> list[Step]:
    if isinstance(script, str):
        return parse_script(script)
    items = list(script)
    if all(isinstance(item, Press | Wait | HangUp) for item in items):
        return [item for item in items if isinstance(item, Press | Wait | HangUp)]
    return parse_script([str(item) for item in items])


def _terminator(dialogue: Dialogue) -> str:
    return str(getattr(dialogue.current, "terminator", ""))


def format_transcript(lines: list[dict[str, Any]]) -> str:
    """A readable transcript: one line per thing heard, pressed or done."""
    out: list[str] = []
    for line in lines:
        kind = line["type"]
        if kind == "prompt":
            detail = f'{line["id"]}: "{line["text"]}"'
        elif kind == "key":
            detail = line["key"] + ("  (during prompt)" if line.get("bargein") else "")
        elif kind == "state":
            detail = f"-> {line['state']}"
        elif kind == "end":
            detail = f"outcome {line['outcome']} (in state {line['state']})"
        elif kind in ("timer", "stop"):
            continue
        else:
            detail = " ".join(
                f"{k}={v}" for k, v in line.items() if k not in ("t", "type") and v != ""
            )
        out.append(f"{line['t']:8.2f}  {kind:<13} {detail}".rstrip())
    return "\n".join(out)
