"""Dialplan validation: every error and warning the loader reports, at its exact place.

Each test writes a small dialplan (and a prompt catalog folder next to it) into
``tmp_path`` and compares the full ``str(problem)`` lines, ``file:line:col: path: message``,
so line and column (1-based) are checked as well as the wording.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from ivr import DialplanError, Hooks, Problem, load_catalog, load_dialplan

CATALOG = """\
hi: Hallo.
bye: Tschüss.
apology: Es ist ein Fehler aufgetreten.
count: 'Sie haben {n:number} Anrufe.'
"""

KINDS = "action, branch, collect, dial, hangup, menu, play, pull, transfer"

# the plan most tests start from; its line numbers are listed below it
GOOD = """\
prompts: prompts
initial: main
defaults:
  on_max_noinput: bye
  on_max_nomatch: bye
states:
  main:
    kind: menu
    prompt: hi
    options:
      "1": sales
      "9": main
      "0": bye
  sales:
    kind: transfer
    target: "100"
  bye:
    kind: hangup
    prompts: bye
"""
#  1 prompts   2 initial   3 defaults   4-5 exits   6 states   7 main   8 kind
#  9 prompt   10 options   11 "1"   12 "9"   13 "0"   14 sales   15 kind   16 target
# 17 bye      18 kind      19 prompts

Write = Callable[[str], Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """Write a dialplan (dedented) to tmp_path/plan.yaml next to a prompts/ catalog."""
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "common.yaml").write_text(CATALOG, encoding="utf-8")

    def _write(text: str) -> Path:
        path = tmp_path / "plan.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


def problems(path: Path, **kwargs: object) -> list[str]:
    """The str() of every problem loading ``path`` reports (it must fail)."""
    with pytest.raises(DialplanError) as info:
        load_dialplan(path, **kwargs)  # type: ignore[arg-type]
    found = [str(p) for p in info.value.problems]
    assert str(info.value) == "\n".join(found)
    assert all(p.severity == "error" for p in info.value.problems)
    return found


def with_lines(base: str, after: str, *lines: str) -> str:
    """``base`` with ``lines`` inserted after the (unique) line ``after``."""
    assert base.count(after + "\n") == 1
    return base.replace(after + "\n", after + "\n" + "".join(line + "\n" for line in lines))


# --- the good plan ----------------------------------------------------------------------
def test_a_good_plan_loads_without_problems(write: Write) -> None:
    plan = load_dialplan(write(GOOD))
    assert list(plan.states) == ["main", "sales", "bye"]
    assert plan.initial == "main"
    assert plan.name == "plan"
    assert plan.warnings == ()


def test_a_problem_carries_file_line_column_path_and_severity(write: Write) -> None:
    path = write(GOOD.replace('"1": sales', '"1": salse'))
    with pytest.raises(DialplanError) as info:
        load_dialplan(path)
    assert info.value.problems == [
        Problem(
            message="unknown state 'salse' (did you mean 'sales'?)",
            file=str(path),
            line=11,
            column=12,
            path="states.main.options.1",
            severity="error",
        )
    ]
    assert str(info.value) == (
        f"{path}:11:12: states.main.options.1: unknown state 'salse' (did you mean 'sales'?)"
    )


# --- YAML level -------------------------------------------------------------------------
def test_yaml_syntax_error_with_its_position(write: Write) -> None:
    path = write(GOOD.replace("    kind: menu\n", "    kind: menu: x\n"))
    assert problems(path) == [
        f"{path}:8:15: YAML syntax error: mapping values are not allowed in this context"
    ]


def test_an_unclosed_flow_list_is_a_syntax_error_where_it_is_noticed(write: Write) -> None:
    path = write(GOOD.replace("    prompt: hi\n", "    prompt: [hi\n"))
    assert problems(path) == [f"{path}:10:12: YAML syntax error: did not find expected ',' or ']'"]


def test_an_unterminated_quote_is_a_syntax_error(write: Write) -> None:
    path = write(GOOD.replace('target: "100"', 'target: "100'))
    (found,) = problems(path)
    assert found.startswith(f"{path}:")
    assert "YAML syntax error: found unexpected end of stream" in found


def test_an_unterminated_quote_names_where_the_quote_began(write: Write) -> None:
    path = write(GOOD.replace('target: "100"', 'target: "100'))
    (found,) = problems(path)
    assert found.startswith(f"{path}:16:13: ") or "line 16" in found.removeprefix(str(path))


@pytest.mark.parametrize("end", ["\n", ""])
def test_an_unterminated_single_quote_is_reported_where_it_began(write: Write, end: str) -> None:
    path = write(GOOD.replace("    prompts: bye\n", "    prompts: 'bye" + end))
    assert problems(path) == [
        f"{path}:19:14: YAML syntax error: found unexpected end of stream:"
        " the quote that begins here is never closed"
    ]


def test_bad_indentation_is_a_syntax_error_at_its_line(write: Write) -> None:
    path = write(GOOD.replace("    prompt: hi\n", "   prompt: hi\n"))
    assert problems(path) == [f"{path}:9:4: YAML syntax error: did not find expected key"]


def test_duplicate_key_is_reported_at_the_second_key(write: Write) -> None:
    path = write(with_lines(GOOD, "    prompt: hi", "    prompt: bye"))
    assert problems(path) == [
        f"{path}:10:5: states.main.prompt: duplicate key 'prompt' (first defined at line 9)"
    ]


def test_duplicate_state_name(write: Write) -> None:
    path = write(GOOD + "  sales:\n    kind: hangup\n")
    assert problems(path) == [
        f"{path}:20:3: states.sales: duplicate key 'sales' (first defined at line 14)"
    ]


def test_an_option_code_written_twice_once_quoted_once_not(write: Write) -> None:
    path = write(with_lines(GOOD, '      "1": sales', "      1: bye"))
    assert problems(path) == [
        f"{path}:12:7: states.main.options.1: duplicate key '1' (first defined at line 11)"
    ]


# --- unknown keys -----------------------------------------------------------------------
def test_unknown_top_level_key_with_did_you_mean(write: Write) -> None:
    path = write(GOOD.replace("initial: main", "initail: main"))
    assert problems(path) == [
        f"{path}:1:1: initial: missing required key 'initial'",
        f"{path}:2:1: initail: unknown key 'initail' (did you mean 'initial'?)",
    ]


def test_unknown_top_level_key_without_a_close_match(write: Write) -> None:
    path = write(with_lines(GOOD, "initial: main", "colour: red"))
    assert problems(path) == [f"{path}:3:1: colour: unknown key 'colour'"]


def test_unknown_key_in_a_state_with_did_you_mean(write: Write) -> None:
    path = write(GOOD.replace("    prompt: hi", "    promt: hi"))
    assert problems(path) == [
        f"{path}:9:5: states.main.promt: unknown key 'promt' (did you mean 'prompt'?)"
    ]


def test_unknown_key_in_a_state_without_a_close_match(write: Write) -> None:
    path = write(with_lines(GOOD, '    target: "100"', "    colour: red"))
    assert problems(path) == [f"{path}:17:5: states.sales.colour: unknown key 'colour'"]


def test_unknown_key_in_defaults_with_and_without_did_you_mean(write: Write) -> None:
    path = write(with_lines(GOOD, "defaults:", "  timout: 3", "  kind: menu"))
    assert problems(path) == [
        f"{path}:4:3: defaults.timout: unknown key 'timout' (did you mean 'timeout'?)",
        f"{path}:5:3: defaults.kind: unknown key 'kind'",
    ]


def test_unknown_keys_in_nested_config(write: Write) -> None:
    path = write(
        GOOD
        + textwrap.indent(
            textwrap.dedent(
                """\
                dial:
                  kind: menu
                  prompt: [{id: count, parms: {n: calls}}]
                  entry: {into: number, nxt: bye}
                route:
                  kind: branch
                  cases:
                    - {when: "calls > 1", gto: bye}
                  otherwise: bye
                """
            ),
            "  ",
        )
    )
    assert problems(path) == [
        f"{path}:22:26: states.dial.prompt.0.parms: unknown key 'parms' (did you mean 'params'?)",
        f"{path}:23:12: states.dial.entry.next: missing required key 'next'",
        f"{path}:23:27: states.dial.entry.nxt: unknown key 'nxt' (did you mean 'next'?)",
        f"{path}:27:9: states.route.cases.0.goto: missing required key 'goto'",
        f"{path}:27:29: states.route.cases.0.gto: unknown key 'gto' (did you mean 'goto'?)",
    ]


# --- wrong types and values -------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "timeout: abc",
            "9:14: states.main.timeout: input should be a valid number,"
            " unable to parse string as a number",
        ),
        ("timeout: 0", "9:14: states.main.timeout: input should be greater than 0"),
        ("timeout: 601", "9:14: states.main.timeout: input should be less than or equal to 600"),
        (
            "max_noinput: 0",
            "9:18: states.main.max_noinput: input should be greater than or equal to 1",
        ),
        (
            "max_nomatch: 2.5",
            "9:18: states.main.max_nomatch: input should be a valid integer,"
            " got a number with a fractional part",
        ),
        (
            "bargein: maybe",
            "9:14: states.main.bargein: input should be a valid boolean, unable to interpret input",
        ),
        (
            "terminator: '**'",
            "9:17: states.main.terminator: string should match pattern '^[0-9*#A-D]?$'",
        ),
        ("description: [a]", "9:18: states.main.description: input should be a valid string"),
        ("on_max_noinput: 7", "9:21: states.main.on_max_noinput: input should be a valid string"),
        (
            "prompt: 5",
            "9:13: states.main.prompt: input should be a valid tuple",
        ),
    ],
)
def test_wrong_types_and_values_in_a_state(write: Write, line: str, expected: str) -> None:
    text = with_lines(GOOD, "    kind: menu", "    " + line)
    if line.startswith("prompt:"):
        text = text.replace("    prompt: hi\n", "")
    path = write(text)
    assert problems(path) == [f"{path}:{expected}"]


def test_options_must_be_a_mapping(write: Write) -> None:
    path = write(
        GOOD.replace('      "1": sales\n      "9": main\n      "0": bye\n', "").replace(
            "    options:", "    options: [sales, main]"
        )
    )
    assert problems(path) == [
        f"{path}:10:14: states.main.options: input should be a valid dictionary"
    ]


def test_an_option_code_with_bad_keys(write: Write) -> None:
    path = write(GOOD.replace('"9": main', '"9x": main'))
    assert problems(path) == [
        f"{path}:11:7: states.main.options: option '9x': a code is 1-16 keys of 0-9 * # A-D"
    ]


def test_expressions_patterns_and_templates_are_checked(write: Write) -> None:
    path = write(
        GOOD
        + "  route: {kind: branch, cases: [{when: 'x >', goto: bye}], otherwise: bye}\n"
        + "  pin: {kind: collect, into: pin, pattern: '[0-9', next: bye}\n"
        + "  out: {kind: transfer, target: '{a.b}'}\n"
    )
    assert problems(path) == [
        f"{path}:20:40: states.route.cases.0.when: invalid expression 'x >': invalid syntax",
        f"{path}:21:44: states.pin.pattern: invalid regular expression:"
        " unterminated character set at position 0",
        f"{path}:22:33: states.out.target: bad placeholder {{a.b}} in '{{a.b}}': use {{variable}}",
    ]


def test_a_state_defaults_and_states_must_be_mappings(write: Write) -> None:
    path = write(
        "prompts: prompts\ninitial: main\ndefaults: [1]\nstates:\n  main: [1]\n  other: text\n"
    )
    assert problems(path) == [
        f"{path}:3:11: defaults: must be a mapping, not a list",
        f"{path}:5:9: states.main: a state must be a mapping, not a list",
        f"{path}:6:10: states.other: a state must be a mapping, not a string",
    ]


def test_states_missing_or_empty(write: Write) -> None:
    path = write("prompts: prompts\ninitial: main\n")
    assert problems(path) == [
        f"{path}:1:1: states: a dialplan needs a mapping of states",
        f"{path}:2:10: initial: unknown state 'main'",
    ]
    path = write("prompts: prompts\ninitial: main\nstates: {}\n")
    assert problems(path) == [
        f"{path}:3:9: states: a dialplan needs a mapping of states",
        f"{path}:2:10: initial: unknown state 'main'",
    ]


def test_whole_state_rules_are_reported_at_the_state(write: Write) -> None:
    path = write(
        """\
        prompts: prompts
        initial: main
        states:
          main:
            kind: collect
            into: pin
            min_digits: 6
            max_digits: 4
            next: bye
            on_max_noinput: bye
            on_max_nomatch: bye
          other:
            kind: menu
            options: {"1": bye}
          bye: {kind: hangup}
        """
    )
    assert problems(path) == [
        f"{path}:5:5: states.main: min_digits (6) is greater than max_digits (4)",
        f"{path}:13:5: states.other: on_max_noinput is required (here or in defaults)",
    ]


# --- kinds ------------------------------------------------------------------------------
def test_unknown_kind_with_did_you_mean(write: Write) -> None:
    path = write(GOOD.replace("kind: menu", "kind: menue"))
    assert problems(path) == [
        f"{path}:8:11: states.main.kind: unknown kind 'menue' (did you mean 'menu'?)"
        f" (one of: {KINDS})"
    ]


def test_unknown_kind_without_a_close_match(write: Write) -> None:
    path = write(GOOD.replace("kind: transfer", "kind: forward"))
    assert problems(path) == [
        f"{path}:15:11: states.sales.kind: unknown kind 'forward' (one of: {KINDS})"
    ]


def test_missing_or_empty_kind(write: Write) -> None:
    path = write(GOOD.replace("    kind: transfer\n", "").replace("kind: hangup", "kind:"))
    assert problems(path) == [
        f"{path}:15:5: states.sales: missing 'kind' (one of: {KINDS})",
        f"{path}:17:5: states.bye: missing 'kind' (one of: {KINDS})",
    ]


# --- references between states ----------------------------------------------------------
def test_unknown_target_state_with_did_you_mean(write: Write) -> None:
    path = write(GOOD.replace('"9": main', '"9": mian'))
    assert problems(path) == [
        f"{path}:12:12: states.main.options.9: unknown state 'mian' (did you mean 'main'?)"
    ]


def test_unknown_targets_in_every_kind_of_edge(write: Write) -> None:
    path = write(
        GOOD
        + textwrap.indent(
            textwrap.dedent(
                """\
                check: {kind: action, hook: check, on: {ok: sale}, next: operator}
                route:
                  kind: branch
                  cases: [{when: "x", goto: by}]
                  otherwise: nowhere
                dial:
                  kind: menu
                  entry: {into: number, next: sale}
                  on_max_nomatch: by
                """
            ),
            "  ",
        )
    )
    assert problems(path, hooks=Hooks({"check": lambda session: "ok"})) == [
        f"{path}:20:47: states.check.on.ok: unknown state 'sale' (did you mean 'sales'?)",
        f"{path}:20:60: states.check.next: unknown state 'operator'",
        f"{path}:23:31: states.route.cases.0.goto: unknown state 'by' (did you mean 'bye'?)",
        f"{path}:24:16: states.route.otherwise: unknown state 'nowhere'",
        f"{path}:27:33: states.dial.entry.next: unknown state 'sale' (did you mean 'sales'?)",
        f"{path}:28:21: states.dial.on_max_nomatch: unknown state 'by' (did you mean 'bye'?)",
    ]


def test_initial_state_unknown_with_did_you_mean(write: Write) -> None:
    path = write(GOOD.replace("initial: main", "initial: mian"))
    assert problems(path) == [f"{path}:2:10: initial: unknown state 'mian' (did you mean 'main'?)"]


def test_initial_state_unknown_without_a_close_match(write: Write) -> None:
    path = write(GOOD.replace("initial: main", "initial: start"))
    assert problems(path) == [f"{path}:2:10: initial: unknown state 'start'"]


def test_initial_state_missing_or_empty(write: Write) -> None:
    path = write(GOOD.replace("initial: main\n", ""))
    assert problems(path) == [f"{path}:1:1: initial: missing required key 'initial'"]
    path = write(GOOD.replace("initial: main", "initial: ''"))
    assert problems(path) == [f"{path}:2:10: initial: string should have at least 1 character"]


def test_missing_prompts_key(write: Write) -> None:
    path = write(GOOD.replace("prompts: prompts\n", ""))
    assert problems(path) == [f"{path}:1:1: prompts: missing required key 'prompts'"]


# --- hooks ------------------------------------------------------------------------------
HOOKED = with_lines(GOOD, '    target: "100"', "  check: {kind: action, hook: chek_pin, next: bye}")


def test_unknown_hook_with_no_hooks_registered(write: Write) -> None:
    path = write(HOOKED)
    assert problems(path, hooks=Hooks()) == [
        f"{path}:17:31: states.check.hook: unknown hook 'chek_pin' (no hooks registered)"
    ]


def test_unknown_hook_with_a_near_name_registered(write: Write) -> None:
    path = write(HOOKED)
    hooks = Hooks({"check_pin": lambda session: "ok", "lookup": lambda session: None})
    assert problems(path, hooks=hooks) == [
        f"{path}:17:31: states.check.hook: unknown hook 'chek_pin' (did you mean 'check_pin'?)"
    ]


def test_unknown_hook_lists_the_known_ones(write: Write) -> None:
    path = write(HOOKED)
    hooks = Hooks({"lookup": lambda session: None, "count_calls": lambda session: 0})
    assert problems(path, hooks=hooks) == [
        f"{path}:17:31: states.check.hook: unknown hook 'chek_pin' (known: count_calls, lookup)"
    ]


def test_a_known_hook_loads(write: Write) -> None:
    plan = load_dialplan(write(HOOKED), hooks=Hooks({"chek_pin": lambda session: "ok"}))
    assert "chek_pin" in plan.hooks


def test_a_hooks_reference_that_cannot_be_imported(write: Write) -> None:
    path = write(with_lines(HOOKED, "initial: main", "hooks: no_such_module_xyz:hooks"))
    assert problems(path) == [
        f"{path}:3:8: hooks: cannot load hooks 'no_such_module_xyz:hooks':"
        " No module named 'no_such_module_xyz'",
        f"{path}:18:31: states.check.hook: unknown hook 'chek_pin' (no hooks registered)",
    ]
    path = write(with_lines(HOOKED, "initial: main", "hooks: 'os:path'"))
    assert problems(path)[0] == (
        f"{path}:3:8: hooks: cannot load hooks 'os:path': 'os:path' is not an ivr.Hooks registry"
    )


def test_hooks_given_by_the_caller_replace_the_files_reference(write: Write) -> None:
    path = write(with_lines(HOOKED, "initial: main", "hooks: no_such_module_xyz:hooks"))
    plan = load_dialplan(path, hooks=Hooks({"chek_pin": lambda session: "ok"}))
    assert list(plan.hooks) == ["chek_pin"]


# --- prompts ----------------------------------------------------------------------------
def test_prompt_not_in_catalog_with_did_you_mean(write: Write) -> None:
    path = write(GOOD.replace("prompt: hi", "prompt: hii").replace("prompts: bye", "prompts: ciao"))
    catalog = path.parent / "prompts"
    assert problems(path) == [
        f"{path}:9:13: states.main.prompt.0: prompt 'hii' not in catalog {catalog}"
        " (did you mean 'hi'?)",
        f"{path}:19:14: states.bye.prompts.0: prompt 'ciao' not in catalog {catalog}",
    ]


def test_prompt_parameters_missing_and_unknown(write: Write) -> None:
    path = write(
        with_lines(
            GOOD,
            '    target: "100"',
            "  calls:",
            "    kind: play",
            "    prompts:",
            "      - count",
            "      - {id: count, params: {n: calls, m: calls}}",
            "      - {id: hi, params: {n: calls}}",
            "    next: bye",
        )
    )
    assert problems(path) == [
        f"{path}:20:9: states.calls.prompts.0: prompt 'count' needs parameter 'n'",
        f"{path}:21:9: states.calls.prompts.1: prompt 'count' has no parameter 'm'",
        f"{path}:22:9: states.calls.prompts.2: prompt 'hi' has no parameter 'n'",
    ]


def test_prompts_in_escalations_and_the_apology_are_checked(write: Write) -> None:
    path = write(
        with_lines(
            GOOD.replace("initial: main", "initial: main\napology: sory"),
            "    prompt: hi",
            "    noinput: [hi, [bye, noinput]]",
            "    nomatch:",
            "      - [{id: count, params: {n: calls}}, nomatch]",
        )
    )
    catalog = path.parent / "prompts"
    assert problems(path) == [
        f"{path}:11:25: states.main.noinput.1.1: prompt 'noinput' not in catalog {catalog}",
        f"{path}:13:43: states.main.nomatch.0.1: prompt 'nomatch' not in catalog {catalog}",
        f"{path}:3:10: apology: prompt 'sory' not in catalog {catalog}",
    ]


def test_a_catalog_given_by_the_caller_replaces_the_files_folder(
    write: Write, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.yaml").write_text("hi: Hi.\napology: Sorry.\n")
    path = write(GOOD.replace("prompts: prompts", "prompts: nowhere"))
    assert problems(path, catalog=load_catalog(tmp_path / "other")) == [
        f"{path}:19:14: states.bye.prompts.0: prompt 'bye' not in catalog {tmp_path / 'other'}"
    ]


def test_a_missing_catalog_folder(write: Write) -> None:
    path = write(GOOD.replace("prompts: prompts", "prompts: nowhere"))
    (found,) = problems(path)
    assert found.endswith(": prompt catalog directory not found") or found.endswith(
        f": prompt catalog directory not found: {path.parent / 'nowhere'}"
    )
    assert str(path.parent / "nowhere") in found


def test_problems_in_the_catalog_are_reported_at_their_place(write: Write) -> None:
    path = write(GOOD)
    (path.parent / "prompts" / "extra.yaml").write_text("Bad: x\nhi: again\n")
    assert problems(path) == [
        f"{path.parent / 'prompts' / 'extra.yaml'}:1:1: Bad: prompt ids are lower_snake_case",
        f"{path.parent / 'prompts' / 'extra.yaml'}:2:1: hi: duplicate prompt id"
        f" (first in {path.parent / 'prompts' / 'common.yaml'}:1)",
    ]


# --- terminator: # ----------------------------------------------------------------------
HINT = "input should be a valid string (in YAML, # starts a comment: write terminator: '#')"


def test_unquoted_terminator_in_defaults_gets_the_quoting_hint(write: Write) -> None:
    path = write(with_lines(GOOD, "defaults:", "  terminator: #"))
    assert problems(path) == [f"{path}:4:14: defaults.terminator: {HINT}"]


def test_unquoted_terminator_in_a_state_gets_the_quoting_hint(write: Write) -> None:
    path = write(with_lines(GOOD, "    prompt: hi", "    terminator: #   # end of input"))
    assert problems(path) == [f"{path}:10:16: states.main.terminator: {HINT}"]


def test_quoted_terminators_load(write: Write) -> None:
    plan = load_dialplan(write(with_lines(GOOD, "defaults:", "  terminator: '*'")))
    assert plan.states["main"].terminator == "*"  # type: ignore[attr-defined]
    plan = load_dialplan(write(with_lines(GOOD, "defaults:", "  terminator: ''")))
    assert plan.states["main"].terminator == ""  # type: ignore[attr-defined]


# --- defaults ---------------------------------------------------------------------------
def test_an_invalid_default_is_reported_at_the_defaults_entry(write: Write) -> None:
    path = write(with_lines(GOOD, "defaults:", "  max_nomatch: -1", "  timeout: soon"))
    assert problems(path) == [
        f"{path}:5:12: defaults.timeout: input should be a valid number,"
        " unable to parse string as a number",
        f"{path}:4:16: defaults.max_nomatch: input should be greater than or equal to 1",
    ]


def test_an_invalid_default_is_an_error_though_every_state_overrides_it(write: Write) -> None:
    path = write(
        with_lines(
            with_lines(GOOD, "defaults:", "  timeout: soon"), "    prompt: hi", "    timeout: 4"
        )
    )
    assert problems(path) == [
        f"{path}:4:12: defaults.timeout: input should be a valid number,"
        " unable to parse string as a number"
    ]


def test_an_invalid_default_does_not_hide_the_inheriting_states_mistakes(write: Write) -> None:
    path = write(
        with_lines(GOOD, "defaults:", "  noinput: [{id: hi, parms: {}}]").replace(
            '"1": sales', '"1": salse'
        )
        + "  other: {kind: collect, into: x, next: exit, prompt: nix}\n"
    )
    catalog = path.parent / "prompts"
    assert problems(path) == [
        f"{path}:4:22: defaults.noinput.0.0.parms: unknown key 'parms' (did you mean 'params'?)",
        f"{path}:12:12: states.main.options.1: unknown state 'salse' (did you mean 'sales'?)",
        f"{path}:21:41: states.other.next: unknown state 'exit'",
        f"{path}:21:55: states.other.prompt.0: prompt 'nix' not in catalog {catalog}",
    ]


def test_a_state_overrides_a_default(write: Write) -> None:
    path = write(
        with_lines(
            with_lines(GOOD, "defaults:", "  timeout: 7"), "    prompt: hi", "    timeout: 4"
        )
        + "  other: {kind: menu, options: {'1': bye}}\n"
    )
    plan = load_dialplan(path)
    assert plan.states["main"].timeout == 4  # type: ignore[attr-defined]
    assert plan.states["other"].timeout == 7  # type: ignore[attr-defined]


def test_defaults_fill_play_bargein_too(write: Write) -> None:
    path = write(
        with_lines(GOOD, "defaults:", "  bargein: sometimes").replace(
            "    prompt: hi", "    prompt: hi\n    bargein: false"
        )
        + "  hello: {kind: play, prompts: hi, next: main}\n"
    )
    assert problems(path) == [
        f"{path}:4:12: defaults.bargein: input should be a valid boolean,"
        " unable to interpret input",
    ]


# --- many errors at once ----------------------------------------------------------------
def test_several_errors_in_one_file_are_all_reported(write: Write) -> None:
    path = write(
        """\
        prompts: prompts
        initial: main
        defaults:
          timout: 3
          on_max_noinput: bye
          on_max_nomatch: bye
        states:
          main:
            kind: menu
            prompt: hii
            max_noinput: 0
            options:
              "1": salse
          sales: {kind: transfr, target: "100"}
          bad name: {kind: hangup}
          x: {prompts: bye}
          play: {kind: play, prompts: count, next: bye}
          bye: {kind: hangup, prompts: bye}
        """
    )
    assert problems(path) == [
        f"{path}:4:3: defaults.timout: unknown key 'timout' (did you mean 'timeout'?)",
        f"{path}:11:18: states.main.max_noinput: input should be greater than or equal to 1",
        f"{path}:14:17: states.sales.kind: unknown kind 'transfr' (did you mean 'transfer'?)"
        f" (one of: {KINDS})",
        f"{path}:15:3: states.bad name: state names use letters, digits, _ and -",
        f"{path}:16:6: states.x: missing 'kind' (one of: {KINDS})",
        f"{path}:17:31: states.play.prompts.0: prompt 'count' needs parameter 'n'",
    ]


# --- state names ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bad name", "b@d", "grüße", "a.b", "a/b", "x:y"])
def test_state_names_with_bad_characters(write: Write, name: str) -> None:
    path = write(GOOD + f"  '{name}': {{kind: hangup}}\n")
    assert problems(path) == [
        f"{path}:20:3: states.{name}: state names use letters, digits, _ and -"
    ]


@pytest.mark.parametrize("name", ["a", "Main_2", "x-y", "0"])
def test_state_names_with_good_characters(write: Write, name: str) -> None:
    plan = load_dialplan(write(GOOD + f"  '{name}': {{kind: hangup}}\n"))
    assert name in plan.states


def test_columns_count_characters_not_bytes(write: Write) -> None:
    path = write(
        with_lines(GOOD, '    target: "100"', "  x: {description: 'Grüße für Käthe', kind: menue}")
    )
    assert problems(path) == [
        f"{path}:17:45: states.x.kind: unknown kind 'menue' (did you mean 'menu'?) (one of: {KINDS})"
    ]


# --- warnings ---------------------------------------------------------------------------
def warnings_of(path: Path) -> list[str]:
    plan = load_dialplan(path)
    assert all(w.severity == "warning" for w in plan.warnings)
    return [str(w) for w in plan.warnings]


def test_unreachable_state_is_a_warning(write: Write) -> None:
    path = write(GOOD + "  orphan: {kind: hangup, prompts: bye}\n")
    assert warnings_of(path) == [
        f"{path}:20:3: states.orphan: warning: state 'orphan' is unreachable from 'main'"
    ]


def test_a_state_that_can_never_hang_up_is_a_warning(write: Write) -> None:
    path = write(
        GOOD.replace('"0": bye', '"0": loop')
        + textwrap.indent(
            textwrap.dedent(
                """\
                loop:
                  kind: menu
                  prompt: hi
                  options: {"1": loop, "2": again}
                  on_max_noinput: again
                  on_max_nomatch: loop
                again: {kind: play, prompts: hi, next: loop}
                """
            ),
            "  ",
        )
    )
    assert warnings_of(path) == [
        f"{path}:20:3: states.loop: warning: no hang-up can ever be reached from state 'loop'",
        f"{path}:26:3: states.again: warning: no hang-up can ever be reached from state 'again'",
    ]


def test_an_unreachable_loop_is_reported_as_unreachable_only(write: Write) -> None:
    path = write(GOOD + "  lost: {kind: play, prompts: hi, next: lost}\n")
    assert warnings_of(path) == [
        f"{path}:20:3: states.lost: warning: state 'lost' is unreachable from 'main'"
    ]


def test_overlapping_menu_codes_say_which_wins(write: Write) -> None:
    path = write(GOOD.replace('"9": main', '"*1": main\n      "*11": sales'))
    assert warnings_of(path) == [
        f"{path}:12:7: states.main.options.*1: warning: options '*1' and '*11' overlap:"
        " '*11' wins when its next key comes within interdigit_timeout (3 s);"
        " '*1' is taken after it"
    ]


def test_every_overlapping_pair_is_reported_with_the_states_timeout(write: Write) -> None:
    path = write(
        GOOD.replace('"9": main', '"*1": main\n      "*11": sales\n      "*111": bye').replace(
            "    prompt: hi", "    prompt: hi\n    interdigit_timeout: 1.5"
        )
    )
    found = warnings_of(path)
    assert found == [
        f"{path}:13:7: states.main.options.*1: warning: options '*1' and '*11' overlap:"
        " '*11' wins when its next key comes within interdigit_timeout (1.5 s);"
        " '*1' is taken after it",
        f"{path}:13:7: states.main.options.*1: warning: options '*1' and '*111' overlap:"
        " '*111' wins when its next key comes within interdigit_timeout (1.5 s);"
        " '*1' is taken after it",
        f"{path}:14:7: states.main.options.*11: warning: options '*11' and '*111' overlap:"
        " '*111' wins when its next key comes within interdigit_timeout (1.5 s);"
        " '*11' is taken after it",
    ]


def test_warnings_come_together_in_file_order(write: Write) -> None:
    path = write(
        GOOD.replace('"9": main', '"*1": main\n      "*11": main')
        + "  orphan: {kind: hangup}\n"
        + "  spin: {kind: play, prompts: hi, next: spin}\n"
    )
    plan = load_dialplan(path)
    assert [(w.path, w.line) for w in plan.warnings] == [
        ("states.main.options.*1", 12),
        ("states.orphan", 21),
        ("states.spin", 22),
    ]


# --- defaults at their entry, keys in prompt mappings, the catalog folder ------------
def test_an_invalid_default_is_reported_once(write: Write) -> None:
    path = write(
        with_lines(GOOD, "defaults:", "  max_nomatch: -1")
        + "  second: {kind: menu, options: {'1': bye}}\n"
        + "  third: {kind: collect, into: x, next: bye}\n"
    )
    assert problems(path) == [
        f"{path}:4:16: defaults.max_nomatch: input should be greater than or equal to 1"
    ]


def test_an_invalid_default_no_state_uses_is_still_an_error(write: Write) -> None:
    path = write(
        "prompts: prompts\ninitial: main\ndefaults:\n  timeout: soon\n"
        "states:\n  main: {kind: hangup, prompts: bye}\n"
    )
    assert problems(path) == [
        f"{path}:4:12: defaults.timeout: input should be a valid number,"
        " unable to parse string as a number"
    ]


def test_an_unknown_target_in_defaults_is_reported_at_the_defaults_entry(write: Write) -> None:
    path = write(GOOD.replace("  on_max_noinput: bye", "  on_max_noinput: by"))
    assert problems(path) == [
        f"{path}:4:19: defaults.on_max_noinput: unknown state 'by' (did you mean 'bye'?)"
    ]


def test_an_unknown_target_in_defaults_is_reported_once_for_all_inheriting_states(
    write: Write,
) -> None:
    path = write(
        GOOD.replace("  on_max_nomatch: bye", "  on_max_nomatch: by")
        + "  second: {kind: menu, options: {'1': bye}}\n"
        + "  third: {kind: collect, into: x, next: bye, on_max_noinput: nowhere}\n"
    )
    assert problems(path) == [
        f"{path}:5:19: defaults.on_max_nomatch: unknown state 'by' (did you mean 'bye'?)",
        f"{path}:21:62: states.third.on_max_noinput: unknown state 'nowhere'",
    ]


def test_a_bad_prompt_in_defaults_is_reported_once_at_the_defaults_entry(write: Write) -> None:
    path = write(
        with_lines(GOOD, "defaults:", "  nomatch: {id: count, params: {m: calls}}")
        + "  second: {kind: menu, options: {'1': bye}}\n"
    )
    assert problems(path) == [
        f"{path}:4:12: defaults.nomatch.0.0: prompt 'count' needs parameter 'n'",
        f"{path}:4:12: defaults.nomatch.0.0: prompt 'count' has no parameter 'm'",
    ]


def test_an_unknown_key_in_a_defaults_prompt_is_reported_at_the_key(write: Write) -> None:
    path = write(with_lines(GOOD, "defaults:", "  noinput: {id: hi, parms: {}}"))
    assert problems(path) == [
        f"{path}:4:21: defaults.noinput.0.0.parms: unknown key 'parms' (did you mean 'params'?)"
    ]


def test_an_unknown_top_level_key_does_not_hide_other_errors(write: Write) -> None:
    path = write(with_lines(GOOD, "initial: main", "colour: red").replace('"9": main', '"9": mian'))
    assert problems(path) == [
        f"{path}:3:1: colour: unknown key 'colour'",
        f"{path}:13:12: states.main.options.9: unknown state 'mian' (did you mean 'main'?)",
    ]


def test_an_empty_state_name_is_an_error(write: Write) -> None:
    path = write(GOOD + "  '': {kind: hangup}\n")
    (found,) = problems(path)
    assert found.startswith(f"{path}:20:3: states.")


def test_a_merged_key_can_be_overridden(write: Write) -> None:
    path = write(
        GOOD.replace("  main:\n", "  main: &menu\n") + "  other:\n    <<: *menu\n    prompt: bye\n"
    )
    plan = load_dialplan(path)
    assert plan.states["other"].prompt[0].id == "bye"  # type: ignore[attr-defined]


def test_unknown_key_in_an_escalation_prompt_has_did_you_mean(write: Write) -> None:
    path = write(with_lines(GOOD, "    prompt: hi", "    noinput: [[{id: hi, parms: {}}]]"))
    assert problems(path) == [
        f"{path}:10:25: states.main.noinput.0.0.parms: unknown key 'parms' (did you mean 'params'?)"
    ]


def test_unknown_key_in_a_single_prompt_mapping_is_reported_at_the_key(write: Write) -> None:
    path = write(GOOD.replace("    prompt: hi", "    prompt: {id: hi, parms: {}}"))
    (found,) = problems(path)
    assert found.startswith(f"{path}:9:22: ")
    assert found.endswith("unknown key 'parms' (did you mean 'params'?)")


def test_an_unknown_prompt_in_defaults_is_reported_at_the_defaults_entry(write: Write) -> None:
    path = write(with_lines(GOOD, "defaults:", "  noinput: [hi, nix]"))
    catalog = path.parent / "prompts"
    (found,) = problems(path)
    assert found.startswith(f"{path}:4:17: defaults.noinput.1")
    assert found.endswith(f": prompt 'nix' not in catalog {catalog}")


def test_a_missing_catalog_folder_is_reported_at_the_prompts_entry(write: Write) -> None:
    path = write(GOOD.replace("prompts: prompts", "prompts: nowhere"))
    (found,) = problems(path)
    assert found.startswith(f"{path}:1:10: prompts: ")


def test_a_missing_catalog_folder_names_the_folder(write: Write) -> None:
    path = write(GOOD.replace("prompts: prompts", "prompts: nowhere"))
    assert problems(path) == [
        f"{path}:1:10: prompts: prompt catalog directory not found: {path.parent / 'nowhere'}"
    ]


def test_unknown_key_in_a_single_escalation_prompt_mapping_is_reported_at_the_key(
    write: Write,
) -> None:
    path = write(with_lines(GOOD, "    prompt: hi", "    nomatch: {id: hi, when: x, parms: {}}"))
    assert problems(path) == [
        f"{path}:10:32: states.main.nomatch.0.0.parms: unknown key 'parms' (did you mean 'params'?)"
    ]


def test_a_too_long_catalog_folder_name_is_a_dialplan_error(write: Write) -> None:
    path = write(GOOD.replace("prompts: prompts", "prompts: " + "x" * 300))
    assert len(problems(path)) == 1
