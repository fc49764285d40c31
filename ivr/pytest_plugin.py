"""pytest plugin (entry point ``pytest11``): a thin layer over :mod:`ivr.testing`.

- Collects scenario files: ``*.yaml`` files inside a directory named ``scenarios``;
  each scenario becomes a test item; a failure shows expected vs actual transcript.
  A file that cannot be used (as ``ivr test`` exits 2 for) is a collection error
  listing each problem at ``file:line:col``, never a failed scenario.
- Fixture ``ivr_simulate``: run a scripted call in a test, engines cached per session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.errors import DialplanError
from ivr.sim import SimCall
from ivr.testing import LoadedScenarios, ScenarioResult, ScenarioRunner

_RUNNER = ScenarioRunner()
_LOADED: dict[Path, LoadedScenarios] = {}
_RESULTS: dict[Path, dict[str, ScenarioResult]] = {}


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix == ".yaml" and file_path.parent.name == "scenarios":
        return ScenarioFileItem.from_parent(parent, path=file_path)
    return None


class ScenarioFileItem(pytest.File):
    """A scenario file: one test per scenario."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            loaded = _RUNNER.load_file(self.path)
        except DialplanError as exc:
            raise self.CollectError(str(exc)) from None
        _LOADED[self.path] = loaded
        for scenario, line in zip(loaded.spec.scenarios, loaded.lines, strict=True):
            yield ScenarioItem.from_parent(self, name=scenario.name, line=line)


class ScenarioItem(pytest.Item):
    """One scenario of a scenario file."""

    def __init__(self, *, line: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.line = line

    def runtest(self) -> None:
        if self.path not in _RESULTS:
            loaded = _LOADED.pop(self.path, None)
            results = _RUNNER.run_loaded(loaded) if loaded else _RUNNER.run_file(self.path)
            _RESULTS[self.path] = {r.name: r for r in results}
        result = _RESULTS[self.path].get(self.name)
        if result is None:
            raise ScenarioFailed(f"scenario {self.name!r} was not run")
        if not result.passed:
            raise ScenarioFailed(result.report(), result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            return f"scenario {self.name!r} failed:\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, max(0, self.line - 1), f"scenario: {self.name}"


class ScenarioFailed(AssertionError):
    """A scenario did not produce what it expects."""

    def __init__(self, message: str, result: ScenarioResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@pytest.fixture(scope="session")
def ivr_runner() -> ScenarioRunner:
    """The session's scenario runner (engines built once per dialplan)."""
    return _RUNNER


@pytest.fixture
def ivr_simulate(ivr_runner: ScenarioRunner) -> Callable[..., SimCall]:
    """``ivr_simulate(dialplan, keys="1 2#", caller="+49...", portal=None)`` -> transcript.

    Calls within one test share their engine (so e.g. PIN lockouts carry over) and
    follow each other on one virtual clock; ``after=SECONDS`` waits between calls.
    """
    from ivr.dialogue import Engine
    from ivr.sim import REFERENCE_START, Simulator

    engines: dict[tuple[Path, Path | None], Engine] = {}
    clock = [REFERENCE_START]

    def run(
        dialplan: str | Path,
        *,
        keys: str = "",
        caller: str,
        called: str = "",
        portal: str | Path | None = None,
        after: float = 0.0,
    ) -> SimCall:
        key = (Path(dialplan), Path(portal) if portal else None)
        if key not in engines:
            engines[key] = ivr_runner.engine(*key)
        call = Simulator(engines[key]).run(
            keys, caller=caller, called=called, start=clock[0] + after
        )
        clock[0] = call.ended_at
        return call

    return run
