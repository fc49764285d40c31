"""Validation: every error and warning with its exact file:line:col and context path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr import DialplanError, Hooks, load_dialplan
from ivr.yaml_source import parse_yaml

HEAD = "prompts: p\ninitial: main\n"
GOOD_STATES = """\
  main:
    kind: menu
    prompt: hi
    options:
      "1": sales
      "9": bye
    on_max_noinput: bye
    on_max_nomatch: bye
  sales: {kind: transfer, target: "100"}
  bye: {kind: hangup, prompts: bye}
"""


@pytest.fixture
def plan_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "p.yaml").write_text(
        "hi: Hallo.\nbye: Tschüss.\napology: Fehler.\ncount: 'Sie haben {n:number} Anrufe.'\n"
    )

    def write(text: str) -> Path:
        path = tmp_path / "d.yaml"
        path.write_text(text)
        return path

    return write


def errors(path: Path, hooks: Hooks | None = None) -> list[str]:
    with pytest.raises(DialplanError) as info:
        load_dialplan(path, hooks=hooks)
    return [str(p) for p in info.value.problems]


def test_the_good_plan_loads(plan_file) -> None:  # type: ignore[no-untyped-def]
    plan = load_dialplan(plan_file(HEAD + "states:\n" + GOOD_STATES))
    assert list(plan.states) == ["main", "sales", "bye"]
    assert plan.warnings == ()


def test_unknown_target_with_did_you_mean(plan_file) -> None:  # type: ignore[no-untyped-def]
    path = plan_file(HEAD + "states:\n" + GOOD_STATES.replace('"1": sales', '"1": salse'))
    assert errors(path) == [
        f"{path}:8:12: states.main.options.1: unknown state 'salse' (did you mean 'sales'?)"
    ]


def test_unknown_kind_and_missing_kind(plan_file) -> None:  # type: ignore[no-untyped-def]
    path = plan_file(HEAD + "states:\n" + GOOD_STATES + "  x: {kind: menue}\n  y: {prompt: hi}\n")
    found = errors(path)
    assert found[0].startswith(
        f"{path}:14:13: states.x.kind: unknown kind 'menue' (did you mean 'menu'?)"
    )
    assert found[1].startswith(f"{path}:15:6: states.y: missing 'kind' (one of: action, branch,")


def test_unknown_keys_everywhere(plan_file) -> None:  # type: ignore[no-untyped-def]
    text = (
        HEAD
        + "bogus: 1\ndefaults:\n  timeot: 3\nstates:\n"
        + GOOD_STATES.replace("    prompt: hi\n", "    prompt: hi\n    interdigit_timout: 2\n")
    )
    path = plan_file(text)
    assert errors(path) == [
        f"{path}:3:1: bogus: unknown key 'bogus'",
        f"{path}:5:3: defaults.timeot: unknown key 'timeot' (did you mean 'timeout'?)",
        f"{path}:10:5: states.main.interdigit_timout: unknown key 'interdigit_timout'"
        " (did you mean 'interdigit_timeout'?)",
    ]


def test_wrong_types_and_ranges(plan_file) -> None:  # type: ignore[no-untyped-def]
    text = (
        HEAD
        + "states:\n"
        + GOOD_STATES.replace(
            "    prompt: hi\n", "    prompt: hi\n    timeout: soon\n    max_noinput: 0\n"
        )
    )
    path = plan_file(text)
    assert errors(path) == [
        f"{path}:7:14: states.main.timeout: input should be a valid number,"
        " unable to parse string as a number",
        f"{path}:8:18: states.main.max_noinput: input should be greater than or equal to 1",
    ]


def test_invalid_default_is_reported_at_the_defaults_entry(plan_file) -> None:  # type: ignore[no-untyped-def]
    path = plan_file(HEAD + "defaults:\n  max_nomatch: -1\nstates:\n" + GOOD_STATES)
    assert errors(path) == [
        f"{path}:4:16: defaults.max_nomatch: input should be greater than or equal to 1"
    ]


def test_unquoted_terminator_gets_a_hint(plan_file) -> None:  # type: ignore[no-untyped-def]
    path = plan_file(HEAD + "defaults:\n  terminator: #\nstates:\n" + GOOD_STATES)
    (message,) = errors(path)
    assert message.startswith(f"{path}:4:14: defaults.terminator:")
    assert "write terminator: '#'" in message


def test_initial_state_missing_or_unknown(plan_file) -> None:  # type: ignore[no-untyped-def]
    path = plan_file("prompts: p\ninitial: mian\nstates:\n" + GOOD_STATES)
    assert errors(path) == [f"{path}:2:10: initial: unknown state 'mian' (did you mean 'main'?)"]
    path = plan_file("prompts: p\nstates:\n" + GOOD_STATES)
    assert errors(path) == [f"{path}:1:1: initial: missing required key 'initial'"]


def test_unknown_hook(plan_file) -> None:  # type: ignore[no-untyped-def]
    path = plan_file(
        HEAD + "states:\n" + GOOD_STATES + "  h: {kind: action, hook: chek, next: bye}\n"
    )
    hooks = Hooks()
    hooks.add("check", lambda s: None)
    assert errors(path, hooks) == [
        f"{path}:14:27: states.h.hook: unknown hook 'chek' (did you mean 'check'?)"
    ]
    assert errors(path, Hooks()) == [
        f"{path}:14:27: states.h.hook: unknown hook 'chek' (no hooks registered)"
    ]


def test_prompts_checked_against_the_catalog(plan_file) -> None:  # type: ignore[no-untyped-def]
    text = (
        HEAD
        + "states:\n"
        + GOOD_STATES
        + (
            "  p1: {kind: play, prompts: [hii, count, {id: count, params: {n: '1', m: '2'}}], next: bye}\n"
        )
    )
    path = plan_file(text)
    assert errors(path) == [
        f"{path}:14:30: states.p1.prompts.0: prompt 'hii' not in catalog"
        f" {path.parent / 'p'} (did you mean 'hi'?)",
        f"{path}:14:35: states.p1.prompts.1: prompt 'count' needs parameter 'n'",
        f"{path}:14:42: states.p1.prompts.2: prompt 'count' has no parameter 'm'",
    ]


def test_duplicate_keys(plan_file) -> None:  # type: ignore[no-untyped-def]
    path = plan_file(HEAD + "states:\n" + GOOD_STATES + "  sales: {kind: hangup}\n")
    assert errors(path) == [
        f"{path}:14:3: states.sales: duplicate key 'sales' (first defined at line 12)"
    ]


def test_bad_state_names_expressions_and_templates(plan_file) -> None:  # type: ignore[no-untyped-def]
    text = (
        HEAD
        + "states:\n"
        + GOOD_STATES
        + (
            "  'a b': {kind: hangup}\n"
            "  c: {kind: branch, cases: [{when: 'os.system(1)', goto: bye}], otherwise: bye}\n"
            "  t: {kind: transfer, target: '{a.b}'}\n"
        )
    )
    found = errors(plan_file(text))
    assert any("states.a b: state names use letters, digits, _ and -" in f for f in found)
    assert any("states.c.cases.0.when" in f and "only len(...) may be called" in f for f in found)
    assert any("states.t.target" in f and "bad placeholder {a.b}" in f for f in found)


def test_many_errors_are_all_reported(plan_file) -> None:  # type: ignore[no-untyped-def]
    text = (
        HEAD
        + "states:\n"
        + GOOD_STATES.replace('"1": sales', '"1": nowhere')
        + ("  x: {kind: nope}\n  y: {kind: play, prompts: zzz, next: bye, extra: 1}\n")
    )
    assert len(errors(plan_file(text))) >= 3


def test_warnings_unreachable_dead_end_overlap(plan_file) -> None:  # type: ignore[no-untyped-def]
    states = GOOD_STATES.replace('"9": bye', '"*1": bye\n      "*11": loop') + (
        "  orphan: {kind: hangup}\n"
        "  loop: {kind: menu, prompt: hi, options: {'1': loop}, on_max_noinput: loop,"
        " on_max_nomatch: loop}\n"
    )
    path = plan_file(HEAD + "states:\n" + states)
    plan = load_dialplan(path)
    found = [str(w) for w in plan.warnings]
    assert (
        f"{path}:9:7: states.main.options.*1: warning: options '*1' and '*11' overlap:"
        " '*11' wins when its next key comes within interdigit_timeout (3 s); '*1' is taken"
        " after it" in found
    )
    assert (
        f"{path}:15:3: states.orphan: warning: state 'orphan' is unreachable from 'main'" in found
    )
    assert (
        f"{path}:16:3: states.loop: warning: no hang-up can ever be reached from state"
        " 'loop'" in found
    )
    assert all(w.severity == "warning" for w in plan.warnings)


# --- bad files: one line, never a traceback ------------------------------------------
def one_problem(path: Path) -> str:
    with pytest.raises(DialplanError) as info:
        load_dialplan(path)
    (problem,) = info.value.problems
    assert "\n" not in str(problem)
    return str(problem)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"# only a comment\n", "file is empty (only comments)"),
        (b"\x00\x01\x02garbage", "not a YAML text file (contains NUL bytes)"),
        (b"\xff\xfe\xfa bad utf8", "not UTF-8 text"),
        (b"- a\n- b\n", "top level must be a mapping, not a list"),
        (b"just a string\n", "top level must be a mapping, not a string"),
        (b"a: 1\n---\nb: 2\n", "YAML syntax error"),
        (b"a: !!python/object/apply:os.system ['true']\n", "unsupported YAML tag"),
        (b"a: !!python/name:os.system\n", "bad value"),
        (b"a: [1, 2\n", "YAML syntax error"),
    ],
)
def test_bad_files_are_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert message in one_problem(path)


def test_an_alias_bomb_is_one_line(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[level]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert "alias bomb" in one_problem(path)


def test_a_50_mb_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as out:
        out.truncate(50 * 2**20)
    assert f"file is {50 * 2**20} bytes; the limit is" in one_problem(path)


def test_a_directory_and_a_missing_file(tmp_path: Path) -> None:
    assert "is a directory" in one_problem(tmp_path)
    assert "cannot read" in one_problem(tmp_path / "nope.yaml")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode()))
def test_any_bytes_give_a_dialplan_error_or_data(data: bytes) -> None:
    try:
        parse_yaml(data, file="fuzz.yaml")
    except DialplanError as exc:
        assert all("\n" not in str(p) for p in exc.problems)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="abc:-[]{}&*!#'\" \n0123", max_size=200))
def test_any_text_as_a_dialplan_gives_only_dialplan_errors(tmp_path_factory, text: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("fuzz") / "d.yaml"
    path.write_text(text)
    try:
        load_dialplan(path)
    except DialplanError:
        pass
    finally:
        os.unlink(path)
