"""What every state kind shares: its config base class, prompt references, and the
runtime interface (:class:`Call`) through which a kind acts on its call.

A state kind is one pydantic model: its fields are the YAML config (validated at load
time, and exported as JSON Schema), its methods are the behaviour on enter, key,
prompts finished and timer. Kinds never touch I/O: they call :class:`Call` methods,
which turn into commands.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from ivr.expressions import Expression, compile_expression

if TYPE_CHECKING:
    from ivr.commands import Command

StateName = Annotated[str, Field(min_length=1, description="the name of a state")]


def _expression(value: Any) -> Any:
    return compile_expression(value) if isinstance(value, str) else value


ExpressionField = Annotated[
    Expression,
    BeforeValidator(_expression),
    WithJsonSchema({"type": "string", "description": "an expression over session variables"}),
]


def _regex(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Regex = Annotated[
    re.Pattern[str],
    BeforeValidator(_regex),
    WithJsonSchema({"type": "string", "description": "a regular expression (full match)"}),
]


class PromptRef(BaseModel):
    """One prompt to play: its catalog id, parameter values, and an optional condition."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    id: str = Field(description="prompt id in the catalog", examples=["main_menu"])
    params: dict[str, ExpressionField] = Field(
        default_factory=dict,
        description="parameter values: expressions over session variables",
        examples=[{"count": "calls"}],
    )
    when: ExpressionField | None = Field(
        default=None,
        description="play only when this expression is true",
        examples=["calls > 1"],
    )


def _prompt_list(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, str | dict):
        value = [value]
    if isinstance(value, list):
        return tuple({"id": v} if isinstance(v, str) else v for v in value)
    return value


_PROMPT_ITEM = {
    "anyOf": [
        {"type": "string", "description": "a prompt id"},
        {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "params": {"type": "object", "additionalProperties": {}},
                "when": {"type": "string"},
            },
            "required": ["id"],
            "additionalProperties": False,
        },
    ]
}

Prompts = Annotated[
    tuple[PromptRef, ...],
    BeforeValidator(_prompt_list),
    WithJsonSchema(
        {
            "anyOf": [*_PROMPT_ITEM["anyOf"], {"type": "array", "items": _PROMPT_ITEM}],
            "description": "a prompt id, a prompt with params, or a list of them",
        }
    ),
]


def _escalation_list(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(_prompt_list(v) for v in value)
    return (_prompt_list(value),)


Escalation = Annotated[
    tuple[tuple[PromptRef, ...], ...],
    BeforeValidator(_escalation_list),
    WithJsonSchema(
        {
            "type": "array",
            "items": {"anyOf": [*_PROMPT_ITEM["anyOf"], {"type": "array", "items": _PROMPT_ITEM}]},
            "description": "one entry per attempt (VoiceXML count): the n-th failure plays "
            "entry n, the last entry repeats",
        }
    ),
]


@dataclass(frozen=True, slots=True)
class Edge:
    """A way out of a state: ``label`` names why (``next``, ``option:*11``, ...)."""

    label: str
    target: str
    path: tuple[str | int, ...]


class Call(Protocol):
    """What a state kind may do to its call (implemented by :class:`ivr.Dialogue`)."""

    vars: dict[str, Any]
    scratch: dict[str, Any]
    typeahead: list[str]

    def play(self, prompts: tuple[PromptRef, ...], *, bargein: bool) -> None:
        """Play prompts in order; ``prompts_done`` follows (at once if none plays)."""

    def goto(self, label: str) -> None:
        """Leave the state along the edge called ``label``."""

    def start_timer(self, seconds: float) -> str:
        """Start the state's one timer (replacing any); returns its name."""

    def cancel_timer(self) -> None:
        """Cancel the state's timer, if one runs."""

    def emit(self, command: Command) -> None:
        """Queue a command for the runtime."""

    def end(self, command: Command) -> None:
        """Emit a dialogue-ending command (hang-up, transfer)."""

    def conclude(self, outcome: str) -> None:
        """End the dialogue without a command: the runtime connected the caller."""

    def fail(self, error: Exception) -> None:
        """The dialogue cannot go on: apologise and hang up (logs ``error``)."""

    def call_hook(self, name: str) -> Any:
        """Call application hook ``name`` with the session; returns its result."""

    def template(self, text: str) -> str:
        """Fill ``{var}`` placeholders from session variables."""

    def evaluate(self, expression: Expression) -> Any:
        """Evaluate an expression over the session variables."""


class State(BaseModel):
    """Base of every state kind's config. Subclasses set ``kind`` and behaviour."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    takes_input: ClassVar[bool] = False
    ends_call: ClassVar[bool] = False
    #: config fields that take their value from the dialplan's ``defaults`` when unset
    default_fields: ClassVar[tuple[str, ...]] = ()

    description: str = Field(default="", description="what this state is for (free text)")

    # --- static facts, for validation, graphs and coverage -----------------------
    def edges(self) -> list[Edge]:
        """Every way out of this state."""
        return []

    def prompt_refs(self) -> Iterator[tuple[tuple[str | int, ...], PromptRef]]:
        """Every prompt this state may play, with its config path."""
        return iter(())

    def hook_names(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Every application hook this state calls, with its config path."""
        return []

    def is_secret(self) -> bool:
        """True when keys pressed in this state must be masked everywhere."""
        return False

    # --- behaviour ----------------------------------------------------------------
    def enter(self, call: Call) -> None:
        """The call entered this state."""

    def digit(self, call: Call, key: str) -> None:
        """A key reached this state (after barge-in and type-ahead rules)."""
        call.typeahead.append(key)

    def prompts_done(self, call: Call) -> None:
        """The prompts started with ``call.play`` have all played."""

    def timer(self, call: Call) -> None:
        """The state's timer ran out."""

    def call_control(self, call: Call, result: str) -> None:
        """The runtime reports how a pull or dial ended (``CallControlResult``)."""


def prompt_paths(
    field: str, prompts: tuple[PromptRef, ...]
) -> Iterator[tuple[tuple[str | int, ...], PromptRef]]:
    """``(path, ref)`` for each prompt of a prompt-list field."""
    for i, ref in enumerate(prompts):
        yield (field, i), ref
