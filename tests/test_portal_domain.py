"""The portal domain: numbers, PIN rules and hashing, lockouts, blocking, configuration,
directory, the portal CLI, and the PIN never showing up anywhere."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr import DialplanError
from ivr.cli import main
from ivr.portal.blocking import BlockingProfile, NumberRule
from ivr.portal.config import load_portal
from ivr.portal.directory import YamlDirectory
from ivr.portal.lockout import LockoutPolicy, MemoryLockoutStore, SqliteLockoutStore
from ivr.portal.numbers import prefix_to_e164, to_e164
from ivr.portal.pin import TEST_HASHER, PinRuleError, check_pin_rules, hash_pin, verify_pin
from ivr.portal.services import portal_engine
from ivr.sim import Simulator, format_transcript
from tests.conftest import PORTAL_DIALPLAN, PORTAL_EXAMPLES

ERIKA = "+491711234567"


# --- numbers -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "number", ["+49 171 1234567", "0049 171 1234567", "01711234567", "+49 (171) 123-4567"]
)
def test_every_format_is_the_same_e164(number: str) -> None:
    assert to_e164(number) == ERIKA


@pytest.mark.parametrize("junk", ["", "abc", "+", "0000000000000000000"])
def test_junk_is_not_a_number(junk: str) -> None:
    assert to_e164(junk) is None


def test_prefixes() -> None:
    assert prefix_to_e164("0900") == "+49900"
    assert prefix_to_e164("0049 30") == "+4930"
    assert prefix_to_e164("+4930") == "+4930"
    with pytest.raises(ValueError):
        prefix_to_e164("09x0")
    with pytest.raises(ValueError):
        prefix_to_e164("4100")


# --- PIN -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pin", "rule"),
    [
        ("123", "4 to 8 digits"),
        ("123456789", "4 to 8 digits"),
        ("12a4", "digits 0-9 only"),
        ("1111", "one digit repeated"),
        ("1234", "run of more than 2"),
        ("5678", "run of more than 2"),
        ("9876", "run of more than 2"),
        ("4567", "run of more than 2"),
        ("7161", "last digits of your own numbers"),  # own number, reversed tail 1617
        ("1617", "last digits of your own numbers"),
    ],
)
def test_passcode_rules_name_the_rule_not_the_pin(pin: str, rule: str) -> None:
    with pytest.raises(PinRuleError) as info:
        check_pin_rules(pin, ["+49 171 5551617"])
    assert rule in str(info.value)
    assert pin not in str(info.value)


@pytest.mark.parametrize("pin", ["4711", "2580", "1357", "13579", "90281"])
def test_good_pins_pass(pin: str) -> None:
    check_pin_rules(pin, ["+49 171 1234567"])


def test_hashes_are_salted_argon2id_and_verify_safely() -> None:
    first, second = hash_pin("4711", TEST_HASHER), hash_pin("4711", TEST_HASHER)
    assert first.startswith("$argon2id$") and first != second and "4711" not in first
    assert verify_pin(first, "4711", TEST_HASHER)
    assert not verify_pin(first, "4712", TEST_HASHER)
    assert not verify_pin("garbage", "4711", TEST_HASHER)
    assert "m=65536" in hash_pin("4711")  # production: 64 MiB, memory-hard


# --- lockouts ------------------------------------------------------------------------
@pytest.fixture(params=["memory", "sqlite"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> MemoryLockoutStore | SqliteLockoutStore:
    return (
        MemoryLockoutStore() if request.param == "memory" else SqliteLockoutStore(tmp_path / "l.db")
    )


def test_five_failures_lock_for_fifteen_minutes(
    store: MemoryLockoutStore | SqliteLockoutStore,
) -> None:
    policy = LockoutPolicy()
    counts = [store.record_failure("erika", 100.0 + i, policy) for i in range(5)]
    assert counts == [1, 2, 3, 4, 0]  # the fifth locks and starts counting anew
    assert store.locked_until("erika") == 104.0 + 900
    assert store.locked_until("max") == 0.0
    store.reset("erika")
    assert store.locked_until("erika") == 0.0


def test_sqlite_survives_a_restart_and_is_shared(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    first, second = SqliteLockoutStore(path), SqliteLockoutStore(path)
    for i in range(5):
        first.record_failure("erika", float(i), LockoutPolicy())
    assert second.locked_until("erika") == 904.0
    assert SqliteLockoutStore(path).locked_until("erika") == 904.0


# --- blocking ------------------------------------------------------------------------
def test_prefix_and_range_rules() -> None:
    profile = BlockingProfile(
        outgoing=(NumberRule.parse("0900"), NumberRule.parse("0301234000-0301234999"))
    )
    assert profile.blocks("outgoing", "0900 123456")
    assert profile.blocks("outgoing", "+49 900 123456")
    assert not profile.blocks("incoming", "0900 123456")
    assert profile.blocks("outgoing", "030 1234000") and profile.blocks("outgoing", "0301234999")
    assert not profile.blocks("outgoing", "0301235000")
    assert not profile.blocks("outgoing", "garbage")
    with pytest.raises(ValueError):
        NumberRule.parse("0301234999-0301234000")


# --- configuration and directory -----------------------------------------------------
def portal_with(tmp_path: Path, **changes: str) -> Path:
    shutil.copytree(PORTAL_EXAMPLES, tmp_path / "portal")
    path = tmp_path / "portal" / "portal.yaml"
    text = path.read_text()
    for old, new in changes.items():
        text = text.replace(old, new)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ('number: "7712"', "'7712': internal numbers beginning 77 or 78 are not usable"),
        ('number: "7812"', "'7812': internal numbers beginning 77 or 78"),
        ("number: 4100", "write the number as text"),
        ("time_zone: Europe/Berlinn", "'Europe/Berlinn' is not an IANA time zone"),
        ("level: site", "level: 'site': input should be 'company' or 'group'"),
    ],
)
def test_bad_configuration_names_the_value(tmp_path: Path, replace: str, message: str) -> None:
    key = replace.split(":")[0]
    original = {
        "number": 'number: "4100"',
        "time_zone": "time_zone: Europe/Berlin",
        "level": "level: group",
    }[key]
    path = portal_with(tmp_path, **{original: replace})
    with pytest.raises(DialplanError) as info:
        load_portal(path)
    (problem,) = info.value.problems
    line = next(
        i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(f"{key}:")
    )
    assert str(problem).startswith(f"{path}:{line}:")
    assert message in str(problem)


@pytest.mark.parametrize(
    ("number", "bad"), [("42", True), ("0123", True), ("911", True), ("4100", False)]
)
def test_magentaeins_rules(tmp_path: Path, number: str, bad: bool) -> None:
    path = portal_with(
        tmp_path,
        **{
            'number: "4100"': f'number: "{number}"',
            "magentaeins_integration: false": "magentaeins_integration: true",
        },
    )
    if bad:
        with pytest.raises(DialplanError, match=f"'{number}'"):
            load_portal(path)
    else:
        assert load_portal(path).config.number == number
        assert load_portal(portal_with(tmp_path / "b", **{'number: "4100"': 'number: "42"'}))


def test_name_and_the_pin_off_warning() -> None:
    loaded = load_portal(PORTAL_EXAMPLES / "silent.yaml")
    assert loaded.config.name == "Anywhere Portal Zentrale"
    (warning,) = loaded.warnings
    assert warning.severity == "warning" and warning.path == "pin_authentication"
    assert "spoofed" in warning.message
    assert load_portal(PORTAL_EXAMPLES / "portal.yaml").warnings == ()


@pytest.mark.parametrize(
    ("numbers", "message"),
    [
        ("[]", "0 parallel-ringing numbers"),
        (
            '["+4930 1", "+4930 2", "+4930 3", "+4930 4", "+4930 5", "+4930 6"]',
            "6 parallel-ringing numbers",
        ),
        ('["hello"]', "'hello' is not a phone number"),
    ],
)
def test_directory_numbers(tmp_path: Path, numbers: str, message: str) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(f"employees:\n  x:\n    name: X\n    group: G\n    numbers: {numbers}\n")
    with pytest.raises(DialplanError) as info:
        YamlDirectory.load(path)
    (problem,) = info.value.problems
    assert str(problem).startswith(f"{path}:5:14: employees.x.numbers:") and message in str(problem)


def test_directory_shared_number_and_bad_hash(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(
        "employees:\n  a: {name: A, group: G, numbers: ['+49 30 1234567']}\n"
        "  b: {name: B, group: G, numbers: ['030 1234567']}\n"
        "  c: {name: C, group: G, numbers: ['040 1234567'], pin_hash: '4711'}\n"
    )
    with pytest.raises(DialplanError) as info:
        YamlDirectory.load(path)
    found = " | ".join(str(p) for p in info.value.problems)
    assert "already belongs to 'a'" in found and "must be an argon2 hash" in found
    assert "4711'" not in found.replace("pin_hash must", "")


# --- CLI -----------------------------------------------------------------------------
def test_set_pin_writes_only_a_hash_and_keeps_comments(tmp_path: Path) -> None:
    directory = portal_with(tmp_path).with_name("directory.yaml")
    result = CliRunner().invoke(
        main, ["portal", "set-pin", str(directory), "erika"], input="13579\n"
    )
    assert result.exit_code == 0, result.output
    text = directory.read_text()
    assert "13579" not in result.output + text
    assert "# Demo directory of the Anywhere Portal" in text
    assert verify_pin(YamlDirectory.load(directory).employees["erika"].pin_hash or "", "13579")


def test_set_pin_refuses_a_weak_pin_naming_the_rule(tmp_path: Path) -> None:
    directory = portal_with(tmp_path).with_name("directory.yaml")
    before = directory.read_text()
    result = CliRunner().invoke(
        main, ["portal", "set-pin", str(directory), "erika"], input="1234\n"
    )
    assert result.exit_code == 2
    assert "run of more than 2" in result.stderr and "1234" not in result.stderr
    assert directory.read_text() == before
    result = CliRunner().invoke(
        main, ["portal", "set-pin", str(directory), "nobody"], input="13579\n"
    )
    assert result.exit_code == 2 and "no employee 'nobody'" in result.stderr


def test_unlock_clears_a_lockout(tmp_path: Path) -> None:
    directory = portal_with(tmp_path).with_name("directory.yaml")
    store = SqliteLockoutStore(tmp_path / "l.db")
    for i in range(5):  # a lock that lasts (unlocking an expired one is refused: exit 1)
        store.record_failure("erika", time.time() + i, LockoutPolicy())
    result = CliRunner().invoke(
        main, ["portal", "unlock", str(directory), "erika", "--store", str(tmp_path / "l.db")]
    )
    assert result.exit_code == 0
    assert store.locked_until("erika") == 0.0


def test_locks_lists_who_is_locked_and_where_the_failures_came_from(tmp_path: Path) -> None:
    import json
    import time

    directory = portal_with(tmp_path).with_name("directory.yaml")
    store_path = tmp_path / "l.db"
    args = ["portal", "locks", str(directory), "--store", str(store_path)]
    assert "nobody has failed a PIN yet" in CliRunner().invoke(main, args).output
    store = SqliteLockoutStore(store_path)
    now = time.time()
    for i in range(5):
        store.record_failure("erika", now + i, LockoutPolicy(), f"+4930999{i} (call x{i})")
    store.record_failure("max", now, LockoutPolicy(), "+4989555 (call y)")
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0
    assert "erika: 0 failure(s) in a row, LOCKED until " in table.output
    assert "+49309994 (call x4)" in table.output and "max: 1 failure(s) in a row, -" in table.output
    rows = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    assert [(r["employee"], r["locked"], len(r["recent"])) for r in rows] == [
        ("erika", True, 5),
        ("max", False, 1),
    ]


def test_check_portal_exit_codes(tmp_path: Path) -> None:
    ok = CliRunner().invoke(
        main, ["check", "--portal", str(PORTAL_EXAMPLES / "portal.yaml"), str(PORTAL_DIALPLAN)]
    )
    assert ok.exit_code == 0 and ok.stderr == ""
    warn = CliRunner().invoke(
        main, ["check", "--portal", str(PORTAL_EXAMPLES / "silent.yaml"), str(PORTAL_DIALPLAN)]
    )
    assert warn.exit_code == 0 and "spoofed" in warn.stderr
    strict = CliRunner().invoke(
        main,
        [
            "check",
            "--strict",
            "--portal",
            str(PORTAL_EXAMPLES / "silent.yaml"),
            str(PORTAL_DIALPLAN),
        ],
    )
    assert strict.exit_code == 1
    bad = portal_with(tmp_path, **{'number: "4100"': 'number: "7712"'})
    broken = CliRunner().invoke(main, ["check", "--portal", str(bad), str(PORTAL_DIALPLAN)])
    assert broken.exit_code == 2 and "'7712'" in broken.stderr


def simulate_json(portal: str, caller: str, keys: str) -> list[dict[str, object]]:
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            str(PORTAL_DIALPLAN),
            "--portal",
            str(PORTAL_EXAMPLES / portal),
            "--caller",
            caller,
            "--keys",
            keys,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_documented_example_calls() -> None:
    lines = simulate_json("portal.yaml", ERIKA, "4711# *11")
    assert lines[-1]["type"] == "end" and lines[-1]["outcome"] == "pulled"
    lines = simulate_json("portal.yaml", ERIKA, "1111# 2222# 3333#")
    assert lines[-1]["outcome"] == "hangup" and not [x for x in lines if x["type"] == "pull"]
    assert simulate_json("portal.yaml", "+49301234567", "2580# *11")[-1]["outcome"] == "refused"
    assert simulate_json("company.yaml", "+49301234567", "2580# *11")[-1]["outcome"] != "refused"
    lines = simulate_json("silent.yaml", ERIKA, "*11")
    assert lines[-1]["outcome"] == "pulled" and not [x for x in lines if x["type"] == "prompt"]


# --- the PIN never shows ---------------------------------------------------------------
def test_pin_digits_appear_in_no_log_transcript_or_error(
    fast_portal: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, transitions' debug logs included
    engine = portal_engine(PORTAL_DIALPLAN, fast_portal / "portal.yaml")
    simulator = Simulator(engine)
    calls = [
        simulator.run("4711# 0301234567#", caller=ERIKA),
        simulator.run("9517# 4711# hangup", caller=ERIKA),
        simulator.run("8642# 9531# 7395#", caller=ERIKA),
        simulator.run("8642# 9531#", caller=ERIKA),  # the lockout
    ]
    assert [c.outcome for c in calls] == ["dialed", "caller_hangup", "hangup", "refused"]
    seen = caplog.text + "".join(format_transcript(c.lines) + json.dumps(c.lines) for c in calls)
    for pin in ("4711", "9517", "8642", "9531", "7395"):
        assert pin not in seen
    assert "wrong PIN for erika" in caplog.text  # the log does speak of it, without digits
