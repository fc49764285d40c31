"""The dialogue thread: every call's dialogue, driven by one thread.

An engine's shared ``transitions`` machine must be driven by one thread at a time, and
hooks may block (a PIN check costs ~0.1 s of argon2id). So dialogues do not run on the
I/O loop: events queue here, this thread runs ``Dialogue.handle`` and the prompt audio
lookup, and hands the commands back to the loop. A slow hook delays other callers'
next prompt, never their media (which the loop keeps sending).
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

log = logging.getLogger("ivr.sip.dialogue")

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


class DialogueDriver:
    """Owns the engine; :meth:`submit` events from any thread."""

    def __init__(self, engine: Engine, audio: PromptAudio | None, deliver: Deliver) -> None:
        self.engine = engine
        engine.clock = time.time
        self.audio = audio
        self.deliver = deliver
        self._dialogues: dict[str, Dialogue] = {}
        self._queue: queue.SimpleQueue[tuple[str, Event] | None] = queue.SimpleQueue()
        self._prompts: OrderedDict[tuple[str, tuple[tuple[str, Any], ...]], Chunks] = OrderedDict()
        self.thread = threading.Thread(target=self._run, name="ivr-dialogues", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self.thread.join(timeout)

    def submit(self, key: str, event: Event) -> None:
        """Queue ``event`` for call ``key`` (thread-safe)."""
        self._queue.put((key, event))

    @property
    def active(self) -> int:
        return len(self._dialogues)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            key, event = item
            try:
                outcome = self._handle(key, event)
            except Exception:  # never lose the thread: end this call only
                log.exception("call %s: dialogue failed", key)
                self._dialogues.pop(key, None)
                outcome = Outcome([Hangup(reason="error")], {}, True, "error", {})
            if outcome is not None:
                self.deliver(key, outcome)

    def _handle(self, key: str, event: Event) -> Outcome | None:
        dialogue = self._dialogues.get(key)
        if dialogue is None:
            if not isinstance(event, CallStarted):
                return None  # the call already ended: a late event is dropped
            dialogue = self._dialogues[key] = self.engine.new_call(event.call_id or key)
        try:
            commands = dialogue.handle(event)
        except UnexpectedEventError as exc:
            log.debug("call %s: %s", key, exc)
            return None
        audio = {
            c.playback: self._chunks(c.prompt, c.params)
            for c in commands
            if isinstance(c, PlayPrompt)
        }
        variables: dict[str, Any] = {}
        connect: Connect = None
        if commands and isinstance(commands[-1], CONNECTING_COMMANDS):
            connect = self._apply(commands[-1], dialogue, failed="failed")
            variables = self._variables(dialogue)
        if dialogue.ended:
            del self._dialogues[key]
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
        apply = getattr(self.engine.context, "apply", None)
        if apply is None:
            return None
        try:
            answer: Connect = apply(command, dialogue.session)
        except Exception:
            log.exception("call %s: call control failed", dialogue.session.call_id)
            return failed
        return answer

    def _chunks(self, prompt: str, params: Mapping[str, Any]) -> Chunks:
        if self.audio is None:
            return ()
        try:
            cache_key = (prompt, tuple(sorted(params.items())))
            hash(cache_key)
        except TypeError:
            return cut_packets(self._pcm(prompt, params))
        chunks = self._prompts.get(cache_key)
        if chunks is None:
            chunks = self._prompts[cache_key] = cut_packets(self._pcm(prompt, params))
            if len(self._prompts) > PROMPT_CACHE:
                self._prompts.popitem(last=False)
        return chunks

    def _pcm(self, prompt: str, params: Mapping[str, Any]) -> bytes:
        assert self.audio is not None
        try:
            return self.audio.pcm(prompt, params)
        except AudioError as exc:
            log.error("%s (played as silence-free skip)", exc)
            return b""


def cut_packets(pcm: bytes) -> Chunks:
    """PCM cut into 20 ms packets (the last one padded with silence)."""
    size = PCM_BYTES_PER_PACKET
    return tuple(pcm[i : i + size].ljust(size, b"\0") for i in range(0, len(pcm), size))
