"""``action``: hooks, branching on their result, failures (apology + hang-up), mute."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ivr import (
    CallHungUp,
    CancelTimer,
    Engine,
    Hangup,
    Hooks,
    Session,
    StartTimer,
    StopPrompt,
    TimerFired,
    Transfer,
)
from tests.states.conftest import MakeCall, MakePlan, finish, hooks_of, play, press, start

BRANCHES = """
start: {kind: action, hook: h, into: result, on: {"true": st_true, "false": st_false, "none": nothing, "3": three, ok: fine}, next: other}
st_true: {kind: transfer, target: "yes"}
st_false: {kind: transfer, target: "no"}
nothing: {kind: transfer, target: "nothing"}
three: {kind: transfer, target: "three"}
fine: {kind: transfer, target: "fine"}
other: {kind: transfer, target: "other"}
"""


def returning(value: Any) -> Hooks:
    return hooks_of(h=lambda session: value)


@pytest.mark.parametrize(
    ("value", "target"),
    [
        (True, "yes"),
        (False, "no"),
        (None, "nothing"),
        (3, "three"),
        ("3", "three"),
        ("ok", "fine"),
        ("OK", "other"),  # branches are exact text
        ("True", "other"),  # only a real bool becomes "true"
        (4, "other"),
    ],
)
def test_result_selects_the_branch(make_call: MakeCall, value: Any, target: str) -> None:
    call = make_call(BRANCHES, hooks=returning(value))
    assert start(call) == [Transfer(target=target)]


@pytest.mark.parametrize("value", [True, None, 3, "ok", ["a"]])
def test_into_stores_the_raw_result(make_call: MakeCall, value: Any) -> None:
    call = make_call(BRANCHES, hooks=returning(value))
    start(call)
    assert call.vars["result"] == value
    assert type(call.vars["result"]) is type(value)


def test_hook_gets_the_session_with_numbers_variables_and_context(make_plan: MakePlan) -> None:
    seen: list[Session] = []

    def h(session: Session) -> str:
        seen.append(session)
        return "ok"

    plan = make_plan(BRANCHES, hooks=hooks_of(h=h))
    engine = Engine(plan.dialplan, context={"app": 1})
    call = engine.new_call("c7")
    start(call, caller="+49301")
    (session,) = seen
    assert session is call.session
    assert session.call_id == "c7"
    assert session.caller == "+49301"
    assert session.called == "100"
    assert session.vars["caller"] == "+49301"
    assert session.context == {"app": 1}


def test_hook_can_set_variables_for_later_templates(make_call: MakeCall) -> None:
    def h(session: Session) -> str:
        session.vars["agent"] = "sip:7@pbx"
        return "ok"

    call = make_call(
        """
        start: {kind: action, hook: h, on: {ok: t}}
        t: {kind: transfer, target: "{agent}"}
        """,
        hooks=hooks_of(h=h),
    )
    assert start(call) == [Transfer(target="sip:7@pbx")]


def test_chained_actions_run_in_order(make_call: MakeCall) -> None:
    order: list[str] = []
    hooks = hooks_of(
        a=lambda s: order.append("a") or "go",
        b=lambda s: order.append("b") or "go",
    )
    call = make_call(
        """
        start: {kind: action, hook: a, on: {go: second}}
        second: {kind: action, hook: b, on: {go: t}}
        t: {kind: hangup, reason: refused}
        """,
        hooks=hooks,
    )
    assert start(call) == [Hangup(reason="refused")]
    assert order == ["a", "b"]


# --- failures ----------------------------------------------------------------------------
RAISING = """
start: {kind: action, hook: h, on: {ok: t}}
t: {kind: transfer, target: "done"}
"""


def boom_for_bad_callers(session: Session) -> str:
    if session.caller == "bad":
        raise RuntimeError("database down")
    return "ok"


def test_a_raising_hook_plays_the_apology_then_hangs_up_with_error(
    make_call: MakeCall, caplog: pytest.LogCaptureFixture
) -> None:
    call = make_call(RAISING, hooks=hooks_of(h=boom_for_bad_callers))
    with caplog.at_level(logging.ERROR, logger="ivr.dialogue"):
        assert start(call, caller="bad") == [play("apology", 1, bargein=False)]
    assert not call.ended
    assert finish(call, 1) == [Hangup(reason="error")]
    assert call.ended
    assert call.outcome == "hangup"


def test_a_raising_hook_is_logged_with_the_call_id(
    make_call: MakeCall, caplog: pytest.LogCaptureFixture
) -> None:
    call = make_call(RAISING, hooks=hooks_of(h=boom_for_bad_callers))
    with caplog.at_level(logging.ERROR, logger="ivr.dialogue"):
        start(call, caller="bad", call_id="call-4711")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "call-4711" in message
    assert "'h'" in message and "RuntimeError" in message


def test_another_call_of_the_same_engine_keeps_working(
    make_plan: MakePlan, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_plan(RAISING, hooks=hooks_of(h=boom_for_bad_callers))
    bad = engine.new_call("bad-1")
    good = engine.new_call("good-1")
    with caplog.at_level(logging.ERROR, logger="ivr.dialogue"):
        assert start(bad, caller="bad") == [play("apology", 1, bargein=False)]
        assert start(good, caller="good") == [Transfer(target="done")]
        later = engine.new_call("good-2")
        assert start(later, caller="good") == [Transfer(target="done")]
    assert finish(bad, 1) == [Hangup(reason="error")]
    assert "good-1" not in caplog.text and "good-2" not in caplog.text


def test_keys_during_the_apology_are_ignored(make_call: MakeCall) -> None:
    call = make_call(RAISING, hooks=hooks_of(h=boom_for_bad_callers))
    start(call, caller="bad")
    assert press(call, "123#") == []
    assert finish(call, 1) == [Hangup(reason="error")]


def test_caller_hanging_up_during_the_apology_ends_the_call(make_call: MakeCall) -> None:
    call = make_call(RAISING, hooks=hooks_of(h=boom_for_bad_callers))
    start(call, caller="bad")
    assert call.handle(CallHungUp()) == []
    assert call.ended and call.outcome == "caller_hangup"


def test_a_failure_after_a_menu_key_cancels_the_timer_first(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: menu, prompt: menu, options: {"1": act}}
        act: {kind: action, hook: h, on: {ok: bye}}
        """,
        hooks=hooks_of(h=lambda s: 1 / 0),
    )
    start(call)
    finish(call, 1)
    assert press(call, "1") == [CancelTimer(timer="t1"), play("apology", 2, bargein=False)]
    assert call.handle(TimerFired(timer="t1")) == []
    assert finish(call, 2) == [Hangup(reason="error")]


def test_a_failure_after_bargein_stops_the_prompt_first(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: play, prompts: hi, next: m}
        m: {kind: menu, prompt: menu, options: {"1": act}}
        act: {kind: action, hook: h, on: {ok: bye}}
        """,
        hooks=hooks_of(h=lambda s: 1 / 0),
    )
    start(call)
    assert press(call, "1") == [StopPrompt(playback=1), play("apology", 2, bargein=False)]


def test_no_branch_and_no_next_is_a_failure(
    make_call: MakeCall, caplog: pytest.LogCaptureFixture
) -> None:
    call = make_call("start: {kind: action, hook: h, on: {a: bye}}", hooks=returning("surprise"))
    with caplog.at_level(logging.ERROR, logger="ivr.dialogue"):
        assert start(call) == [play("apology", 1, bargein=False)]
    assert "surprise" in caplog.text and "c1" in caplog.text
    assert finish(call, 1) == [Hangup(reason="error")]


def test_apology_null_hangs_up_at_once(make_call: MakeCall) -> None:
    call = make_call(RAISING, hooks=hooks_of(h=boom_for_bad_callers), head="apology: null\n")
    assert start(call, caller="bad") == [Hangup(reason="error")]
    assert call.ended


def test_apology_can_be_another_prompt(make_call: MakeCall) -> None:
    call = make_call(RAISING, hooks=hooks_of(h=boom_for_bad_callers), head="apology: sorry\n")
    assert start(call, caller="bad") == [play("sorry", 1, bargein=False)]


def test_a_raising_hook_logs_its_exception(
    make_call: MakeCall, caplog: pytest.LogCaptureFixture
) -> None:
    call = make_call(RAISING, hooks=hooks_of(h=boom_for_bad_callers))
    with caplog.at_level(logging.ERROR, logger="ivr.dialogue"):
        start(call, caller="bad")
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "database down" in caplog.text


# --- mute --------------------------------------------------------------------------------
def mute(session: Session) -> str:
    session.vars["mute"] = True
    return "ok"


def test_mute_silences_every_later_prompt_and_timers_start_at_once(
    make_call: MakeCall,
) -> None:
    call = make_call(
        """
        start: {kind: action, hook: mute, on: {ok: p}}
        p: {kind: play, prompts: [hi, hi2], next: m}
        m: {kind: menu, prompt: menu, options: {"1": bye}, nomatch: nm1, noinput: ni1}
        """,
        hooks=hooks_of(mute=mute),
    )
    assert start(call) == [StartTimer(timer="t1", seconds=5.0)]
    assert call.session.muted
    assert call.handle(TimerFired(timer="t1")) == [StartTimer(timer="t2", seconds=5.0)]
    assert press(call, "5") == [CancelTimer(timer="t2"), StartTimer(timer="t3", seconds=5.0)]
    assert press(call, "1") == [CancelTimer(timer="t3"), Hangup(reason="normal")]


def test_unmuted_calls_of_the_same_engine_still_hear_prompts(make_plan: MakePlan) -> None:
    engine = make_plan(
        """
        start: {kind: action, hook: mute, on: {ok: p}}
        p: {kind: play, prompts: hi, next: bye}
        """,
        hooks=hooks_of(mute=lambda s: "ok" if s.caller == "loud" else mute(s)),
    )
    quiet = engine.new_call("q")
    loud = engine.new_call("l")
    assert start(quiet) == [Hangup(reason="normal")]
    assert start(loud, caller="loud") == [play("hi", 1)]


def test_mute_also_silences_the_apology(make_call: MakeCall) -> None:
    def mute_then_fail(session: Session) -> str:
        if session.vars.get("mute"):
            raise RuntimeError("second call of the hook")
        return mute(session)

    call = make_call(
        """
        start: {kind: action, hook: h, on: {ok: start2}}
        start2: {kind: action, hook: h, on: {ok: bye}}
        """,
        hooks=hooks_of(h=mute_then_fail),
    )
    assert start(call) == [Hangup(reason="error")]


@pytest.mark.parametrize(
    ("value", "target"),
    [("yes", "said yes"), ("no", "said no"), ("on", "said on"), ("True", "said True")],
)
def test_unquoted_yes_no_on_true_keys_are_the_words_as_written(
    make_call: MakeCall, value: str, target: str
) -> None:
    """YAML 1.1 (PyYAML's safe_load) reads ``yes:``, ``no:``, ``on:`` and ``True:`` as
    booleans; ivr reads every key as the text written, so a hook returning "yes" takes
    the ``yes:`` branch and the ``on:`` of a state is its branches."""
    call = make_call(
        """
        start: {kind: action, hook: h, on: {yes: a, no: b, on: c, True: d}}
        a: {kind: transfer, target: "said yes"}
        b: {kind: transfer, target: "said no"}
        c: {kind: transfer, target: "said on"}
        d: {kind: transfer, target: "said True"}
        """,
        hooks=returning(value),
    )
    assert start(call) == [Transfer(target=target)]
