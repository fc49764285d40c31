"""``play``: one or more prompts, then the next state.

With ``bargein: true`` a key stops the rest of the prompts and moves on at once; the key
is kept in the type-ahead buffer, so the next input state gets it as its first key.
With ``bargein: false`` keys are buffered and the prompts play to the end.

Example::

    welcome:
      kind: play
      prompts: [welcome, {id: calls_waiting, params: {count: calls}, when: "calls > 0"}]
      next: main
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field

from ivr.states.base import Call, Edge, PromptRef, Prompts, State, StateName, prompt_paths


class Play(State):
    """Play prompts, then go on."""

    kind: Literal["play"] = "play"
    default_fields: ClassVar[tuple[str, ...]] = ("bargein",)

    prompts: Prompts = Field(description="prompts to play in order")
    bargein: bool = Field(default=True, description="a key press skips the rest")
    next: StateName = Field(description="state after the prompts")

    def edges(self) -> list[Edge]:
        return [Edge("next", self.next, ("next",))]

    def prompt_refs(self) -> Iterator[tuple[tuple[str | int, ...], PromptRef]]:
        return prompt_paths("prompts", self.prompts)

    def enter(self, call: Call) -> None:
        call.play(self.prompts, bargein=self.bargein)

    def prompts_done(self, call: Call) -> None:
        call.goto("next")

    def digit(self, call: Call, key: str) -> None:
        call.typeahead.append(key)
        call.goto("next")
