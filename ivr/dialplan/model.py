"""The loaded, validated, immutable dialplan the engine runs and the tools draw."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from ivr.errors import Problem
from ivr.hooks import Hooks
from ivr.prompts.catalog import PromptCatalog
from ivr.states.base import Edge, State
from ivr.states.input import INPUT_DEFAULTS, InputState
from ivr.yaml_source import Source


class DialplanHeader(BaseModel):
    """The top level of a dialplan file, apart from ``defaults`` and ``states``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="", description="the dialplan's name (default: file name)")
    language: str = Field(default="de", description="prompt language", examples=["de"])
    prompts: str = Field(
        description="prompt catalog directory, relative to this file", examples=["../prompts/de"]
    )
    initial: str = Field(min_length=1, description="the state a call starts in")
    hooks: str | None = Field(
        default=None,
        description="Python registry of this dialplan's hooks, 'package.module:attribute'",
        examples=["ivr.portal.hooks:hooks"],
    )
    apology: str | None = Field(
        default="apology",
        description="prompt played before hanging up when a hook fails (null: none)",
    )


_DEFAULT_FIELDS: dict[str, Any] = {
    name: (InputState.model_fields[name].annotation, InputState.model_fields[name])
    for name in INPUT_DEFAULTS
}
#: ``defaults``: the input fields every input state inherits, checked where they are written
Defaults = create_model(
    "Defaults",
    __config__=ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True),
    **_DEFAULT_FIELDS,
)


def defaults_schema() -> dict[str, Any]:
    """JSON Schema of ``defaults``."""
    return {
        "type": "object",
        "description": "values every state takes unless it sets its own",
        "properties": Defaults.model_json_schema()["properties"],
        "additionalProperties": False,
    }


@dataclass(frozen=True, slots=True)
class Dialplan:
    """A validated dialplan. ``states`` keeps file order; ``warnings`` come from checks."""

    name: str
    file: str
    language: str
    catalog: PromptCatalog
    initial: str
    states: Mapping[str, State]
    hooks: Hooks
    apology: str | None
    source: Source
    warnings: tuple[Problem, ...] = field(default=())

    def edges(self) -> list[tuple[str, Edge]]:
        """``(state, edge)`` for every transition of the dialplan, in file order."""
        return [(name, edge) for name, state in self.states.items() for edge in state.edges()]
