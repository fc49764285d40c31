"""The directory: employees/workplaces, their parallel-ringing numbers, PIN hashes and
devices. A YAML file implementation, and the small protocol an application implements
to plug in its own source (database, LDAP).

File format (``examples/portal/directory.yaml``)::

    employees:
      erika:
        name: Erika Mustermann
        group: Zentrale
        area: Vertrieb
        numbers: ["+49 171 1234567", "+49 89 1234567"]   # 1 to 5, parallel ringing
        pin_hash: "$argon2id$v=19$..."                      # written by `ivr portal set-pin`
        devices: [{id: erika-desk, name: Tischtelefon, uri: "sip:1001@pbx.local"}]

A device's ``uri`` is its SIP address as the PBX sees it in the From or To of its
calls; the Kamailio call control finds an employee's running calls by it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import phonenumbers
from argon2 import extract_parameters
from argon2.exceptions import InvalidHashError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ivr.errors import DialplanError, Problem
from ivr.portal.numbers import DEFAULT_REGION, to_e164
from ivr.validation import problems_of
from ivr.yaml_source import read_yaml

_SIP_URI = re.compile(r"^<?sips?:([^@;:<>\s]+)@(\[[^\]]+\]|[^;:>\s]+)(?::\d+)?(?:[;>].*)?$", re.I)
MIN_NUMBERS = 1
MAX_NUMBERS = 5


class Device(BaseModel):
    """A device an employee's calls run on (desk phone, softphone, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    name: str = ""
    uri: str | None = Field(
        default=None, description="its SIP address (sip:user@host), as in its calls' From/To"
    )

    @field_validator("uri")
    @classmethod
    def _sip_uri(cls, value: str | None) -> str | None:
        if value is not None and sip_user_host(value) is None:
            raise ValueError(f"{value!r} is not a SIP address like sip:1001@pbx.local")
        return value


def sip_user_host(uri: str) -> tuple[str, str] | None:
    """``(user, host)`` of a sip:/sips: URI, lower-cased host, without port and
    parameters; None when it is not one (what call control matches devices by)."""
    match = _SIP_URI.match(uri.strip())
    if match is None:
        return None
    return match.group(1), match.group(2).lower()


class Employee(BaseModel):
    """An employee/workplace [Arbeitsplatz]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default="", description="the key in the directory")
    name: str = Field(min_length=1)
    group: str = Field(min_length=1, description="group/site [Gruppe/Standort]")
    area: str | None = Field(default=None, description="area [Bereich]")
    region: str | None = Field(
        default=None,
        description="region of this employee's national numbers (default: the portal's)",
    )
    numbers: tuple[str, ...] = Field(
        description="1 to 5 parallel-ringing numbers [Paralleles Klingeln]"
    )
    pin_hash: str | None = Field(default=None, description="argon2 hash of the voicemail PIN")
    devices: tuple[Device, ...] = ()

    #: the numbers in E.164, read in the employee's region (set at validation)
    _e164: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (e.g. DE, AT, CH)")
        return value

    @field_validator("numbers", mode="before")
    @classmethod
    def _numbers(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, tuple):
            if not MIN_NUMBERS <= len(value) <= MAX_NUMBERS:
                raise ValueError(
                    f"{len(value)} parallel-ringing numbers: between {MIN_NUMBERS} and "
                    f"{MAX_NUMBERS} are allowed"
                )
            region = _region_of(info)
            for number in value:
                if not isinstance(number, str) or to_e164(number, region) is None:
                    raise ValueError(f"{number!r} is not a phone number (region {region})")
        return value

    @model_validator(mode="after")
    def _normalise(self, info: ValidationInfo) -> Employee:
        region = self.region or (info.context or {}).get("region", DEFAULT_REGION)
        self._e164 = tuple(e for e in (to_e164(n, region) for n in self.numbers) if e)
        return self

    @field_validator("pin_hash")
    @classmethod
    def _hashed(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                extract_parameters(value)  # a truncated or corrupt hash is refused at load
            except (InvalidHashError, ValueError, UnicodeError):
                raise ValueError(
                    "pin_hash must be an argon2 hash (set it with `ivr portal set-pin`)"
                ) from None
        return value

    def e164_numbers(self) -> list[str]:
        """The parallel-ringing numbers in E.164 (national ones read in the employee's
        region, else the directory's — the portal's)."""
        return list(self._e164)


def _region_of(info: ValidationInfo) -> str:
    """The region national numbers of the employee being validated are read in."""
    own = info.data.get("region")
    return own if isinstance(own, str) else (info.context or {}).get("region", DEFAULT_REGION)


class Directory(Protocol):
    """What the portal needs from a directory."""

    def find_by_number(self, e164: str) -> Employee | None:
        """The employee with this parallel-ringing number (E.164), if any."""

    def get(self, employee_id: str) -> Employee | None:
        """The employee with this id, if any."""


class YamlDirectory:
    """A directory read from a YAML file (validated, every error with file:line)."""

    def __init__(self, path: str | Path, employees: dict[str, Employee]) -> None:
        self.path = Path(path)
        self.employees = employees
        self._by_number = {n: e for e in employees.values() for n in e.e164_numbers()}

    @classmethod
    def load(cls, path: str | Path, region: str = DEFAULT_REGION) -> YamlDirectory:
        """Load and validate, national numbers read in ``region`` (the portal's) unless
        an employee names its own; DialplanError lists every problem."""
        source = read_yaml(path)
        data = source.data
        problems: list[Problem] = []
        if not isinstance(data, dict) or not isinstance(data.get("employees"), dict):
            raise DialplanError(source.problem((), "a directory needs a mapping 'employees'"))
        for key in data:
            if key != "employees":
                problems.append(source.problem((key,), f"unknown key {key!r}", at_key=True))
        employees: dict[str, Employee] = {}
        owner: dict[str, str] = {}
        for employee_id, raw in data["employees"].items():
            path_ = ("employees", employee_id)
            if not isinstance(raw, dict):
                problems.append(source.problem(path_, "an employee must be a mapping"))
                continue
            try:
                employee = Employee.model_validate(
                    {**raw, "id": employee_id}, context={"region": region}
                )
            except ValidationError as exc:
                problems.extend(problems_of(source, exc, Employee, path_))
                continue
            for i, number in enumerate(employee.e164_numbers()):
                if number in owner:
                    problems.append(
                        source.problem(
                            (*path_, "numbers", i),
                            f"number {number} already belongs to {owner[number]!r}",
                        )
                    )
                owner[number] = employee_id
            employees[employee_id] = employee
        if problems:
            raise DialplanError(problems)
        return cls(path, employees)

    def find_by_number(self, e164: str) -> Employee | None:
        return self._by_number.get(e164)

    def get(self, employee_id: str) -> Employee | None:
        return self.employees.get(employee_id)

    def __iter__(self) -> Iterator[Employee]:
        return iter(self.employees.values())

    def write_pin_hash(self, employee_id: str, pin_hash: str) -> None:
        """Store ``pin_hash`` for the employee in the file, keeping its comments and layout."""
        from ruamel.yaml import YAML  # round-trip editing; only needed here

        if employee_id not in self.employees:
            raise KeyError(employee_id)
        yaml = YAML()
        yaml.preserve_quotes = True
        yaml.width = 4096  # never re-wrap long lines (hashes, flow mappings)
        yaml.indent(mapping=2, sequence=4, offset=2)  # "key:\n  - item", as written
        data = yaml.load(self.path.read_text(encoding="utf-8"))
        data["employees"][employee_id]["pin_hash"] = pin_hash
        with self.path.open("w", encoding="utf-8") as out:
            yaml.dump(data, out)
        self.employees[employee_id] = self.employees[employee_id].model_copy(
            update={"pin_hash": pin_hash}
        )
