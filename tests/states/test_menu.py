"""``menu``: options by key code, overlapping codes, no-input / no-match escalation,
limits, ``reprompt``, free ``entry``, stale events, type-ahead flushing."""

from __future__ import annotations

from ivr import (
    CallControlResult,
    CancelTimer,
    Dial,
    Hangup,
    PromptFinished,
    PullCall,
    StartTimer,
    StopPrompt,
    TimerFired,
    Transfer,
)
from ivr.dialogue import Dialogue
from tests.states.conftest import MakeCall, finish, play, press, start

MENU = """
start:
  kind: menu
  prompt: menu
  options: {"1": one, "*1": star1, "*11": star11, "9": start}
one: {kind: transfer, target: "one"}
star1: {kind: hangup, reason: refused}
star11: {kind: pull, call: "call-11"}
"""


def ready(call: Dialogue) -> None:
    """Start the call and let the menu prompt finish (timer t1 runs)."""
    assert start(call) == [play("menu", 1)]
    assert finish(call, 1) == [StartTimer(timer="t1", seconds=5.0)]


# --- options -------------------------------------------------------------------------
def test_no_timer_runs_while_the_prompt_plays(make_call: MakeCall) -> None:
    call = make_call(MENU)
    assert start(call) == [play("menu", 1)]
    assert call.handle(TimerFired(timer="t1")) == []  # no such timer yet
    assert finish(call, 1) == [StartTimer(timer="t1", seconds=5.0)]


def test_single_key_option(make_call: MakeCall) -> None:
    call = make_call(MENU)
    ready(call)
    assert press(call, "1") == [CancelTimer(timer="t1"), Transfer(target="one")]
    call.handle(CallControlResult(result="connected"))
    assert call.ended and call.outcome == "transferred"


def test_single_key_option_by_bargein(make_call: MakeCall) -> None:
    call = make_call(MENU)
    start(call)
    assert press(call, "1") == [StopPrompt(playback=1), Transfer(target="one")]


def test_an_option_leading_back_to_the_menu_starts_it_afresh(make_call: MakeCall) -> None:
    call = make_call(MENU)
    ready(call)
    assert press(call, "9") == [CancelTimer(timer="t1"), play("menu", 2)]
    assert finish(call, 2) == [StartTimer(timer="t2", seconds=5.0)]


def test_multi_key_code(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: menu, prompt: menu, options: {"*11": pull}}
        pull: {kind: pull, call: "x"}
        """
    )
    ready(call)
    assert press(call, "*") == [CancelTimer(timer="t1"), StartTimer(timer="t2", seconds=3.0)]
    assert press(call, "1") == [CancelTimer(timer="t2"), StartTimer(timer="t3", seconds=3.0)]
    assert press(call, "1") == [CancelTimer(timer="t3"), PullCall(call="x")]


def test_overlapping_codes_longer_wins_within_interdigit_timeout(make_call: MakeCall) -> None:
    call = make_call(MENU)
    ready(call)
    assert press(call, "*1") == [
        CancelTimer(timer="t1"),
        StartTimer(timer="t2", seconds=3.0),
        CancelTimer(timer="t2"),
        StartTimer(timer="t3", seconds=3.0),
    ]
    assert press(call, "1") == [CancelTimer(timer="t3"), PullCall(call="call-11")]


def test_overlapping_codes_shorter_wins_on_interdigit_timeout(make_call: MakeCall) -> None:
    call = make_call(MENU)
    ready(call)
    press(call, "*1")
    assert call.handle(TimerFired(timer="t3")) == [Hangup(reason="refused")]
    assert call.outcome == "refused"


def test_overlapping_codes_terminator_takes_the_shorter(make_call: MakeCall) -> None:
    call = make_call(MENU)
    ready(call)
    press(call, "*1")
    assert press(call, "#") == [CancelTimer(timer="t3"), Hangup(reason="refused")]


def test_interdigit_timeout_comes_from_defaults(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="interdigit_timeout: 1.5\ntimeout: 7")
    assert start(call) == [play("menu", 1)]
    assert finish(call, 1) == [StartTimer(timer="t1", seconds=7.0)]
    assert press(call, "*") == [CancelTimer(timer="t1"), StartTimer(timer="t2", seconds=1.5)]


def test_prefix_that_times_out_without_an_option_is_a_no_match(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: menu, prompt: menu, options: {"*11": pull}, nomatch: nm1}
        pull: {kind: pull, call: "x"}
        """
    )
    ready(call)
    press(call, "*")
    assert call.handle(TimerFired(timer="t2")) == [play("nm1", 2)]


def test_key_that_starts_no_option_is_a_no_match_at_once(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="nomatch: nm1")
    ready(call)
    assert press(call, "5") == [CancelTimer(timer="t1"), play("nm1", 2)]
    assert finish(call, 2) == [play("menu", 3)]
    assert finish(call, 3) == [StartTimer(timer="t2", seconds=5.0)]


def test_prefix_then_a_wrong_key_is_a_no_match_at_once(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="nomatch: nm1")
    ready(call)
    press(call, "*")
    assert press(call, "5") == [CancelTimer(timer="t2"), play("nm1", 2)]
    assert call.scratch["digits"] == ""


def test_terminator_alone_is_a_no_match(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="nomatch: nm1")
    ready(call)
    assert press(call, "#") == [CancelTimer(timer="t1"), play("nm1", 2)]


def test_terminator_can_be_an_option_when_terminator_is_off(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: menu, prompt: menu, terminator: "", options: {"#": one}}
        one: {kind: transfer, target: "one"}
        """
    )
    ready(call)
    assert press(call, "#") == [CancelTimer(timer="t1"), Transfer(target="one")]


def test_bargein_during_a_no_match_prompt_stops_it_and_the_reprompt(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="nomatch: nm1")
    ready(call)
    press(call, "5")  # nm1 is playback 2, the menu reprompt is queued behind it
    assert press(call, "1") == [StopPrompt(playback=2), Transfer(target="one")]


# --- no-input --------------------------------------------------------------------------
def test_no_input_after_the_first_digit_timeout(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="noinput: ni1")
    ready(call)
    assert call.handle(TimerFired(timer="t1")) == [play("ni1", 2)]
    assert finish(call, 2) == [play("menu", 3)]
    assert finish(call, 3) == [StartTimer(timer="t2", seconds=5.0)]


def test_no_input_escalation_last_entry_repeats(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="noinput: [ni1, ni2]\nmax_noinput: 5")
    ready(call)
    heard = []
    playback = 2
    for timer in ("t1", "t2", "t3", "t4"):
        out = call.handle(TimerFired(timer=timer))
        assert len(out) == 1
        heard.append(out[0].prompt)
        assert finish(call, playback) == [play("menu", playback + 1)]
        assert finish(call, playback + 1) == [
            StartTimer(timer=f"t{int(timer[1:]) + 1}", seconds=5.0)
        ]
        playback += 2
    assert heard == ["ni1", "ni2", "ni2", "ni2"]


def test_escalation_entry_may_be_a_list_of_prompts(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="noinput: [[ni1, ni3], ni2]")
    ready(call)
    assert call.handle(TimerFired(timer="t1")) == [play("ni1", 2)]
    assert finish(call, 2) == [play("ni3", 3)]
    assert finish(call, 3) == [play("menu", 4)]


def test_max_noinput_exits_to_on_max_noinput(make_call: MakeCall) -> None:
    call = make_call(
        MENU + "quiet: {kind: hangup, prompts: ni3}\n",
        defaults="max_noinput: 2\non_max_noinput: quiet\nnoinput: ni1",
    )
    ready(call)
    call.handle(TimerFired(timer="t1"))
    finish(call, 2)
    finish(call, 3)
    assert call.handle(TimerFired(timer="t2")) == [play("ni3", 4, bargein=False)]
    assert finish(call, 4) == [Hangup(reason="normal")]


def test_max_noinput_one_exits_on_the_first_no_input(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="max_noinput: 1\nnoinput: ni1")
    ready(call)
    assert call.handle(TimerFired(timer="t1")) == [play("bye", 2, bargein=False)]


def test_no_input_without_escalation_prompts_reprompts(make_call: MakeCall) -> None:
    call = make_call(MENU)
    ready(call)
    assert call.handle(TimerFired(timer="t1")) == [play("menu", 2)]


def test_reprompt_false_plays_only_the_escalation(make_call: MakeCall) -> None:
    call = make_call(MENU, defaults="noinput: ni1\nnomatch: nm1\nreprompt: false")
    ready(call)
    assert call.handle(TimerFired(timer="t1")) == [play("ni1", 2)]
    assert finish(call, 2) == [StartTimer(timer="t2", seconds=5.0)]
    assert press(call, "5") == [CancelTimer(timer="t2"), play("nm1", 3)]
    assert finish(call, 3) == [StartTimer(timer="t3", seconds=5.0)]


def test_reprompt_false_without_escalation_restarts_the_timer_at_once(
    make_call: MakeCall,
) -> None:
    call = make_call(MENU, defaults="reprompt: false")
    ready(call)
    assert call.handle(TimerFired(timer="t1")) == [StartTimer(timer="t2", seconds=5.0)]


# --- no-match and separate limits ---------------------------------------------------------
def test_no_match_escalation_and_limit(make_call: MakeCall) -> None:
    call = make_call(
        MENU + "wrong: {kind: hangup, prompts: nm2, reason: refused}\n",
        defaults="nomatch: nm1\nmax_nomatch: 2\non_max_nomatch: wrong",
    )
    ready(call)
    assert press(call, "5") == [CancelTimer(timer="t1"), play("nm1", 2)]
    finish(call, 2)
    finish(call, 3)
    assert press(call, "5") == [CancelTimer(timer="t2"), play("nm2", 4, bargein=False)]
    assert finish(call, 4) == [Hangup(reason="refused")]


def test_no_input_and_no_match_are_counted_separately(make_call: MakeCall) -> None:
    call = make_call(
        MENU + "quiet: {kind: hangup, prompts: ni3}\n" + "wrong: {kind: hangup, prompts: nm2}\n",
        defaults=(
            "max_noinput: 2\nmax_nomatch: 2\non_max_noinput: quiet\non_max_nomatch: wrong\n"
            "noinput: ni1\nnomatch: nm1"
        ),
    )
    ready(call)
    assert call.handle(TimerFired(timer="t1")) == [play("ni1", 2)]  # no-input 1
    finish(call, 2)
    finish(call, 3)
    assert press(call, "5") == [CancelTimer(timer="t2"), play("nm1", 4)]  # no-match 1
    finish(call, 4)
    finish(call, 5)
    # the second no-match leaves by max_nomatch, not by a shared count
    assert press(call, "5") == [CancelTimer(timer="t3"), play("nm2", 6, bargein=False)]


def test_state_level_limits_override_defaults(make_call: MakeCall) -> None:
    call = make_call(
        """
        start:
          kind: menu
          prompt: menu
          options: {"1": bye}
          max_noinput: 1
          on_max_noinput: quiet
        quiet: {kind: hangup, prompts: ni3}
        """,
        defaults="max_noinput: 3",
    )
    ready(call)
    assert call.handle(TimerFired(timer="t1")) == [play("ni3", 2, bargein=False)]


# --- entry ---------------------------------------------------------------------------
ENTRY = """
start:
  kind: menu
  prompt: menu
  options: {"*11": pull}
  entry: {into: number, pattern: "0[0-9]{3,}", max_digits: 8, next: dial}
  nomatch: nm1
pull: {kind: pull, call: "x"}
dial: {kind: dial, number: "{number}", caller_id: "4100"}
"""


def test_entry_ended_by_terminator(make_call: MakeCall) -> None:
    call = make_call(ENTRY)
    ready(call)
    assert press(call, "0") == [CancelTimer(timer="t1"), StartTimer(timer="t2", seconds=3.0)]
    press(call, "301")
    assert press(call, "#") == [CancelTimer(timer="t5"), Dial(number="0301", caller_id="4100")]
    assert call.vars["number"] == "0301"


def test_entry_ended_by_interdigit_timeout(make_call: MakeCall) -> None:
    call = make_call(ENTRY)
    ready(call)
    press(call, "03012")
    assert call.handle(TimerFired(timer="t6")) == [Dial(number="03012", caller_id="4100")]


def test_entry_ends_at_max_digits(make_call: MakeCall) -> None:
    call = make_call(ENTRY)
    ready(call)
    out = press(call, "03012345")
    assert out[-2:] == [CancelTimer(timer="t8"), Dial(number="03012345", caller_id="4100")]


def test_entry_not_matching_the_pattern_is_a_no_match(make_call: MakeCall) -> None:
    call = make_call(ENTRY)
    ready(call)
    press(call, "1234")
    assert press(call, "#") == [CancelTimer(timer="t5"), play("nm1", 2)]
    assert "number" not in call.vars


def test_entry_too_short_is_a_no_match(make_call: MakeCall) -> None:
    call = make_call(
        """
        start:
          kind: menu
          prompt: menu
          entry: {into: number, min_digits: 3, next: dial}
          nomatch: nm1
        dial: {kind: dial, number: "{number}"}
        """
    )
    ready(call)
    press(call, "12")
    assert call.handle(TimerFired(timer="t3")) == [play("nm1", 2)]
    assert "number" not in call.vars


def test_entry_and_code_share_the_menu(make_call: MakeCall) -> None:
    call = make_call(ENTRY)
    ready(call)
    assert press(call, "*11")[-1] == PullCall(call="x")


def test_entry_by_bargein_keeps_the_first_key(make_call: MakeCall) -> None:
    call = make_call(ENTRY)
    start(call)
    assert press(call, "0") == [StopPrompt(playback=1), StartTimer(timer="t1", seconds=3.0)]
    assert press(call, "301#")[-1] == Dial(number="0301", caller_id="4100")


# --- stale events ----------------------------------------------------------------------
def test_stale_timer_is_ignored(make_call: MakeCall) -> None:
    call = make_call(MENU)
    ready(call)
    press(call, "*")  # t1 cancelled, t2 runs
    assert call.handle(TimerFired(timer="t1")) == []
    assert call.handle(TimerFired(timer="t99")) == []
    assert call.scratch["digits"] == "*"
    assert call.handle(TimerFired(timer="t2")) == [play("menu", 2)]  # "*" alone: no-match


def test_stale_prompt_finished_is_ignored(make_call: MakeCall) -> None:
    call = make_call(MENU)
    start(call)
    assert call.handle(PromptFinished(playback=2)) == []
    assert call.handle(PromptFinished(playback=0)) == []
    assert finish(call, 1) == [StartTimer(timer="t1", seconds=5.0)]
    assert finish(call, 1) == []  # already finished


# --- type-ahead and flushing ----------------------------------------------------------
def test_keys_during_an_uninterruptible_prompt_are_read_after_it(make_call: MakeCall) -> None:
    call = make_call(MENU.replace("prompt: menu", "prompt: menu\n  bargein: false"))
    start(call)
    assert press(call, "*11") == []
    assert finish(call, 1) == [
        StartTimer(timer="t1", seconds=3.0),
        CancelTimer(timer="t1"),
        StartTimer(timer="t2", seconds=3.0),
        CancelTimer(timer="t2"),
        PullCall(call="call-11"),
    ]


def test_no_match_flushes_the_type_ahead_buffer(make_call: MakeCall) -> None:
    call = make_call(
        MENU.replace("prompt: menu", "prompt: menu\n  bargein: false"), defaults="nomatch: nm1"
    )
    start(call)
    press(call, "51")  # '5' is a no-match; '1' must not select option 1
    assert finish(call, 1) == [play("nm1", 2, bargein=False)]
    assert call.typeahead == []
    assert finish(call, 2) == [play("menu", 3, bargein=False)]
    assert finish(call, 3) == [StartTimer(timer="t1", seconds=5.0)]


def test_no_match_from_buffered_keys_with_bargein_flushes_the_rest(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: play, prompts: hi, bargein: false, next: m}
        m: {kind: menu, prompt: menu, options: {"1": one}, nomatch: nm1}
        one: {kind: transfer, target: "one"}
        """
    )
    start(call)
    press(call, "71")
    # the menu skips its prompt (keys waiting); '7' no-match flushes '1'
    assert finish(call, 1) == [play("nm1", 2)]
    assert call.typeahead == []
    assert finish(call, 2) == [play("menu", 3)]


def test_type_ahead_after_an_option_was_chosen_does_not_break_the_call(
    make_call: MakeCall,
) -> None:
    call = make_call(
        """
        start: {kind: play, prompts: hi, bargein: false, next: m}
        m: {kind: menu, prompt: menu, options: {"1": one, "2": two}}
        one: {kind: hangup, prompts: a}
        two: {kind: hangup, prompts: b}
        """
    )
    start(call)
    assert press(call, "12") == []
    assert finish(call, 1) == [play("a", 2, bargein=False)]
    assert call.state == "one"
