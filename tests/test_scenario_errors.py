"""Scenario files that cannot be used: `ivr test` exits 2 (not 1, "failed") with one
``file:line:col`` line per problem, the place of the offending key or value; the pytest
plugin reports them as collection errors. Issue 11, items 10 and 11."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.errors import DialplanError
from ivr.testing import ScenarioRunner, load_scenarios
from tests.conftest import DEMO, PORTAL_DIALPLAN, PORTAL_EXAMPLES


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def place(path: Path, needle: str, *, nth: int = 0) -> str:
    """``file:line:col`` of the ``nth`` occurrence of ``needle`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    index = -1
    for _ in range(nth + 1):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"{path}:{line}:{column}"


def only_error(path: Path) -> str:
    """`ivr test path`: exit 2, no scenario run, exactly one problem line; returns it."""
    code, out, err = run("test", str(path))
    assert code == 2, (out, err)
    assert "FAIL" not in out and "PASS" not in out
    assert out.rstrip().endswith("0 passed, 0 failed, 1 file not usable")
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    return line


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- each kind of unusable file: exit 2, its place, its reason ------------------------------
def test_malformed_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, f"dialplan: {DEMO}\nscenarios:\n  - {{name: x, caller: '1'\n")
    line = only_error(path)
    assert line.startswith(f"{path}:4:1: YAML syntax error")


@pytest.mark.parametrize("text", ["", "\n  \n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert only_error(path).startswith(f"{path}:1:1: file is empty")


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    assert only_error(path) == f"{path}:1:1: a scenario file must be a mapping"


def test_unknown_key_is_named_with_did_you_mean(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"dialplan: {DEMO}\nscenarios:\n  - name: x\n    caller: '1'\n    keyz: '1'\n",
    )
    assert only_error(path) == (
        f"{place(path, 'keyz')}: scenarios.0.keyz: unknown key 'keyz' (did you mean 'keys'?)"
    )


def test_unknown_key_in_expect_and_at_top(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"dialplan: {DEMO}\ncaller: '1'\nkeys: '1'\nexpect: {{outcome: transferred, promts: []}}\n",
    )
    assert only_error(path) == (
        f"{place(path, 'promts')}: expect.promts: unknown key 'promts' (did you mean 'prompts'?)"
    )
    path = write(tmp_path, f"dialplan: {DEMO}\ncaller: '1'\nkey: '1'\n")
    assert (
        only_error(path) == f"{place(path, 'key:')}: key: unknown key 'key' (did you mean 'keys'?)"
    )


def test_misspelled_scenarios_key(tmp_path: Path) -> None:
    path = write(tmp_path, f"dialplan: {DEMO}\nscenarioz:\n  - {{name: x, caller: '1'}}\n")
    code, _out, err = run("test", str(path))
    assert code == 2
    assert (
        f"{place(path, 'scenarioz')}: scenarioz: unknown key 'scenarioz' (did you mean 'scenarios'?)"
        in err
    )


def test_bad_key_token(tmp_path: Path) -> None:
    path = write(
        tmp_path, f"dialplan: {DEMO}\nscenarios:\n  - {{name: x, caller: '1', keys: '1 x'}}\n"
    )
    where = place(path, "'1 x'")
    assert only_error(path) == (
        f"{where}: scenarios.0.keys: bad token 'x': use DTMF keys (0-9 * # A-D), "
        "now=KEYS, wait=N or hangup"
    )


@pytest.mark.parametrize("written", ["2026-01-05T09:00:00", "'2026-01-05T09:00:00'"])
def test_at_without_utc_offset(tmp_path: Path, written: str) -> None:
    path = write(
        tmp_path, f"dialplan: {DEMO}\nscenarios:\n  - {{name: x, caller: '1', at: {written}}}\n"
    )
    assert only_error(path) == (
        f"{place(path, written)}: scenarios.0.at: 2026-01-05T09:00:00 has no UTC offset: "
        "write e.g. 2026-01-05T09:00:00+01:00"
    )


def test_unknown_outcome_is_refused_at_load_listing_the_outcomes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"dialplan: {DEMO}\nscenarios:\n  - {{name: x, caller: '1', keys: '1', "
        "expect: {outcome: transfered}}\n",
    )
    assert only_error(path) == (
        f"{place(path, 'transfered')}: scenarios.0.expect.outcome: unknown outcome "
        "'transfered' (did you mean 'transferred'?) (one of: pulled, dialed, transferred, "
        "refused, hangup, caller_hangup)"
    )


def test_missing_dialplan_and_portal_files(tmp_path: Path) -> None:
    path = write(tmp_path, "dialplan: nope.yaml\nscenarios: [{name: x, caller: '1'}]\n")
    assert (
        only_error(path)
        == f"{place(path, 'nope.yaml')}: dialplan: no such file {tmp_path / 'nope.yaml'}"
    )
    path = write(
        tmp_path,
        f"dialplan: {PORTAL_DIALPLAN}\nportal: missing.yaml\nscenarios: [{{name: x, caller: '1'}}]\n",
    )
    assert only_error(path) == (
        f"{place(path, 'missing.yaml')}: portal: no such file {tmp_path / 'missing.yaml'}"
    )


def test_invalid_portal_file_is_reported_at_its_own_place(tmp_path: Path) -> None:
    portal = tmp_path / "portal"
    shutil.copytree(PORTAL_EXAMPLES, portal)
    config = portal / "portal.yaml"
    config.write_text(config.read_text().replace("Europe/Berlin", "Europe/Berlni"))
    path = write(
        tmp_path,
        f"dialplan: {PORTAL_DIALPLAN}\nportal: portal/portal.yaml\n"
        "scenarios: [{name: x, caller: '+491711234567'}]\n",
    )
    line = only_error(path)
    assert line.startswith(f"{place(config, 'Europe/Berlni')}: time_zone:")


def test_portal_dialplan_without_portal_names_what_is_missing(tmp_path: Path) -> None:
    path = write(tmp_path, f"dialplan: {PORTAL_DIALPLAN}\nscenarios: [{{name: x, caller: '1'}}]\n")
    line = only_error(path)
    assert line.startswith(
        f"{place(path, str(PORTAL_DIALPLAN))}: dialplan: {PORTAL_DIALPLAN} needs a portal "
        "configuration: add 'portal: CONFIG' to the scenario file"
    )
    assert "portal.identify" in line


def test_one_unusable_file_does_not_stop_the_others(tmp_path: Path) -> None:
    good = write(
        tmp_path,
        f"dialplan: {DEMO}\ncaller: '1'\nkeys: '1'\nexpect: {{outcome: transferred}}\n",
        "a.yaml",
    )
    bad = write(
        tmp_path,
        f"dialplan: {DEMO}\ncaller: '1'\nkeys: '1'\nexpect: {{outcome: bogus}}\n",
        "b.yaml",
    )
    failing = write(
        tmp_path,
        f"dialplan: {DEMO}\ncaller: '1'\nkeys: '1'\nexpect: {{outcome: dialed}}\n",
        "c.yaml",
    )
    code, out, err = run("test", str(tmp_path))
    assert code == 2  # an unusable file outranks a failed scenario (1)
    assert f"PASS {good}:1 a" in out
    assert f"FAIL {failing}:1 c" in out
    assert err.startswith(f"{bad}:4:19: expect.outcome: unknown outcome 'bogus'")
    assert out.rstrip().endswith("1 passed, 1 failed, 1 file not usable")


# --- the API: the same problems ---------------------------------------------------------
def test_load_scenarios_raises_with_places(tmp_path: Path) -> None:
    path = write(tmp_path, f"dialplan: {DEMO}\nscenarios: [{{name: x, caler: '1'}}]\n")
    with pytest.raises(DialplanError) as info:
        load_scenarios(path)
    assert [str(p) for p in info.value.problems] == [
        f"{place(path, '{name')}: scenarios.0.caller: missing required key 'caller'",
        f"{place(path, 'caler')}: scenarios.0.caler: unknown key 'caler' (did you mean 'caller'?)",
    ]


def test_run_file_reports_an_unusable_file_as_problems(tmp_path: Path) -> None:
    path = write(tmp_path, f"dialplan: {DEMO}\ncaller: '1'\nkeys: '1 x'\n")
    (result,) = ScenarioRunner().run_file(path)
    assert not result.passed
    assert result.line == 3
    assert [str(p) for p in result.problems] == result.failures
    assert result.failures[0].startswith(f"{path}:3:7: keys: bad token 'x'")
