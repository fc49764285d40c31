"""The portal configuration [Anywhere Portal erstellen]: loaded from YAML, validated
with file:line messages that name the offending value.

Example (``examples/portal/portal.yaml``)::

    display_first_name: Anywhere
    display_last_name: Zentrale
    group: Zentrale
    time_zone: Europe/Berlin
    number: "4100"
    level: group
    silent_mode: false
    pin_authentication: true
    blocking_profile: {name: Standard, outgoing: ["0900", "0137"]}
    directory: directory.yaml
    pbx: pbx.yaml                                # the simulated PBX, or the real one:
    # call_control: {kamailio_rpc: "127.0.0.1:8090"}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ivr.dialplan.yaml_source import Source, read_yaml
from ivr.errors import DialplanError, Problem
from ivr.portal.blocking import BlockingProfile, NumberRule
from ivr.portal.lockout import LockoutPolicy
from ivr.portal.numbers import DEFAULT_REGION, to_e164
from ivr.sip.jsonrpc import parse_address
from ivr.validation import problems_of

PIN_OFF_WARNING = (
    "PIN authentication is off: the caller's number (A-number) is the only credential "
    "and can be spoofed — calls through the portal at the company's cost"
)


class PinPolicy(BaseModel):
    """PIN attempts per call, and the lockout after consecutive failures across calls."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts_per_call: int = Field(default=3, ge=1, le=10)
    lockout_failures: int = Field(default=5, ge=1, le=100)
    lockout_minutes: float = Field(default=15, gt=0, le=7 * 24 * 60)

    def lockout(self) -> LockoutPolicy:
        """The lockout policy for the store."""
        return LockoutPolicy(failures=self.lockout_failures, seconds=self.lockout_minutes * 60)


class BlockingConfig(BaseModel):
    """A blocking profile: prefixes (``0900``) or ranges (``0301234000-0301234999``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    incoming: list[str] = []
    outgoing: list[str] = []
    forwarded: list[str] = []

    @field_validator("incoming", "outgoing", "forwarded")
    @classmethod
    def _rules(cls, rules: list[str], info: ValidationInfo) -> list[str]:
        region = (info.context or {}).get("region", DEFAULT_REGION)
        for rule in rules:
            NumberRule.parse(rule, region)  # raises ValueError naming the rule
        return rules

    def profile(self, region: str) -> BlockingProfile:
        """The parsed profile."""
        return BlockingProfile(
            name=self.name,
            incoming=tuple(NumberRule.parse(r, region) for r in self.incoming),
            outgoing=tuple(NumberRule.parse(r, region) for r in self.outgoing),
            forwarded=tuple(NumberRule.parse(r, region) for r in self.forwarded),
        )


class CallControlConfig(BaseModel):
    """The real PBX: Kamailio's dialog module, asked over its JSON-RPC datagram socket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kamailio_rpc: str = Field(description="host:port of Kamailio's jsonrpcs datagram socket")
    timeout: float = Field(default=1.0, gt=0, le=10, description="seconds to wait for answers")

    @field_validator("kamailio_rpc")
    @classmethod
    def _address(cls, value: str) -> str:
        parse_address(value)  # raises ValueError naming the problem
        return value


class PortalConfig(BaseModel):
    """One Anywhere Portal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    display_first_name: str = Field(min_length=1, max_length=30)
    display_last_name: str = Field(min_length=1, max_length=30)
    group: str = Field(min_length=1, description="the group/site the portal belongs to")
    area: str | None = Field(default=None, description="limit access to this area")
    time_zone: str = Field(description="IANA time zone, e.g. Europe/Berlin")
    number: str = Field(description="the portal's number from the group's number space")
    public_number: str | None = Field(
        default=None,
        description="the same number as the outside world dials it (E.164): presented "
        "with the display name on call-backs; without it the internal number is presented",
    )
    magentaeins_integration: bool = False
    blocking_profile: BlockingConfig | None = None
    level: Literal["company", "group"]
    silent_mode: bool = False
    pin_authentication: bool = True
    pin_policy: PinPolicy = PinPolicy()
    directory: str = Field(description="directory file, relative to this file")
    pbx: str | None = Field(default=None, description="simulated PBX seed, relative")
    call_control: CallControlConfig | None = Field(
        default=None, description="the real PBX (instead of pbx)"
    )
    lockout_store: str | None = Field(
        default=None, description="SQLite file for lockouts (relative); default: in memory"
    )
    region: str = Field(default="DE", min_length=2, max_length=2)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (e.g. DE, AT, CH)")
        return value

    @field_validator("public_number")
    @classmethod
    def _public(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        region = (info.context or {}).get("region", DEFAULT_REGION)
        e164 = to_e164(value, region)
        if e164 is None:
            raise ValueError(f"public_number {value!r} is not a phone number")
        return e164

    @model_validator(mode="after")
    def _one_pbx(self) -> PortalConfig:
        if self.pbx is not None and self.call_control is not None:
            raise ValueError("name either pbx (simulated) or call_control (Kamailio), not both")
        return self

    @property
    def presented_number(self) -> str:
        """The number call-backs present: the public number, else the internal one."""
        return self.public_number or self.number

    @property
    def name(self) -> str:
        """The portal's name [Name]: its displayed first and last name."""
        return f"{self.display_first_name} {self.display_last_name}"

    @field_validator("display_first_name", "display_last_name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable() or value != value.strip():
            raise ValueError(f"{value!r}: printable characters, no leading/trailing space")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
        return value

    @field_validator("number", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f'write the number as text: number: "{value}"')
        if isinstance(value, str) and not (value.isascii() and value.isdigit()):
            raise ValueError(f"number {value!r}: digits only")
        if isinstance(value, str) and value[:2] in ("77", "78"):
            raise ValueError(
                f"number {value!r}: internal numbers beginning 77 or 78 are not usable"
            )
        return value

    def magentaeins_problem(self) -> str | None:
        """Why the number breaks the MagentaEINS Business Integration rules, if it does."""
        if not self.magentaeins_integration:
            return None
        if len(self.number) == 2:
            return f"number {self.number!r}: no two-digit numbers with MagentaEINS integration"
        if self.number.startswith("0"):
            return f"number {self.number!r}: no numbers beginning 0 with MagentaEINS integration"
        if self.number == "911":
            return "number '911' is not usable with MagentaEINS integration"
        return None


@dataclass(frozen=True, slots=True)
class LoadedPortal:
    """A validated portal configuration, where it came from, and its warnings."""

    config: PortalConfig
    path: Path
    source: Source
    warnings: tuple[Problem, ...]

    def relative(self, name: str) -> Path:
        """A path named in the file, relative to the file."""
        return (self.path.parent / name).expanduser()


def load_portal(path: str | Path) -> LoadedPortal:
    """Load and validate a portal configuration; DialplanError names each bad value."""
    source = read_yaml(path)
    if not isinstance(source.data, dict):
        raise DialplanError(source.problem((), "a portal configuration must be a mapping"))
    try:
        region = source.data.get("region", DEFAULT_REGION)  # blocking rules are read in it
        config = PortalConfig.model_validate(
            source.data, context={"region": region if isinstance(region, str) else DEFAULT_REGION}
        )
    except ValidationError as exc:
        raise DialplanError(problems_of(source, exc, PortalConfig)) from None
    problem = config.magentaeins_problem()
    if problem:
        raise DialplanError(source.problem(("number",), problem))
    warnings = []
    if not config.pin_authentication:
        warnings.append(
            source.problem(("pin_authentication",), PIN_OFF_WARNING, severity="warning")
        )
    return LoadedPortal(config=config, path=Path(path), source=source, warnings=tuple(warnings))
