"""``branch``: first true case wins, else ``otherwise``; failing expressions and loops end
the call cleanly."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ivr import Hangup, Session, Transfer
from tests.states.conftest import MakeCall, finish, hooks_of, play, start

ROUTE = """
start: {kind: action, hook: setup, next: route}
route:
  kind: branch
  cases:
    - {when: "n > 1", goto: many}
    - {when: "n >= 1", goto: one}
    - {when: "n == 0 or name in ['x', 'y']", goto: zero}
  otherwise: other
many: {kind: transfer, target: "many"}
one: {kind: transfer, target: "one"}
zero: {kind: transfer, target: "zero"}
other: {kind: transfer, target: "other"}
"""


def setting(**values: Any) -> Any:
    def setup(session: Session) -> None:
        session.vars.update(values)

    return hooks_of(setup=setup)


@pytest.mark.parametrize(
    ("values", "target"),
    [
        ({"n": 5}, "many"),  # cases 1 and 2 both hold: the first wins
        ({"n": 1}, "one"),
        ({"n": 0}, "zero"),
        ({"n": -3, "name": "y"}, "zero"),
        ({"n": -3, "name": "z"}, "other"),
    ],
)
def test_first_true_case_wins_else_otherwise(
    make_call: MakeCall, values: dict[str, Any], target: str
) -> None:
    call = make_call(ROUTE, hooks=setting(**values))
    assert start(call) == [Transfer(target=target)]


def test_conditions_read_collected_text_with_len(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: action, hook: setup, next: route}
        route:
          kind: branch
          cases: [{when: "len(number) > 3 and number != '0000'", goto: long}]
          otherwise: short
        long: {kind: transfer, target: "long"}
        short: {kind: transfer, target: "short"}
        """,
        hooks=setting(number="01234"),
    )
    assert start(call) == [Transfer(target="long")]


def test_unset_variable_reads_as_none(make_call: MakeCall) -> None:
    call = make_call(
        """
        start:
          kind: branch
          cases: [{when: "missing is None", goto: unset}]
          otherwise: bye
        unset: {kind: transfer, target: "unset"}
        """
    )
    assert start(call) == [Transfer(target="unset")]


def test_caller_number_is_a_variable(make_call: MakeCall) -> None:
    call = make_call(
        """
        start:
          kind: branch
          cases: [{when: "caller == '+4930999'", goto: vip}]
          otherwise: bye
        vip: {kind: transfer, target: "vip"}
        """
    )
    assert start(call, caller="+4930999") == [Transfer(target="vip")]


def test_expression_error_ends_with_apology_and_hangup(
    make_call: MakeCall, caplog: pytest.LogCaptureFixture
) -> None:
    call = make_call(
        """
        start:
          kind: branch
          cases: [{when: "n > 1", goto: bye}]
          otherwise: bye
        """
    )
    with caplog.at_level(logging.ERROR, logger="ivr.dialogue"):
        out = start(call)  # None > 1 raises TypeError inside the dialogue
    assert out == [play("apology", 1, bargein=False)]
    assert "n > 1" in caplog.text and "c1" in caplog.text
    assert finish(call, 1) == [Hangup(reason="error")]
    assert call.ended


def test_expression_error_in_a_later_case_also_ends_cleanly(make_call: MakeCall) -> None:
    call = make_call(
        """
        start:
          kind: branch
          cases:
            - {when: "caller == 'x'", goto: bye}
            - {when: "caller - 1", goto: bye}
          otherwise: bye
        """,
        head="apology: null\n",
    )
    assert start(call) == [Hangup(reason="error")]


def test_loop_guard_ends_a_branch_loop(
    make_call: MakeCall, caplog: pytest.LogCaptureFixture
) -> None:
    call = make_call(
        """
        start: {kind: branch, cases: [{when: "n == 1", goto: bye}], otherwise: other}
        other: {kind: branch, cases: [{when: "n == 1", goto: bye}], otherwise: start}
        """
    )
    with caplog.at_level(logging.ERROR, logger="ivr.dialogue"):
        assert start(call) == [play("apology", 1, bargein=False)]
    assert "loop" in caplog.text
    assert finish(call, 1) == [Hangup(reason="error")]


def test_loop_guard_without_apology_hangs_up_at_once(make_call: MakeCall) -> None:
    call = make_call(
        """
        start: {kind: branch, cases: [{when: "n == 1", goto: bye}], otherwise: other}
        other: {kind: branch, cases: [{when: "n == 1", goto: bye}], otherwise: start}
        """,
        head="apology: null\n",
    )
    assert start(call) == [Hangup(reason="error")]
    assert call.ended


def test_a_long_but_finite_chain_is_no_loop(make_call: MakeCall) -> None:
    def count(session: Session) -> None:
        session.vars["n"] = (session.vars.get("n") or 0) + 1

    call = make_call(
        """
        start: {kind: action, hook: count, next: again}
        again: {kind: branch, cases: [{when: "n < 30", goto: start}], otherwise: done}
        done: {kind: transfer, target: "done"}
        """,
        hooks=hooks_of(count=count),
    )
    assert start(call) == [Transfer(target="done")]  # 60 transitions, under the guard
    assert call.vars["n"] == 30
