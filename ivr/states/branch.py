"""``branch``: go to the first case whose condition holds, else ``otherwise``.

Conditions are expressions over session variables (see ``ivr.expressions``).

Example::

    route:
      kind: branch
      cases:
        - {when: "calls == 0", goto: no_calls}
        - {when: "calls == 1", goto: pull_one}
      otherwise: choose_call
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ivr.states.base import Call, Edge, ExpressionField, State, StateName


class Case(BaseModel):
    """One condition and where it leads."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    when: ExpressionField = Field(description="condition", examples=["calls > 1"])
    goto: StateName = Field(description="state when the condition holds")


class Branch(State):
    """Choose the next state by conditions."""

    kind: Literal["branch"] = "branch"
    cases: list[Case] = Field(min_length=1, description="tried in order")
    otherwise: StateName = Field(description="state when no case holds")

    def edges(self) -> list[Edge]:
        edges = [
            Edge(f"case:{i + 1}", case.goto, ("cases", i, "goto"))
            for i, case in enumerate(self.cases)
        ]
        return [*edges, Edge("otherwise", self.otherwise, ("otherwise",))]

    def enter(self, call: Call) -> None:
        for i, case in enumerate(self.cases):
            if call.evaluate(case.when):
                call.goto(f"case:{i + 1}")
                return
        call.goto("otherwise")
