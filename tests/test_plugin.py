"""The pytest plugin: scenario files collected as tests, the ivr_simulate fixture."""

from __future__ import annotations

import pytest

from tests.conftest import DEMO


def test_scenario_files_are_collected_and_failures_show_transcripts(
    pytester: pytest.Pytester,
) -> None:
    scenarios = pytester.mkdir("scenarios")
    (scenarios / "demo.yaml").write_text(
        f"dialplan: {DEMO}\n"
        "scenarios:\n"
        "  - {name: good, caller: '1', keys: '1', expect: {outcome: transferred}}\n"
        "  - {name: bad, caller: '1', keys: '1', expect: {prompts: [demo_welcome]}}\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
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
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_an_unusable_scenario_file_is_a_collection_error_at_its_place(
    pytester: pytest.Pytester,
) -> None:
    scenarios = pytester.mkdir("scenarios")
    (scenarios / "bad.yaml").write_text(
        f"dialplan: {DEMO}\n"
        "scenarios:\n"
        "  - {name: typo, caller: '1', keys: '1', expect: {outcome: transfered}}\n"
    )
    (scenarios / "good.yaml").write_text(
        f"dialplan: {DEMO}\ncaller: '1'\nkeys: '1'\nexpect: {{outcome: transferred}}\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting scenarios/bad.yaml*",
            "*scenarios/bad.yaml:3:60: scenarios.0.expect.outcome: unknown outcome 'transfered'"
            " (did you mean 'transferred'?)*",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
