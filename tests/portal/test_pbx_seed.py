"""The simulated PBX's seed file: start times carry a UTC offset, call ids are unique,
and employees the directory does not know are warned about — at load and in
``ivr check --portal``, never as a traceback during a pull."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from ivr.errors import DialplanError
from ivr.portal.callcontrol import SimulatedPbx
from ivr.portal.config import load_portal
from ivr.portal.lockout import MemoryLockoutStore
from ivr.portal.services import check_portal, portal_services
from tests.conftest import PORTAL_EXAMPLES


def seed(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pbx.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_problem(path: Path) -> str:
    with pytest.raises(DialplanError) as info:
        SimulatedPbx.load(path)
    (problem,) = info.value.problems
    return str(problem)


def test_the_example_seed_loads_without_warnings() -> None:
    directory = {"erika", "max", "hans"}
    pbx = SimulatedPbx.load(PORTAL_EXAMPLES / "pbx.yaml", directory)
    assert pbx.warnings == () and len(pbx.calls) == 3


def test_a_start_time_without_utc_offset_is_refused_at_its_line(tmp_path: Path) -> None:
    path = seed(
        tmp_path,
        "calls:\n"
        "  - {id: a, employee: erika, started: '2026-01-05T08:55:00+01:00'}\n"
        "  - {id: b, employee: erika, started: '2026-01-05T08:58:00'}\n",
    )
    problem = load_problem(path)
    assert problem.startswith(f"{path}:3:")
    assert "calls.1.started" in problem and "no UTC offset" in problem


@pytest.mark.parametrize("started", ["'2026-01-05T08:55:00Z'", "'2026-01-05T07:55:00+00:00'"])
def test_start_times_in_any_offset_are_ordered_by_the_instant(tmp_path: Path, started: str) -> None:
    path = seed(
        tmp_path,
        "calls:\n"
        f"  - {{id: late, employee: erika, started: {started}}}\n"
        "  - {id: early, employee: erika, started: '2026-01-05T08:50:00+01:00'}\n",
    )
    calls = SimulatedPbx.load(path).active_calls("erika")
    assert [c.id for c in calls] == ["early", "late"]


def test_a_call_id_used_twice_is_refused(tmp_path: Path) -> None:
    path = seed(tmp_path, "calls:\n  - {id: a, employee: erika}\n  - {id: a, employee: max}\n")
    assert "'a' is used twice" in load_problem(path)


def test_employees_absent_from_the_directory_are_warnings(tmp_path: Path) -> None:
    path = seed(
        tmp_path,
        "calls:\n"
        "  - {id: a, employee: erika}\n"
        "  - {id: b, employee: ghost}\n"
        "unavailable_for: [phantom]\n",
    )
    pbx = SimulatedPbx.load(path, {"erika"})
    assert [(w.line, w.path, w.severity) for w in pbx.warnings] == [
        (3, "calls.1.employee", "warning"),
        (4, "unavailable_for.0", "warning"),
    ]
    assert "'ghost' is not in the directory" in pbx.warnings[0].message


def copy_portal(tmp_path: Path, seed_text: str) -> Path:
    for name in ("portal.yaml", "directory.yaml"):
        shutil.copy(PORTAL_EXAMPLES / name, tmp_path / name)
    seed(tmp_path, seed_text)
    return tmp_path / "portal.yaml"


def test_check_portal_reports_seed_problems(tmp_path: Path) -> None:
    portal = copy_portal(tmp_path, "calls:\n  - {id: a, employee: ghost}\n")
    (warning,) = check_portal(portal)
    assert warning.severity == "warning" and "'ghost'" in warning.message
    seed(tmp_path, "calls:\n  - {id: a, employee: erika, started: '2026-01-05 08:55'}\n")
    (error,) = check_portal(portal)
    assert error.severity == "error" and "no UTC offset" in error.message


def test_the_runtime_logs_seed_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    portal = copy_portal(tmp_path, "calls:\n  - {id: a, employee: ghost}\n")
    with caplog.at_level(logging.WARNING, logger="ivr"):
        portal_services(load_portal(portal), lockouts=MemoryLockoutStore())
    assert "'ghost' is not in the directory" in caplog.text
