"""JSON Schema of the dialplan format, generated from the state kinds' own config models
(one source of truth), for editors that complete and check YAML as it is typed."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from ivr.dialplan.model import DialplanHeader, defaults_schema
from ivr.states import KINDS

#: the schema's identifier: a name, not a location (the file ships in the package,
#: `ivr schema` writes it; editors find it by path)
SCHEMA_ID = "urn:ivr-dialplan:schema:dialplan"


def dialplan_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a dialplan file."""
    kinds = tuple(KINDS.values())
    state_type = Annotated[Union[kinds], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007
    states = TypeAdapter(state_type).json_schema(ref_template="#/$defs/{model}")
    defs = states.pop("$defs", {})
    header = DialplanHeader.model_json_schema(ref_template="#/$defs/{model}")
    defs.update(header.pop("$defs", {}))
    properties = dict(header["properties"])
    properties["defaults"] = defaults_schema()
    properties["states"] = {
        "type": "object",
        "description": "state name -> state; `kind` selects the state kind",
        "propertyNames": {"pattern": "^[A-Za-z0-9_-]+$"},
        "additionalProperties": states,
        "minProperties": 1,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "ivr dialplan",
        "type": "object",
        "properties": properties,
        "required": ["prompts", "initial", "states"],
        "additionalProperties": False,
        "$defs": defs,
    }
