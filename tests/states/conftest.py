"""Fixtures and helpers for the state-kind unit tests: tiny dialplans built per test.

``make_plan(states_yaml, defaults=..., hooks=..., head=...)`` writes a dialplan with
only the given states (plus a ``bye`` hang-up state and input defaults that exit to it)
and a small prompt catalog, and returns an :class:`ivr.Engine`. ``make_call`` does the
same and returns a fresh :class:`ivr.dialogue.Dialogue` with call id ``c1``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ivr import (
    CallStarted,
    Command,
    DigitReceived,
    Engine,
    Hooks,
    PlayPrompt,
    PromptFinished,
    load_dialplan,
)
from ivr.dialogue import Dialogue

PROMPTS = {
    "hi": "Hallo.",
    "hi2": "Schön, dass Sie anrufen.",
    "menu": "Menü.",
    "ni1": "Keine Eingabe.",
    "ni2": "Immer noch keine Eingabe.",
    "ni3": "Wieder nichts.",
    "nm1": "Ungültig.",
    "nm2": "Wieder ungültig.",
    "a": "A.",
    "b": "B.",
    "bye": "Tschüss.",
    "sorry": "Es tut uns leid.",
    "apology": "Entschuldigung, ein Fehler.",
    "count": "Sie haben {n:number} Anrufe.",
    "number": "Die Nummer {num:digits}.",
}

MakePlan = Callable[..., Engine]
MakeCall = Callable[..., Dialogue]

CALLER = "+4930123456"


def _indent(text: str) -> str:
    return textwrap.indent(textwrap.dedent(text).strip("\n"), "  ") + "\n"


@pytest.fixture
def prompt_dir(tmp_path: Path) -> Path:
    """A prompt catalog directory with :data:`PROMPTS`."""
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "p.yaml").write_text(
        "".join(f"{key}: {value!r}\n" for key, value in PROMPTS.items()), encoding="utf-8"
    )
    return folder


@pytest.fixture
def make_plan(tmp_path: Path, prompt_dir: Path) -> MakePlan:
    """Build an Engine from just the states a test needs.

    ``states`` and ``defaults`` are YAML snippets (dedented automatically). Unless the
    test sets them, ``on_max_noinput`` and ``on_max_nomatch`` default to ``bye``; a
    ``bye`` state (hang-up after prompt ``bye``) is added unless the test defines one.
    ``head`` adds top-level keys (``apology: null``); ``initial`` names the first state.
    """

    def make(
        states: str,
        *,
        defaults: str = "",
        hooks: Hooks | None = None,
        head: str = "",
        initial: str = "start",
    ) -> Engine:
        body = _indent(states)
        defaults_body = _indent(defaults) if defaults.strip() else ""
        for key in ("on_max_noinput", "on_max_nomatch"):
            if f"{key}:" not in defaults_body:
                defaults_body += f"  {key}: bye\n"
        if not any(line.startswith("  bye:") for line in body.splitlines()):
            body += "  bye: {kind: hangup, prompts: bye}\n"
        text = (
            f"prompts: {prompt_dir.name}\n"
            f"initial: {initial}\n"
            + textwrap.dedent(head)
            + "defaults:\n"
            + defaults_body
            + "states:\n"
            + body
        )
        path = tmp_path / "d.yaml"
        path.write_text(text, encoding="utf-8")
        return Engine(load_dialplan(path, hooks=hooks if hooks is not None else Hooks()))

    return make


@pytest.fixture
def make_call(make_plan: MakePlan) -> MakeCall:
    """Like ``make_plan`` but returns a new dialogue (call id ``c1``), not yet started."""

    def make(states: str, **kwargs: Any) -> Dialogue:
        return make_plan(states, **kwargs).new_call("c1")

    return make


# --- helpers (import them: ``from tests.states.conftest import ...``) ------------------
def play(prompt: str, playback: int, *, bargein: bool = True, **params: Any) -> PlayPrompt:
    """The PlayPrompt command a test expects."""
    return PlayPrompt(prompt=prompt, playback=playback, bargein=bargein, params=params)


def start(call: Dialogue, *, caller: str = CALLER, call_id: str = "") -> list[Command]:
    """Feed CallStarted."""
    return call.handle(CallStarted(caller=caller, called="100", call_id=call_id))


def press(call: Dialogue, digits: str) -> list[Command]:
    """Feed one DigitReceived per key; the commands of all of them, in order."""
    out: list[Command] = []
    for digit in digits:
        out += call.handle(DigitReceived(digit=digit))
    return out


def finish(call: Dialogue, playback: int) -> list[Command]:
    """Feed PromptFinished for ``playback``."""
    return call.handle(PromptFinished(playback=playback))


def hooks_of(**fns: Callable[[Any], Any]) -> Hooks:
    """A Hooks registry from keyword arguments."""
    return Hooks(dict(fns))
