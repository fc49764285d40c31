"""The pytest plugin: scenario files collected as tests, the ivr_simulate fixture."""

from __future__ import annotations

import pytest

from tests.conftest import DEMO


def test_scenario_files_are_collected_and_failures_show_transcripts(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nivr_scenarios = scenarios\n")
    scenarios = pytester.mkdir("scenarios")
    (scenarios / "demo.yaml").write_text(
        f"dialplan: {DEMO}\n"
        "scenarios:\n"
        "  - {name: good, caller: '1', keys: '1', expect: {outcome: transferred}}\n"
        "  - {name: bad, caller: '1', keys: '1', expect: {prompts: [demo_welcome]}}\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*scenario 'bad' failed:*",
            "*prompts: expected exactly ?'demo_welcome'?, heard*demo_connecting*",
            "*actual transcript:*",
        ]
    )


def test_ivr_simulate_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        def test_call(ivr_simulate):
            call = ivr_simulate({str(DEMO)!r}, keys="0", caller="+4917112345")
            assert call.outcome == "hangup"
            assert call.prompts() == ["demo_welcome", "demo_menu", "goodbye"]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_an_unusable_scenario_file_is_a_collection_error_at_its_place(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nivr_scenarios = scenarios\n")
    scenarios = pytester.mkdir("scenarios")
    (scenarios / "bad.yaml").write_text(
        f"dialplan: {DEMO}\n"
        "scenarios:\n"
        "  - {name: typo, caller: '1', keys: '1', expect: {outcome: transfered}}\n"
    )
    (scenarios / "good.yaml").write_text(
        f"dialplan: {DEMO}\ncaller: '1'\nkeys: '1'\nexpect: {{outcome: transferred}}\n"
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--continue-on-collection-errors"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting scenarios/bad.yaml*",
            "*scenarios/bad.yaml:3:60: scenarios.0.expect.outcome: unknown outcome 'transfered'"
            " (did you mean 'transferred'?)*",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


def test_only_asked_for_scenario_files_are_collected(pytester: pytest.Pytester) -> None:
    """An unrelated project's scenarios/*.yaml is not ours; *.ivr.yaml always is."""
    unrelated = pytester.mkdir("scenarios")
    (unrelated / "load.yaml").write_text("users: 100\nramp: [1, 2, 3]\n")  # not a dialplan test
    (pytester.path / "menu.ivr.yaml").write_text(
        f"dialplan: {DEMO}\ncaller: '1'\nkeys: '1'\nexpect: {{outcome: transferred}}\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["menu.ivr.yaml::*"])
    assert "load.yaml" not in result.stdout.str()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_ini_option_names_scenario_directories(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nivr_scenarios = checks/ivr\n")
    wanted = pytester.mkdir("checks") / "ivr"
    wanted.mkdir()
    (wanted / "demo.yaml").write_text(
        f"dialplan: {DEMO}\ncaller: '1'\nkeys: '1'\nexpect: {{outcome: transferred}}\n"
    )
    (pytester.mkdir("scenarios") / "other.yaml").write_text("not: ours\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
