"""The `ivr` command line, through click's CliRunner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr.cli import main
from tests.conftest import DEMO, ROOT


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_check_clean_dialplan_exits_0() -> None:
    code, out, err = run("check", str(DEMO))
    assert code == 0
    assert "ok (10 states" in out
    assert err == ""


def test_check_errors_exit_2_with_locations(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    (tmp_path / "dialplans").mkdir()
    bad = tmp_path / "dialplans" / "d.yaml"
    bad.write_text(DEMO.read_text().replace('"0": goodbye', '"0": godbye'))
    code, _out, err = run("check", str(bad))
    assert code == 2
    line = next(line for line in DEMO.read_text().splitlines() if '"0": goodbye' in line)
    lineno = DEMO.read_text().splitlines().index(line) + 1
    col = line.index("goodbye") + 1
    assert err.strip() == (
        f"{bad}:{lineno}:{col}: states.main.options.0: unknown state 'godbye' "
        "(did you mean 'goodbye'?)"
    )


def test_check_warnings_pass_unless_strict(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    (tmp_path / "dialplans").mkdir()
    plan = tmp_path / "dialplans" / "d.yaml"
    plan.write_text(DEMO.read_text() + "  orphan:\n    kind: hangup\n")
    code, _out, err = run("check", str(plan))
    assert code == 0
    assert "warning: state 'orphan' is unreachable" in err
    code, _out, _err = run("check", "--strict", str(plan))
    assert code == 1


@pytest.mark.parametrize("content", [b"", b"\x00\xff\xfe garbage", b"- a\n- b\n", b"a: [\n"])
def test_check_bad_files_one_line_no_traceback(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    code, _out, err = run("check", str(bad))
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert err.startswith(str(bad))


def test_simulate_json_contract() -> None:
    code, out, _ = run(
        "simulate", str(DEMO), "--caller", "+4917112345", "--keys", "2 12345# 1234 0", "--json"
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert all(isinstance(line["t"], int | float) and line["type"] for line in lines)
    assert lines[-1] == {
        "t": lines[-1]["t"],
        "type": "end",
        "outcome": "hangup",
        "state": "goodbye",
    }
    prompts = [line["id"] for line in lines if line["type"] == "prompt"]
    assert prompts == [
        "demo_welcome",
        "demo_menu",
        "demo_enter_account",
        "demo_enter_pin",
        "demo_balance",
        "demo_menu",
        "goodbye",
    ]
    keys = [line["key"] for line in lines if line["type"] == "key"]
    assert "1234" not in "".join(keys[7:])
    assert [line["type"] for line in lines if line["type"] == "hangup"] == ["hangup"]


def test_simulate_readable_transcript() -> None:
    code, out, _ = run("simulate", str(DEMO), "--caller", "0171", "--keys", "1")
    assert code == 0
    assert 'demo_connecting: "Einen Moment bitte' in out
    assert out.rstrip().endswith("outcome transferred (in state sales)")


def test_simulate_bad_token_exits_2() -> None:
    code, _out, err = run("simulate", str(DEMO), "--caller", "1", "--keys", "1 x")
    assert code == 2
    assert "bad token 'x'" in err


def test_test_command_summary_and_coverage(tmp_path: Path) -> None:
    code, out, _ = run("test", str(ROOT / "tests" / "scenarios" / "demo.yaml"), "--coverage")
    assert code == 0
    assert "transitions 19/19 (100%)" in out
    assert out.rstrip().endswith("13 passed, 0 failed")


def test_test_command_failure_shows_expected_and_actual(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        f"dialplan: {DEMO}\ncaller: '1'\nkeys: '1'\n"
        "expect: {outcome: dialed, prompts: [demo_welcome]}\n"
    )
    code, out, _ = run("test", str(scenario))
    assert code == 1
    assert "FAIL" in out
    assert "outcome: expected 'dialed', got 'transferred'" in out
    assert "actual transcript:" in out
    assert "0 passed, 1 failed" in out


def test_test_command_broken_scenario_file(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"dialplan: {DEMO}\nscenarios: [{{name: x, caller: '1', bogus: 2}}]\n")
    code, out, _ = run("test", str(scenario))
    assert code == 1
    assert "scenarios.0.bogus" in out


def test_schema_written(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    code, _out, _ = run("schema", "-o", str(target))
    assert code == 0
    schema = json.loads(target.read_text())
    assert (
        schema["properties"]["states"]["additionalProperties"]["discriminator"]["propertyName"]
        == "kind"
    )


def test_graph_mermaid(tmp_path: Path) -> None:
    target = tmp_path / "g.md"
    code, _out, _ = run("graph", str(DEMO), "-o", str(target))
    assert code == 0
    text = target.read_text()
    assert "```mermaid\nstateDiagram-v2" in text
    assert "main --> sales: key 1" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed (make installs it)")
def test_graph_svg(tmp_path: Path) -> None:
    target = tmp_path / "g.svg"
    code, _out, _ = run("graph", str(DEMO), "-o", str(target))
    assert code == 0
    assert "<svg" in target.read_text()


def test_graph_unknown_format_exits_2(tmp_path: Path) -> None:
    code, _out, err = run("graph", str(DEMO), "-o", str(tmp_path / "g.gif"))
    assert code == 2
    assert "unknown format '.gif'" in err
