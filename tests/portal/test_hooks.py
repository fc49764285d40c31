"""The portal hooks in complete simulated calls: who is admitted (level, area, blocking),
the greeting by the portal's local time, silent mode, PIN lockouts on the virtual clock
(in memory and in SQLite), outgoing calls, and the PIN never showing in logs or
transcripts."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ivr.dialogue import Engine
from ivr.portal.callcontrol import SimulatedPbx
from ivr.portal.hooks import find_calls, identify, period_of_day
from ivr.portal.lockout import LockoutStoreUnavailable, MemoryLockoutStore, SqliteLockoutStore
from ivr.portal.services import LockEvent, PortalServices, portal_engine
from ivr.secret import MASK
from ivr.session import Session
from ivr.sim import REFERENCE_START, SimCall, Simulator, format_transcript
from ivr.testing import simulate
from tests.conftest import DEMO_PINS, PORTAL_DIALPLAN

ERIKA = "+49 171 1234567"
ERIKA_OFFICE = "+49 89 1234567"
MAX = "+49 30 1234567"
HANS = "+49 160 5550101"
STRANGER = "+49 40 1111111"
BERLIN = ZoneInfo("Europe/Berlin")
#: listen to the greeting (and a refusal) to its end, then hang up
LISTEN = "wait=10 hangup"


def engine_for(portal: Path, **kwargs: object) -> Engine:
    return portal_engine(PORTAL_DIALPLAN, portal, **kwargs)  # type: ignore[arg-type]


def services_of(engine: Engine) -> PortalServices:
    assert isinstance(engine.context, PortalServices)
    return engine.context


def call(engine: Engine, keys: str, caller: str, start: float = REFERENCE_START) -> SimCall:
    return Simulator(engine).run(keys, caller=caller, start=start)


def states(result: SimCall) -> list[str]:
    return [line["state"] for line in result.of_type("state")]


def admitted(result: SimCall) -> bool:
    return "greet" in states(result)


def refused(result: SimCall) -> bool:
    return result.outcome == "refused" and "greet" not in states(result)


def custom_portal(
    fast_portal: Path, tmp_path: Path, name: str = "custom.yaml", **swap: str
) -> Path:
    """portal.yaml with replacements, in ``tmp_path``, naming fast_portal's directory/PBX."""
    text = (fast_portal / "portal.yaml").read_text(encoding="utf-8")
    text = text.replace("directory: directory.yaml", f"directory: {fast_portal / 'directory.yaml'}")
    text = text.replace("pbx: pbx.yaml", f"pbx: {fast_portal / 'pbx.yaml'}")
    for old, new in swap.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def berlin(hour: int, minute: int = 0, month: int = 1, day: int = 5) -> float:
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN).timestamp()


# --- identify: level, area, blocking ---------------------------------------------------------
@pytest.mark.parametrize(
    ("portal", "caller", "employee"),
    [
        ("portal.yaml", ERIKA, "erika"),
        ("portal.yaml", ERIKA_OFFICE, "erika"),
        ("portal.yaml", "0171 1234567", "erika"),
        ("portal.yaml", "0049 171 1234567", "erika"),
        ("portal.yaml", HANS, "hans"),
        ("portal.yaml", MAX, None),  # group Filiale-Nord, portal of Zentrale
        ("company.yaml", MAX, "max"),
        ("company.yaml", ERIKA, "erika"),
        ("company.yaml", HANS, "hans"),
        ("area.yaml", ERIKA, "erika"),  # area Vertrieb
        ("area.yaml", HANS, None),  # area Einkauf
        ("area.yaml", MAX, None),
        ("portal.yaml", STRANGER, None),
        ("company.yaml", STRANGER, None),
        ("portal.yaml", "", None),
        ("portal.yaml", "anonymous", None),
    ],
)
def test_identify_admits_and_refuses(
    fast_portal: Path, portal: str, caller: str, employee: str | None
) -> None:
    result = call(engine_for(fast_portal / portal), LISTEN, caller)
    if employee is None:
        assert refused(result)
        assert result.prompts() == ["portal_refused"]
    else:
        assert admitted(result) and result.outcome == "caller_hangup"
        assert "portal_refused" not in result.prompts()


def test_identify_sets_the_session(fast_portal: Path) -> None:
    engine = engine_for(fast_portal / "portal.yaml")
    nine = lambda: berlin(9)  # noqa: E731
    session = Session(call_id="t", caller=ERIKA_OFFICE, context=engine.context, clock=nine)
    assert identify(session) == "admitted"
    assert {k: session.vars[k] for k in session.vars} == {
        "mute": False,
        "portal_number": "+4930123454100",
        "portal_name": "Anywhere Portal Zentrale",
        "pin_required": True,
        "period": "morning",
        "employee": "erika",
        "employee_name": "Erika Mustermann",
    }
    session = Session(call_id="t", caller=MAX, context=engine.context, clock=nine)
    assert identify(session) == "refused"
    assert "employee" not in session.vars


def test_admitted_callers_pin_leads_to_their_own_call(fast_portal: Path) -> None:
    engine = engine_for(fast_portal / "company.yaml")
    result = call(engine, f"{DEMO_PINS['max']}# *11 hangup", MAX)
    assert "portal_no_calls" in result.prompts()  # admitted, PIN right, Max has no call
    result = call(engine, f"{DEMO_PINS['hans']}# *11", HANS)
    assert result.outcome == "pulled"
    assert result.of_type("pull") == [
        {"t": result.of_type("pull")[0]["t"], "type": "pull", "call": "call-hans-2"}
    ]  # the most recent of two
    assert "portal_several_calls" in result.prompts()


def test_a_blocked_incoming_prefix_refuses_the_caller(fast_portal: Path, tmp_path: Path) -> None:
    portal = custom_portal(
        fast_portal,
        tmp_path,
        **{'outgoing: ["0900", "0137"]': 'outgoing: ["0900"]\n  incoming: ["0171"]'},
    )
    engine = engine_for(portal)
    assert refused(call(engine, LISTEN, ERIKA))
    assert refused(call(engine, LISTEN, "0171 1234567"))
    assert admitted(call(engine, LISTEN, ERIKA_OFFICE))  # her other number is not blocked
    assert admitted(call(engine, LISTEN, HANS))


def test_a_blocked_incoming_range_refuses_the_caller(fast_portal: Path, tmp_path: Path) -> None:
    portal = custom_portal(
        fast_portal,
        tmp_path,
        **{
            "level: group": "level: company",
            'outgoing: ["0900", "0137"]': ('incoming: ["0301234000-0301234999"]'),
        },
    )
    engine = engine_for(portal)
    assert refused(call(engine, LISTEN, MAX))  # +49 30 1234567 is in the range
    assert admitted(call(engine, LISTEN, ERIKA))


def test_pin_on_but_no_pin_set_is_refused(fast_portal: Path, tmp_path: Path) -> None:
    directory = tmp_path / "directory.yaml"
    text = (fast_portal / "directory.yaml").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.strip().startswith("pin_hash")]
    directory.write_text("\n".join(lines) + "\n", encoding="utf-8")
    portal = custom_portal(
        fast_portal,
        tmp_path,
        **{f"directory: {fast_portal / 'directory.yaml'}": (f"directory: {directory}")},
    )
    assert refused(call(engine_for(portal), "4711# *11", ERIKA))
    silent = custom_portal(
        fast_portal,
        tmp_path,
        "nopin.yaml",
        **{
            f"directory: {fast_portal / 'directory.yaml'}": f"directory: {directory}",
            "pin_authentication: true": "pin_authentication: false",
        },
    )
    assert call(engine_for(silent), "*11", ERIKA).outcome == "pulled"


# --- the greeting by the portal's local time ---------------------------------------------------
@pytest.mark.parametrize(
    ("hour", "minute", "month", "greeting"),
    [
        (7, 0, 1, "portal_good_morning"),
        (13, 0, 1, "portal_good_day"),
        (20, 0, 1, "portal_good_evening"),
        (7, 0, 7, "portal_good_morning"),  # summer time (CEST)
        (13, 0, 7, "portal_good_day"),
        (20, 0, 7, "portal_good_evening"),
        (3, 59, 1, "portal_good_evening"),
        (4, 0, 1, "portal_good_morning"),
        (10, 59, 1, "portal_good_morning"),
        (11, 0, 1, "portal_good_day"),
        (17, 59, 7, "portal_good_day"),
        (18, 0, 7, "portal_good_evening"),
        (0, 0, 1, "portal_good_evening"),
    ],
)
def test_greeting_by_berlin_time(
    fast_portal: Path, hour: int, minute: int, month: int, greeting: str
) -> None:
    result = call(
        engine_for(fast_portal / "portal.yaml"), LISTEN, ERIKA, start=berlin(hour, minute, month)
    )
    assert result.prompts()[:2] == [greeting, "portal_welcome"]


def test_the_greeting_follows_the_portals_time_zone(fast_portal: Path, tmp_path: Path) -> None:
    portal = custom_portal(
        fast_portal, tmp_path, **{"time_zone: Europe/Berlin": "time_zone: America/New_York"}
    )
    # 13:00 in Berlin is 07:00 in New York; 02:00 in Berlin is 20:00 the day before there
    assert call(engine_for(portal), LISTEN, ERIKA, start=berlin(13)).prompts()[0] == (
        "portal_good_morning"
    )
    assert call(engine_for(portal), LISTEN, ERIKA, start=berlin(2)).prompts()[0] == (
        "portal_good_evening"
    )


@pytest.mark.parametrize(
    ("hour", "period"),
    [(h, "morning") for h in range(4, 11)]
    + [(h, "day") for h in range(11, 18)]
    + [(h, "evening") for h in (*range(18, 24), 0, 1, 2, 3)],
)
def test_period_of_day(hour: int, period: str) -> None:
    assert period_of_day(hour) == period


# --- silent mode -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("portal", "keys", "caller", "outcome"),
    [
        ("silent.yaml", "*11", ERIKA, "pulled"),
        ("silent.yaml", "*11", HANS, "pulled"),  # several calls: no announcement either
        ("silent.yaml", "0301234567#", ERIKA, "dialed"),
        ("silent.yaml", "*11", MAX, "refused"),
        ("silent.yaml", "*11", STRANGER, "refused"),
        ("silent.yaml", "09001234567# hangup", ERIKA, "caller_hangup"),  # blocked, silently
        ("silent.yaml", "", ERIKA, "hangup"),  # no input at all: gives up without a sound
        ("silent_pin.yaml", "4711# *11", ERIKA, "pulled"),
        ("silent_pin.yaml", "1111# 2222# 3333#", ERIKA, "hangup"),
        ("silent_pin.yaml", "12# 4711# *11", ERIKA, "pulled"),  # invalid input, silently
    ],
)
def test_silent_mode_mutes_everything(
    fast_portal: Path, portal: str, keys: str, caller: str, outcome: str
) -> None:
    result = call(engine_for(fast_portal / portal), keys, caller)
    assert result.outcome == outcome
    assert result.of_type("prompt") == []
    assert result.prompts() == []


def test_silent_mode_pulls_at_once(fast_portal: Path) -> None:
    result = call(engine_for(fast_portal / "silent.yaml"), "*11", ERIKA)
    assert states(result)[:4] == ["identify", "greet", "pin_gate", "menu"]
    (pull,) = result.of_type("pull")
    assert pull["call"] == "call-erika-1" and pull["t"] < 1.0


def test_normal_mode_speaks(fast_portal: Path) -> None:
    result = call(engine_for(fast_portal / "portal.yaml"), "4711# *11", ERIKA)
    assert result.outcome == "pulled"
    assert result.prompts() == [
        "portal_good_morning",
        "portal_welcome",
        "portal_enter_pin",
        "portal_menu",
        "portal_pulling",
    ]


# --- PIN and lockout on the virtual clock ---------------------------------------------------------
def test_three_wrong_pins_in_one_call_end_it(fast_portal: Path) -> None:
    result = call(engine_for(fast_portal / "portal.yaml"), "1111# 2222# 3333# 4711# *11", ERIKA)
    assert result.outcome == "hangup" and not result.of_type("pull")
    assert result.prompts().count("portal_pin_wrong") == 2
    assert result.prompts()[-2:] == ["portal_pin_too_many", "goodbye"]


def test_a_wrong_pin_then_the_right_one(fast_portal: Path) -> None:
    result = call(engine_for(fast_portal / "portal.yaml"), "1111# 4711# *11", ERIKA)
    assert result.outcome == "pulled" and "portal_pin_wrong" in result.prompts()


def test_lockout_after_five_failures_expires_by_virtual_time(fast_portal: Path) -> None:
    engine = engine_for(fast_portal / "portal.yaml")
    store = services_of(engine).lockouts
    t0 = REFERENCE_START
    first = call(engine, "1111# 2222# 3333#", ERIKA, start=t0)
    assert first.outcome == "hangup" and store.locked_until("erika") == 0.0
    second = call(engine, "5555# 6666#", ERIKA, start=t0 + 600)
    assert second.outcome == "refused"
    assert second.prompts()[-1] == "portal_locked"
    assert second.prompts().count("portal_pin_wrong") == 1  # the 4th failure; the 5th locks
    until = store.locked_until("erika")
    fifth_failure = t0 + 600 + second.lines[-1]["t"]
    assert until == pytest.approx(fifth_failure + 15 * 60)

    during = call(engine, "4711# *11", ERIKA, start=until - 1)  # the right PIN does not help
    assert refused(during) and during.prompts() == ["portal_locked"]
    assert not during.of_type("pull")
    assert admitted(call(engine, "4711# *11", HANS, start=until - 1))  # others are not locked

    after = call(engine, "4711# *11", ERIKA, start=until)
    assert after.outcome == "pulled"
    assert store.locked_until("erika") == 0.0  # the right PIN forgets the lockout


def test_the_right_pin_resets_the_failure_count(fast_portal: Path) -> None:
    engine = engine_for(fast_portal / "portal.yaml", lockouts=MemoryLockoutStore())
    t = REFERENCE_START
    assert call(engine, "1111# 2222# 3333#", ERIKA, start=t).outcome == "hangup"
    assert call(engine, "1111# 4711# hangup", ERIKA, start=t + 100).outcome == "caller_hangup"
    assert call(engine, "1111# 2222# 3333#", ERIKA, start=t + 200).outcome == "hangup"
    result = call(engine, "1111# 4711# *11", ERIKA, start=t + 300)
    assert result.outcome == "pulled"  # 4 consecutive failures at most: never locked


def test_lockouts_are_recorded_in_sqlite(fast_portal: Path, tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    engine = engine_for(fast_portal / "portal.yaml", lockouts=SqliteLockoutStore(path))
    t0 = REFERENCE_START
    assert call(engine, "1111# 2222# 3333#", ERIKA, start=t0).outcome == "hangup"
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT employee, failures, locked_until FROM lockout").fetchall()
    assert rows == [("erika", 3, 0.0)]

    assert call(engine, "1111# 2222#", ERIKA, start=t0 + 60).outcome == "refused"
    until = SqliteLockoutStore(path).locked_until("erika")
    assert t0 + 60 + 900 < until < t0 + 60 + 900 + 120

    # a restarted portal (new engine, new store on the same file) still refuses her
    restarted = engine_for(fast_portal / "portal.yaml", lockouts=SqliteLockoutStore(path))
    assert call(restarted, "4711# *11", ERIKA, start=t0 + 120).prompts() == ["portal_locked"]
    SqliteLockoutStore(path).reset("erika")  # what `ivr portal unlock` does
    assert call(restarted, "4711# *11", ERIKA, start=t0 + 180).outcome == "pulled"


def test_silent_pin_mode_locks_out_silently(fast_portal: Path) -> None:
    engine = engine_for(fast_portal / "silent_pin.yaml")
    call(engine, "1111# 2222# 3333#", ERIKA)
    result = call(engine, "1111# 2222#", ERIKA, start=REFERENCE_START + 60)
    assert result.outcome == "refused" and result.prompts() == []


# --- outgoing calls ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "number", ["09001234567", "00499001234567", "01371234567", "0900 123 45 67"]
)
def test_blocked_outgoing_numbers_are_not_dialled(fast_portal: Path, number: str) -> None:
    engine = engine_for(fast_portal / "portal.yaml")
    result = call(engine, f"4711# {number}# hangup", ERIKA)
    assert "portal_number_blocked" in result.prompts()
    assert not result.of_type("dial")
    pbx = services_of(engine).call_control
    assert isinstance(pbx, SimulatedPbx) and pbx.placed == []


@pytest.mark.parametrize(
    ("keys", "dialled", "presented"),
    [
        ("0301234567", "+49301234567", "+4930123454100"),  # outside: the public number
        ("00431234567", "+431234567", "+4930123454100"),
        ("4200", "4200", "4100"),  # inside the PBX: the extension
        ("42", "42", "4100"),
    ],
)
def test_allowed_outgoing_numbers_are_dialled(
    fast_portal: Path, keys: str, dialled: str, presented: str
) -> None:
    result = call(engine_for(fast_portal / "portal.yaml"), f"4711# {keys}#", ERIKA)
    assert result.outcome == "dialed"
    (dial,) = result.of_type("dial")
    assert (dial["number"], dial["caller_id"], dial["display_name"]) == (
        dialled,
        presented,
        "Anywhere Portal Zentrale",
    )


def test_find_calls_counts_and_picks_the_most_recent(fast_portal: Path) -> None:
    engine = engine_for(fast_portal / "portal.yaml")
    expected = {"erika": ("one", 1, "call-erika-1"), "hans": ("several", 2, "call-hans-2")}
    for who, (result, count, pulled) in expected.items():
        session = Session(call_id="t", context=engine.context, vars={"employee": who})
        assert find_calls(session) == result
        assert (session.vars["calls"], session.vars["pull_call"]) == (count, pulled)
    session = Session(call_id="t", context=engine.context, vars={"employee": "max"})
    assert find_calls(session) == "none" and session.vars["calls"] == 0


def test_testing_simulate_runs_the_portal(fast_portal: Path) -> None:
    result = simulate(
        PORTAL_DIALPLAN, keys="4711# *11", caller=ERIKA, portal=fast_portal / "portal.yaml"
    )
    assert result.outcome == "pulled"


# --- the PIN never shows ------------------------------------------------------------------------
WRONG_PINS = ("9517", "8642", "3197", "5928", "60375")


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    parts = [caplog.text]
    for record in caplog.records:
        parts += [record.getMessage(), repr(record.args), str(record.msg), record.exc_text or ""]
    return "\n".join(parts)


def test_pins_never_appear_in_logs_or_transcripts(
    fast_portal: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: everything, every library
    engine = engine_for(fast_portal / "portal.yaml")
    t = REFERENCE_START
    calls = [
        call(engine, "4711# *11", ERIKA, start=t),  # right PIN
        call(engine, "9517# 4711# 0301234567#", ERIKA, start=t + 100),  # wrong, then right
        call(engine, "8642# 3197# 5928#", ERIKA, start=t + 200),  # three wrong
        call(engine, "60375# 9517#", ERIKA, start=t + 300),  # wrong, wrong: locked out
        call(engine, "4711#", ERIKA, start=t + 400),  # locked: refused
    ]
    assert [c.outcome for c in calls] == ["pulled", "dialed", "hangup", "refused", "refused"]
    logged = _everything_logged(caplog)
    assert "PIN accepted" in logged and "wrong PIN for erika" in logged  # logs were captured
    assert "locked out" in logged
    for result in calls:
        text = format_transcript(result.lines)
        dumped = json.dumps(result.lines, ensure_ascii=False, default=str)
        for pin in (DEMO_PINS["erika"], *WRONG_PINS):
            assert pin not in logged
            assert pin not in text
            assert pin not in dumped
    for result in calls[:4]:
        assert MASK in format_transcript(result.lines)  # PINs were typed, and masked


def test_pins_never_appear_in_silent_mode_either(
    fast_portal: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engine = engine_for(fast_portal / "silent_pin.yaml")
    calls = [call(engine, "9517# 4711# *11", ERIKA), call(engine, "8642# 3197# 5928#", ERIKA)]
    assert [c.outcome for c in calls] == ["pulled", "hangup"]
    logged = _everything_logged(caplog)
    assert "wrong PIN for erika" in logged
    for result in calls:
        seen = logged + format_transcript(result.lines) + json.dumps(result.lines)
        for pin in ("4711", "9517", "8642", "3197", "5928"):
            assert pin not in seen


def test_a_pin_typed_during_the_greeting_is_masked(fast_portal: Path) -> None:
    result = call(engine_for(fast_portal / "portal.yaml"), "now=4711# *11", ERIKA)
    assert result.outcome == "pulled"  # the keys typed ahead were the PIN
    pin_keys = [line["key"] for line in result.of_type("key")][:4]
    assert pin_keys == [MASK] * 4


def test_a_lockout_is_an_event_for_alerting_with_its_source(
    fast_portal: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_for(fast_portal / "portal.yaml")
    services = services_of(engine)
    events: list[object] = []
    services.lockout_listeners.append(events.append)
    services.lockout_listeners.append(lambda event: 1 / 0)  # a broken listener harms nobody
    t0 = REFERENCE_START
    with caplog.at_level(logging.WARNING):
        call(engine, "1111# 2222# 3333#", ERIKA, start=t0)
        assert events == []
        locked = call(engine, "5555# 6666#", "0171 1234567", start=t0 + 60)
    assert locked.prompts()[-1] == "portal_locked"
    [event] = events
    assert event.employee == "erika" and event.failures == 5  # type: ignore[attr-defined]
    assert event.source.startswith("0171 1234567 (call ")  # type: ignore[attr-defined]
    lines = [r.getMessage() for r in caplog.records if r.name == "ivr.portal.lockout"]
    assert len(lines) == 1 and lines[0].startswith("LOCKOUT employee=erika until=")
    for pin in ("1111", "2222", "3333", "5555", "6666"):
        assert pin not in caplog.text
    [state] = services.lockouts.states()
    assert [f.source.split(" (")[0] for f in state.recent] == [ERIKA] * 3 + ["0171 1234567"] * 2


def test_lockouts_escalate_to_a_permanent_lock_that_only_an_unlock_lifts(
    fast_portal: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An attacker who waits out every lock: 15, 30, 60, 120 minutes, then locked for
    good — 25 guesses in all, not 5 every 15 minutes forever."""
    engine = engine_for(fast_portal / "portal.yaml")
    services = services_of(engine)
    events: list[LockEvent] = []
    services.lockout_listeners.append(events.append)
    now, guesses, lengths = REFERENCE_START, 0, []
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            now = max(now, services.lockouts.locked_until("erika")) + 1
            call(engine, "1111# 2222# 3333#", ERIKA, start=now)
            call(engine, "5555# 6666#", ERIKA, start=now + 60)
            guesses += 5
            (state,) = services.lockouts.states()
            lengths.append((state.locked_until - state.recent[-1].at) / 60)
    assert [e.lockout for e in events] == [1, 2, 3, 4, 5]
    assert lengths == [15, 30, 60, 120, float("inf")] and events[-1].permanent
    assert guesses == services.config.pin_policy.lockout().guesses_before_permanent()
    year_later = call(engine, "4711# *11", ERIKA, start=now + 365 * 24 * 3600)
    assert year_later.outcome == "refused" and "portal_locked" in year_later.prompts()
    lines = [r.getMessage() for r in caplog.records if r.name == "ivr.portal.lockout"]
    assert len(lines) == 5 and "until=unlock lockout=5 (permanent)" in lines[-1]
    services.lockouts.reset("erika")  # what `ivr portal unlock` does
    assert call(engine, "4711# *11", ERIKA, start=now + 365 * 24 * 3600 + 60).outcome == "pulled"


def test_a_caller_number_in_foreign_digits_is_refused(fast_portal: Path) -> None:
    engine = engine_for(fast_portal / "portal.yaml")
    fullwidth = "+\uff14\uff19 171 1234567"  # Erika's number in fullwidth digits
    assert refused(call(engine, LISTEN, fullwidth))
    assert admitted(call(engine, LISTEN, ERIKA))


def test_call_backs_present_the_public_number(fast_portal: Path, tmp_path: Path) -> None:
    path = custom_portal(
        fast_portal,
        tmp_path,
        **{
            'number: "4100"': 'number: "+49 40 12345 4100"',
            'number_block: "+49 30 12345"': 'number_block: "+49 40 12345"',
        },
    )
    outside = call(engine_for(path), "4711# 0301234567#", ERIKA).of_type("dial")
    inside = call(engine_for(path), "4711# 4200#", ERIKA).of_type("dial")
    assert [(d["number"], d["caller_id"]) for d in outside + inside] == [
        ("+49301234567", "+4940123454100"),
        ("4200", "4100"),
    ]


def test_an_area_of_the_same_name_in_another_group_is_refused(
    fast_portal: Path, tmp_path: Path
) -> None:
    directory = (fast_portal / "directory.yaml").read_text(encoding="utf-8")
    # Max works in group Filiale-Nord; give him an area named like Erika's (Vertrieb)
    directory = directory.replace(
        "    group: Filiale-Nord\n", "    group: Filiale-Nord\n    area: Vertrieb\n"
    )
    (tmp_path / "directory.yaml").write_text(directory, encoding="utf-8")
    portal = (fast_portal / "area.yaml").read_text(encoding="utf-8")
    portal = portal.replace("pbx: pbx.yaml", f"pbx: {fast_portal / 'pbx.yaml'}")
    (tmp_path / "area.yaml").write_text(portal, encoding="utf-8")
    engine = engine_for(tmp_path / "area.yaml")
    assert refused(call(engine, LISTEN, MAX))
    assert admitted(call(engine, LISTEN, ERIKA))


class _StoreThatFails(MemoryLockoutStore):
    """A store whose named operations fail as an unreachable database does."""

    def __init__(self, *failing: str) -> None:
        super().__init__()
        self.failing = set(failing)

    def __getattribute__(self, name: str) -> Any:
        if name in object.__getattribute__(self, "failing"):
            raise LockoutStoreUnavailable("PostgreSQL: connection refused")
        return object.__getattribute__(self, name)


def test_an_unreachable_postgresql_store_refuses_pin_entry(
    fast_portal: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ivr.portal.lockout_pg import PostgresLockoutStore

    nowhere = PostgresLockoutStore(f"postgresql://postgres@/portal?host={tmp_path}")
    engine = engine_for(fast_portal / "portal.yaml", lockouts=nowhere)
    with caplog.at_level(logging.INFO, logger="ivr"):
        result = call(engine, "4711# *11", ERIKA)
    assert result.outcome == "refused" and not result.of_type("pull")
    assert result.prompts() == ["portal_pin_unavailable"]
    assert "pin_unavailable" in states(result) and "check_pin" not in states(result)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "lockout store unavailable" in errors[0]
    assert not any(r.exc_info for r in caplog.records)  # one line, no traceback


def test_without_pin_authentication_the_store_is_not_needed(
    fast_portal: Path, tmp_path: Path
) -> None:
    config = (fast_portal / "portal.yaml").read_text()
    (fast_portal / "no_pin.yaml").write_text(
        config.replace("pin_authentication: true", "pin_authentication: false")
    )
    engine = engine_for(fast_portal / "no_pin.yaml", lockouts=_StoreThatFails("locked_until"))
    assert call(engine, "*11", ERIKA).outcome == "pulled"


def test_a_wrong_pin_that_cannot_be_counted_ends_the_call(fast_portal: Path) -> None:
    store = _StoreThatFails("record_failure")
    result = call(engine_for(fast_portal / "portal.yaml", lockouts=store), "1111# 4711#", ERIKA)
    assert result.outcome == "refused"
    assert result.prompts()[-1] == "portal_pin_unavailable"
    assert "portal_pin_wrong" not in result.prompts()  # no second guess


def test_a_store_that_fails_after_admission_refuses_the_pin(fast_portal: Path) -> None:
    store = _StoreThatFails()
    engine = engine_for(fast_portal / "portal.yaml", lockouts=store)
    real_locked_until = store.locked_until
    calls = iter([False, True])  # up for identify, down for the PIN check

    def locked_until(employee: str) -> float:
        if next(calls):
            raise LockoutStoreUnavailable("PostgreSQL: server closed the connection")
        return real_locked_until(employee)

    store.locked_until = locked_until  # type: ignore[method-assign]
    result = call(engine, "4711# *11", ERIKA)
    assert result.outcome == "refused" and not result.of_type("pull")
    assert result.prompts()[-1] == "portal_pin_unavailable"


def test_a_right_pin_is_admitted_even_if_the_reset_fails(
    fast_portal: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _StoreThatFails("reset")
    with caplog.at_level(logging.ERROR, logger="ivr"):
        result = call(engine_for(fast_portal / "portal.yaml", lockouts=store), "4711# *11", ERIKA)
    assert result.outcome == "pulled"
    assert any("failure count not reset" in r.getMessage() for r in caplog.records)
