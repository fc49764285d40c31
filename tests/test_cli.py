"""The `ivr` command line, through click's CliRunner."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.portal.lockout import LockoutPolicy, SqliteLockoutStore
from tests.conftest import DEMO, PORTAL_DIALPLAN, PORTAL_EXAMPLES, ROOT
from tests.postgres import PostgresCluster


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
    code, out, err = run("test", str(scenario))
    assert code == 2  # the file could not be used: an error, not a failed scenario
    assert err == f"{scenario}:2:36: scenarios.0.bogus: unknown key 'bogus'\n"
    assert out == "0 passed, 0 failed, 1 file not usable\n"


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


# --- issue 11.6: `ivr portal unlock` acts on the store `ivr serve` uses ------------------------
def portal_copy(tmp_path: Path, extra: str = "") -> Path:
    """A copy of examples/portal (without a lockout file); ``extra`` appended to
    portal.yaml. Returns the configuration's path."""
    folder = tmp_path / "portal"
    shutil.copytree(PORTAL_EXAMPLES, folder, ignore=shutil.ignore_patterns(".ivr-lockouts*"))
    config = folder / "portal.yaml"
    config.write_text(config.read_text() + extra)
    return config


def lock_out(path: Path, employee: str = "erika") -> SqliteLockoutStore:
    store = SqliteLockoutStore(path)
    for i in range(5):
        store.record_failure(employee, time.time() + i, LockoutPolicy(), f"+4930999{i} (call x)")
    return store


def test_unlock_acts_on_the_lockout_store_of_the_portal_configuration(tmp_path: Path) -> None:
    from ivr.sip.serve import serving_engine

    config = portal_copy(tmp_path, "lockout_store: state/lockouts.sqlite\n")
    used = config.parent / "state" / "lockouts.sqlite"
    assert serving_engine(PORTAL_DIALPLAN, config).context.lockouts.path == used  # ivr serve's
    store = lock_out(used)
    beside = config.parent / ".ivr-lockouts.sqlite"  # the old default: holds no lock
    code, out, err = run("portal", "unlock", str(config.with_name("directory.yaml")), "erika")
    assert code == 2 and "does not say which lockout store" in err and "--portal CONFIG" in err
    code, out, err = run("portal", "unlock", "--store", str(beside), "erika")
    assert (code, out) == (1, "")
    assert err.strip() == f"'erika' is not locked out: no lockout file {beside}"
    assert not beside.exists()
    code, out, _err = run("portal", "locks", "--portal", str(config))
    assert code == 0 and "erika: 0 failure(s) in a row, LOCKED until " in out
    assert store.locked_until("erika") > time.time()
    code, out, err = run("portal", "unlock", "--portal", str(config), "erika")
    assert code == 0 and out.startswith("'erika' unlocked (was locked until ") and str(used) in out
    assert store.locked_until("erika") == 0.0
    code, out, err = run("portal", "unlock", "--portal", str(config), "erika")
    assert (code, out) == (1, "")
    assert err.strip() == f"'erika' is not locked out in {used}; nothing changed"


def test_unlock_never_reports_success_without_a_lock(tmp_path: Path) -> None:
    config = portal_copy(tmp_path)  # no lockout_store: the file beside the directory
    used = config.parent / ".ivr-lockouts.sqlite"
    store = lock_out(used, "max")
    store.record_failure("erika", time.time(), LockoutPolicy(), "+4930999 (call y)")
    code, out, err = run("portal", "unlock", "--portal", str(config), "erika")
    assert (code, out) == (1, "")
    assert "'erika' is not locked out" in err
    assert "(1 failed PIN(s) in a row, 0 earlier lockout(s): kept)" in err
    assert store.states()[0].failures == 1
    code, _out, err = run("portal", "unlock", "--portal", str(config), "nobody")
    assert code == 2 and "no employee 'nobody'" in err
    expired = SqliteLockoutStore(tmp_path / "old.sqlite")
    for i in range(5):
        expired.record_failure("erika", time.time() - 3600 + i, LockoutPolicy())
    code, _out, err = run("portal", "unlock", "--store", str(tmp_path / "old.sqlite"), "erika")
    assert code == 1 and "not locked out" in err
    code, out, _err = run("portal", "unlock", "--portal", str(config), "max")
    assert code == 0 and "'max' unlocked" in out


def test_locks_and_unlock_show_a_permanent_lock(tmp_path: Path) -> None:
    config = portal_copy(tmp_path)
    used = config.parent / ".ivr-lockouts.sqlite"
    lock_out(used)
    with sqlite3.connect(used) as db:  # as an escalated lockout stores it
        db.execute("UPDATE lockout SET locked_until = ?", (math.inf,))
    code, out, _err = run("portal", "locks", "--portal", str(config))
    assert (
        code == 0 and "erika: 0 failure(s) in a row, LOCKED until an administrator unlocks" in out
    )
    code, out, _err = run("portal", "locks", "--portal", str(config), "--json")
    (row,) = json.loads(out)
    assert (row["locked"], row["permanent"], row["locked_until"]) == (True, True, None)
    assert row["lockouts"] == 1
    code, out, _err = run("portal", "unlock", "--portal", str(config), "erika")
    assert code == 0 and "was locked until an administrator unlocks" in out


def test_portal_commands_name_the_portal_the_same_way(tmp_path: Path) -> None:
    config = portal_copy(tmp_path)
    code, _out, err = run("portal", "locks")
    assert code == 2 and "give --portal CONFIG" in err
    code, out, _err = run("portal", "locks", "--portal", str(config))
    assert code == 0 and "nobody has failed a PIN yet" in out
    code, _out, err = run("portal", "unlock", "--portal", str(config), "x", "erika")
    assert code == 2 and "give no DIRECTORY" in err
    result = CliRunner().invoke(
        main, ["portal", "set-pin", "--portal", str(config), "erika"], input="13579\n"
    )
    assert result.exit_code == 0, result.output
    assert str(config.with_name("directory.yaml")) in result.stdout


# --- issue 11.11: hooks that need services the command did not get -------------------------
def test_simulate_portal_dialplan_without_portal_is_a_usage_error() -> None:
    code, out, err = run(
        "simulate", str(PORTAL_DIALPLAN), "--caller", "+491711234567", "--keys", "4711# *11"
    )
    assert (code, out) == (2, "")
    assert "Traceback" not in err and "apology" not in err
    assert f"Error: {PORTAL_DIALPLAN} needs a portal configuration: give --portal CONFIG" in err


@pytest.mark.usefixtures("keep_ivr_log_level")
def test_serve_portal_dialplan_without_portal_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_audio(engine: object) -> None:
        raise AssertionError("got as far as rendering prompts: would serve")

    monkeypatch.setattr("ivr.sip.serve.prompt_audio", no_audio)
    code, _out, err = run("serve", str(PORTAL_DIALPLAN), "--registrar", "127.0.0.1:5060")
    assert code == 2 and "give --portal CONFIG" in err


NEEDY_DIALPLAN = """\
name: needy
language: de
prompts: {prompts}
initial: look
hooks: {module}:hooks
states:
  look:
    kind: action
    hook: ledger.lookup
    on: {{ok: bye}}
  bye:
    kind: hangup
    prompts: goodbye
"""


def test_any_dialplan_whose_hooks_need_a_context_is_refused_before_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"needy_hooks_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(
        "from ivr.hooks import Hooks\n"
        "class Ledger: ...\n"
        "hooks = Hooks(context=Ledger)\n"
        "@hooks.register('ledger.lookup')\n"
        "def lookup(session):\n"
        "    return 'ok' if session.context.balance else 'ok'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plan = tmp_path / "needy.yaml"
    plan.write_text(NEEDY_DIALPLAN.format(prompts=ROOT / "prompts" / "de", module=module))
    code, out, err = run("simulate", str(plan), "--caller", "1")
    assert (code, out) == (2, "")
    assert "hook ledger.lookup needs Ledger as the engine context, got no context" in err
    assert "Traceback" not in err
    scenario = tmp_path / "s.yaml"
    scenario.write_text("dialplan: needy.yaml\ncaller: '1'\n")
    code, out, err = run("test", str(scenario))
    assert code == 2
    assert err.startswith(f"{scenario}:1:11: dialplan: needy.yaml: hook ledger.lookup needs Ledger")
    assert "a scenario file cannot give" in err


def test_check_context() -> None:
    from ivr.hooks import ContextError, Hooks, check_context

    class Ledger: ...

    needy = Hooks({"a": lambda s: "ok", "b": lambda s: "ok"}, context=Ledger)
    check_context(needy, Ledger(), ["a"])
    check_context(needy, None, ["other"])  # the dialplan calls none of them
    check_context(Hooks({"a": lambda s: "ok"}), None, ["a"])  # needs nothing
    with pytest.raises(
        ContextError, match="hooks a, b need Ledger as the engine context, got a dict"
    ) as info:
        check_context(needy, {}, ["b", "a", "x"])
    assert info.value.hooks == ("a", "b") and info.value.needs == (Ledger,)


# --- issue 11.13: help never depends on the working directory --------------------------------
def command_paths(group: click.Group = main, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


@pytest.mark.parametrize("command", command_paths(), ids=lambda c: " ".join(c) or "ivr")
def test_help_works_outside_a_checkout(
    command: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [*command, "--help"], prog_name="ivr")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith(" ".join(["Usage: ivr", *command, "[OPTIONS]"]))


def test_db_init_then_locks_and_unlock_on_postgresql(
    tmp_path: Path, postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ivr.portal.lockout_pg import PostgresLockoutStore
    from ivr.sip.serve import serving_engine

    url = postgres.url(postgres.new_database())
    config = portal_copy(tmp_path, f"lockout_store: '{url}'\n")
    code, out, err = run("portal", "locks", "--portal", str(config))
    assert code == 2 and "ivr portal db init" in err  # no tables yet: says what to do
    code, out, _err = run("portal", "db", "init", "--portal", str(config))
    assert code == 0 and "migrated from version 0 to 1" in out
    code, out, _err = run("portal", "db", "init", "--store", url)
    assert code == 0 and "up to date (version 1)" in out
    engine = serving_engine(PORTAL_DIALPLAN, config)  # what ivr serve uses
    assert isinstance(engine.context.lockouts, PostgresLockoutStore)
    store = engine.context.lockouts
    for i in range(5):
        store.record_failure("erika", time.time() + i, LockoutPolicy(), f"+4930999{i} (call x)")
    code, out, _err = run("portal", "locks", "--portal", str(config))
    assert code == 0 and "erika: 0 failure(s) in a row, LOCKED until " in out
    code, out, _err = run("portal", "unlock", "--portal", str(config), "erika")
    assert code == 0 and "'erika' unlocked" in out
    assert store.locked_until("erika") == 0.0
    # the environment variable comes before the configuration
    plain = portal_copy(tmp_path / "env")
    monkeypatch.setenv("IVR_LOCKOUT_STORE", url)
    assert isinstance(serving_engine(PORTAL_DIALPLAN, plain).context.lockouts, PostgresLockoutStore)
    code, out, _err = run("portal", "locks", "--portal", str(plain))
    assert code == 0 and "nobody is locked out" in out


def test_db_init_errors_are_one_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://ivr:s3cret@/portal?host={tmp_path}"
    code, out, err = run("portal", "db", "init", "--store", url)
    assert code == 2 and out == ""
    assert err.startswith("error: PostgreSQL: ") and "s3cret" not in err
    assert len(err.strip().splitlines()) == 1
    code, _out, err = run("portal", "db", "init", "--store", str(tmp_path / "x.sqlite"))
    assert code == 2 and "postgresql:// URL" in err
    config = portal_copy(tmp_path)  # the default SQLite store needs no set-up
    code, _out, err = run("portal", "db", "init", "--portal", str(config))
    assert code == 2 and "needs no set-up" in err
    code, _out, err = run("portal", "locks", "--store", url)
    assert code == 2 and "s3cret" not in err


def test_describe_store_hides_the_password() -> None:
    from ivr.portal.services import describe_store

    assert describe_store("postgresql://ivr:pw@db.example:5432/portal") == (
        "postgresql://ivr:***@db.example:5432/portal"
    )
    assert describe_store("postgresql://ivr@/portal") == "postgresql://ivr@/portal"
