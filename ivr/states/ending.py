"""The states that end a dialogue: ``hangup``, ``transfer``, ``pull`` and ``dial``.

Each may play prompts first (not interruptible), then emits its command. Targets are
templates: ``{name}`` is replaced by the session variable ``name``. ``transfer``,
``pull`` and ``dial`` end the dialogue only when the runtime connected the caller; any other result
(``CallControlResult``) follows ``on`` — a result without its own branch takes
``on.failed``, and without that the caller hears the apology and the call ends.

Example::

    goodbye: {kind: hangup, prompts: goodbye}
    to_sales: {kind: transfer, target: "sip:{sales_ext}@pbx.example"}
    pull_one: {kind: pull, call: "{pull_call}", on: {failed: pull_failed}}
    dial_out:
      kind: dial
      number: "{number}"
      caller_id: "{portal_number}"
      on: {busy: busy, no_answer: no_answer, failed: dial_failed}
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from ivr.commands import Command, Dial, Hangup, PullCall, Transfer
from ivr.errors import CallControlError
from ivr.states.base import Call, Edge, PromptRef, Prompts, State, StateName, prompt_paths


def _check_template(text: str) -> str:
    for _literal, name, spec, conversion in string.Formatter().parse(text):
        if name is not None and (not name.isidentifier() or spec or conversion):
            raise ValueError(f"bad placeholder {{{name}}} in {text!r}: use {{variable}}")
    return text


Template = Annotated[
    str,
    AfterValidator(_check_template),
    Field(description="text; {name} is replaced by session variable name"),
]


class EndingState(State):
    """Plays its prompts without barge-in, then ends the dialogue with a command."""

    ends_call: ClassVar[bool] = True

    prompts: Prompts = Field(default=(), description="prompts before the command")

    def prompt_refs(self) -> Iterator[tuple[tuple[str | int, ...], PromptRef]]:
        return prompt_paths("prompts", self.prompts)

    def enter(self, call: Call) -> None:
        call.play(self.prompts, bargein=False)

    def prompts_done(self, call: Call) -> None:
        call.end(self.command(call))

    def command(self, call: Call) -> Command:
        """The command that ends the call."""
        raise NotImplementedError


class HangupState(EndingState):
    """Say goodbye (optional) and hang up."""

    kind: Literal["hangup"] = "hangup"
    reason: Literal["normal", "refused", "error"] = Field(
        default="normal", description="why: normal, refused (access denied) or error"
    )

    def command(self, call: Call) -> Command:
        return Hangup(reason=self.reason)


#: results a ``pull`` or ``dial`` state may branch on (``connected`` ends the dialogue)
FailureResult = Literal["failed", "busy", "not_found", "unavailable", "no_answer", "blocked"]


class ConnectingState(EndingState):
    """Plays its prompts, asks the runtime to connect the caller, and waits for the
    result: ``connected`` ends the dialogue, anything else follows ``on``."""

    on: dict[FailureResult, StateName] = Field(
        default_factory=dict,
        description="result -> state when the caller could not be connected; "
        "'failed' also takes the results without a branch of their own",
        examples=[{"busy": "busy", "failed": "menu"}],
    )
    #: the dialogue's outcome once connected
    outcome: ClassVar[str] = "connected"

    def edges(self) -> list[Edge]:
        return [Edge(f"on:{result}", target, ("on", result)) for result, target in self.on.items()]

    def prompts_done(self, call: Call) -> None:
        call.scratch["connecting"] = True
        call.emit(self.command(call))

    def digit(self, call: Call, key: str) -> None:
        """Keys while connecting are dropped (they must not reach the next state)."""

    def call_control(self, call: Call, result: str) -> None:
        if not call.scratch.pop("connecting", False):
            return  # not waiting: a stale result
        if result == "connected":
            call.conclude(self.outcome)
        elif result in self.on:
            call.goto(f"on:{result}")
        elif "failed" in self.on:
            call.goto("on:failed")
        else:
            kind = type(self).model_fields["kind"].default
            call.fail(CallControlError(f"{kind} ended {result!r}; no branch for it"))


class TransferState(ConnectingState):
    """Blind-transfer the caller (REFER); a transfer the target refuses follows ``on``."""

    kind: Literal["transfer"] = "transfer"
    target: Template = Field(description="number or SIP URI", examples=["{agent}"])
    outcome: ClassVar[str] = "transferred"

    def command(self, call: Call) -> Command:
        return Transfer(target=call.template(self.target))


class PullState(ConnectingState):
    """Pull a running call onto the caller's leg (call retrieve)."""

    kind: Literal["pull"] = "pull"
    call: Template = Field(description="id of the call to pull", examples=["{pull_call}"])
    outcome: ClassVar[str] = "pulled"

    def command(self, call: Call) -> Command:
        return PullCall(call=call.template(self.call))


class DialState(ConnectingState):
    """Call a number for the caller and connect them when it answers."""

    kind: Literal["dial"] = "dial"
    number: Template = Field(description="number to dial", examples=["{number}"])
    caller_id: Template = Field(default="", description="number to present")
    display_name: Template = Field(default="", description="name to present")
    timeout: float = Field(
        default=30, gt=0, le=600, description="seconds the number may ring (no_answer after)"
    )
    outcome: ClassVar[str] = "dialed"

    def command(self, call: Call) -> Command:
        return Dial(
            number=call.template(self.number),
            caller_id=call.template(self.caller_id),
            display_name=call.template(self.display_name),
            timeout=self.timeout,
        )
