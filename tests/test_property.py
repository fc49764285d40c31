"""Properties over random input: the core never raises anything but its documented error,
and every call of the shipped dialplans ends within bounded virtual time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.commands import Command, Hangup, PlayPrompt, StartTimer
from ivr.dialogue import Engine
from ivr.dialplan import load_dialplan
from ivr.errors import UnexpectedEventError
from ivr.events import CallHungUp, CallStarted, DigitReceived, Event, PromptFinished, TimerFired
from ivr.portal.services import portal_engine
from ivr.sim import OUTCOMES, Simulator
from tests.conftest import PORTAL_DIALPLAN, ROOT

#: every shipped dialplan, with the portal configurations it runs under
SHIPPED = [
    (path, portal)
    for path in sorted((ROOT / "dialplans").glob("*.yaml"))
    for portal in (
        ("portal.yaml", "silent.yaml", "company.yaml", "silent_pin.yaml")
        if path == PORTAL_DIALPLAN
        else (None,)
    )
]
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ENGINES: dict[tuple[Path, str | None], Engine] = {}
#: the longest any shipped call may go on after the caller's last action
BOUND_SECONDS = 600.0
CALLERS = ["+4917112345", "+49 171 1234567", "+49 30 1234567", "+49 160 5550101"]


@pytest.fixture
def engine_for(fast_portal: Path) -> object:
    def build(case: tuple[Path, str | None]) -> Engine:
        if case not in ENGINES:
            path, portal = case
            ENGINES[case] = (
                Engine(load_dialplan(path))
                if portal is None
                else portal_engine(path, fast_portal / portal)
            )
        return ENGINES[case]

    return build


def case_id(case: tuple[Path, str | None]) -> str:
    return case[0].name + (f"+{case[1]}" if case[1] else "")


keys = st.sampled_from("0123456789*#ABCD")
actions = st.lists(
    st.one_of(
        st.tuples(st.just("digit"), keys),
        st.tuples(st.just("finish"), st.just("")),
        st.tuples(st.just("timer"), st.just("")),
        st.tuples(st.just("stale_timer"), st.text("tx0123456789", min_size=1, max_size=4)),
        st.tuples(st.just("stale_playback"), st.integers(0, 50).map(str)),
        st.tuples(st.just("hangup"), st.just("")),
        st.tuples(st.just("start"), st.just("")),
    ),
    max_size=60,
)


@pytest.mark.parametrize("case", SHIPPED, ids=case_id)
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=actions, caller=st.sampled_from(CALLERS))
def test_any_event_sequence_gives_commands_or_the_documented_error(
    engine_for: Any, case: tuple[Path, str | None], actions: list[tuple[str, str]], caller: str
) -> None:
    engine = engine_for(case)
    engine.clock = lambda: 1767600000.0
    dialogue = engine.new_call("prop")
    playing: int | None = None
    timer: str | None = None

    def feed(event: Event) -> list[Command]:
        nonlocal playing, timer
        try:
            commands = dialogue.handle(event)
        except UnexpectedEventError:
            assert dialogue.ended or not dialogue.started or isinstance(event, CallStarted)
            return []
        for command in commands:
            assert isinstance(command, Command)
            assert not (isinstance(command, Hangup) and command.reason == "error"), commands
            if isinstance(command, PlayPrompt):
                playing = command.playback
            elif isinstance(command, StartTimer):
                timer = command.timer
        return commands

    feed(CallStarted(caller=caller, called="100"))
    for action, value in actions:
        if action == "digit":
            feed(DigitReceived(digit=value))
        elif action == "finish" and playing is not None:
            feed(PromptFinished(playback=playing))
        elif action == "timer" and timer is not None:
            feed(TimerFired(timer=timer))
        elif action == "stale_timer":
            feed(TimerFired(timer=value))
        elif action == "stale_playback":
            feed(PromptFinished(playback=int(value)))
        elif action == "hangup":
            feed(CallHungUp())
        elif action == "start":
            feed(CallStarted(caller="1"))
    if not dialogue.ended:
        feed(CallHungUp())
    assert dialogue.ended
    assert dialogue not in dialogue.engine.machine.models


tokens = st.one_of(
    st.text("0123456789*#", min_size=1, max_size=6),
    st.text("0123456789*#", min_size=1, max_size=3).map(lambda k: f"now={k}"),
    st.floats(0, 30).map(lambda s: f"wait={s:.2f}"),
)


@pytest.mark.parametrize("case", SHIPPED, ids=case_id)
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(script=st.lists(tokens, max_size=12), caller=st.sampled_from(CALLERS))
def test_every_call_ends_within_bounded_virtual_time(
    engine_for: Any, case: tuple[Path, str | None], script: list[str], caller: str
) -> None:
    call = Simulator(engine_for(case), max_seconds=100_000).run(script, caller=caller)
    assert call.outcome in OUTCOMES
    last_action = max([line["t"] for line in call.lines if line["type"] == "key"] or [0.0]) + sum(
        float(t[5:]) for t in script if t.startswith("wait=")
    )
    assert call.lines[-1]["t"] <= last_action + BOUND_SECONDS
    assert not [line for line in call.of_type("hangup") if line["reason"] == "error"]
