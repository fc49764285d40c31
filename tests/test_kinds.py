"""Unit tests of each state kind: events in, exact command lists out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ivr import (
    CallControlResult,
    CallHungUp,
    CallStarted,
    CancelTimer,
    Dial,
    DigitReceived,
    Engine,
    Hangup,
    Hooks,
    PlayPrompt,
    PromptFinished,
    PullCall,
    Secret,
    StartTimer,
    StopPrompt,
    TimerFired,
    Transfer,
    UnexpectedEventError,
    load_dialplan,
)
from ivr.dialogue import Dialogue

PROMPTS = {
    "hi": "Hallo.",
    "menu": "Menü.",
    "again": "Nochmal.",
    "sorry": "Fehler.",
    "ni1": "Keine Eingabe.",
    "ni2": "Immer noch nichts.",
    "nm1": "Falsch.",
    "bye": "Tschüss.",
    "apology": "Entschuldigung.",
    "count": "Sie haben {n:number} Anrufe.",
}

MakeCall = Callable[..., Dialogue]


@pytest.fixture
def make_call(tmp_path: Path) -> MakeCall:
    """``make_call(states_yaml, defaults="", hooks=None, head="")`` -> a started-to-be call."""
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "p.yaml").write_text("".join(f"{k}: '{v}'\n" for k, v in PROMPTS.items()))

    def make(
        states: str, *, defaults: str = "", hooks: Hooks | None = None, head: str = ""
    ) -> Dialogue:
        text = f"prompts: p\ninitial: start\n{head}"
        text += "defaults:\n  on_max_noinput: bye\n  on_max_nomatch: bye\n" + defaults
        text += "states:\n" + states + "  bye: {kind: hangup, prompts: bye}\n"
        (tmp_path / "d.yaml").write_text(text)
        engine = Engine(load_dialplan(tmp_path / "d.yaml", hooks=hooks or Hooks()))
        return engine.new_call("c1")

    return make


def play(prompt: str, n: int, bargein: bool = True, **params: Any) -> PlayPrompt:
    return PlayPrompt(prompt=prompt, playback=n, bargein=bargein, params=params)


def start(call: Dialogue) -> list[Any]:
    return call.handle(CallStarted(caller="+4930123", called="100"))


def keys(call: Dialogue, digits: str) -> list[Any]:
    out: list[Any] = []
    for digit in digits:
        out += call.handle(DigitReceived(digit=digit))
    return out


# --- play ----------------------------------------------------------------------------
def test_play_prompts_in_order_then_next(make_call: MakeCall) -> None:
    call = make_call("  start: {kind: play, prompts: [hi, menu], next: bye}\n")
    assert start(call) == [play("hi", 1)]
    assert call.handle(PromptFinished(playback=1)) == [play("menu", 2)]
    assert call.handle(PromptFinished(playback=2)) == [play("bye", 3, bargein=False)]
    assert call.handle(PromptFinished(playback=3)) == [Hangup(reason="normal")]
    assert call.ended and call.outcome == "hangup"


def test_play_when_condition_skips_prompts(make_call: MakeCall) -> None:
    call = make_call(
        "  start: {kind: play, prompts: [{id: hi, when: 'caller == \"x\"'}, menu], next: bye}\n"
    )
    assert start(call) == [play("menu", 1)]


def test_play_bargein_key_becomes_the_first_key_of_the_menu(make_call: MakeCall) -> None:
    call = make_call(
        "  start: {kind: play, prompts: [hi], next: m}\n"
        "  m: {kind: menu, prompt: menu, options: {'1': t}}\n"
        "  t: {kind: transfer, target: '100'}\n"
    )
    start(call)
    assert keys(call, "1") == [StopPrompt(playback=1), Transfer(target="100")]


def test_play_without_bargein_buffers_keys_as_typeahead(make_call: MakeCall) -> None:
    call = make_call(
        "  start: {kind: play, prompts: [hi], bargein: false, next: m}\n"
        "  m: {kind: menu, prompt: menu, bargein: false, options: {'12': t}}\n"
        "  t: {kind: transfer, target: '100'}\n"
    )
    start(call)
    assert keys(call, "12") == []  # buffered, the greeting goes on
    assert call.handle(PromptFinished(playback=1)) == [play("menu", 2, bargein=False)]
    out = call.handle(PromptFinished(playback=2))
    assert out == [
        StartTimer(timer="t1", seconds=3.0),
        CancelTimer(timer="t1"),
        Transfer(target="100"),
    ]


# --- menu ----------------------------------------------------------------------------
MENU = (
    "  start: {kind: menu, prompt: menu, options: {'1': one, '*1': star1, '*11': star11}}\n"
    "  one: {kind: hangup}\n  star1: {kind: hangup, reason: refused}\n"
    "  star11: {kind: pull, call: abc}\n"
)


def test_menu_single_key_option_and_timer_only_after_prompt(make_call: MakeCall) -> None:
    call = make_call(MENU)
    assert start(call) == [play("menu", 1)]
    assert call.handle(PromptFinished(playback=1)) == [StartTimer(timer="t1", seconds=5.0)]
    assert keys(call, "1") == [CancelTimer(timer="t1"), Hangup(reason="normal")]


def test_menu_longer_code_wins_within_the_interdigit_timeout(make_call: MakeCall) -> None:
    call = make_call(MENU)
    start(call)
    call.handle(PromptFinished(playback=1))
    assert keys(call, "*1") == [
        CancelTimer(timer="t1"),
        StartTimer(timer="t2", seconds=3.0),
        CancelTimer(timer="t2"),
        StartTimer(timer="t3", seconds=3.0),
    ]
    assert keys(call, "1") == [CancelTimer(timer="t3"), PullCall(call="abc")]


def test_menu_shorter_code_wins_on_the_interdigit_timeout(make_call: MakeCall) -> None:
    call = make_call(MENU)
    start(call)
    call.handle(PromptFinished(playback=1))
    keys(call, "*1")
    assert call.handle(TimerFired(timer="t3")) == [Hangup(reason="refused")]


def test_menu_terminator_ends_a_code(make_call: MakeCall) -> None:
    call = make_call(MENU)
    start(call)
    call.handle(PromptFinished(playback=1))
    keys(call, "*1")
    assert keys(call, "#") == [CancelTimer(timer="t3"), Hangup(reason="refused")]


def test_menu_unknown_key_is_a_no_match_at_once_with_escalation(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="  nomatch: [nm1]\n  max_nomatch: 2\n")
    start(call)
    call.handle(PromptFinished(playback=1))
    assert keys(call, "5") == [CancelTimer(timer="t1"), play("nm1", 2)]
    assert call.handle(PromptFinished(playback=2)) == [play("menu", 3)]
    call.handle(PromptFinished(playback=3))
    assert keys(call, "7") == [CancelTimer(timer="t2"), play("bye", 4, bargein=False)]


def test_no_input_escalates_and_last_prompt_repeats(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="  noinput: [ni1, ni2]\n  max_noinput: 4\n  timeout: 2\n")
    start(call)
    assert call.handle(PromptFinished(playback=1)) == [StartTimer(timer="t1", seconds=2.0)]
    heard = []
    for timer, playback in (("t1", 2), ("t2", 4), ("t3", 6)):
        out = call.handle(TimerFired(timer=timer))
        heard.append(out[0].prompt)
        assert call.handle(PromptFinished(playback=playback)) == [play("menu", playback + 1)]
        call.handle(PromptFinished(playback=playback + 1))
    assert heard == ["ni1", "ni2", "ni2"]
    assert call.handle(TimerFired(timer="t4")) == [play("bye", 8, bargein=False)]


def test_separate_limits_exit_to_their_own_states(make_call: MakeCall) -> None:
    states = (
        "  start: {kind: menu, prompt: menu, options: {'1': bye},"
        " max_noinput: 1, max_nomatch: 1, on_max_noinput: quiet, on_max_nomatch: wrong}\n"
        "  quiet: {kind: hangup, prompts: ni1}\n  wrong: {kind: hangup, prompts: nm1}\n"
    )
    call = make_call(states)
    start(call)
    call.handle(PromptFinished(playback=1))
    assert call.handle(TimerFired(timer="t1")) == [play("ni1", 2, bargein=False)]
    call = make_call(states)
    start(call)
    call.handle(PromptFinished(playback=1))
    assert keys(call, "9")[-1] == play("nm1", 2, bargein=False)


def test_reprompt_false_plays_only_the_escalation(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="  nomatch: [nm1]\n  reprompt: false\n")
    start(call)
    call.handle(PromptFinished(playback=1))
    keys(call, "5")
    assert call.handle(PromptFinished(playback=2)) == [StartTimer(timer="t2", seconds=5.0)]


def test_menu_entry_ends_on_terminator_or_interdigit_timeout(make_call: MakeCall) -> None:
    states = (
        "  start: {kind: menu, prompt: menu, options: {'*11': bye},"
        " entry: {into: number, pattern: '0[0-9]{3,}', next: dial}}\n"
        "  dial: {kind: dial, number: '{number}', caller_id: '4100'}\n"
    )
    call = make_call(states)
    start(call)
    call.handle(PromptFinished(playback=1))
    assert keys(call, "0301#")[-1] == Dial(number="0301", caller_id="4100")
    call = make_call(states)
    start(call)
    call.handle(PromptFinished(playback=1))
    keys(call, "03012")
    assert call.handle(TimerFired(timer="t6")) == [Dial(number="03012", caller_id="4100")]
    call = make_call(states, defaults="  nomatch: [nm1]\n")
    start(call)
    call.handle(PromptFinished(playback=1))
    assert keys(call, "12#")[-1] == play("nm1", 2)  # pattern needs a leading 0


def test_stale_timer_and_playback_are_ignored(make_call: MakeCall) -> None:
    call = make_call(MENU)
    start(call)
    assert call.handle(TimerFired(timer="t99")) == []
    assert call.handle(PromptFinished(playback=7)) == []
    call.handle(PromptFinished(playback=1))
    keys(call, "*")
    assert call.handle(TimerFired(timer="t1")) == []  # cancelled by the key


def test_nomatch_flushes_the_typeahead_buffer(make_call: MakeCall) -> None:
    call = make_call(
        MENU.replace("prompt: menu,", "prompt: menu, bargein: false,"),
        defaults="  nomatch: [nm1]\n",
    )
    start(call)
    keys(call, "5" + "1")  # both buffered during the menu prompt
    out = call.handle(PromptFinished(playback=1))
    assert out[-1] == play("nm1", 2, bargein=False)  # '5' no-match; '1' was flushed
    assert call.typeahead == []


# --- collect -------------------------------------------------------------------------
COLLECT = (
    "  start: {kind: collect, prompt: hi, into: code, min_digits: 2, max_digits: 4,"
    " pattern: '[0-9]+', next: done}\n"
    "  done: {kind: transfer, target: 'x{code}'}\n"
)


def test_collect_terminator_min_max_pattern(make_call: MakeCall) -> None:
    call = make_call(COLLECT)
    start(call)
    call.handle(PromptFinished(playback=1))
    assert keys(call, "12#")[-1] == Transfer(target="x12")
    call = make_call(COLLECT)
    start(call)
    call.handle(PromptFinished(playback=1))
    assert keys(call, "1234")[-1] == Transfer(target="x1234")  # max_digits ends at once
    call = make_call(COLLECT, defaults="  nomatch: [nm1]\n")
    start(call)
    call.handle(PromptFinished(playback=1))
    assert keys(call, "1#")[-1] == play("nm1", 2)  # too short
    call.handle(PromptFinished(playback=2))
    call.handle(PromptFinished(playback=3))
    assert keys(call, "1*#")[-1] == play("nm1", 4)  # pattern


def test_collect_interdigit_timeout_ends_input(make_call: MakeCall) -> None:
    call = make_call(COLLECT)
    start(call)
    call.handle(PromptFinished(playback=1))
    keys(call, "123")
    assert call.handle(TimerFired(timer="t4")) == [Transfer(target="x123")]


def test_collect_bargein_keeps_the_interrupting_key(make_call: MakeCall) -> None:
    call = make_call(COLLECT)
    start(call)
    assert keys(call, "4") == [StopPrompt(playback=1), StartTimer(timer="t1", seconds=3.0)]
    assert keys(call, "2#")[-1] == Transfer(target="x42")


def test_secret_input_is_a_secret(make_call: MakeCall) -> None:
    seen: list[Any] = []
    hooks = Hooks()
    hooks.add("grab", lambda session: seen.append(session.vars["pin"]) or "ok")
    call = make_call(
        "  start: {kind: collect, prompt: hi, into: pin, secret: true, next: check}\n"
        "  check: {kind: action, hook: grab, on: {ok: bye}}\n",
        hooks=hooks,
    )
    start(call)
    assert call.input_is_secret
    keys(call, "4711#")
    (pin,) = seen
    assert isinstance(pin, Secret) and pin == "4711" and pin.reveal() == "4711"
    assert "4711" not in f"{pin} {pin!r} {pin:>10}"


# --- action, branch, hooks -----------------------------------------------------------
def hooks_returning(value: Any) -> Hooks:
    hooks = Hooks()
    hooks.add("h", lambda session: value)
    return hooks


@pytest.mark.parametrize(
    ("value", "branch"), [(True, "true"), (None, "none"), (3, "3"), ("ok", "ok")]
)
def test_action_branches_on_the_result_text(make_call: MakeCall, value: Any, branch: str) -> None:
    call = make_call(
        f"  start: {{kind: action, hook: h, into: r, on: {{'{branch}': t}}, next: bye}}\n"
        "  t: {kind: transfer, target: 'branch'}\n",
        hooks=hooks_returning(value),
    )
    assert start(call) == [Transfer(target="branch")]
    assert call.vars["r"] == value


def test_action_default_next(make_call: MakeCall) -> None:
    call = make_call(
        "  start: {kind: action, hook: h, on: {a: bye}, next: t}\n"
        "  t: {kind: hangup, reason: refused}\n",
        hooks=hooks_returning("zzz"),
    )
    assert start(call) == [Hangup(reason="refused")]


def test_a_hook_that_raises_ends_the_call_with_apology_and_others_go_on(
    make_call: MakeCall, caplog: pytest.LogCaptureFixture
) -> None:
    hooks = Hooks()

    def boom(session: Any) -> str:
        if session.caller == "bad":
            raise RuntimeError("database down")
        return "ok"

    hooks.add("h", boom)
    call = make_call(
        "  start: {kind: action, hook: h, on: {ok: t}}\n  t: {kind: transfer, target: '1'}\n",
        hooks=hooks,
    )
    other = call.engine.new_call("c2")
    with caplog.at_level(logging.ERROR, logger="ivr.dialogue"):
        assert call.handle(CallStarted(caller="bad")) == [play("apology", 1, bargein=False)]
    assert "c1" in caplog.text and "RuntimeError" in caplog.text
    assert call.handle(PromptFinished(playback=1)) == [Hangup(reason="error")]
    assert other.handle(CallStarted(caller="good")) == [Transfer(target="1")]


def test_no_branch_and_no_next_is_a_failure(make_call: MakeCall) -> None:
    call = make_call("  start: {kind: action, hook: h, on: {a: bye}}\n", hooks=hooks_returning("b"))
    assert start(call) == [play("apology", 1, bargein=False)]


def test_apology_null_hangs_up_at_once(make_call: MakeCall) -> None:
    call = make_call(
        "  start: {kind: action, hook: h, on: {a: bye}}\n",
        hooks=hooks_returning("b"),
        head="apology: null\n",
    )
    assert start(call) == [Hangup(reason="error")]


def test_branch_first_true_case_wins(make_call: MakeCall) -> None:
    states = (
        "  start: {kind: branch, cases: [{when: 'n > 1', goto: many}, {when: 'n == 1',"
        " goto: bye}], otherwise: bye}\n  many: {kind: hangup, reason: refused}\n"
    )
    hooks = Hooks()
    call = make_call("  pre: {kind: hangup}\n" + states, hooks=hooks)
    call.vars["n"] = 5
    assert start(call) == [Hangup(reason="refused")]


def test_branch_expression_error_ends_cleanly(make_call: MakeCall) -> None:
    call = make_call(
        "  start: {kind: branch, cases: [{when: 'n > 1', goto: bye}], otherwise: bye}\n"
    )
    assert start(call) == [play("apology", 1, bargein=False)]  # None > 1 is a TypeError


def test_the_loop_guard_ends_a_looping_dialplan(make_call: MakeCall) -> None:
    call = make_call(
        "  start: {kind: branch, cases: [{when: 'True', goto: b}], otherwise: bye}\n"
        "  b: {kind: branch, cases: [{when: 'True', goto: start}], otherwise: bye}\n"
    )
    assert start(call) == [play("apology", 1, bargein=False)]


# --- ending kinds, mute, event order -------------------------------------------------
def test_templates_fill_from_variables_and_missing_ones_fail(
    make_call: MakeCall, caplog: pytest.LogCaptureFixture
) -> None:
    call = make_call("  start: {kind: pull, call: 'c-{caller}'}\n")
    assert start(call) == [PullCall(call="c-+4930123")]
    call.handle(CallControlResult(result="connected"))
    assert call.outcome == "pulled"
    call = make_call("  start: {kind: dial, number: '{nope}'}\n")
    with caplog.at_level(logging.ERROR, logger="ivr.dialogue"):
        assert start(call) == [play("apology", 1, bargein=False)]
    assert "variable 'nope' is not set" in caplog.text


def test_events_after_the_end_and_before_the_start_are_refused(make_call: MakeCall) -> None:
    call = make_call("  start: {kind: hangup}\n")
    with pytest.raises(UnexpectedEventError):
        call.handle(DigitReceived(digit="1"))
    start(call)
    assert call.ended
    with pytest.raises(UnexpectedEventError):
        call.handle(DigitReceived(digit="1"))
    with pytest.raises(UnexpectedEventError):
        call.handle(CallHungUp())


def test_a_second_call_started_is_refused(make_call: MakeCall) -> None:
    call = make_call(MENU)
    start(call)
    with pytest.raises(UnexpectedEventError):
        start(call)


def test_mute_silences_prompts_and_timers_start_at_once(make_call: MakeCall) -> None:
    hooks = Hooks()
    hooks.add("quiet", lambda session: session.vars.update(mute=True) or "ok")
    call = make_call(
        "  start: {kind: action, hook: quiet, on: {ok: m}}\n"
        "  m: {kind: menu, prompt: menu, options: {'1': bye}}\n",
        hooks=hooks,
    )
    assert start(call) == [StartTimer(timer="t1", seconds=5.0)]
    assert keys(call, "1") == [CancelTimer(timer="t1"), Hangup(reason="normal")]


def test_caller_hangup_ends_the_dialogue_and_frees_the_model(make_call: MakeCall) -> None:
    call = make_call(MENU)
    start(call)
    assert call.handle(CallHungUp()) == []
    assert call.outcome == "caller_hangup"
    assert call not in call.engine.machine.models
