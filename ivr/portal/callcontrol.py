"""Call control: what the PBX does for the portal — the active calls of an employee,
pulling one onto the portal caller's leg, dialling out. A protocol, and a simulated PBX
seeded from a YAML file for the simulator and tests.

Seed format (``examples/portal/pbx.yaml``)::

    calls:
      - {id: call-erika-1, employee: erika, device: erika-desk, remote: "+49 30 9876543",
         started: "2026-01-05T08:55:00+01:00"}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from ivr.dialplan.yaml_source import read_yaml
from ivr.errors import DialplanError
from ivr.validation import problems_of


class ActiveCall(BaseModel):
    """A call running on one of an employee's devices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    employee: str
    device: str = ""
    remote: str = ""
    started: datetime | None = None


class CallControl(Protocol):
    """What the portal asks of the PBX."""

    def active_calls(self, employee_id: str) -> list[ActiveCall]:
        """The employee's running calls, oldest first."""

    def pull(self, call_id: str, to: str) -> None:
        """Move running call ``call_id`` onto the leg of the portal caller ``to``."""

    def dial(self, number: str, *, for_caller: str, caller_id: str, display_name: str) -> None:
        """Call ``number`` for the portal caller, presenting ``caller_id``/``display_name``."""


@dataclass(frozen=True, slots=True)
class PlacedCall:
    """A call the simulated PBX placed for a portal caller."""

    number: str
    for_caller: str
    caller_id: str
    display_name: str


class _Seed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calls: list[ActiveCall] = []


class SimulatedPbx:
    """A PBX in memory: calls from a seed file, listed oldest first. A pulled call leaves
    its employee's list (it now runs on the portal caller's leg); placed calls are kept
    in ``placed``."""

    def __init__(self, calls: list[ActiveCall] | None = None) -> None:
        self.calls = list(calls or [])
        self.pulled: list[tuple[ActiveCall, str]] = []
        self.placed: list[PlacedCall] = []

    @classmethod
    def load(cls, path: str | Path) -> SimulatedPbx:
        """Read a seed file (validated, errors with file:line)."""
        source = read_yaml(path)
        try:
            seed = _Seed.model_validate(source.data)
        except ValidationError as exc:
            raise DialplanError(problems_of(source, exc, _Seed)) from None
        return cls(seed.calls)

    def active_calls(self, employee_id: str) -> list[ActiveCall]:
        mine = [c for c in self.calls if c.employee == employee_id]
        return sorted(mine, key=lambda c: (c.started is not None, c.started or 0))

    def pull(self, call_id: str, to: str) -> None:
        for call in self.calls:
            if call.id == call_id:
                self.calls.remove(call)
                self.pulled.append((call, to))
                return
        raise KeyError(f"no running call {call_id!r}")

    def dial(self, number: str, *, for_caller: str, caller_id: str, display_name: str) -> None:
        self.placed.append(PlacedCall(number, for_caller, caller_id, display_name))
