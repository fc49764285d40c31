"""Identification in other regions than Germany: every directory number is read in the
region that applies to it (the employee's own ``region``, else the portal's), stored as
E.164, and matched against the caller read in the portal's region — for national and
international forms on both sides."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.errors import DialplanError
from ivr.portal.directory import YamlDirectory
from ivr.portal.services import portal_engine
from ivr.sim import Simulator
from tests.conftest import PORTAL_DIALPLAN

PORTAL = """\
display_first_name: Anywhere
display_last_name: Portal
group: Zentrale
time_zone: {zone}
number: "4100"
level: group
region: {region}
pin_authentication: false
directory: directory.yaml
"""

DIRECTORY = """\
employees:
  anna:
    name: Anna
    group: Zentrale
    numbers: ["{number}"]
"""

#: (region, time zone, the employee's number in national form, the same internationally)
REGIONS = [
    ("DE", "Europe/Berlin", "0171 1234567", "+49 171 1234567"),
    ("AT", "Europe/Vienna", "0664 9876543", "+43 664 9876543"),
    ("CH", "Europe/Zurich", "079 123 45 67", "+41 79 123 45 67"),
    ("US", "America/New_York", "(650) 253-0000", "+1 650 253 0000"),
    ("GB", "Europe/London", "07400 123456", "+44 7400 123456"),
    ("AU", "Australia/Sydney", "0412 345 678", "+61 412 345 678"),
]


def portal(tmp_path: Path, region: str, zone: str, number: str) -> Path:
    (tmp_path / "directory.yaml").write_text(DIRECTORY.format(number=number), "utf-8")
    path = tmp_path / "portal.yaml"
    path.write_text(PORTAL.format(region=region, zone=zone), "utf-8")
    return path


def admitted(portal_path: Path, caller: str) -> bool:
    engine = portal_engine(PORTAL_DIALPLAN, portal_path)
    result = Simulator(engine).run("wait=10 hangup", caller=caller)
    return any(line["state"] == "greet" for line in result.of_type("state"))


@pytest.mark.parametrize(("region", "zone", "national", "international"), REGIONS)
@pytest.mark.parametrize("written", ["national", "international"])
@pytest.mark.parametrize("presented", ["national", "international"])
def test_an_employee_is_recognised_in_every_form(
    tmp_path: Path,
    region: str,
    zone: str,
    national: str,
    international: str,
    written: str,
    presented: str,
) -> None:
    forms = {"national": national, "international": international}
    path = portal(tmp_path, region, zone, forms[written])
    assert admitted(path, forms[presented])


@pytest.mark.parametrize(("region", "zone", "national", "international"), REGIONS)
def test_a_stranger_in_the_same_region_is_refused(
    tmp_path: Path, region: str, zone: str, national: str, international: str
) -> None:
    path = portal(tmp_path, region, zone, national)
    other = international[:-1] + ("1" if international[-1] != "1" else "2")
    assert not admitted(path, other)


def test_the_same_digits_mean_another_number_in_another_region(tmp_path: Path) -> None:
    """``0664 9876543`` is an Austrian mobile in AT; in DE it is a different (German)
    number, so an Austrian caller is not taken for a German directory entry."""
    path = portal(tmp_path, "DE", "Europe/Berlin", "0664 9876543")
    assert not admitted(path, "+43 664 9876543")
    assert admitted(path, "+49 664 9876543")


def test_an_employee_region_overrides_the_portals(tmp_path: Path) -> None:
    """A German portal with a Vienna employee whose numbers are written nationally."""
    path = portal(tmp_path, "DE", "Europe/Berlin", "0664 9876543")
    directory = tmp_path / "directory.yaml"
    directory.write_text(
        directory.read_text("utf-8").replace("    numbers:", "    region: AT\n    numbers:"),
        "utf-8",
    )
    assert admitted(path, "+43 664 9876543")
    assert admitted(path, "0043 664 9876543")  # international form with 00, read in DE
    assert not admitted(path, "0664 9876543")  # national form of the German portal


def test_directory_numbers_are_stored_in_e164(tmp_path: Path) -> None:
    portal(tmp_path, "CH", "Europe/Zurich", "079 123 45 67")
    book = YamlDirectory.load(tmp_path / "directory.yaml", "CH")
    assert book.employees["anna"].e164_numbers() == ["+41791234567"]
    assert book.find_by_number("+41791234567") is book.employees["anna"]


def test_an_unknown_employee_region_is_refused_at_load(tmp_path: Path) -> None:
    directory = tmp_path / "directory.yaml"
    directory.write_text(
        DIRECTORY.format(number="+43 664 9876543").replace(
            "    numbers:", "    region: XX\n    numbers:"
        ),
        "utf-8",
    )
    with pytest.raises(DialplanError) as info:
        YamlDirectory.load(directory)
    (problem,) = info.value.problems
    assert problem.path == "employees.anna.region" and "'XX'" in problem.message
    assert problem.line == 5


def test_a_national_number_that_is_impossible_in_the_region_is_refused(tmp_path: Path) -> None:
    """``0664 9876543`` is a possible Austrian number, but too short for the US plan."""
    portal(tmp_path, "US", "America/New_York", "0664 98")
    with pytest.raises(DialplanError) as info:
        YamlDirectory.load(tmp_path / "directory.yaml", "US")
    (problem,) = info.value.problems
    assert "(region US)" in problem.message and problem.path == "employees.anna.numbers"
