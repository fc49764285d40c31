"""The input engine shared by ``menu`` and ``collect``: prompt with barge-in, type-ahead,
first-digit and inter-digit timeouts, no-input / no-match escalation with separate limits.

Barge-in on: a key stops the prompt and is kept as the first key of the input.
Barge-in off: keys pressed during the prompt are buffered (type-ahead) and read, in
order, when the prompt has finished. When the state is entered with keys already in
the type-ahead buffer and barge-in is on, the prompt is skipped. The buffer is flushed
on a no-match (so one mistyped sequence cannot cascade) and holds at most 64 keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from pydantic import Field, model_validator

from ivr.states.base import (
    Call,
    Edge,
    Escalation,
    PromptRef,
    Prompts,
    State,
    StateName,
    prompt_paths,
)

INPUT_DEFAULTS: tuple[str, ...] = (
    "bargein",
    "timeout",
    "interdigit_timeout",
    "terminator",
    "noinput",
    "nomatch",
    "reprompt",
    "max_noinput",
    "max_nomatch",
    "on_max_noinput",
    "on_max_nomatch",
)


class InputState(State):
    """Fields and behaviour common to every state that takes keys."""

    takes_input: ClassVar[bool] = True
    default_fields: ClassVar[tuple[str, ...]] = INPUT_DEFAULTS

    prompt: Prompts = Field(default=(), description="what the caller hears before input")
    bargein: bool = Field(default=True, description="a key press stops the prompt")
    timeout: float = Field(
        default=5.0, gt=0, le=600, description="seconds to wait for the first key (no-input)"
    )
    interdigit_timeout: float = Field(
        default=3.0, gt=0, le=600, description="seconds to wait for each further key"
    )
    terminator: str = Field(
        default="#",
        pattern=r"^[0-9*#A-D]?$",
        description="key that ends input ('' for none); quote it in YAML: '#'",
    )
    noinput: Escalation = Field(default=(), description="prompts after the n-th no-input")
    nomatch: Escalation = Field(default=(), description="prompts after the n-th no-match")
    reprompt: bool = Field(
        default=True, description="after a no-input/no-match prompt, play `prompt` again"
    )
    max_noinput: int = Field(
        default=3, ge=1, le=100, description="the n-th no-input leaves to on_max_noinput"
    )
    max_nomatch: int = Field(
        default=3, ge=1, le=100, description="the n-th no-match leaves to on_max_nomatch"
    )
    on_max_noinput: StateName | None = Field(
        default=None, description="state after max_noinput no-inputs (required here or in defaults)"
    )
    on_max_nomatch: StateName | None = Field(
        default=None,
        description="state after max_nomatch no-matches (required here or in defaults)",
    )

    @model_validator(mode="after")
    def _exits_given(self) -> InputState:
        for name in ("on_max_noinput", "on_max_nomatch"):
            if getattr(self, name) is None:
                raise ValueError(f"{name} is required (here or in defaults)")
        return self

    # --- static facts -----------------------------------------------------------
    def edges(self) -> list[Edge]:
        return [
            Edge("max_noinput", str(self.on_max_noinput), ("on_max_noinput",)),
            Edge("max_nomatch", str(self.on_max_nomatch), ("on_max_nomatch",)),
        ]

    def prompt_refs(self) -> Iterator[tuple[tuple[str | int, ...], PromptRef]]:
        yield from prompt_paths("prompt", self.prompt)
        for field in ("noinput", "nomatch"):
            for i, prompts in enumerate(getattr(self, field)):
                for j, ref in enumerate(prompts):
                    yield (field, i, j), ref

    # --- behaviour --------------------------------------------------------------
    def enter(self, call: Call) -> None:
        call.scratch.update(digits="", noinput=0, nomatch=0, waiting=False)
        self._ask(call, self.prompt)

    def _ask(self, call: Call, prompts: tuple[PromptRef, ...]) -> None:
        call.scratch["waiting"] = False
        if call.typeahead and self.bargein:
            self.prompts_done(call)
        else:
            call.play(prompts, bargein=self.bargein)

    def prompts_done(self, call: Call) -> None:
        scratch = call.scratch
        scratch["waiting"] = True
        if not call.typeahead:
            call.start_timer(self.interdigit_timeout if scratch["digits"] else self.timeout)
        while call.typeahead:
            self.digit(call, call.typeahead.pop(0))
            if call.scratch is not scratch or not scratch["waiting"]:
                return

    def digit(self, call: Call, key: str) -> None:
        scratch = call.scratch
        scratch["waiting"] = True
        call.cancel_timer()
        if self.key(call, key) and call.scratch is scratch and scratch["waiting"]:
            call.start_timer(self.interdigit_timeout)

    def timer(self, call: Call) -> None:
        digits = call.scratch["digits"]
        if digits:
            self.finish(call, digits)
        else:
            self.no_input(call)

    def no_input(self, call: Call) -> None:
        """Count a no-input: escalate, or leave at the limit."""
        count = call.scratch["noinput"] = call.scratch["noinput"] + 1
        if count >= self.max_noinput:
            call.goto("max_noinput")
        else:
            self._escalate(call, self.noinput, count)

    def no_match(self, call: Call) -> None:
        """Count a no-match: flush type-ahead, escalate, or leave at the limit."""
        call.typeahead.clear()
        call.scratch["digits"] = ""
        count = call.scratch["nomatch"] = call.scratch["nomatch"] + 1
        if count >= self.max_nomatch:
            call.goto("max_nomatch")
        else:
            self._escalate(call, self.nomatch, count)

    def _escalate(self, call: Call, levels: tuple[tuple[PromptRef, ...], ...], count: int) -> None:
        prompts: tuple[PromptRef, ...] = levels[min(count, len(levels)) - 1] if levels else ()
        if self.reprompt:
            prompts = prompts + self.prompt
        self._ask(call, prompts)

    # --- for subclasses -----------------------------------------------------------
    def key(self, call: Call, key: str) -> bool:
        """Take one key; True while input stays open (an inter-digit timer follows)."""
        raise NotImplementedError

    def finish(self, call: Call, digits: str) -> None:
        """The inter-digit timeout ended input with ``digits`` collected."""
        raise NotImplementedError
