"""``play``: prompts in order, ``when`` conditions, barge-in and type-ahead."""

from __future__ import annotations

from ivr import CancelTimer, Hangup, PromptFinished, StartTimer, StopPrompt, Transfer
from tests.states.conftest import MakeCall, finish, hooks_of, play, press, start

TWO_PROMPTS = """
start: {kind: play, prompts: [hi, hi2], next: bye}
"""

PLAY_THEN_MENU = """
start: {kind: play, prompts: [hi, hi2], next: m}
m: {kind: menu, prompt: menu, options: {"1": one, "2": two}}
one: {kind: transfer, target: "sip:one@pbx"}
two: {kind: hangup, prompts: b, reason: refused}
"""


def test_prompts_play_in_order_and_next_state_follows_the_last(make_call: MakeCall) -> None:
    call = make_call(TWO_PROMPTS)
    assert start(call) == [play("hi", 1)]
    assert finish(call, 1) == [play("hi2", 2)]
    assert call.state == "start"
    assert finish(call, 2) == [play("bye", 3, bargein=False)]
    assert call.state == "bye"
    assert finish(call, 3) == [Hangup(reason="normal")]
    assert call.ended


def test_play_with_bargein_false_marks_its_prompts_not_interruptible(
    make_call: MakeCall,
) -> None:
    call = make_call("start: {kind: play, prompts: hi, bargein: false, next: bye}")
    assert start(call) == [play("hi", 1, bargein=False)]


def test_bargein_default_comes_from_defaults(make_call: MakeCall) -> None:
    call = make_call("start: {kind: play, prompts: hi, next: bye}", defaults="bargein: false")
    assert start(call) == [play("hi", 1, bargein=False)]


def test_when_false_skips_a_prompt(make_call: MakeCall) -> None:
    call = make_call(
        """
        start:
          kind: play
          prompts: [{id: hi, when: "caller == 'nobody'"}, hi2]
          next: bye
        """
    )
    assert start(call) == [play("hi2", 1)]


def test_when_true_plays_the_prompt(make_call: MakeCall) -> None:
    call = make_call(
        """
        start:
          kind: play
          prompts: [{id: hi, when: "caller == '+4930123456'"}, hi2]
          next: bye
        """
    )
    assert start(call) == [play("hi", 1)]


def test_when_conditions_skip_middle_and_last_prompts(make_call: MakeCall) -> None:
    call = make_call(
        """
        start:
          kind: play
          prompts: [hi, {id: a, when: "n > 1"}, hi2, {id: b, when: "n > 5"}]
          next: bye
        """,
        hooks=None,
    )
    call.vars["n"] = 3
    assert start(call) == [play("hi", 1)]
    assert finish(call, 1) == [play("a", 2)]
    assert finish(call, 2) == [play("hi2", 3)]
    assert finish(call, 3) == [play("bye", 4, bargein=False)]  # b skipped


def test_all_prompts_skipped_goes_to_next_at_once(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: play, prompts: [{id: hi, when: "n == 1"}], next: t}
        t: {kind: transfer, target: "200"}
        """
    )
    assert start(call) == [Transfer(target="200")]


def test_prompt_params_are_evaluated_from_session_variables(make_call: MakeCall) -> None:
    hooks = hooks_of(setn=lambda s: s.vars.update(calls=4))
    call = make_call(
        """
        start: {kind: action, hook: setn, next: p}
        p: {kind: play, prompts: {id: count, params: {n: calls + 1}}, next: bye}
        """,
        hooks=hooks,
    )
    assert start(call) == [play("count", 1, n=5)]


def test_bargein_key_stops_the_prompt_and_selects_a_menu_option(make_call: MakeCall) -> None:
    call = make_call(PLAY_THEN_MENU)
    start(call)
    assert press(call, "1") == [StopPrompt(playback=1), Transfer(target="sip:one@pbx")]
    assert call.typeahead == []


def test_bargein_on_the_second_prompt_skips_the_rest(make_call: MakeCall) -> None:
    call = make_call(PLAY_THEN_MENU)
    start(call)
    finish(call, 1)
    assert press(call, "2") == [StopPrompt(playback=2), play("b", 3, bargein=False)]
    assert finish(call, 3) == [Hangup(reason="refused")]


def test_bargein_key_that_starts_no_option_is_a_no_match_in_the_menu(
    make_call: MakeCall,
) -> None:
    call = make_call(PLAY_THEN_MENU, defaults="nomatch: nm1")
    start(call)
    assert press(call, "7") == [StopPrompt(playback=1), play("nm1", 2)]
    assert call.state == "m"
    assert finish(call, 2) == [play("menu", 3)]


def test_bargein_key_is_the_first_key_of_a_multi_key_code(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: play, prompts: hi, next: m}
        m: {kind: menu, prompt: menu, options: {"*11": one}}
        one: {kind: transfer, target: "one"}
        """
    )
    start(call)
    # the menu prompt is skipped: the key is already there
    assert press(call, "*") == [StopPrompt(playback=1), StartTimer(timer="t1", seconds=3.0)]
    assert call.state == "m"
    assert press(call, "11") == [
        CancelTimer(timer="t1"),
        StartTimer(timer="t2", seconds=3.0),
        CancelTimer(timer="t2"),
        Transfer(target="one"),
    ]


def test_bargein_key_reaches_a_menu_without_bargein_after_its_prompt(
    make_call: MakeCall,
) -> None:
    call = make_call(
        """
        start: {kind: play, prompts: hi, next: m}
        m: {kind: menu, prompt: menu, bargein: false, options: {"1": one}}
        one: {kind: transfer, target: "one"}
        """
    )
    start(call)
    assert press(call, "1") == [StopPrompt(playback=1), play("menu", 2, bargein=False)]
    assert call.typeahead == ["1"]
    assert finish(call, 2) == [Transfer(target="one")]


def test_without_bargein_keys_are_buffered_and_the_prompts_go_on(make_call: MakeCall) -> None:
    call = make_call(PLAY_THEN_MENU.replace("next: m}", "bargein: false, next: m}"))
    start(call)
    assert press(call, "2") == []
    assert call.typeahead == ["2"]
    assert finish(call, 1) == [play("hi2", 2, bargein=False)]
    # the menu (barge-in on) finds a key waiting: its prompt is skipped
    assert finish(call, 2) == [play("b", 3, bargein=False)]


def test_buffered_keys_are_read_by_a_menu_without_bargein_after_its_prompt(
    make_call: MakeCall,
) -> None:
    call = make_call(
        """
        start: {kind: play, prompts: hi, bargein: false, next: m}
        m: {kind: menu, prompt: menu, bargein: false, options: {"*1": one}}
        one: {kind: transfer, target: "one"}
        """
    )
    start(call)
    assert press(call, "*") == []
    assert finish(call, 1) == [play("menu", 2, bargein=False)]
    assert press(call, "1") == []  # still buffered: the menu prompt cannot be interrupted
    assert call.typeahead == ["*", "1"]
    assert finish(call, 2) == [
        StartTimer(timer="t1", seconds=3.0),
        CancelTimer(timer="t1"),
        Transfer(target="one"),
    ]


def test_stale_prompt_finished_after_bargein_is_ignored(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: play, prompts: hi, next: m}
        m: {kind: menu, prompt: menu, options: {"1": one}}
        one: {kind: transfer, target: "one"}
        """,
        defaults="nomatch: nm1",
    )
    start(call)
    press(call, "5")  # barge-in, then no-match: nm1 plays as playback 2
    assert call.handle(PromptFinished(playback=1)) == []
    assert finish(call, 2) == [play("menu", 3)]


def test_type_ahead_buffer_keeps_at_most_64_most_recent_keys(make_call: MakeCall) -> None:
    call = make_call("start: {kind: play, prompts: hi, bargein: false, next: bye}")
    start(call)
    keys = "0123456789" * 7
    assert press(call, keys) == []
    assert call.typeahead == list(keys[-64:])
