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

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ivr.errors import DialplanError, Problem
from ivr.portal.blocking import BlockingProfile, NumberRule
from ivr.portal.directory import Employee
from ivr.portal.lockout import LockoutPolicy
from ivr.portal.numbers import DEFAULT_REGION, prefix_to_e164, valid_e164
from ivr.portal.pin import DEFAULT_MAX_REPEAT, MAX_LENGTH
from ivr.sip.jsonrpc import parse_address
from ivr.states.base import Regex
from ivr.validation import problems_of
from ivr.yaml_source import Source, read_yaml

PIN_OFF_WARNING = (
    "PIN authentication is off: the caller's number (A-number) is the only credential "
    "and can be spoofed — calls through the portal at the company's cost"
)


class PinPolicy(BaseModel):
    """PIN attempts per call, the escalating lockout after consecutive failures across
    calls, and the passcode rule on repeated digits (see README, "PIN security")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts_per_call: int = Field(default=3, ge=1, le=10)
    lockout_failures: int = Field(default=5, ge=1, le=100)
    lockout_minutes: float = Field(default=15, gt=0, le=7 * 24 * 60)
    lockout_escalation: float = Field(
        default=2.0, ge=1, le=10, description="each lockout lasts this many times the last"
    )
    temporary_lockouts: int | None = Field(
        default=4,
        ge=0,
        le=100,
        description="temporary lockouts before the next one is permanent (until "
        "`ivr portal unlock`); null: never permanent",
    )
    max_repeated_digits: int = Field(
        default=DEFAULT_MAX_REPEAT,
        ge=1,
        le=MAX_LENGTH,
        description="the longest run of one digit a new PIN may contain (2: 51112 refused)",
    )

    def lockout(self) -> LockoutPolicy:
        """The lockout policy for the store."""
        return LockoutPolicy(
            failures=self.lockout_failures,
            seconds=self.lockout_minutes * 60,
            escalation=self.lockout_escalation,
            temporary_lockouts=self.temporary_lockouts,
        )


def _rule(rule: str, info: ValidationInfo) -> str:
    """A blocking rule, checked in the portal's region (ValueError naming the rule)."""
    NumberRule.parse(rule, (info.context or {}).get("region", DEFAULT_REGION))
    return rule


#: one blocking rule: each is located on its own (``blocking_profile.outgoing.1``)
RuleText = Annotated[str, AfterValidator(_rule)]


class BlockingConfig(BaseModel):
    """A blocking profile: prefixes (``0900``) or ranges (``0301234000-0301234999``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    incoming: list[RuleText] = []
    outgoing: list[RuleText] = []
    forwarded: list[RuleText] = []

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
    number: str = Field(
        description="the portal's number from the group's number block: its internal "
        'extension ("250") or its public number ("+49 40 12345 250")'
    )
    number_block: str | None = Field(
        default=None,
        description='the group\'s number block as the world dials it ("+49 40 12345"): '
        "joins an extension to its public number, or splits a public number's extension",
    )
    public_number: str | None = Field(
        default=None,
        description="the public number when it is not block + extension (any format)",
    )
    internal_numbers: Regex = Field(
        default=re.compile("[1-9][0-9]{1,5}"),
        description="internal extensions a caller may dial (a regular expression, full "
        "match); other numbers not beginning 0 are invalid",
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
        default=None,
        description="where lockouts live: a postgresql:// URL (shared by several nodes) or "
        "an SQLite file (relative); default .ivr-lockouts.sqlite beside the directory; "
        "the IVR_LOCKOUT_STORE environment variable comes first",
    )
    region: str = Field(default="DE", min_length=2, max_length=2)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (e.g. DE, AT, CH)")
        return value

    @field_validator("public_number", "number_block")
    @classmethod
    def _public(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        region = (info.context or {}).get("region", DEFAULT_REGION)
        if info.field_name == "number_block":
            return _block(value, region)
        e164 = valid_e164(value, region)
        if e164 is None:
            raise ValueError(f"public_number {value!r} is not a valid phone number")
        return e164

    @model_validator(mode="after")
    def _one_pbx(self) -> PortalConfig:
        if self.pbx is not None and self.call_control is not None:
            raise ValueError("name either pbx (simulated) or call_control (Kamailio), not both")
        return self

    @property
    def number_public(self) -> str | None:
        """``number`` when it was given as a public number (E.164), else None."""
        return self.number if self.number.startswith("+") else None

    @property
    def extension(self) -> str:
        """The portal's internal extension: ``number``, or a public number's part after
        ``number_block``."""
        if self.number_public is None or not self.number_block:
            return self.number
        return self.number[len(self.number_block) :]

    def is_extension(self, digits: str) -> bool:
        """Whether ``digits`` is an internal number a caller may dial."""
        return bool(self.internal_numbers.fullmatch(digits))

    def excludes(self, employee: Employee) -> str | None:
        """Why ``employee`` may not use this portal (level, group, area), or None. An
        area lies inside a group: it is matched together with the portal's group."""
        if self.level == "group" and employee.group != self.group:
            return f"employee of group {employee.group!r}, portal is for {self.group!r}"
        if self.area is not None and (employee.group, employee.area) != (self.group, self.area):
            return (
                f"employee of {employee.group!r}/{employee.area!r}, portal is for "
                f"{self.group!r}/{self.area!r}"
            )
        return None

    @property
    def presented_number(self) -> str:
        """What call-backs present (From, P-Asserted-Identity): the public number —
        ``number`` if public, ``public_number``, or ``number_block`` + extension — else
        the internal extension."""
        if self.number_public:
            return self.number_public
        if self.public_number:
            return self.public_number
        if self.number_block:
            return self.number_block + self.number
        return self.number

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
    def _number(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f'write the number as text: number: "{value}"')
        if isinstance(value, str) and value.strip().startswith("+"):
            e164 = valid_e164(value, (info.context or {}).get("region", DEFAULT_REGION))
            if e164 is None:
                raise ValueError(f"number {value!r}: not a valid public number")
            return e164
        if isinstance(value, str) and not (value.isascii() and value.isdigit()):
            raise ValueError(f"number {value!r}: digits only (or a public number: +...)")
        return value

    def number_problem(self) -> str | None:
        """Why ``number`` does not fit: a public number needs ``number_block`` and must lie
        in it (one public number, not two); then the extension's number-space rules —
        77/78 always, and with the MagentaEINS Business Integration no two digits, no
        leading 0, not 911."""
        block, public = self.number_block, self.number_public
        if public and not block:
            return (
                f"number {public} is public: give number_block too, so the extension is "
                "known (the PBX's number rules apply to it, and internal calls present it)"
            )
        if block and public and not public.startswith(block):
            return f"number {public} does not lie in number_block {block}"
        if self.public_number and public and self.public_number != public:
            return f"number {public} is public already: public_number must not differ"
        ext = self.extension
        if not ext:
            return f"number {self.number} is number_block itself: the extension is missing"
        if ext[:2] in ("77", "78"):
            return f"number {ext!r}: internal numbers beginning 77 or 78 are not usable"
        if not self.magentaeins_integration:
            return None
        if len(ext) == 2:
            return f"number {ext!r}: no two-digit numbers with MagentaEINS integration"
        if ext.startswith("0"):
            return f"number {ext!r}: no numbers beginning 0 with MagentaEINS integration"
        if ext == "911":
            return "number '911' is not usable with MagentaEINS integration"
        return None


def is_postgres_url(text: str) -> bool:
    """Whether a lockout store names PostgreSQL (``postgresql://…``, ``postgres://…``)."""
    return text.startswith(("postgresql://", "postgres://"))


def _as_written(source: Source, path: tuple[str, ...]) -> str | None:
    """The text of a scalar as the file has it (``0123``, which YAML 1.1 reads as the
    octal number 83), from its position; None when it cannot be read back."""
    position = source.values.get(path)
    if position is None:
        return None
    try:
        line = Path(source.file).read_text(encoding="utf-8").splitlines()[position.line - 1]
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    token = line[position.column - 1 :].split("#", 1)[0].strip().split()
    return token[0].strip("\"'") if token else None


def _block(value: str, region: str) -> str:
    """A number block as an E.164 prefix (ValueError naming the problem)."""
    try:
        return prefix_to_e164(value, region)
    except ValueError as exc:
        raise ValueError(f"number_block {value!r}: {exc}") from None


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
    number = source.data.get("number")
    if isinstance(number, int) and not isinstance(number, bool):  # YAML read digits as int
        written = _as_written(source, ("number",)) or str(number)
        raise DialplanError(
            source.problem(("number",), f'write the number as text: number: "{written}"')
        )
    try:
        region = source.data.get("region", DEFAULT_REGION)  # blocking rules are read in it
        config = PortalConfig.model_validate(
            source.data, context={"region": region if isinstance(region, str) else DEFAULT_REGION}
        )
    except ValidationError as exc:
        raise DialplanError(problems_of(source, exc, PortalConfig)) from None
    problem = config.number_problem()
    if problem:
        raise DialplanError(source.problem(("number",), problem))
    if config.level == "company" and config.area is not None:
        raise DialplanError(
            source.problem(
                ("area",),
                f"area {config.area!r} lies inside group {config.group!r}: with level company "
                "it would mean every group's area of that name — use level group for one area",
            )
        )
    warnings = []
    if not config.pin_authentication:
        warnings.append(
            source.problem(("pin_authentication",), PIN_OFF_WARNING, severity="warning")
        )
    return LoadedPortal(config=config, path=Path(path), source=source, warnings=tuple(warnings))
