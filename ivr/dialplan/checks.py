"""Warnings about a valid dialplan: unreachable states, states that can never reach a
hang-up, overlapping menu codes."""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import TYPE_CHECKING

from ivr.errors import Problem
from ivr.states.menu import Menu

if TYPE_CHECKING:
    from ivr.dialplan.model import Dialplan


def with_warnings(plan: Dialplan) -> Dialplan:
    """``plan`` with its ``warnings`` filled in."""
    return dataclasses.replace(plan, warnings=tuple(find_warnings(plan)))


def find_warnings(plan: Dialplan) -> list[Problem]:
    """Every warning for ``plan``, in file order."""
    graph: dict[str, set[str]] = {name: set() for name in plan.states}
    for name, edge in plan.edges():
        graph[name].add(edge.target)
    reachable = _closure({plan.initial}, graph)
    reverse: dict[str, set[str]] = {name: set() for name in plan.states}
    for name, targets in graph.items():
        for target in targets:
            reverse[target].add(name)
    enders = {name for name, state in plan.states.items() if state.ends_call}
    can_end = _closure(enders, reverse)
    warnings: list[Problem] = []
    for name, state in plan.states.items():
        path = ("states", name)
        if name not in reachable:
            warnings.append(
                _warn(plan, path, f"state {name!r} is unreachable from {plan.initial!r}")
            )
        elif name not in can_end:
            warnings.append(
                _warn(plan, path, f"no hang-up can ever be reached from state {name!r}")
            )
        if isinstance(state, Menu):
            for short, long in state.overlaps():
                warnings.append(
                    _warn(
                        plan,
                        (*path, "options", short),
                        f"options {short!r} and {long!r} overlap: {long!r} wins when its next "
                        f"key comes within interdigit_timeout ({state.interdigit_timeout:g} s); "
                        f"{short!r} is taken after it",
                    )
                )
    return warnings


def _warn(plan: Dialplan, path: tuple[str, ...], message: str) -> Problem:
    return plan.source.problem(path, message, at_key=True, severity="warning")


def _closure(start: set[str], graph: dict[str, set[str]]) -> set[str]:
    seen = set(start)
    queue = deque(start)
    while queue:
        for nxt in graph.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen
