"""The portal configuration: the examples load; every bad value is refused with
``file:line:col: path: message`` naming it; the PIN-off setting warns of spoofing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.errors import DialplanError, Problem
from ivr.portal.config import PIN_OFF_WARNING, load_portal
from tests.conftest import PORTAL_EXAMPLES

#: a minimal valid configuration; line 5 is the number, value at column 9
BASE = """\
display_first_name: Anywhere
display_last_name: Portal Zentrale
group: Zentrale
time_zone: Europe/Berlin
number: "4100"
level: group
directory: directory.yaml
"""


def write(tmp_path: Path, text: str, name: str = "portal.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config(tmp_path: Path, *, number: str = '"4100"', extra: str = "", **swap: str) -> Path:
    text = BASE.replace('"4100"', number)
    for old, new in swap.items():
        text = text.replace(old, new)
    return write(tmp_path, text + extra)


def only_problem(path: Path) -> Problem:
    with pytest.raises(DialplanError) as info:
        load_portal(path)
    problems = info.value.problems
    assert len(problems) == 1, problems
    return problems[0]


# --- the examples ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["portal.yaml", "company.yaml", "area.yaml", "silent.yaml", "silent_pin.yaml"]
)
def test_the_example_configurations_load(name: str) -> None:
    loaded = load_portal(PORTAL_EXAMPLES / name)
    config = loaded.config
    assert config.number == "4100" and config.group == "Zentrale"
    assert config.time_zone == "Europe/Berlin"
    assert loaded.relative(config.directory) == PORTAL_EXAMPLES / "directory.yaml"
    assert config.blocking_profile is not None
    assert config.blocking_profile.outgoing == ["0900", "0137"]


def test_example_settings() -> None:
    def load(name: str):
        return load_portal(PORTAL_EXAMPLES / name).config

    assert load("portal.yaml").level == "group" and load("company.yaml").level == "company"
    assert load("area.yaml").area == "Vertrieb" and load("portal.yaml").area is None
    assert load("silent.yaml").silent_mode and not load("silent.yaml").pin_authentication
    assert load("silent_pin.yaml").silent_mode and load("silent_pin.yaml").pin_authentication
    policy = load("portal.yaml").pin_policy
    assert (policy.attempts_per_call, policy.lockout_failures, policy.lockout_minutes) == (3, 5, 15)
    assert policy.lockout().seconds == 900 and policy.lockout().failures == 5


def test_name_is_first_and_last_name(tmp_path: Path) -> None:
    assert load_portal(PORTAL_EXAMPLES / "portal.yaml").config.name == "Anywhere Portal Zentrale"
    path = config(tmp_path, **{"Anywhere": "Zürich-Süd 2", "Portal Zentrale": "Büro (#1)"})
    assert load_portal(path).config.name == "Zürich-Süd 2 Büro (#1)"


def test_defaults(tmp_path: Path) -> None:
    loaded = load_portal(config(tmp_path))
    c = loaded.config
    assert (c.silent_mode, c.pin_authentication, c.magentaeins_integration) == (False, True, False)
    assert c.area is None and c.blocking_profile is None and c.region == "DE"
    assert loaded.warnings == ()


# --- the number -------------------------------------------------------------------------
@pytest.mark.parametrize("number", ["7712", "7800", "77", "780"])
def test_numbers_beginning_77_or_78_are_refused(tmp_path: Path, number: str) -> None:
    path = config(tmp_path, number=f'"{number}"')
    assert str(only_problem(path)) == (
        f"{path}:5:9: number: number '{number}': internal numbers beginning 77 or 78 are not usable"
    )


@pytest.mark.parametrize("number", ["7712", "78"])
def test_77_and_78_are_refused_with_magentaeins_too(tmp_path: Path, number: str) -> None:
    path = config(tmp_path, number=f'"{number}"', extra="magentaeins_integration: true\n")
    problem = only_problem(path)
    assert (problem.line, problem.column, problem.path) == (5, 9, "number")
    assert f"'{number}'" in problem.message and "77 or 78" in problem.message


@pytest.mark.parametrize(
    ("number", "rule"),
    [
        ("42", "no two-digit numbers"),
        ("10", "no two-digit numbers"),
        ("0123", "no numbers beginning 0"),
        ("0", "no numbers beginning 0"),
        ("911", "not usable with MagentaEINS"),
    ],
)
def test_magentaeins_rules(tmp_path: Path, number: str, rule: str) -> None:
    path = config(tmp_path, number=f'"{number}"', extra="magentaeins_integration: true\n")
    problem = only_problem(path)
    assert str(problem).startswith(f"{path}:5:9: number: ")
    assert f"'{number}'" in problem.message and rule in problem.message
    assert "MagentaEINS" in problem.message
    # the same number is fine without the integration
    assert load_portal(config(tmp_path, number=f'"{number}"')).config.number == number
    path = config(tmp_path, number=f'"{number}"', extra="magentaeins_integration: false\n")
    assert load_portal(path).config.number == number


@pytest.mark.parametrize("number", ["9110", "4100", "100", "99999"])
def test_magentaeins_allows_other_numbers(tmp_path: Path, number: str) -> None:
    path = config(tmp_path, number=f'"{number}"', extra="magentaeins_integration: true\n")
    assert load_portal(path).config.number == number


def test_a_number_given_as_yaml_int_must_be_quoted(tmp_path: Path) -> None:
    path = config(tmp_path, number="4100")
    assert (
        str(only_problem(path)) == f'{path}:5:9: number: write the number as text: number: "4100"'
    )


def test_the_quote_hint_shows_the_number_as_written(tmp_path: Path) -> None:
    problem = only_problem(config(tmp_path, number="0123"))
    assert "0123" in problem.message


@pytest.mark.parametrize("number", ['"41 00"', '"4100a"', '""', '"-4100"'])
def test_a_number_is_digits_only(tmp_path: Path, number: str) -> None:
    problem = only_problem(config(tmp_path, number=number))
    assert (problem.line, problem.column, problem.path) == (5, 9, "number")
    assert problem.message == (
        f"number {number.strip(chr(34))!r}: digits only (or a public number: +...)"
    )


@pytest.mark.parametrize("number", ['"+494100"', '"+49000"', '"+4\uff194012345250"'])
def test_a_public_number_must_be_a_valid_number(tmp_path: Path, number: str) -> None:
    problem = only_problem(config(tmp_path, number=number))
    assert problem.path == "number" and "not a valid public number" in problem.message


@pytest.mark.parametrize("number", ["true", "41.5", "[4100]"])
def test_a_number_of_another_type_is_refused(tmp_path: Path, number: str) -> None:
    problem = only_problem(config(tmp_path, number=number))
    assert (problem.line, problem.path) == (5, "number")


@pytest.mark.parametrize("number", ['"41²"', '"٤١٠٠"'])
def test_a_number_is_ascii_digits_only(tmp_path: Path, number: str) -> None:
    problem = only_problem(config(tmp_path, number=number))
    assert "digits only" in problem.message


# --- time zone, level, unknown keys -------------------------------------------------------
def test_bad_time_zone(tmp_path: Path) -> None:
    path = config(tmp_path, **{"Europe/Berlin": "Europe/Berlinn"})
    assert str(only_problem(path)) == (
        f"{path}:4:12: time_zone: 'Europe/Berlinn' is not an IANA time zone (e.g. Europe/Berlin)"
    )


@pytest.mark.parametrize("zone", ['""', "Berlin", "../../etc/passwd", "Mars/Olympus_Mons"])
def test_other_bad_time_zones(tmp_path: Path, zone: str) -> None:
    problem = only_problem(config(tmp_path, **{"Europe/Berlin": zone}))
    assert (problem.line, problem.column, problem.path) == (4, 12, "time_zone")
    assert "is not an IANA time zone" in problem.message


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata", "UTC"])
def test_good_time_zones(tmp_path: Path, zone: str) -> None:
    assert load_portal(config(tmp_path, **{"Europe/Berlin": zone})).config.time_zone == zone


def test_unknown_key_with_did_you_mean(tmp_path: Path) -> None:
    path = config(tmp_path, extra="silentmode: true\n")
    assert str(only_problem(path)) == (
        f"{path}:8:1: silentmode: unknown key 'silentmode' (did you mean 'silent_mode'?)"
    )


def test_unknown_nested_key_with_did_you_mean(tmp_path: Path) -> None:
    path = config(tmp_path, extra="pin_policy:\n  attempts: 3\n")
    assert str(only_problem(path)) == (
        f"{path}:9:3: pin_policy.attempts: unknown key 'attempts' "
        "(did you mean 'attempts_per_call'?)"
    )
    path = config(tmp_path, extra="blocking_profile:\n  outgoin: ['0900']\n")
    assert "did you mean 'outgoing'?" in str(only_problem(path))


@pytest.mark.parametrize("level", ["site", "Group", "1", "standort"])
def test_level_is_company_or_group(tmp_path: Path, level: str) -> None:
    path = config(tmp_path, **{"level: group": f"level: {level}"})
    problem = only_problem(path)
    assert str(problem).startswith(f"{path}:6:8: level: ")
    assert "'company' or 'group'" in problem.message


def test_level_error_names_the_value(tmp_path: Path) -> None:
    problem = only_problem(config(tmp_path, **{"level: group": "level: site"}))
    assert "site" in problem.message


@pytest.mark.parametrize(
    "key", ["display_first_name", "display_last_name", "group", "time_zone", "number", "level"]
)
def test_missing_required_keys(tmp_path: Path, key: str) -> None:
    text = "".join(line + "\n" for line in BASE.splitlines() if not line.startswith(key))
    problem = only_problem(write(tmp_path, text))
    assert problem.message == f"missing required key {key!r}" and problem.path == key


def test_not_a_mapping(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "- display_first_name: Anywhere\n"))
    assert "must be a mapping" in problem.message


def test_display_names_printable_and_trimmed(tmp_path: Path) -> None:
    problem = only_problem(config(tmp_path, **{"Anywhere": '" Anywhere"'}))
    assert (problem.line, problem.path) == (1, "display_first_name")
    assert "' Anywhere'" in problem.message
    problem = only_problem(config(tmp_path, **{"Portal Zentrale": "X" * 31}))
    assert (problem.line, problem.path) == (2, "display_last_name")


# --- blocking profile and region ------------------------------------------------------------
def test_a_malformed_blocking_rule_is_refused_at_its_place(tmp_path: Path) -> None:
    path = config(tmp_path, extra="blocking_profile:\n  outgoing: ['0900', '09x0']\n")
    problem = only_problem(path)
    assert problem.line == 9 and problem.path.startswith("blocking_profile.outgoing")
    assert "'09x0'" in problem.message


def test_the_blocking_profile_is_parsed(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        extra="blocking_profile:\n  name: S\n  incoming: ['0171']\n"
        "  outgoing: ['0900', '0301234000-0301234999']\n",
    )
    c = load_portal(path).config
    assert c.blocking_profile is not None
    profile = c.blocking_profile.profile(c.region)
    assert profile.name == "S"
    assert profile.blocks("incoming", "+49 171 1234567")
    assert profile.blocks("outgoing", "030 1234567") and profile.blocks("outgoing", "0900 1")


def test_blocking_rules_are_validated_in_the_portals_region(tmp_path: Path) -> None:
    ok = config(tmp_path, extra="region: US\nblocking_profile: {outgoing: ['1900']}\n")
    c = load_portal(ok).config
    assert c.blocking_profile is not None
    assert c.blocking_profile.profile(c.region).blocks("outgoing", "1 900 555 0100", "US")
    bad = config(tmp_path, extra="region: US\nblocking_profile: {outgoing: ['0900']}\n")
    assert "'0900'" in only_problem(bad).message


def test_an_unknown_region_is_refused(tmp_path: Path) -> None:
    problem = only_problem(config(tmp_path, extra="region: XX\n"))
    assert problem.path == "region" and "XX" in problem.message


# --- the PIN-off warning ------------------------------------------------------------------
def test_pin_off_gives_exactly_one_warning_about_spoofing(tmp_path: Path) -> None:
    path = config(tmp_path, extra="pin_authentication: false\n")
    loaded = load_portal(path)
    assert not loaded.config.pin_authentication
    (warning,) = loaded.warnings
    assert warning.severity == "warning"
    assert (warning.file, warning.line, warning.path) == (str(path), 8, "pin_authentication")
    assert "spoofed" in warning.message and warning.message == PIN_OFF_WARNING
    assert str(warning).startswith(f"{path}:8:")
    assert ": pin_authentication: warning: " in str(warning)


def test_silent_example_warns_and_pin_on_does_not(tmp_path: Path) -> None:
    (warning,) = load_portal(PORTAL_EXAMPLES / "silent.yaml").warnings
    assert warning.path == "pin_authentication" and "spoof" in warning.message
    for name in ("portal.yaml", "company.yaml", "area.yaml", "silent_pin.yaml"):
        assert load_portal(PORTAL_EXAMPLES / name).warnings == ()
    assert load_portal(config(tmp_path, extra="pin_authentication: true\n")).warnings == ()


# --- rules that cannot match, and one character policy ------------------------------------
@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ("'\uff10\uff19\uff10\uff10'", "ASCII digits"),  # fullwidth 0900
        ("'+\uff14\uff19900'", "ASCII digits"),  # +49 in fullwidth digits
        ("'0\u0669\u0660\u0660'", "ASCII digits"),  # Arabic-Indic digits
        ("'+999'", "begins with no country code"),
        ("'+0049'", "begins with no country code"),
        ("'0900123456789012345'", "longer than any phone number"),
        ("'0301234000-030123\uff14999'", "ASCII digits"),
    ],
)
def test_a_rule_that_cannot_match_a_real_number_is_an_error(
    tmp_path: Path, rule: str, why: str
) -> None:
    path = config(tmp_path, extra=f"blocking_profile:\n  outgoing: ['0137', {rule}]\n")
    problem = only_problem(path)
    assert (problem.line, problem.column) == (9, 22)
    assert problem.path == "blocking_profile.outgoing.1" and why in problem.message


@pytest.mark.parametrize("rule", ["'+4'", "'+1'", "'00'", "'0'"])
def test_wide_rules_that_can_match_are_kept(tmp_path: Path, rule: str) -> None:
    path = config(tmp_path, extra=f"blocking_profile: {{outgoing: [{rule}]}}\n")
    if rule == "'00'":  # 00 alone names no country: refused, with the reason
        assert "a country code must follow" in only_problem(path).message
    else:
        assert load_portal(path).config.blocking_profile is not None


# --- the portal's public number -----------------------------------------------------------
def public(tmp_path: Path, number: str, extra: str = "") -> Path:
    return config(tmp_path, number=f'"{number}"', extra=extra)


def test_a_public_number_in_its_block_has_an_extension(tmp_path: Path) -> None:
    path = public(tmp_path, "+49 40 12345 250", "number_block: '+49 40 12345'\n")
    c = load_portal(path).config
    assert (c.number, c.number_block, c.extension) == ("+494012345250", "+494012345", "250")
    assert c.presented_number == "+494012345250"


def test_a_public_number_needs_its_block_to_tell_the_extension(tmp_path: Path) -> None:
    problem = only_problem(public(tmp_path, "+49 40 12345250"))
    assert (problem.path, problem.line) == ("number", 5)
    assert "give number_block too" in problem.message


def test_a_public_number_that_is_the_block_itself_is_refused(tmp_path: Path) -> None:
    problem = only_problem(public(tmp_path, "+49 40 12345", "number_block: '+49 40 12345'\n"))
    assert (problem.path, problem.line) == ("number", 5)
    assert "extension is missing" in problem.message


def test_an_extension_with_a_block_presents_the_public_number(tmp_path: Path) -> None:
    c = load_portal(config(tmp_path, extra="number_block: '040 12345'\n")).config
    assert (c.extension, c.presented_number) == ("4100", "+4940123454100")


def test_an_extension_alone_presents_the_extension(tmp_path: Path) -> None:
    c = load_portal(config(tmp_path)).config
    assert (c.extension, c.presented_number, c.number_public) == ("4100", "4100", None)


def test_a_separate_public_number_is_presented(tmp_path: Path) -> None:
    c = load_portal(config(tmp_path, extra="public_number: '+49 40 9999 100'\n")).config
    assert (c.extension, c.presented_number) == ("4100", "+49409999100")


def test_a_public_number_outside_its_block_is_refused(tmp_path: Path) -> None:
    problem = only_problem(public(tmp_path, "+49 40 55555 250", "number_block: '+49 40 12345'\n"))
    assert "does not lie in number_block" in problem.message


def test_two_different_public_numbers_are_refused(tmp_path: Path) -> None:
    path = public(
        tmp_path,
        "+49 40 12345250",
        "number_block: '+49 40 12345'\npublic_number: '+49 40 9999 100'\n",
    )
    assert "must not differ" in only_problem(path).message


@pytest.mark.parametrize("extension", ["770", "7812"])
def test_the_77_78_rule_applies_to_a_public_numbers_extension(
    tmp_path: Path, extension: str
) -> None:
    path = public(tmp_path, f"+49 40 12345 {extension}", "number_block: '+49 40 12345'\n")
    problem = only_problem(path)
    assert problem.path == "number" and "77 or 78" in problem.message


@pytest.mark.parametrize(("extension", "rule"), [("911", "911"), ("25", "two-digit")])
def test_magentaeins_rules_apply_to_a_public_numbers_extension(
    tmp_path: Path, extension: str, rule: str
) -> None:
    path = public(
        tmp_path,
        f"+49 40 12345 {extension}",
        "number_block: '+49 40 12345'\nmagentaeins_integration: true\n",
    )
    assert rule in only_problem(path).message


@pytest.mark.parametrize("block", ["'+49 40 \uff112345'", "'hello'", "'00'"])
def test_a_bad_number_block_is_refused(tmp_path: Path, block: str) -> None:
    problem = only_problem(config(tmp_path, extra=f"number_block: {block}\n"))
    assert problem.path == "number_block" and problem.line == 8


def test_a_public_number_in_another_region(tmp_path: Path) -> None:
    path = public(tmp_path, "+43 1 234 5678", "region: AT\nnumber_block: '01 234'\n")
    c = load_portal(path).config
    assert (c.extension, c.presented_number) == ("5678", "+4312345678")


# --- areas lie inside groups ----------------------------------------------------------------
def test_level_company_with_an_area_is_refused_at_the_area(tmp_path: Path) -> None:
    path = config(tmp_path, **{"level: group": "level: company"}, extra="area: Vertrieb\n")
    problem = only_problem(path)
    assert (problem.path, problem.line) == ("area", 8)
    assert "level group" in problem.message


@pytest.mark.parametrize(
    ("group", "area", "excluded"),
    [
        ("Zentrale", "Vertrieb", False),
        ("Filiale-Nord", "Vertrieb", True),  # same area name, another group
        ("Zentrale", "Einkauf", True),
        ("Zentrale", None, True),
    ],
)
def test_an_area_is_matched_with_its_group(
    tmp_path: Path, group: str, area: str | None, excluded: bool
) -> None:
    from ivr.portal.directory import Employee

    c = load_portal(config(tmp_path, extra="area: Vertrieb\n")).config
    employee = Employee(name="E", group=group, area=area, numbers=("+49 30 1234567",))
    assert (c.excludes(employee) is not None) is excluded
