"""Call control: what the PBX does for the portal — the active calls of an employee,
pulling one onto the portal caller's leg, dialling out. A protocol, and a simulated PBX
seeded from a YAML file for the simulator and tests (the real one, on Kamailio, is
:mod:`ivr.portal.kamailio`).

Seed format (``examples/portal/pbx.yaml``)::

    calls:
      - {id: call-erika-1, employee: erika, device: erika-desk, remote: "+49 30 9876543",
         started: "2026-01-05T08:55:00+01:00"}
      - {id: call-max-1, employee: max, device: max-desk, pull: failed}   # refuses a pull
    dial_results: {"+49301111111": busy}      # how call-backs to these numbers end
    unavailable_for: [hans]                   # asking for these employees' calls times out

``started`` carries its UTC offset (``Z`` or ``+01:00``): a bare local time cannot be
ordered against the others. Seed employees the directory does not know are warnings.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ivr.callcontrol import Connect, Replaces
from ivr.errors import DialplanError, IvrError, Problem
from ivr.states.ending import FailureResult
from ivr.validation import AwareTime, problems_of
from ivr.yaml_source import read_yaml


class CallControlUnavailable(IvrError):
    """The PBX did not answer (timeout, refused, garbage); the portal says so."""


class ActiveCall(BaseModel):
    """A call running on one of an employee's devices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    employee: str
    device: str = ""
    remote: str = ""
    started: AwareTime | None = None
    #: simulated PBX: how a pull of this call ends
    pull: Literal["connected"] | FailureResult = "connected"
    #: a real PBX: the SIP dialog a runtime replaces to pull it (not in seed files)
    replaces: Replaces | None = Field(default=None, exclude=True)


class CallControl(Protocol):
    """What the portal asks of the PBX. Methods may raise
    :class:`CallControlUnavailable` when the PBX does not answer."""

    def active_calls(self, employee_id: str) -> list[ActiveCall]:
        """The employee's answered running calls, oldest first."""

    def pull(self, call_id: str, to: str) -> Connect:
        """Move running call ``call_id`` onto the leg of the portal caller ``to``: a
        result word, or the :class:`~ivr.callcontrol.Replaces` a SIP runtime uses."""

    def dial(self, number: str, *, for_caller: str, caller_id: str, display_name: str) -> Connect:
        """Call ``number`` for the portal caller, presenting ``caller_id``/``display_name``:
        a result word, or None when the runtime places the call itself."""


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
    dial_results: dict[str, FailureResult] = {}
    unavailable_for: list[str] = []

    @model_validator(mode="after")
    def _unique_ids(self) -> _Seed:
        seen: set[str] = set()
        for call in self.calls:
            if call.id in seen:
                raise ValueError(f"call id {call.id!r} is used twice: a pull would be ambiguous")
            seen.add(call.id)
        return self


class SimulatedPbx:
    """A PBX in memory: calls from a seed file, listed oldest first. A pulled call leaves
    its employee's list (it now runs on the portal caller's leg); placed calls are kept
    in ``placed``."""

    def __init__(
        self,
        calls: list[ActiveCall] | None = None,
        dial_results: dict[str, FailureResult] | None = None,
        unavailable_for: list[str] | None = None,
    ) -> None:
        self.calls = list(calls or [])
        self.dial_results = dict(dial_results or {})
        self.unavailable_for = set(unavailable_for or ())
        self.pulled: list[tuple[ActiveCall, str]] = []
        self.placed: list[PlacedCall] = []
        #: what loading the seed found odd (employees the directory does not know)
        self.warnings: tuple[Problem, ...] = ()

    @classmethod
    def load(cls, path: str | Path, employees: Collection[str] | None = None) -> SimulatedPbx:
        """Read a seed file (validated, errors with file:line); with the directory's
        ``employees``, a seed employee it does not know is a warning in ``warnings``."""
        source = read_yaml(path)
        try:
            seed = _Seed.model_validate(source.data)
        except ValidationError as exc:
            raise DialplanError(problems_of(source, exc, _Seed)) from None
        pbx = cls(seed.calls, seed.dial_results, seed.unavailable_for)
        if employees is not None:
            named: list[tuple[tuple[str | int, ...], str]] = [
                (("calls", i, "employee"), call.employee) for i, call in enumerate(seed.calls)
            ]
            named += [(("unavailable_for", i), e) for i, e in enumerate(seed.unavailable_for)]
            pbx.warnings = tuple(
                source.problem(
                    where, f"employee {who!r} is not in the directory", severity="warning"
                )
                for where, who in named
                if who not in employees
            )
        return pbx

    def active_calls(self, employee_id: str) -> list[ActiveCall]:
        if employee_id in self.unavailable_for:
            raise CallControlUnavailable(f"simulated PBX: no answer for {employee_id!r}")
        mine = [c for c in self.calls if c.employee == employee_id]
        return sorted(mine, key=lambda c: (c.started is not None, c.started or 0))

    def pull(self, call_id: str, to: str) -> Connect:
        for call in self.calls:
            if call.id == call_id:
                if call.pull != "connected":
                    return call.pull  # the call stays where it is
                self.calls.remove(call)
                self.pulled.append((call, to))
                return "connected"
        return "failed"  # ended meanwhile

    def dial(self, number: str, *, for_caller: str, caller_id: str, display_name: str) -> Connect:
        result = self.dial_results.get(number)
        if result is not None:
            return result
        self.placed.append(PlacedCall(number, for_caller, caller_id, display_name))
        return "connected"
