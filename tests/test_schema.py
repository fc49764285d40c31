"""The generated JSON Schema: committed copy is current, and it judges dialplans right."""

from __future__ import annotations

import json

import jsonschema
import pytest

from ivr.schema import dialplan_schema
from ivr.yaml_source import read_yaml
from tests.conftest import DEMO, ROOT


def test_committed_schema_is_current() -> None:
    committed = json.loads((ROOT / "dialplan.schema.json").read_text())
    assert committed == dialplan_schema(), "run `make schema` and commit dialplan.schema.json"


def test_schema_accepts_the_shipped_dialplans() -> None:
    schema = dialplan_schema()
    for path in sorted((ROOT / "dialplans").glob("*.yaml")):
        jsonschema.validate(read_yaml(path).data, schema)


@pytest.mark.parametrize(
    ("state", "complaint"),
    [
        ({"kind": "menue"}, "kind"),
        ({"kind": "play", "prompts": "x", "next": "y", "bogus": 1}, "bogus"),
        ({"kind": "collect", "into": "x", "next": "y", "timeout": "soon"}, "soon"),
    ],
)
def test_schema_rejects_bad_states(state: dict[str, object], complaint: str) -> None:
    data = read_yaml(DEMO).data
    data["states"]["broken"] = state
    with pytest.raises(jsonschema.ValidationError) as info:
        jsonschema.validate(data, dialplan_schema())
    assert complaint in str(info.value)
