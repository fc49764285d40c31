"""The states that end a dialogue: ``hangup``, ``transfer``, ``pull`` and ``dial``.

Each may play prompts first (not interruptible), then emits its command. Targets are
templates: ``{name}`` is replaced by the session variable ``name``.

Example::

    goodbye: {kind: hangup, prompts: goodbye}
    to_sales: {kind: transfer, target: "sip:{sales_ext}@pbx.example"}
    pull_one: {kind: pull, call: "{pull_call}"}
    dial_out: {kind: dial, number: "{number}", caller_id: "{portal_number}"}
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from ivr.commands import Command, Dial, Hangup, PullCall, Transfer
from ivr.states.base import Call, PromptRef, Prompts, State, prompt_paths


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


class TransferState(EndingState):
    """Blind-transfer the caller."""

    kind: Literal["transfer"] = "transfer"
    target: Template = Field(description="number or SIP URI", examples=["{agent}"])

    def command(self, call: Call) -> Command:
        return Transfer(target=call.template(self.target))


class PullState(EndingState):
    """Pull a running call onto the caller's leg (call retrieve)."""

    kind: Literal["pull"] = "pull"
    call: Template = Field(description="id of the call to pull", examples=["{pull_call}"])

    def command(self, call: Call) -> Command:
        return PullCall(call=call.template(self.call))


class DialState(EndingState):
    """Place an outgoing call for the caller."""

    kind: Literal["dial"] = "dial"
    number: Template = Field(description="number to dial", examples=["{number}"])
    caller_id: Template = Field(default="", description="number to present")
    display_name: Template = Field(default="", description="name to present")

    def command(self, call: Call) -> Command:
        return Dial(
            number=call.template(self.number),
            caller_id=call.template(self.caller_id),
            display_name=call.template(self.display_name),
        )
