"""Ending kinds (hangup, transfer, pull, dial), templates, and the event order rules."""

from __future__ import annotations

import logging

import pytest

from ivr import (
    CallHungUp,
    CallStarted,
    Dial,
    DialplanError,
    DigitReceived,
    Hangup,
    PromptFinished,
    PullCall,
    Session,
    TimerFired,
    Transfer,
    UnexpectedEventError,
)
from ivr.dialogue import Dialogue
from ivr.events import CallControlResult, Event
from tests.states.conftest import MakeCall, finish, hooks_of, play, press, start


def setting(**values: object) -> object:
    def setup(session: Session) -> None:
        session.vars.update(values)

    return hooks_of(setup=setup)


# --- hangup ------------------------------------------------------------------------------
def test_hangup_plays_its_prompts_without_bargein_then_hangs_up(make_call: MakeCall) -> None:
    call = make_call("start: {kind: hangup, prompts: [a, bye]}")
    assert start(call) == [play("a", 1, bargein=False)]
    assert press(call, "1") == []  # not interruptible
    assert finish(call, 1) == [play("bye", 2, bargein=False)]
    assert not call.ended
    assert finish(call, 2) == [Hangup(reason="normal")]
    assert call.ended
    assert call.outcome == "hangup"


def test_hangup_without_prompts_is_immediate(make_call: MakeCall) -> None:
    call = make_call("start: {kind: hangup}")
    assert start(call) == [Hangup(reason="normal")]
    assert call.ended


def test_hangup_refused(make_call: MakeCall) -> None:
    call = make_call("start: {kind: hangup, reason: refused, prompts: sorry}")
    assert start(call) == [play("sorry", 1, bargein=False)]
    assert finish(call, 1) == [Hangup(reason="refused")]
    assert call.outcome == "refused"


def test_hangup_with_an_unknown_reason_is_refused_at_load(make_call: MakeCall) -> None:
    with pytest.raises(DialplanError, match="reason"):
        make_call("start: {kind: hangup, reason: bogus}")


# --- transfer, pull, dial ------------------------------------------------------------------
def test_transfer_fills_its_target_template(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: action, hook: setup, next: t}
        t: {kind: transfer, prompts: a, target: "sip:{ext}@pbx.example"}
        """,
        hooks=setting(ext=4711),
    )
    assert start(call) == [play("a", 1, bargein=False)]
    assert finish(call, 1) == [Transfer(target="sip:4711@pbx.example")]
    assert not call.ended  # until the runtime says how the transfer went
    assert call.handle(CallControlResult(result="connected")) == []
    assert call.ended and call.outcome == "transferred"


def test_transfer_to_a_literal_target(make_call: MakeCall) -> None:
    call = make_call('start: {kind: transfer, target: "sip:sales@127.0.0.1"}')
    assert start(call) == [Transfer(target="sip:sales@127.0.0.1")]


def test_doubled_braces_are_literal_braces(make_call: MakeCall) -> None:
    call = make_call('start: {kind: transfer, target: "x{{caller}}y"}')
    assert start(call) == [Transfer(target="x{caller}y")]


def test_pull_fills_the_call_id(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: action, hook: setup, next: p}
        p: {kind: pull, call: "{pull_call}"}
        """,
        hooks=setting(pull_call="abc-123"),
    )
    assert start(call) == [PullCall(call="abc-123")]
    assert not call.ended  # waiting for the runtime's result
    assert call.handle(CallControlResult(result="connected")) == []
    assert call.ended and call.outcome == "pulled"


def test_dial_fills_number_caller_id_and_display_name(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: action, hook: setup, next: d}
        d: {kind: dial, number: "{number}", caller_id: "{portal}", display_name: "Portal {caller}"}
        """,
        hooks=setting(number="030123", portal="4100"),
    )
    assert start(call, caller="+491") == [
        Dial(number="030123", caller_id="4100", display_name="Portal +491")
    ]
    assert call.handle(CallControlResult(result="connected")) == []
    assert call.outcome == "dialed"


def test_dial_defaults_caller_id_and_display_name_to_empty(make_call: MakeCall) -> None:
    call = make_call('start: {kind: dial, number: "0301"}')
    assert start(call) == [Dial(number="0301", caller_id="", display_name="")]


def test_template_reads_collected_digits(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: collect, prompt: hi, into: ext, next: t}
        t: {kind: transfer, target: "{ext}"}
        """
    )
    start(call)
    assert press(call, "42#")[-1] == Transfer(target="42")


@pytest.mark.parametrize(
    "state",
    [
        'start: {kind: transfer, target: "sip:{nobody}@pbx"}',
        'start: {kind: pull, call: "{nobody}"}',
        'start: {kind: dial, number: "{nobody}"}',
        'start: {kind: dial, number: "0301", caller_id: "{nobody}"}',
    ],
)
def test_unset_template_variable_ends_with_apology_and_error_hangup(
    make_call: MakeCall, state: str, caplog: pytest.LogCaptureFixture
) -> None:
    call = make_call(state)
    with caplog.at_level(logging.ERROR, logger="ivr.dialogue"):
        assert start(call) == [play("apology", 1, bargein=False)]
    assert "nobody" in caplog.text and "c1" in caplog.text
    assert finish(call, 1) == [Hangup(reason="error")]
    assert call.ended


def test_empty_template_variable_counts_as_unset(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: action, hook: setup, next: t}
        t: {kind: transfer, prompts: a, target: "{ext}"}
        """,
        hooks=setting(ext=""),
        head="apology: null\n",
    )
    assert start(call) == [play("a", 1, bargein=False)]
    assert finish(call, 1) == [Hangup(reason="error")]


def test_bad_placeholder_is_refused_at_load(make_call: MakeCall) -> None:
    with pytest.raises(DialplanError, match="placeholder"):
        make_call('start: {kind: transfer, target: "{a.b}"}')


# --- event order ---------------------------------------------------------------------------
ALL_EVENTS: list[Event] = [
    DigitReceived(digit="1"),
    PromptFinished(playback=1),
    TimerFired(timer="t1"),
    CallHungUp(),
    CallStarted(caller="+49"),
]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_any_event_after_the_end_is_refused(make_call: MakeCall, event: Event) -> None:
    call = make_call("start: {kind: hangup}")
    assert start(call) == [Hangup(reason="normal")]
    assert call.ended
    with pytest.raises(UnexpectedEventError):
        call.handle(event)


@pytest.mark.parametrize("event", ALL_EVENTS[:4], ids=lambda e: type(e).__name__)
def test_events_before_call_started_are_refused(make_call: MakeCall, event: Event) -> None:
    call = make_call("start: {kind: play, prompts: hi, next: bye}")
    with pytest.raises(UnexpectedEventError):
        call.handle(event)
    assert not call.started
    assert start(call) == [play("hi", 1)]  # the call still starts normally


def test_a_second_call_started_is_refused(make_call: MakeCall) -> None:
    call = make_call("start: {kind: play, prompts: hi, next: bye}")
    start(call)
    with pytest.raises(UnexpectedEventError):
        start(call)
    assert finish(call, 1) == [play("bye", 2, bargein=False)]  # unharmed


def test_a_non_event_is_refused(make_call: MakeCall) -> None:
    call = make_call("start: {kind: play, prompts: hi, next: bye}")
    start(call)
    with pytest.raises(UnexpectedEventError):
        call.handle("1")  # type: ignore[arg-type]


def test_caller_hangup_ends_the_dialogue(make_call: MakeCall) -> None:
    call = make_call('start: {kind: menu, prompt: menu, options: {"1": bye}}')
    start(call)
    finish(call, 1)
    assert call.handle(CallHungUp(reason="bye")) == []
    assert call.ended and call.outcome == "caller_hangup"
    with pytest.raises(UnexpectedEventError):
        call.handle(TimerFired(timer="t1"))


def test_an_ended_dialogue_leaves_the_engine(make_call: MakeCall) -> None:
    call: Dialogue = make_call("start: {kind: play, prompts: hi, next: bye}")
    machine = call.engine.machine
    assert call in machine.models
    start(call)
    finish(call, 1)
    assert call in machine.models
    finish(call, 2)
    assert call.ended
    assert call not in machine.models


def test_after_an_error_hangup_further_events_are_refused(make_call: MakeCall) -> None:
    call = make_call('start: {kind: transfer, target: "{nobody}"}', head="apology: null\n")
    assert start(call) == [Hangup(reason="error")]
    with pytest.raises(UnexpectedEventError):
        call.handle(DigitReceived(digit="5"))


def test_a_failed_transfer_follows_its_branch_and_keys_meanwhile_are_dropped(
    make_call: MakeCall,
) -> None:
    call = make_call(
        """
        start: {kind: transfer, target: "sip:sales@pbx", on: {failed: sorry}}
        sorry: {kind: hangup, prompts: a}
        """
    )
    assert start(call) == [Transfer(target="sip:sales@pbx")]
    assert call.handle(DigitReceived(digit="5")) == []  # dropped while it connects
    assert call.handle(CallControlResult(result="busy")) == [play("a", 1, bargein=False)]
    assert call.typeahead == []


def test_a_result_without_any_branch_apologises_and_hangs_up(make_call: MakeCall) -> None:
    call = make_call('start: {kind: transfer, target: "sip:sales@pbx"}')
    start(call)
    out = call.handle(CallControlResult(result="failed"))
    assert out[-1] == Hangup(reason="error") or out == [play("apology", 1, bargein=False)]


def test_a_late_result_after_the_state_was_left_is_ignored(make_call: MakeCall) -> None:
    call = make_call('start: {kind: transfer, target: "sip:x@pbx", on: {failed: start}}')
    start(call)
    call.handle(CallControlResult(result="failed"))  # back to start: transfers again
    assert call.handle(CallControlResult(result="connected")) == []
    assert call.outcome == "transferred"
