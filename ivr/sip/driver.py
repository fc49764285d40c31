"""The dialogue thread: every call's dialogue, driven by one thread.

An engine's shared ``transitions`` machine must be driven by one thread at a time, and
hooks may block (a PIN check costs ~0.1 s of argon2id). So dialogues do not run on the
I/O loop: events queue here, this thread runs ``Dialogue.handle`` and the prompt audio
lookup, and hands the commands back to the loop. A slow hook delays other callers'
next prompt, never their media (which the loop keeps sending).

Reload (SIGHUP): :meth:`DialogueDriver.swap` makes a new engine and its prompt audio
(a :class:`Generation`) the one new calls get; every call keeps the generation it
started on until it ends, and a replaced generation with no calls left is handed to
``retire`` (its call control is detached there).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr.audio.library import AudioError, PromptAudio
from ivr.callcontrol import Connect
from ivr.commands import CONNECTING_COMMANDS, ENDING_COMMANDS, Command, Hangup, PlayPrompt
from ivr.dialogue import Dialogue, Engine
from ivr.errors import UnexpectedEventError
from ivr.events import CallStarted, Event
from ivr.sip.rtp import PCM_BYTES_PER_PACKET

log = logging.getLogger(__name__)

Chunks = tuple[bytes, ...]
#: prompt audio cut into 20 ms chunks, remembered for this many (prompt, params) pairs
PROMPT_CACHE = 512


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one event produced for one call."""

    commands: list[Command]
    audio: dict[int, Chunks]  # playback -> 20 ms PCM chunks
    ended: bool
    outcome: str | None
    variables: Mapping[str, Any] = field(default_factory=dict)  # session vars at the end
    #: call control's answer to a PullCall or Dial among the commands (see ivr.callcontrol)
    connect: Connect = None


Deliver = Callable[[str, Outcome], None]
PromptKey = tuple[str, tuple[tuple[str, Any], ...]]


@dataclass(eq=False, slots=True)
class Generation:
    """An engine, its prompt audio and their prompt cache: what calls started
    between two reloads run on."""

    engine: Engine
    audio: PromptAudio | None
    prompts: OrderedDict[PromptKey, Chunks] = field(default_factory=OrderedDict)
    #: dialogues of this generation still running
    calls: int = 0


Retire = Callable[[Generation], None]


class DialogueDriver:
    """Owns the engines; :meth:`submit` events from any thread."""

    def __init__(
        self,
        engine: Engine,
        audio: PromptAudio | None,
        deliver: Deliver,
        retire: Retire | None = None,
    ) -> None:
        engine.clock = time.time
        self.current = Generation(engine, audio)
        self.deliver = deliver
        self.retire = retire
        #: generations replaced by a reload whose calls still run (dialogue thread)
        self.retiring: list[Generation] = []
        self._dialogues: dict[str, tuple[Dialogue, Generation]] = {}
        self._queue: queue.SimpleQueue[tuple[str, Event] | Generation | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="ivr-dialogues", daemon=True)

    @property
    def engine(self) -> Engine:
        """The engine new calls get."""
        return self.current.engine

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self.thread.join(timeout)

    def submit(self, key: str, event: Event) -> None:
        """Queue ``event`` for call ``key`` (thread-safe)."""
        self._queue.put((key, event))

    def swap(self, engine: Engine, audio: PromptAudio | None) -> None:
        """Calls whose ``CallStarted`` is submitted after this get ``engine`` and
        ``audio``; running calls end on theirs (thread-safe)."""
        engine.clock = time.time
        self._queue.put(Generation(engine, audio))

    @property
    def active(self) -> int:
        return len(self._dialogues)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, Generation):
                self._swapped(item)
                continue
            key, event = item
            try:
                outcome = self._handle(key, event)
            except Exception:  # never lose the thread: end this call only
                log.exception("call %s: dialogue failed", key)
                self._drop(key)
                outcome = Outcome([Hangup(reason="error")], {}, True, "error", {})
            if outcome is not None:
                self.deliver(key, outcome)

    def _swapped(self, generation: Generation) -> None:
        old, self.current = self.current, generation
        self.retiring.append(old)
        self._retire_if_done(old)

    def _drop(self, key: str) -> None:
        """Forget call ``key``'s dialogue; its generation may retire now."""
        entry = self._dialogues.pop(key, None)
        if entry is not None:
            entry[1].calls -= 1
            self._retire_if_done(entry[1])

    def _retire_if_done(self, generation: Generation) -> None:
        if generation.calls or generation not in self.retiring:
            return
        self.retiring.remove(generation)
        if self.retire is not None:
            try:
                self.retire(generation)
            except Exception:
                log.exception("retiring a replaced engine failed")

    def _handle(self, key: str, event: Event) -> Outcome | None:
        entry = self._dialogues.get(key)
        if entry is None:
            if not isinstance(event, CallStarted):
                return None  # the call already ended: a late event is dropped
            generation = self.current
            entry = (generation.engine.new_call(event.call_id or key), generation)
            self._dialogues[key] = entry
            generation.calls += 1
        dialogue, generation = entry
        try:
            commands = dialogue.handle(event)
        except UnexpectedEventError as exc:
            log.debug("call %s: %s", key, exc)
            return None
        audio = {
            c.playback: self._chunks(generation, c.prompt, c.params)
            for c in commands
            if isinstance(c, PlayPrompt)
        }
        variables: dict[str, Any] = {}
        connect: Connect = None
        if commands and isinstance(commands[-1], CONNECTING_COMMANDS):
            connect = self._apply(commands[-1], dialogue, failed="failed")
            variables = self._variables(dialogue)
        if dialogue.ended:
            self._drop(key)
            variables = self._variables(dialogue)
            if commands and isinstance(commands[-1], ENDING_COMMANDS):
                self._apply(commands[-1], dialogue, failed=None)
        return Outcome(commands, audio, dialogue.ended, dialogue.outcome, variables, connect)

    @staticmethod
    def _variables(dialogue: Dialogue) -> dict[str, Any]:
        variables = {k: v for k, v in dialogue.vars.items() if isinstance(v, str | int)}
        variables.setdefault("caller", dialogue.session.caller)
        return variables

    def _apply(self, command: Command, dialogue: Dialogue, failed: Connect) -> Connect:
        """Tell the context (call control) about ``command``, as the simulator does;
        its answer (``failed`` when it raises). Runs here, on the dialogue thread:
        call control may block (an RPC to the PBX), the media loop never does."""
        apply = getattr(dialogue.engine.context, "apply", None)
        if apply is None:
            return None
        try:
            answer: Connect = apply(command, dialogue.session)
        except Exception:
            log.exception("call %s: call control failed", dialogue.session.call_id)
            return failed
        return answer

    def _chunks(self, generation: Generation, prompt: str, params: Mapping[str, Any]) -> Chunks:
        audio = generation.audio
        if audio is None:
            return ()
        try:
            cache_key = (prompt, tuple(sorted(params.items())))
            hash(cache_key)
        except TypeError:
            return cut_packets(self._pcm(audio, prompt, params))
        prompts = generation.prompts
        chunks = prompts.get(cache_key)
        if chunks is None:
            chunks = prompts[cache_key] = cut_packets(self._pcm(audio, prompt, params))
            if len(prompts) > PROMPT_CACHE:
                prompts.popitem(last=False)
        return chunks

    @staticmethod
    def _pcm(audio: PromptAudio, prompt: str, params: Mapping[str, Any]) -> bytes:
        try:
            return audio.pcm(prompt, params)
        except AudioError as exc:
            log.error("%s (played as silence-free skip)", exc)
            return b""


def cut_packets(pcm: bytes) -> Chunks:
    """PCM cut into 20 ms packets (the last one padded with silence)."""
    size = PCM_BYTES_PER_PACKET
    return tuple(pcm[i : i + size].ljust(size, b"\0") for i in range(0, len(pcm), size))
