"""The simulator: virtual clock, key script, transcript."""

from __future__ import annotations

import itertools

import pytest

from ivr.dialogue import Engine
from ivr.secret import MASK
from ivr.sim import (
    HangUp,
    Press,
    SimulationError,
    Simulator,
    VirtualClock,
    Wait,
    format_transcript,
    parse_script,
)


def test_clock_runs_callbacks_in_time_order_and_never_goes_back() -> None:
    clock = VirtualClock()
    seen: list[tuple[str, float]] = []
    clock.call_at(2.0, lambda: seen.append(("b", clock.now)))
    clock.call_at(1.0, lambda: seen.append(("a", clock.now)))
    cancelled = clock.call_at(1.5, lambda: seen.append(("x", clock.now)))
    clock.cancel(cancelled)
    clock.jump(1.2)
    assert seen == [("a", 1.0)]
    assert clock.now == 1.2
    with pytest.raises(ValueError):
        clock.jump(-0.1)
    assert clock.autojump() is True
    assert seen == [("a", 1.0), ("b", 2.0)]
    assert clock.autojump() is False
    assert clock.now == 2.0


def test_clock_schedules_in_the_past_at_now() -> None:
    clock = VirtualClock()
    clock.jump(5)
    clock.call_at(1.0, lambda: None)
    assert clock.next_deadline() == 5.0


def test_parse_script_tokens() -> None:
    assert parse_script("4711# wait=2.5 now=*11 hangup") == [
        Press("4711#"),
        Wait(2.5),
        Press("*11", now=True),
        HangUp(),
    ]
    assert parse_script(["1", "wait=0"]) == [Press("1"), Wait(0.0)]


@pytest.mark.parametrize(
    "token", ["x", "12a", "wait=", "wait=abc", "wait=-1", "now=", "now=E", "hang"]
)
def test_parse_script_rejects_bad_tokens_naming_them(token: str) -> None:
    with pytest.raises(SimulationError, match=f"bad token {token!r}"):
        parse_script(token)


def test_keys_wait_for_the_prompt_and_come_100ms_apart(demo_engine: Engine) -> None:
    call = Simulator(demo_engine).run("2 12345#", caller="+4917112345")
    menu = next(line for line in call.lines if line.get("id") == "demo_menu")
    keys = call.of_type("key")
    assert keys[0]["t"] == pytest.approx(menu["t"] + menu["seconds"])
    assert [k["key"] for k in keys] == list("212345#")
    gaps = [round(b["t"] - a["t"], 3) for a, b in itertools.pairwise(keys[1:])]
    assert gaps == [0.1] * 5
    assert all("bargein" not in k for k in keys)


def test_now_presses_during_the_prompt(demo_engine: Engine) -> None:
    call = Simulator(demo_engine).run("now=1", caller="+4917112345")
    key = call.of_type("key")[0]
    assert key == {"t": 0.0, "type": "key", "key": "1", "bargein": True}
    assert call.of_type("stop")
    assert call.outcome == "transferred"


def test_wait_reaches_the_no_input_timeout(demo_engine: Engine) -> None:
    call = Simulator(demo_engine).run("wait=20 0", caller="+4917112345")
    assert call.prompts()[:4] == ["demo_welcome", "demo_menu", "no_input", "demo_menu"]
    assert call.outcome == "hangup"


def test_secret_keys_are_masked_but_not_the_terminator(demo_engine: Engine) -> None:
    call = Simulator(demo_engine).run("2 12345# 1234", caller="+4917112345")
    keys = [k["key"] for k in call.of_type("key")]
    assert keys == list("212345#") + [MASK] * 4
    assert "1234" not in format_transcript(call.lines).replace("12345", "")


def test_transcript_ends_with_the_outcome_and_time_never_decreases(demo_engine: Engine) -> None:
    call = Simulator(demo_engine).run("9 wait=3 now=9 0", caller="+4917112345")
    assert call.lines[-1]["type"] == "end"
    assert call.lines[-1]["outcome"] == "hangup"
    times = [line["t"] for line in call.lines]
    assert times == sorted(times)


def test_caller_hangup(demo_engine: Engine) -> None:
    call = Simulator(demo_engine).run("wait=1 hangup 1 2 3", caller="+4917112345")
    assert call.outcome == "caller_hangup"
    assert call.of_type("key") == []


def test_estimated_durations_follow_text_length(demo_engine: Engine) -> None:
    call = Simulator(demo_engine).run("0", caller="+4917112345")
    prompts = call.of_type("prompt")
    by_id = {p["id"]: p for p in prompts}
    assert by_id["demo_menu"]["seconds"] > by_id["demo_welcome"]["seconds"] > 0


def test_prompt_durations_from_audio_win(demo_engine: Engine) -> None:
    call = Simulator(demo_engine, durations=lambda prompt, params: 1.0).run(
        "0", caller="+4917112345"
    )
    assert [p["seconds"] for p in call.of_type("prompt")] == [1.0, 1.0, 1.0]
    assert call.lines[-1]["t"] == 3.0


def test_a_call_that_never_ends_is_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ivr.dialplan import load_dialplan

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "p.yaml").write_text("hi: Hallo.\napology: Fehler.\n")
    (tmp_path / "d.yaml").write_text(
        "prompts: p\ninitial: m\nstates:\n"
        "  m: {kind: menu, prompt: hi, options: {'1': m}, on_max_noinput: m, on_max_nomatch: m}\n"
    )
    engine = Engine(load_dialplan(tmp_path / "d.yaml"))
    with pytest.raises(SimulationError, match="did not end"):
        Simulator(engine, max_seconds=120).run("", caller="1")
    assert engine.machine.models == []
