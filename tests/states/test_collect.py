"""``collect``: digits into a variable — terminator, min/max, pattern, timeouts, secrets."""

from __future__ import annotations

from ivr import (
    CancelTimer,
    Hangup,
    Hooks,
    Secret,
    StartTimer,
    StopPrompt,
    TimerFired,
    Transfer,
)
from ivr.dialogue import Dialogue
from tests.states.conftest import MakeCall, finish, play, press, start

COLLECT = """
start:
  kind: collect
  prompt: hi
  into: code
  min_digits: 2
  max_digits: 4
  pattern: "[0-9]+"
  nomatch: nm1
  next: done
done: {kind: transfer, target: "x{code}"}
"""


def ready(call: Dialogue) -> None:
    assert start(call) == [play("hi", 1)]
    assert finish(call, 1) == [StartTimer(timer="t1", seconds=5.0)]


def test_terminator_ends_input(make_call: MakeCall) -> None:
    call = make_call(COLLECT)
    ready(call)
    assert press(call, "1") == [CancelTimer(timer="t1"), StartTimer(timer="t2", seconds=3.0)]
    assert press(call, "2") == [CancelTimer(timer="t2"), StartTimer(timer="t3", seconds=3.0)]
    assert press(call, "#") == [CancelTimer(timer="t3"), Transfer(target="x12")]
    assert call.vars["code"] == "12"


def test_max_digits_ends_input_at_once(make_call: MakeCall) -> None:
    call = make_call(COLLECT)
    ready(call)
    press(call, "123")
    assert press(call, "4") == [CancelTimer(timer="t4"), Transfer(target="x1234")]


def test_interdigit_timeout_ends_input(make_call: MakeCall) -> None:
    call = make_call(COLLECT)
    ready(call)
    press(call, "123")
    assert call.handle(TimerFired(timer="t4")) == [Transfer(target="x123")]


def test_too_few_digits_is_a_no_match(make_call: MakeCall) -> None:
    call = make_call(COLLECT)
    ready(call)
    assert press(call, "1#") == [
        CancelTimer(timer="t1"),
        StartTimer(timer="t2", seconds=3.0),
        CancelTimer(timer="t2"),
        play("nm1", 2),
    ]
    assert "code" not in call.vars
    assert finish(call, 2) == [play("hi", 3)]
    assert finish(call, 3) == [StartTimer(timer="t3", seconds=5.0)]
    assert press(call, "55#")[-1] == Transfer(target="x55")  # the old "1" is gone


def test_too_few_digits_on_interdigit_timeout_is_a_no_match(make_call: MakeCall) -> None:
    call = make_call(COLLECT)
    ready(call)
    press(call, "1")
    assert call.handle(TimerFired(timer="t2")) == [play("nm1", 2)]


def test_pattern_must_match_the_whole_input(make_call: MakeCall) -> None:
    call = make_call(COLLECT.replace('"[0-9]+"', '"12"'))
    ready(call)
    # "123" contains a match of 12 but is no full match
    assert press(call, "123#")[-1] == play("nm1", 2)


def test_pattern_refuses_star_keys(make_call: MakeCall) -> None:
    call = make_call(COLLECT)
    ready(call)
    assert press(call, "1*2#")[-1] == play("nm1", 2)


def test_pattern_match_is_accepted(make_call: MakeCall) -> None:
    call = make_call(COLLECT.replace('"[0-9]+"', '"[0-9]*7"'))
    ready(call)
    assert press(call, "417#")[-1] == Transfer(target="x417")


def test_no_input_when_nothing_is_pressed(make_call: MakeCall) -> None:
    call = make_call(COLLECT, defaults="noinput: ni1")
    ready(call)
    assert call.handle(TimerFired(timer="t1")) == [play("ni1", 2)]


def test_terminator_off_makes_hash_a_digit(make_call: MakeCall) -> None:
    call = make_call(COLLECT.replace('"[0-9]+"', '"[0-9#]+"'), defaults='terminator: ""')
    ready(call)
    press(call, "1#")
    assert call.handle(TimerFired(timer="t3")) == [Transfer(target="x1#")]


def test_other_terminator(make_call: MakeCall) -> None:
    call = make_call(COLLECT, defaults='terminator: "*"')
    ready(call)
    assert press(call, "12*")[-1] == Transfer(target="x12")


def test_min_digits_zero_accepts_just_the_terminator(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: collect, prompt: hi, into: code, min_digits: 0, next: t}
        t: {kind: hangup, prompts: a}
        """
    )
    ready(call)
    assert press(call, "#") == [CancelTimer(timer="t1"), play("a", 2, bargein=False)]
    assert call.vars["code"] == ""


def test_bargein_keeps_the_interrupting_key(make_call: MakeCall) -> None:
    call = make_call(COLLECT)
    start(call)
    assert press(call, "4") == [StopPrompt(playback=1), StartTimer(timer="t1", seconds=3.0)]
    assert press(call, "2#")[-1] == Transfer(target="x42")


def test_without_bargein_keys_are_read_after_the_prompt(make_call: MakeCall) -> None:
    call = make_call(COLLECT.replace("prompt: hi", "prompt: hi\n  bargein: false"))
    assert start(call) == [play("hi", 1, bargein=False)]
    assert press(call, "42#") == []
    assert finish(call, 1) == [
        StartTimer(timer="t1", seconds=3.0),
        CancelTimer(timer="t1"),
        StartTimer(timer="t2", seconds=3.0),
        CancelTimer(timer="t2"),
        Transfer(target="x42"),
    ]


def test_invalid_type_ahead_is_a_no_match_and_flushes_the_rest(make_call: MakeCall) -> None:
    call = make_call(COLLECT.replace("prompt: hi", "prompt: hi\n  bargein: false"))
    start(call)
    press(call, "1#99#")  # "1" is too short; "99#" must be flushed, not collected
    out = finish(call, 1)
    assert out[-1] == play("nm1", 2, bargein=False)
    assert call.typeahead == []
    assert "code" not in call.vars


def test_max_nomatch_leaves(make_call: MakeCall) -> None:
    call = make_call(COLLECT, defaults="max_nomatch: 2")
    ready(call)
    press(call, "1#")
    finish(call, 2)
    finish(call, 3)
    assert press(call, "1#")[-1] == play("bye", 4, bargein=False)
    assert finish(call, 4) == [Hangup(reason="normal")]


# --- secrets -------------------------------------------------------------------------
SECRET = """
start:
  kind: collect
  prompt: hi
  into: pin
  min_digits: 4
  max_digits: 4
  secret: true
  next: check
check: {kind: action, hook: grab, on: {ok: after}}
after: {kind: play, prompts: a, next: bye}
"""


def test_secret_input_is_stored_as_a_masked_secret(make_call: MakeCall) -> None:
    seen: list[object] = []

    def grab(session: object) -> str:
        seen.append(session.vars["pin"])  # type: ignore[attr-defined]
        return "ok"

    call = make_call(SECRET, hooks=Hooks({"grab": grab}))
    start(call)
    assert call.input_is_secret is True
    assert press(call, "4711")[-1] == play("a", 2)
    (pin,) = seen
    assert isinstance(pin, Secret)
    assert pin.reveal() == "4711"
    assert pin == "4711"
    assert pin != "4712"
    assert "4711" not in f"{pin} {pin!r} {pin:>20} {[pin]}"
    assert str(pin) == "••••"
    assert call.input_is_secret is False  # the play state is no secret


def test_plain_collect_is_not_secret(make_call: MakeCall) -> None:
    call = make_call(COLLECT)
    assert call.input_is_secret is False  # not started: no state yet
    start(call)
    assert call.input_is_secret is False
    press(call, "12#")
    assert call.vars["code"] == "12"
    assert not isinstance(call.vars["code"], Secret)


def test_secret_fills_templates_with_its_value(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: collect, prompt: hi, into: pin, secret: true, next: t}
        t: {kind: transfer, target: "pin-{pin}"}
        """
    )
    start(call)
    assert press(call, "1234#")[-1] == Transfer(target="pin-1234")


def test_type_ahead_after_the_terminator_goes_to_the_next_input_state(
    make_call: MakeCall,
) -> None:
    call = make_call(
        """
        start: {kind: play, prompts: hi2, bargein: false, next: c}
        c: {kind: collect, prompt: hi, into: code, next: m}
        m: {kind: menu, prompt: menu, options: {"3": three}}
        three: {kind: hangup, prompts: a}
        """
    )
    start(call)
    assert press(call, "12#3") == []
    out = finish(call, 1)
    assert call.vars["code"] == "12"
    assert out[-1] == play("a", 2, bargein=False)
    assert call.state == "three"
